// Embedded PostgreSQL (PGlite, WebAssembly) under the data directory: nothing to install.
// The SQL is shared with the PostgreSQL adapter (migrations.ts).
import { mkdirSync } from 'node:fs';
import { PGlite } from '@electric-sql/pglite';
import { PortcullisError } from '../core/errors.js';
import { applyMigrations, auditInsertStatements, auditQueryStatement, deleteWhereStatement, listWhereStatement, patchWhereStatement, RECORD_SQL, type SqlParam } from './migrations.js';
import { checkChanges, ReplaceConflict, replaceInTransaction } from './replace.js';
import { type AuditQuery, type RecordChange, type RecordFilter, type Store, type StoredAuditEvent } from './store.js';

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
    const r = await this.db.query<{ value: T }>(RECORD_SQL.get, [ns, key]);
    return r.rows[0]?.value;
  }

  async put(ns: string, key: string, value: unknown): Promise<void> {
    await this.db.query(RECORD_SQL.put, [ns, key, JSON.stringify(value)]);
  }

  async insert(ns: string, key: string, value: unknown): Promise<boolean> {
    const r = await this.db.query(RECORD_SQL.insert, [ns, key, JSON.stringify(value)]);
    return (r.affectedRows ?? 0) === 1;
  }

  async list<T>(ns: string): Promise<{ key: string; value: T }[]> {
    const r = await this.db.query<{ key: string; value: T }>(RECORD_SQL.list, [ns]);
    return r.rows;
  }

  async delete(ns: string, key: string): Promise<boolean> {
    const r = await this.db.query(RECORD_SQL.delete, [ns, key]);
    return (r.affectedRows ?? 0) === 1;
  }

  async take<T>(ns: string, key: string): Promise<T | undefined> {
    const r = await this.db.query<{ value: T }>(RECORD_SQL.take, [ns, key]);
    return r.rows[0]?.value;
  }

  async replace(ns: string, changes: readonly RecordChange[]): Promise<boolean> {
    checkChanges(changes);
    if (changes.length === 0) return true;
    try {
      return await this.db.transaction(async (tx) => replaceInTransaction({ query: async <R>(sql: string, params: SqlParam[]) => (await tx.query<R>(sql, params)).rows }, ns, changes));
    } catch (err) {
      if (err instanceof ReplaceConflict) return false; // rolled back
      throw err;
    }
  }

  async listWhere<T>(ns: string, filter: RecordFilter): Promise<{ key: string; value: T }[]> {
    const st = listWhereStatement(ns, filter);
    return (await this.db.query<{ key: string; value: T }>(st.text, st.params)).rows;
  }

  async patchWhere<T>(ns: string, filter: RecordFilter, patch: Readonly<Record<string, unknown>>): Promise<{ key: string; value: T }[]> {
    const st = patchWhereStatement(ns, filter, patch);
    return (await this.db.query<{ key: string; value: T }>(st.text, st.params)).rows;
  }

  async deleteWhere(ns: string, filter: RecordFilter): Promise<number> {
    const st = deleteWhereStatement(ns, filter);
    return (await this.db.query(st.text, st.params)).affectedRows ?? 0;
  }

  async addAuditEvents(events: StoredAuditEvent[]): Promise<number> {
    let added = 0;
    for (const st of auditInsertStatements(events)) {
      const r = await this.db.query(st.text, st.params);
      added += r.affectedRows ?? 0;
    }
    return added;
  }

  async queryAuditEvents(q: AuditQuery): Promise<StoredAuditEvent[]> {
    const st = auditQueryStatement(q);
    return (await this.db.query<StoredAuditEvent>(st.text, st.params)).rows;
  }

  async close(): Promise<void> {
    await this.db.close();
  }
}

/** One transaction for the whole run: a failed migration leaves nothing half applied. */
async function migrate(db: PGlite): Promise<void> {
  await db.transaction(async (tx) => {
    await applyMigrations({
      exec: async (sql) => { await tx.exec(sql); },
      query: async <R>(sql: string, params: SqlParam[]) => (await tx.query<R>(sql, params)).rows,
    });
  });
}
