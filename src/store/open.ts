// Picks the store the control plane runs on: a PostgreSQL server when DATABASE_URL is given
// (replicas share it), else the embedded PGlite under the data directory (nothing to install).
import { join } from 'node:path';
import { PgliteStore } from './pglite.js';
import { PostgresStore, type PostgresStoreOptions } from './postgres.js';
import type { Store } from './store.js';

/** Where the store lives; see {@link openStore}. */
export interface OpenStoreOptions {
  /** The data directory; the embedded store is `<dataDir>/store`. */
  dataDir: string;
  /** A postgres:// URL (the caller passes `process.env.DATABASE_URL`); unset or empty: embedded. */
  databaseUrl?: string | undefined;
  /** Pool, schema and timeouts of the PostgreSQL store (ignored for the embedded one). */
  postgres?: PostgresStoreOptions;
}

/**
 * Opens and migrates the store: PostgreSQL when `databaseUrl` is set, else PGlite at
 * `<dataDir>/store`. Throws PCL_ERR_STORE when it cannot (never with the URL in the message).
 */
export async function openStore(o: OpenStoreOptions): Promise<Store> {
  if (o.databaseUrl) return PostgresStore.open(o.databaseUrl, o.postgres ?? {});
  return PgliteStore.open(join(o.dataDir, 'store'));
}
