// Embedded PostgreSQL (PGlite, WebAssembly) under the data directory: nothing to install.
import { mkdirSync } from 'node:fs';
import { PGlite } from '@electric-sql/pglite';
import { PortcullisError } from '../core/errors.js';
import { MIGRATIONS } from './migrations.js';
import type { Store } from './store.js';

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
