// The PostgreSQL the store tests run against: DATABASE_URL or the local server, one fresh schema
// per store (pcl_test_<random>) so concurrent runs never see each other, all dropped at the end.
import { after } from 'node:test';
import { randomBytes } from 'node:crypto';
import postgres from 'postgres';
import { PostgresStore, type PostgresStoreOptions } from '../../src/store/postgres.js';

/** The server under test; when it is down the tests fail (CI starts it). */
export const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

/** A direct connection for the tests' own look-ups (locks, pg_stat_activity, cleanup). */
export const admin = postgres(DATABASE_URL, { max: 2, onnotice: () => {} });

const schemas: string[] = [];

/** A schema name no other run uses; dropped after the tests of this file. */
export function freshSchema(): string {
  const name = `pcl_test_${randomBytes(6).toString('hex')}`;
  schemas.push(name);
  return name;
}

/** A PostgresStore in a schema of its own (or the given one). */
export function openPg(o: PostgresStoreOptions = {}): Promise<PostgresStore> {
  return PostgresStore.open(DATABASE_URL, { schema: freshSchema(), ...o });
}

/** DATABASE_URL with one query parameter added (e.g. application_name, to find our connections). */
export function urlWith(name: string, value: string): string {
  const u = new URL(DATABASE_URL);
  u.searchParams.set(name, value);
  return u.toString();
}

after(async () => {
  for (const s of schemas) await admin.unsafe(`DROP SCHEMA IF EXISTS "${s}" CASCADE`);
  await admin.end({ timeout: 5 });
});
