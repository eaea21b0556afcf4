// What only the PostgreSQL adapter has to prove: replicas (separate pools) share one database,
// races between them resolve once, migrations run once, the pool and timeouts hold, and errors
// never carry the connection string. The shared behaviour is in contract.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PortcullisError } from '../../src/core/errors.js';
import { MIGRATIONS } from '../../src/store/migrations.js';
import { PostgresStore } from '../../src/store/postgres.js';
import { admin, DATABASE_URL, freshSchema, openPg, urlWith } from './pg-fixture.js';

/** Asserts `p` rejects with PCL_ERR_STORE and returns the error. */
async function storeError(p: Promise<unknown>): Promise<PortcullisError> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  assert.ok(err instanceof PortcullisError, `expected a PortcullisError, got ${String(err)}`);
  assert.equal(err.code, 'PCL_ERR_STORE');
  return err;
}

test('two replicas (two pools) on one schema see each other\'s writes', async () => {
  const schema = freshSchema();
  const [a, b] = await Promise.all([PostgresStore.open(DATABASE_URL, { schema }), PostgresStore.open(DATABASE_URL, { schema })]);
  try {
    await a.put('users', 'alice', { role: 'admin' });
    assert.deepEqual(await b.get('users', 'alice'), { role: 'admin' });
    assert.equal(await b.insert('users', 'alice', { role: 'x' }), false, 'b cannot overwrite a\'s record');
    await b.put('users', 'alice', { role: 'viewer' });
    assert.deepEqual(await a.get('users', 'alice'), { role: 'viewer' });
    await a.put('codes', 'c', 1);
    assert.equal(await b.take('codes', 'c'), 1);
    assert.equal(await a.get('codes', 'c'), undefined, 'b\'s take removed it for a too');
    assert.equal(await a.addAuditEvents([{ id: 'x', event: { type: 'admin', time: '2026-01-01T00:00:00.000Z', component: 'control', action: 'a', outcome: 'success', who: {}, detail: {} } }]), 1);
    assert.deepEqual((await b.queryAuditEvents({ limit: 10 })).map((r) => r.id), ['x']);
    assert.equal(await b.addAuditEvents([{ id: 'x', event: { type: 'admin', time: '2026-01-01T00:00:00.000Z', component: 'control', action: 'a', outcome: 'success', who: {}, detail: {} } }]), 0, 'one id across replicas');
  } finally {
    await Promise.all([a.close(), b.close()]);
  }
});

test('100 concurrent takes of one key across two replicas: exactly one winner', async () => {
  const schema = freshSchema();
  const a = await PostgresStore.open(DATABASE_URL, { schema });
  const b = await PostgresStore.open(DATABASE_URL, { schema });
  try {
    for (let round = 0; round < 3; round++) {
      await a.put('auth_codes', 'code', { round });
      const results = await Promise.all(Array.from({ length: 100 }, (_, i) => (i % 2 ? a : b).take('auth_codes', 'code')));
      assert.deepEqual(results.filter((r) => r !== undefined), [{ round }]);
    }
  } finally {
    await Promise.all([a.close(), b.close()]);
  }
});

test('concurrent first start on an empty schema migrates once', async () => {
  const schema = freshSchema();
  const stores = await Promise.all(Array.from({ length: 4 }, () => PostgresStore.open(DATABASE_URL, { schema })));
  try {
    const all = MIGRATIONS.map((m) => m.id);
    assert.deepEqual(stores.map((s) => s.appliedMigrations).filter((a) => a.length > 0), [all], 'one replica applied every migration, the others none');
    const rows = await admin.unsafe<{ id: number }[]>(`SELECT id FROM "${schema}".schema_migrations ORDER BY id`);
    assert.deepEqual(rows.map((r) => r.id), all, 'each recorded once');
    const tables = await admin.unsafe<{ t: string }[]>('SELECT table_name AS t FROM information_schema.tables WHERE table_schema = $1 ORDER BY 1', [schema]);
    assert.deepEqual(tables.map((r) => r.t), ['audit_events', 'records', 'schema_migrations'], 'the tables are in the configured schema');
  } finally {
    await Promise.all(stores.map((s) => s.close()));
  }
  const again = await PostgresStore.open(DATABASE_URL, { schema });
  assert.deepEqual(again.appliedMigrations, [], 'a restart finds the schema current');
  await again.close();
});

test('records persist across a restart', async () => {
  const schema = freshSchema();
  const a = await PostgresStore.open(DATABASE_URL, { schema });
  await a.put('keep', 'me', { v: true });
  await a.close();
  const b = await PostgresStore.open(DATABASE_URL, { schema });
  assert.deepEqual(await b.get('keep', 'me'), { v: true });
  await b.close();
});

test('schemas keep replicas of different deployments apart', async () => {
  const [a, b] = await Promise.all([openPg(), openPg()]);
  try {
    await a.put('ns', 'k', 'a');
    assert.equal(await b.get('ns', 'k'), undefined);
  } finally {
    await Promise.all([a.close(), b.close()]);
  }
});

test('an unknown login gives PCL_ERR_STORE without the URL or password in the message', async () => {
  const password = 'S3cr3t-pa55word';
  const u = new URL(DATABASE_URL);
  u.username = 'pcl_no_such_role';
  u.password = password;
  const err = await storeError(PostgresStore.open(u.toString(), { schema: freshSchema() }));
  assert.ok(!err.message.includes(password) && !err.message.includes(u.toString()) && !err.message.includes(u.host), err.message);
  assert.ok(!JSON.stringify(err.cause ?? null).includes(password), 'nor in the cause a logger would print');
});

test('an unreachable server gives PCL_ERR_STORE without the URL in the message', async () => {
  const url = 'postgres://portcullis:S3cr3t-pa55word@127.0.0.1:1/test';
  const err = await storeError(PostgresStore.open(url, { connectTimeoutMs: 2000 }));
  assert.ok(!err.message.includes('S3cr3t') && !err.message.includes('127.0.0.1'), err.message);
});

test('a malformed URL gives PCL_ERR_STORE without the URL, nor a cause that holds it', async () => {
  const url = 'postgres://user:S3cr3t-pa55word@[not-a-host/db';
  const err = await storeError(PostgresStore.open(url));
  assert.ok(!err.message.includes('S3cr3t'), err.message);
  assert.equal(err.cause, undefined);
});

test('a query error after opening is PCL_ERR_STORE without the offending value', async () => {
  const s = await openPg();
  try {
    const err = await storeError(s.queryAuditEvents({ since: 'not-a-time-XYZ', limit: 1 }));
    assert.ok(!err.message.includes('XYZ'), err.message);
  } finally {
    await s.close();
  }
  await storeError(s.get('ns', 'k')); // closed: refused, as a store error too
});

test('statementTimeoutMs: the server cancels a statement stuck behind a lock', { timeout: 20_000 }, async () => {
  const schema = freshSchema();
  const s = await PostgresStore.open(DATABASE_URL, { schema, statementTimeoutMs: 200 });
  await s.put('ns', 'locked', 1);
  try {
    await admin.begin(async (tx) => {
      await tx.unsafe(`SELECT 1 FROM "${schema}".records WHERE ns = 'ns' AND key = 'locked' FOR UPDATE`);
      const err = await storeError(s.put('ns', 'locked', 2));
      assert.match(err.message, /57014/, 'query_canceled');
    });
    assert.equal(await s.get('ns', 'locked'), 1, 'the cancelled write left the record as it was');
  } finally {
    await s.close();
  }
});

test('max bounds the pool: never more connections than max', { timeout: 20_000 }, async () => {
  const schema = freshSchema();
  const app = `pcl_pool_${schema}`;
  const s = await PostgresStore.open(urlWith('application_name', app), { schema, max: 2 });
  await s.put('ns', 'locked', 0);
  const count = async (): Promise<{ total: number; waiting: number }> => {
    const [r] = await admin.unsafe<{ total: number; waiting: number }[]>(
      "SELECT count(*)::int AS total, count(*) FILTER (WHERE wait_event_type = 'Lock')::int AS waiting FROM pg_stat_activity WHERE application_name = $1", [app]);
    return r ?? { total: 0, waiting: 0 };
  };
  try {
    const { writes } = await admin.begin(async (tx) => {
      await tx.unsafe(`SELECT 1 FROM "${schema}".records WHERE key = 'locked' FOR UPDATE`);
      const writes = Array.from({ length: 6 }, (_, i) => s.put('ns', 'locked', i + 1));
      // Until both pooled connections wait on the lock, then a while longer: a third never appears.
      let seen = await count();
      while (seen.waiting < 2) seen = await count();
      let most = seen.total;
      for (let i = 0; i < 50; i++) most = Math.max(most, (await count()).total);
      assert.equal(most, 2);
      return { writes }; // not the array itself: begin() would wait for it inside the transaction
    });
    await Promise.all(writes);
    assert.ok([1, 2, 3, 4, 5, 6].includes(await s.get<number>('ns', 'locked') ?? -1), 'the queued writes ran once the lock was gone');
  } finally {
    await s.close();
  }
});

test('bad options are refused before connecting', async () => {
  for (const o of [{ schema: 'Bad-Name' }, { schema: 'x"; DROP TABLE records; --' }, { max: 0 }, { statementTimeoutMs: 1.5 }, { connectTimeoutMs: -1 }]) {
    await assert.rejects(PostgresStore.open(DATABASE_URL, o), (e: unknown) => e instanceof PortcullisError && e.code === 'PCL_ERR_INVALID_ARGUMENT', JSON.stringify(o));
  }
});
