// Embedded PostgreSQL (PGlite, WebAssembly) under the data directory: nothing to install.
import { mkdirSync } from 'node:fs';
import { PGlite } from '@electric-sql/pglite';
import { PortcullisError } from '../core/errors.js';
import { MIGRATIONS } from './migrations.js';
import { auditColumns, type AuditQuery, type Store, type StoredAuditEvent } from './store.js';

export class PgliteStore implements Store {
  private constructor(private readonly db: PGlite) {}

  /** Opens (creating if needed) the store in `dir`; with no dir, an in-memory store for tests. */
  static async open(dir?: string): Promise<PgliteStore> {
    try {
      if (dir) mkdirSync(dir, { recursive: true, mode: 0o700 });
      const db = dir ? new PGlite(dir) : new PGlite();
      await db.waitReady;
      await migrate(db);
      return new PgliteStore(db);
    } catch (err) {
      throw new PortcullisError('PCL_ERR_STORE', `cannot open embedded store${dir ? ` in ${dir}` : ''}: ${(err as Error).message}`, { cause: err });
    }
  }

  async get<T>(ns: string, key: string): Promise<T | undefined> {
    const r = await this.db.query<{ value: T }>('SELECT value FROM records WHERE ns = $1 AND key = $2', [ns, key]);
    return r.rows[0]?.value;
  }

  async put(ns: string, key: string, value: unknown): Promise<void> {
    await this.db.query(
      `INSERT INTO records (ns, key, value) VALUES ($1, $2, $3)
       ON CONFLICT (ns, key) DO UPDATE SET value = EXCLUDED.value, updated_at = now()`,
      [ns, key, JSON.stringify(value)],
    );
  }

  async insert(ns: string, key: string, value: unknown): Promise<boolean> {
    const r = await this.db.query(
      'INSERT INTO records (ns, key, value) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING',
      [ns, key, JSON.stringify(value)],
    );
    return (r.affectedRows ?? 0) === 1;
  }

  async list<T>(ns: string): Promise<{ key: string; value: T }[]> {
    const r = await this.db.query<{ key: string; value: T }>('SELECT key, value FROM records WHERE ns = $1 ORDER BY key', [ns]);
    return r.rows;
  }

  async delete(ns: string, key: string): Promise<boolean> {
    const r = await this.db.query('DELETE FROM records WHERE ns = $1 AND key = $2', [ns, key]);
    return (r.affectedRows ?? 0) === 1;
  }

  async take<T>(ns: string, key: string): Promise<T | undefined> {
    const r = await this.db.query<{ value: T }>('DELETE FROM records WHERE ns = $1 AND key = $2 RETURNING value', [ns, key]);
    return r.rows[0]?.value;
  }

  async addAuditEvents(events: StoredAuditEvent[]): Promise<number> {
    let added = 0;
    // One multi-row statement per 500 events (10 parameters each, far below PostgreSQL's 65535).
    for (let i = 0; i < events.length; i += 500) {
      const chunk = events.slice(i, i + 500);
      const params: unknown[] = [];
      const rows = chunk.map(({ id, event }) => {
        const c = auditColumns(event);
        params.push(id, c.time, c.component, c.sub, c.clientId, c.spiffeId, c.route, c.decision, c.policies, JSON.stringify(event));
        const b = params.length - 10;
        return `(${Array.from({ length: 10 }, (_, k) => `$${b + k + 1}`).join(', ')})`;
      });
      const r = await this.db.query(
        `INSERT INTO audit_events (id, time, component, sub, client_id, spiffe_id, route, decision, policies, event)
         VALUES ${rows.join(', ')} ON CONFLICT (id) DO NOTHING`,
        params,
      );
      added += r.affectedRows ?? 0;
    }
    return added;
  }

  async queryAuditEvents(q: AuditQuery): Promise<StoredAuditEvent[]> {
    const where: string[] = [];
    const params: unknown[] = [];
    const add = (sql: (p: string) => string, v: unknown): void => { params.push(v); where.push(sql(`$${params.length}`)); };
    if (q.principal !== undefined) add((p) => `(sub = ${p} OR client_id = ${p})`, q.principal);
    if (q.workload !== undefined) add((p) => `spiffe_id = ${p}`, q.workload);
    if (q.route !== undefined) add((p) => `route = ${p}`, q.route);
    if (q.decision !== undefined) add((p) => `decision = ${p}`, q.decision);
    if (q.policy !== undefined) add((p) => `${p} = ANY(policies)`, q.policy);
    if (q.component !== undefined) add((p) => `component = ${p}`, q.component);
    if (q.since !== undefined) add((p) => `time >= ${p}`, q.since);
    if (q.until !== undefined) add((p) => `time < ${p}`, q.until);
    params.push(q.limit);
    const r = await this.db.query<StoredAuditEvent>(
      `SELECT id, event FROM audit_events ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY time DESC, seq DESC LIMIT $${params.length}`,
      params,
    );
    return r.rows;
  }

  async close(): Promise<void> {
    await this.db.close();
  }
}

async function migrate(db: PGlite): Promise<void> {
  await db.exec('CREATE TABLE IF NOT EXISTS schema_migrations (id INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())');
  const done = new Set((await db.query<{ id: number }>('SELECT id FROM schema_migrations')).rows.map((r) => r.id));
  for (const m of MIGRATIONS) {
    if (done.has(m.id)) continue;
    await db.transaction(async (tx) => {
      await tx.exec(m.sql);
      await tx.query('INSERT INTO schema_migrations (id) VALUES ($1)', [m.id]);
    });
  }
}
