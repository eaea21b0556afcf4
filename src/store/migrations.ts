// The SQL schema (migrations, applied in order and recorded) and every statement on it, one text
// for the embedded PGlite and the PostgreSQL adapters, so the two cannot drift apart.
import { auditColumns, type AuditQuery, type RecordFilter, type StoredAuditEvent } from './store.js';

export const MIGRATIONS: { id: number; sql: string }[] = [
  {
    id: 1,
    sql: `CREATE TABLE IF NOT EXISTS records (
            ns TEXT NOT NULL,
            key TEXT NOT NULL,
            value JSONB NOT NULL,
            updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            PRIMARY KEY (ns, key)
          )`,
  },
  {
    id: 2,
    // The audit store: one row per event, searchable columns beside the event as received.
    sql: `CREATE TABLE IF NOT EXISTS audit_events (
            seq BIGSERIAL PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            time TIMESTAMPTZ NOT NULL,
            component TEXT NOT NULL,
            sub TEXT,
            client_id TEXT,
            spiffe_id TEXT,
            route TEXT,
            decision TEXT,
            policies TEXT[] NOT NULL,
            event JSONB NOT NULL,
            received_at TIMESTAMPTZ NOT NULL DEFAULT now()
          );
          CREATE INDEX IF NOT EXISTS audit_events_time ON audit_events (time DESC, seq DESC)`,
  },
];

/** A parameter value both drivers send as is (JSON goes as its text). */
export type SqlParam = string | number | null | string[];

/** What a migration run needs from a connection that is already inside a transaction. */
export interface MigrationTx {
  /** Runs one or more statements without parameters. */
  exec(sql: string): Promise<void>;
  query<R>(sql: string, params: SqlParam[]): Promise<R[]>;
}

/**
 * Applies the migrations not yet recorded in `schema_migrations`, in id order, recording each.
 * The caller runs this inside one transaction (and, where replicas share a database, under a lock),
 * so a failed migration leaves nothing half applied. Returns the ids it applied (empty when current).
 */
export async function applyMigrations(tx: MigrationTx): Promise<number[]> {
  await tx.exec('CREATE TABLE IF NOT EXISTS schema_migrations (id INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())');
  const done = new Set((await tx.query<{ id: number }>('SELECT id FROM schema_migrations', [])).map((r) => r.id));
  const applied: number[] = [];
  for (const m of [...MIGRATIONS].sort((a, b) => a.id - b.id)) {
    if (done.has(m.id)) continue;
    await tx.exec(m.sql);
    await tx.query('INSERT INTO schema_migrations (id) VALUES ($1)', [m.id]);
    applied.push(m.id);
  }
  return applied;
}

/** The record statements; parameters are ($1 ns, $2 key[, $3 value as JSON text, parsed by the server]). */
export const RECORD_SQL = {
  get: 'SELECT value FROM records WHERE ns = $1 AND key = $2',
  put: `INSERT INTO records (ns, key, value) VALUES ($1, $2, $3::text::jsonb)
        ON CONFLICT (ns, key) DO UPDATE SET value = EXCLUDED.value, updated_at = now()`,
  insert: 'INSERT INTO records (ns, key, value) VALUES ($1, $2, $3::text::jsonb) ON CONFLICT DO NOTHING',
  // Byte order ("C"), whatever the database's collation: the same order as MemoryStore's.
  list: 'SELECT key, value FROM records WHERE ns = $1 ORDER BY key COLLATE "C"',
  delete: 'DELETE FROM records WHERE ns = $1 AND key = $2',
  // One statement: of concurrent takes, exactly one gets the row.
  take: 'DELETE FROM records WHERE ns = $1 AND key = $2 RETURNING value',
} as const;

/** A statement with its parameters. */
export interface SqlStatement {
  text: string;
  params: SqlParam[];
}

/** `ns = $1 AND …` for a RecordFilter; the values are parameters, never SQL text. */
function filterWhere(ns: string, f: RecordFilter, objectsOnly = false): { where: string; params: SqlParam[] } {
  const params: SqlParam[] = [ns];
  const p = (v: SqlParam): string => { params.push(v); return `$${params.length}`; };
  const where = ['ns = $1'];
  if (f.keyPrefix) where.push(`starts_with(key, ${p(f.keyPrefix)})`);
  if (objectsOnly || f.equals !== undefined || f.oneOf !== undefined || f.absent !== undefined || f.below !== undefined) {
    where.push(`jsonb_typeof(value) = 'object'`);
  }
  // jsonb `=` on each member: no containment semantics (an array member never "contains" a scalar).
  for (const [name, v] of Object.entries(f.equals ?? {})) where.push(`value -> ${p(name)} = ${p(JSON.stringify(v))}::text::jsonb`);
  // CASE, not AND: SQL does not promise to test the type before the cast.
  if (f.oneOf) {
    const field = p(f.oneOf.field);
    where.push(`CASE WHEN jsonb_typeof(value -> ${field}) = 'string' THEN value ->> ${field} = ANY(${p([...f.oneOf.values])}::text[]) ELSE false END`);
  }
  if (f.absent !== undefined) where.push(`NOT (value ? ${p(f.absent)})`);
  if (f.below) {
    const field = p(f.below.field);
    where.push(`CASE WHEN jsonb_typeof(value -> ${field}) = 'number' THEN (value ->> ${field})::float8 < ${p(f.below.value)}::float8 ELSE false END`);
  }
  return { where: where.join(' AND '), params };
}

/** Store.listWhere: the matching records, in key byte order like `list`. */
export function listWhereStatement(ns: string, f: RecordFilter): SqlStatement {
  const { where, params } = filterWhere(ns, f);
  return { text: `SELECT key, value FROM records WHERE ${where} ORDER BY key COLLATE "C"`, params };
}

/** Store.patchWhere: one UPDATE (atomic), the changed rows back in key byte order. */
export function patchWhereStatement(ns: string, f: RecordFilter, patch: Readonly<Record<string, unknown>>): SqlStatement {
  // Objects only: `||` would append to an array.
  const { where, params } = filterWhere(ns, f, true);
  params.push(JSON.stringify(patch));
  return {
    text: `WITH changed AS (UPDATE records SET value = value || $${params.length}::text::jsonb, updated_at = now() WHERE ${where} RETURNING key, value)
           SELECT key, value FROM changed ORDER BY key COLLATE "C"`,
    params,
  };
}

/** Store.deleteWhere: one DELETE; each adapter reports the rows it removed. */
export function deleteWhereStatement(ns: string, f: RecordFilter): SqlStatement {
  const { where, params } = filterWhere(ns, f);
  return { text: `DELETE FROM records WHERE ${where}`, params };
}

/**
 * Values are sent as text and parsed by the server: a driver that infers a parameter's type would
 * otherwise encode JSON twice (postgres.js) or parse times itself, to milliseconds only.
 */
const CASTS: Record<number, string> = { 1: '::text::timestamptz', 9: '::text::jsonb' };

/** Events per INSERT (10 parameters each, far below PostgreSQL's 65535). */
const AUDIT_CHUNK = 500;

/** The INSERTs that store `events`, skipping ids already stored; each reports the rows it added. */
export function auditInsertStatements(events: StoredAuditEvent[]): SqlStatement[] {
  const out: SqlStatement[] = [];
  for (let i = 0; i < events.length; i += AUDIT_CHUNK) {
    const params: SqlParam[] = [];
    const rows = events.slice(i, i + AUDIT_CHUNK).map(({ id, event }) => {
      const c = auditColumns(event);
      params.push(id, c.time, c.component, c.sub, c.clientId, c.spiffeId, c.route, c.decision, c.policies, JSON.stringify(event));
      const b = params.length - 10;
      return `(${Array.from({ length: 10 }, (_, k) => `$${b + k + 1}${CASTS[k] ?? ''}`).join(', ')})`;
    });
    out.push({
      text: `INSERT INTO audit_events (id, time, component, sub, client_id, spiffe_id, route, decision, policies, event)
             VALUES ${rows.join(', ')} ON CONFLICT (id) DO NOTHING`,
      params,
    });
  }
  return out;
}

/** The SELECT of an audit search: every given filter, newest first (ties: last stored first), at most `limit`. */
export function auditQueryStatement(q: AuditQuery): SqlStatement {
  const where: string[] = [];
  const params: SqlParam[] = [];
  const add = (sql: (p: string) => string, v: SqlParam): void => { params.push(v); where.push(sql(`$${params.length}`)); };
  if (q.principal !== undefined) add((p) => `(sub = ${p} OR client_id = ${p})`, q.principal);
  if (q.workload !== undefined) add((p) => `spiffe_id = ${p}`, q.workload);
  if (q.route !== undefined) add((p) => `route = ${p}`, q.route);
  if (q.decision !== undefined) add((p) => `decision = ${p}`, q.decision);
  if (q.policy !== undefined) add((p) => `${p} = ANY(policies)`, q.policy);
  if (q.component !== undefined) add((p) => `component = ${p}`, q.component);
  if (q.since !== undefined) add((p) => `time >= ${p}::text::timestamptz`, q.since);
  if (q.until !== undefined) add((p) => `time < ${p}::text::timestamptz`, q.until);
  params.push(q.limit);
  return {
    text: `SELECT id, event FROM audit_events ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY time DESC, seq DESC LIMIT $${params.length}`,
    params,
  };
}
