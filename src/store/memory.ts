// In-process store for tests and tools: the same contract as the PGlite adapter (the store
// contract test runs against both), values copied in and out like a database would.
import { checkChanges, sameJson } from './replace.js';
import { auditColumns, type AuditQuery, type RecordChange, type RecordFilter, type Store, type StoredAuditEvent } from './store.js';

export class MemoryStore implements Store {
  private readonly data = new Map<string, Map<string, string>>();
  /** Audit events as JSON, in insertion order (the tie-break for equal times, like seq in SQL). */
  private readonly audit = new Map<string, string>();

  private ns(ns: string): Map<string, string> {
    let m = this.data.get(ns);
    if (!m) this.data.set(ns, (m = new Map()));
    return m;
  }

  async get<T>(ns: string, key: string): Promise<T | undefined> {
    const v = this.ns(ns).get(key);
    return v === undefined ? undefined : (JSON.parse(v) as T); // stored by put/insert as JSON
  }

  async put(ns: string, key: string, value: unknown): Promise<void> {
    this.ns(ns).set(key, JSON.stringify(value));
  }

  async insert(ns: string, key: string, value: unknown): Promise<boolean> {
    if (this.ns(ns).has(key)) return false;
    this.ns(ns).set(key, JSON.stringify(value));
    return true;
  }

  async list<T>(ns: string): Promise<{ key: string; value: T }[]> {
    return this.rows<T>(ns);
  }

  /** The records of a namespace, copied, in key order; synchronous, so a caller can act on them before any other call runs. */
  private rows<T>(ns: string): { key: string; value: T }[] {
    return [...this.ns(ns).entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([key, v]) => ({ key, value: JSON.parse(v) as T })); // stored by put/insert as JSON
  }

  async delete(ns: string, key: string): Promise<boolean> {
    return this.ns(ns).delete(key);
  }

  async take<T>(ns: string, key: string): Promise<T | undefined> {
    const m = this.ns(ns);
    const v = m.get(key); // read and delete with no await between: one taker wins
    m.delete(key);
    return v === undefined ? undefined : (JSON.parse(v) as T); // stored by put/insert as JSON
  }

  async replace(ns: string, changes: readonly RecordChange[]): Promise<boolean> {
    checkChanges(changes);
    const m = this.ns(ns);
    // Compare all, then write all, with no await between: one writer wins.
    for (const c of changes) {
      const v = m.get(c.key);
      if (c.expected === undefined ? v !== undefined : v === undefined || !sameJson(JSON.parse(v), JSON.parse(JSON.stringify(c.expected)))) return false;
    }
    for (const c of changes) m.set(c.key, JSON.stringify(c.next));
    return true;
  }

  async listWhere<T>(ns: string, filter: RecordFilter): Promise<{ key: string; value: T }[]> {
    return this.rows<T>(ns).filter(({ key, value }) => matchesFilter(filter, key, value));
  }

  async patchWhere<T>(ns: string, filter: RecordFilter, patch: Readonly<Record<string, unknown>>): Promise<{ key: string; value: T }[]> {
    const m = this.ns(ns);
    const changed: { key: string; value: T }[] = [];
    // No await from reading to writing: concurrent calls cannot both see a record as unchanged.
    for (const { key, value } of this.rows<Record<string, unknown>>(ns)) {
      if (!isObject(value) || !matchesFilter(filter, key, value)) continue;
      const next = { ...value, ...structuredClone(patch) };
      m.set(key, JSON.stringify(next));
      changed.push({ key, value: JSON.parse(JSON.stringify(next)) as T }); // a copy, as the database would return
    }
    return changed;
  }

  async deleteWhere(ns: string, filter: RecordFilter): Promise<number> {
    const m = this.ns(ns);
    let n = 0;
    for (const { key, value } of this.rows(ns)) {
      if (matchesFilter(filter, key, value) && m.delete(key)) n++;
    }
    return n;
  }

  async addAuditEvents(events: StoredAuditEvent[]): Promise<number> {
    let added = 0;
    for (const e of events) {
      if (this.audit.has(e.id)) continue;
      this.audit.set(e.id, JSON.stringify(e.event));
      added++;
    }
    return added;
  }

  async queryAuditEvents(q: AuditQuery): Promise<StoredAuditEvent[]> {
    const since = q.since === undefined ? -Infinity : Date.parse(q.since);
    const until = q.until === undefined ? Infinity : Date.parse(q.until);
    const rows = [...this.audit.entries()].map(([id, json], seq) => ({ id, seq, event: JSON.parse(json) as StoredAuditEvent['event'] })); // stored by addAuditEvents
    return rows
      .filter(({ event }) => {
        const c = auditColumns(event);
        const t = Date.parse(c.time);
        return t >= since && t < until
          && (q.principal === undefined || c.sub === q.principal || c.clientId === q.principal)
          && (q.workload === undefined || c.spiffeId === q.workload)
          && (q.route === undefined || c.route === q.route)
          && (q.decision === undefined || c.decision === q.decision)
          && (q.policy === undefined || c.policies.includes(q.policy))
          && (q.component === undefined || c.component === q.component);
      })
      .sort((a, b) => Date.parse(b.event.time) - Date.parse(a.event.time) || b.seq - a.seq)
      .slice(0, q.limit)
      .map(({ id, event }) => ({ id, event }));
  }

  async close(): Promise<void> {}
}

const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

/** RecordFilter as the SQL of migrations.ts reads it (the store contract test holds both to it). */
function matchesFilter(f: RecordFilter, key: string, value: unknown): boolean {
  if (f.keyPrefix && !key.startsWith(f.keyPrefix)) return false;
  if (f.equals === undefined && f.oneOf === undefined && f.absent === undefined && f.below === undefined) return true;
  if (!isObject(value)) return false;
  const member = (name: string): unknown => (Object.hasOwn(value, name) ? value[name] : undefined);
  for (const [name, v] of Object.entries(f.equals ?? {})) if (member(name) !== v) return false;
  if (f.oneOf) {
    const v = member(f.oneOf.field);
    if (typeof v !== 'string' || !f.oneOf.values.includes(v)) return false;
  }
  if (f.absent !== undefined && Object.hasOwn(value, f.absent)) return false;
  if (f.below) {
    const v = member(f.below.field);
    if (typeof v !== 'number' || !(v < f.below.value)) return false;
  }
  return true;
}
