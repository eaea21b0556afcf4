// A PostgreSQL server as the store (DATABASE_URL), shared by every control-plane replica: the same
// SQL and migrations as the embedded PGlite (migrations.ts), a connection pool, and errors that
// never carry the connection string (it may hold a password).
import postgres from 'postgres';
import { PortcullisError } from '../core/errors.js';
import { applyMigrations, auditInsertStatements, auditQueryStatement, deleteWhereStatement, listWhereStatement, patchWhereStatement, RECORD_SQL, type MigrationTx, type SqlParam } from './migrations.js';
import { checkChanges, ReplaceConflict, replaceInTransaction } from './replace.js';
import type { AuditQuery, RecordChange, RecordFilter, Store, StoredAuditEvent } from './store.js';

/** Options of {@link PostgresStore.open}. */
export interface PostgresStoreOptions {
  /** Connections in the pool. Default 10. */
  max?: number;
  /**
   * Schema holding the tables (created if missing, and the connections' search_path): lower-case
   * letters, digits and `_`, starting with a letter or `_`. Default: the server's search_path.
   */
  schema?: string;
  /** The server cancels any statement running longer (statement_timeout). Default 30000 ms. */
  statementTimeoutMs?: number;
  /** Give up connecting after this long. Default 10000 ms. */
  connectTimeoutMs?: number;
}

type Sql = postgres.Sql;
type TxSql = postgres.TransactionSql;

/** Every migration run in the database takes this transaction lock: replicas starting together migrate one at a time. */
const MIGRATION_LOCK = 'portcullis.store.migrations';

const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

/** The store on a PostgreSQL server; open with {@link PostgresStore.open}, one per replica. */
export class PostgresStore implements Store {
  private constructor(
    private readonly sql: Sql,
    /** The migration ids this open applied, in order; empty when the schema was already current. */
    readonly appliedMigrations: readonly number[],
  ) {}

  /**
   * Connects to `url` (postgres://user:password@host:port/db?sslmode=…) and brings the schema up to
   * date: all pending migrations in one transaction, under an advisory lock. Throws PCL_ERR_STORE
   * when the server cannot be reached, refuses the login or the migration fails (the message never
   * holds the URL), PCL_ERR_INVALID_ARGUMENT for a bad option.
   */
  static async open(url: string, o: PostgresStoreOptions = {}): Promise<PostgresStore> {
    const max = positiveInt('max', o.max ?? 10);
    const statementTimeoutMs = positiveInt('statementTimeoutMs', o.statementTimeoutMs ?? 30_000);
    const connectTimeoutMs = positiveInt('connectTimeoutMs', o.connectTimeoutMs ?? 10_000);
    if (o.schema !== undefined && !SCHEMA_NAME.test(o.schema)) {
      throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', 'PostgreSQL store: schema must be lower-case letters, digits and _ (at most 63)');
    }
    let sql: Sql;
    try {
      sql = postgres(url, {
        max,
        connect_timeout: connectTimeoutMs / 1000,
        // CREATE … IF NOT EXISTS reports "already exists, skipping" as a notice: not worth a line on stdout.
        onnotice: () => {},
        connection: {
          application_name: 'portcullis',
          statement_timeout: statementTimeoutMs,
          ...(o.schema !== undefined ? { search_path: o.schema } : {}),
        },
      });
    } catch {
      // The parser's error carries the URL itself (TypeError.input): neither it nor its cause goes on.
      throw new PortcullisError('PCL_ERR_STORE', 'PostgreSQL store: the database URL is not valid');
    }
    try {
      const applied = await sql.begin(async (tx) => {
        await tx.unsafe('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [MIGRATION_LOCK]);
        // Under the lock: two replicas creating the schema at once would collide otherwise.
        if (o.schema !== undefined) await tx.unsafe(`CREATE SCHEMA IF NOT EXISTS "${o.schema}"`);
        return applyMigrations(migrationTx(tx));
      });
      return new PostgresStore(sql, applied);
    } catch (err) {
      await sql.end({ timeout: 0 }).catch(() => {});
      throw storeError('cannot open', err);
    }
  }

  async get<T>(ns: string, key: string): Promise<T | undefined> {
    const rows = await this.run('get', () => this.sql.unsafe<{ value: T }[]>(RECORD_SQL.get, [ns, key]));
    return rows[0]?.value;
  }

  async put(ns: string, key: string, value: unknown): Promise<void> {
    await this.run('put', () => this.sql.unsafe(RECORD_SQL.put, [ns, key, JSON.stringify(value)]));
  }

  async insert(ns: string, key: string, value: unknown): Promise<boolean> {
    const r = await this.run('insert', () => this.sql.unsafe(RECORD_SQL.insert, [ns, key, JSON.stringify(value)]));
    return r.count === 1;
  }

  async list<T>(ns: string): Promise<{ key: string; value: T }[]> {
    const rows = await this.run('list', () => this.sql.unsafe<{ key: string; value: T }[]>(RECORD_SQL.list, [ns]));
    return rows.map(({ key, value }) => ({ key, value }));
  }

  async delete(ns: string, key: string): Promise<boolean> {
    const r = await this.run('delete', () => this.sql.unsafe(RECORD_SQL.delete, [ns, key]));
    return r.count === 1;
  }

  async take<T>(ns: string, key: string): Promise<T | undefined> {
    const rows = await this.run('take', () => this.sql.unsafe<{ value: T }[]>(RECORD_SQL.take, [ns, key]));
    return rows[0]?.value;
  }

  async replace(ns: string, changes: readonly RecordChange[]): Promise<boolean> {
    checkChanges(changes);
    if (changes.length === 0) return true;
    try {
      return await this.sql.begin((tx) => replaceInTransaction({ query: async <R>(sql: string, params: SqlParam[]): Promise<R[]> => [...(await tx.unsafe<R[]>(sql, params))] }, ns, changes));
    } catch (err) {
      // Rolled back: lost to a concurrent insert, or chosen as a deadlock's victim (SQLSTATE 40P01).
      if (err instanceof ReplaceConflict || (err instanceof postgres.PostgresError && err.code === '40P01')) return false;
      throw storeError('replace failed', err);
    }
  }

  async listWhere<T>(ns: string, filter: RecordFilter): Promise<{ key: string; value: T }[]> {
    const st = listWhereStatement(ns, filter);
    const rows = await this.run('list', () => this.sql.unsafe<{ key: string; value: T }[]>(st.text, st.params));
    return rows.map(({ key, value }) => ({ key, value }));
  }

  async patchWhere<T>(ns: string, filter: RecordFilter, patch: Readonly<Record<string, unknown>>): Promise<{ key: string; value: T }[]> {
    const st = patchWhereStatement(ns, filter, patch);
    const rows = await this.run('patch', () => this.sql.unsafe<{ key: string; value: T }[]>(st.text, st.params));
    return rows.map(({ key, value }) => ({ key, value }));
  }

  async deleteWhere(ns: string, filter: RecordFilter): Promise<number> {
    const st = deleteWhereStatement(ns, filter);
    const r = await this.run('delete', () => this.sql.unsafe(st.text, st.params));
    return r.count;
  }

  async addAuditEvents(events: StoredAuditEvent[]): Promise<number> {
    let added = 0;
    for (const st of auditInsertStatements(events)) {
      const r = await this.run('audit insert', () => this.sql.unsafe(st.text, st.params));
      added += r.count;
    }
    return added;
  }

  async queryAuditEvents(q: AuditQuery): Promise<StoredAuditEvent[]> {
    const st = auditQueryStatement(q);
    const rows = await this.run('audit query', () => this.sql.unsafe<StoredAuditEvent[]>(st.text, st.params));
    return rows.map(({ id, event }) => ({ id, event }));
  }

  /** Waits up to 5 s for running statements, then closes every connection. */
  async close(): Promise<void> {
    await this.sql.end({ timeout: 5 });
  }

  private async run<R>(what: string, fn: () => Promise<R>): Promise<R> {
    try {
      return await fn();
    } catch (err) {
      throw storeError(`${what} failed`, err);
    }
  }
}

function migrationTx(tx: TxSql): MigrationTx {
  return {
    // No parameters: the simple protocol, which runs several statements in one text.
    exec: async (sql) => { await tx.unsafe(sql); },
    query: async <R>(sql: string, params: SqlParam[]): Promise<R[]> => [...(await tx.unsafe<R[]>(sql, params))],
  };
}

function positiveInt(name: string, v: number): number {
  if (!Number.isSafeInteger(v) || v < 1) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `PostgreSQL store: ${name} must be a positive integer`);
  return v;
}

/** What a few SQLSTATE classes mean, for an operator reading the log. */
const SQLSTATE_CLASSES: Record<string, string> = {
  '08': 'connection failure',
  '28': 'login refused (user or password)',
  '3D': 'database does not exist',
  '3F': 'schema does not exist',
  '42': 'schema mismatch or missing privilege',
  '53': 'server out of resources',
  '57': 'statement cancelled (timeout) or server shutting down',
  '40': 'transaction rolled back (conflict)',
  '22': 'invalid value',
};

/**
 * PCL_ERR_STORE from a driver error. The message is built from error codes only: a server message
 * may quote a value (`invalid input syntax: "…"`) and a client error may quote the URL. The cause is
 * kept for logs only when it is a server or socket error, whose text holds neither URL nor password.
 */
function storeError(what: string, err: unknown): PortcullisError {
  if (err instanceof postgres.PostgresError) {
    const meaning = SQLSTATE_CLASSES[err.code.slice(0, 2)] ?? 'server error';
    return new PortcullisError('PCL_ERR_STORE', `PostgreSQL store: ${what}: ${meaning} (SQLSTATE ${err.code})`, { cause: err });
  }
  const code = typeof err === 'object' && err !== null && 'code' in err ? err.code : undefined;
  if (typeof code === 'string' && /^[A-Z][A-Z0-9_]*$/.test(code) && !code.startsWith('ERR_')) {
    // Socket and driver codes: ECONNREFUSED, ENOTFOUND, CONNECT_TIMEOUT, CONNECTION_CLOSED, …
    return new PortcullisError('PCL_ERR_STORE', `PostgreSQL store: ${what}: ${code}`, { cause: err });
  }
  return new PortcullisError('PCL_ERR_STORE', `PostgreSQL store: ${what}: unexpected driver error`);
}
