// Store.replace, compare-and-set over several records, for the SQL adapters: inside one
// transaction the existing rows are locked (in key order, so two transactions never wait on each
// other in a circle), compared with what the caller expects, and only then written. A key expected
// absent that another transaction created meanwhile makes the insert find it: the whole
// transaction is rolled back and the caller told it lost.
import { PortcullisError } from '../core/errors.js';
import type { SqlParam } from './migrations.js';
import type { RecordChange } from './store.js';

/** What the compare-and-set needs from a connection inside a transaction. */
export interface ReplaceTx {
  query<R>(sql: string, params: SqlParam[]): Promise<R[]>;
}

/** Thrown inside the transaction to roll it back: another writer got there first. */
export class ReplaceConflict extends Error {}

/** One change per key: two for the same key would make "the" expected value ambiguous. */
export function checkChanges(changes: readonly RecordChange[]): void {
  if (new Set(changes.map((c) => c.key)).size !== changes.length) {
    throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', 'store replace: each key at most once');
  }
}

/** Equality of two JSON values (object members in any order), like jsonb's `=`. */
export function sameJson(a: unknown, b: unknown): boolean {
  if (Array.isArray(a)) return Array.isArray(b) && a.length === b.length && a.every((x, i) => sameJson(x, b[i]));
  if (isObject(a)) {
    if (!isObject(b)) return false;
    const keys = Object.keys(a);
    return keys.length === Object.keys(b).length && keys.every((k) => Object.hasOwn(b, k) && sameJson(a[k], b[k]));
  }
  return a === b;
}

const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

/** True when written; false when a record differed (nothing written). Throws ReplaceConflict to roll back. */
export async function replaceInTransaction(tx: ReplaceTx, ns: string, changes: readonly RecordChange[]): Promise<boolean> {
  const sorted = [...changes].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  const rows = await tx.query<{ key: string; value: unknown }>(
    'SELECT key, value FROM records WHERE ns = $1 AND key = ANY($2::text[]) ORDER BY key COLLATE "C" FOR UPDATE',
    [ns, sorted.map((c) => c.key)],
  );
  const current = new Map(rows.map((r) => [r.key, r.value]));
  for (const c of sorted) {
    const has = current.has(c.key);
    // The expected value as it would come back from the store (undefined members dropped, …).
    if (c.expected === undefined ? has : !has || !sameJson(current.get(c.key), JSON.parse(JSON.stringify(c.expected)))) return false;
  }
  const updates = sorted.filter((c) => c.expected !== undefined);
  const inserts = sorted.filter((c) => c.expected === undefined);
  if (updates.length > 0) {
    await tx.query(
      `UPDATE records r SET value = c.v::jsonb, updated_at = now() FROM unnest($2::text[], $3::text[]) AS c(k, v) WHERE r.ns = $1 AND r.key = c.k`,
      [ns, updates.map((c) => c.key), updates.map((c) => JSON.stringify(c.next))],
    );
  }
  if (inserts.length > 0) {
    const created = await tx.query<{ key: string }>(
      `INSERT INTO records (ns, key, value) SELECT $1, c.k, c.v::jsonb FROM unnest($2::text[], $3::text[]) AS c(k, v) ORDER BY c.k COLLATE "C" ON CONFLICT DO NOTHING RETURNING key`,
      [ns, inserts.map((c) => c.key), inserts.map((c) => JSON.stringify(c.next))],
    );
    if (created.length !== inserts.length) throw new ReplaceConflict('a record expected absent was created meanwhile');
  }
  return true;
}
