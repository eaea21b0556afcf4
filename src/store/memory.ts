// In-process store for tests and tools: the same contract as the PGlite adapter (the store
// contract test runs against both), values copied in and out like a database would.
import { auditColumns, type AuditQuery, type Store, type StoredAuditEvent } from './store.js';

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
    return [...this.ns(ns).entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([key, v]) => ({ key, value: JSON.parse(v) as T }));
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
