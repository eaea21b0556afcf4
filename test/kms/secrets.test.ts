// The secrets store: versions, check-and-set, soft delete and destroy, values bound to their path
// and version, nothing readable in the store, long-poll notifications on a fake clock.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeClock } from '../../src/core/clock.js';
import { PortcullisError } from '../../src/core/errors.js';
import { SecretStore } from '../../src/kms/secrets.js';
import type { Kms } from '../../src/kms/types.js';
import { MemoryStore } from '../../src/store/memory.js';
import { PgliteStore } from '../../src/store/pglite.js';
import { NS, type Store } from '../../src/store/store.js';
import { newKeyManager } from './kms-fixtures.js';

const SECRET = 'sk_live_4242424242424242';

async function setup(o: { maxVersions?: number; store?: Store; kms?: Kms } = {}): Promise<{ secrets: SecretStore; store: Store; kms: Kms; clock: FakeClock }> {
  const store = o.store ?? new MemoryStore();
  const clock = new FakeClock(Date.UTC(2030, 0, 1));
  const kms = o.kms ?? (await newKeyManager({ store, clock }));
  return { secrets: new SecretStore({ store, kms, clock, ...(o.maxVersions ? { maxVersions: o.maxVersions } : {}) }), store, kms, clock };
}

const code = (c: string) => (err: unknown): boolean => err instanceof PortcullisError && err.code === c;

/** Every record the store holds, as one string, to search for leaked values. */
async function dump(store: Store): Promise<string> {
  return JSON.stringify([await store.list(NS.secrets), await store.list(NS.secretVersions)]);
}

test('put then get returns the data, version and creation time; versions count up', async () => {
  const { secrets, clock, kms } = await setup();
  assert.deepEqual(await secrets.put('payments/stripe', { apiKey: SECRET }), { version: 1 });
  await clock.advance(1000);
  assert.deepEqual(await secrets.put('payments/stripe', { apiKey: 'second' }), { version: 2 });
  assert.deepEqual(await secrets.get('payments/stripe'), { data: { apiKey: 'second' }, version: 2, createdAt: '2030-01-01T00:00:01.000Z' });
  assert.deepEqual(await secrets.get('payments/stripe', 1), { data: { apiKey: SECRET }, version: 1, createdAt: '2030-01-01T00:00:00.000Z' });
  assert.equal((await kms.getKeyring('secrets'))?.type, 'aes256-gcm', 'the secrets keyring is created on first write');
});

test('the store holds ciphertexts only', async () => {
  const { secrets, store } = await setup();
  await secrets.put('payments/stripe', { apiKey: SECRET });
  const raw = await dump(store);
  assert.ok(!raw.includes(SECRET));
  assert.ok(!raw.includes(Buffer.from(SECRET).toString('base64')));
  assert.match(raw, /pcl:secrets:v1:/);
});

test('a ciphertext moved to another path or version does not decrypt', async () => {
  const { secrets, store } = await setup();
  await secrets.put('a/x', { k: 'one' });
  await secrets.put('a/x', { k: 'two' });
  await secrets.put('b/y', { k: 'other' });
  const v1 = await store.get<{ ciphertext: string }>(NS.secretVersions, 'a/x@1');
  assert.ok(v1);
  // Same keyring, another path.
  await store.put(NS.secretVersions, 'b/y@1', v1);
  await assert.rejects(secrets.get('b/y'), code('PCL_ERR_KMS_CIPHERTEXT_INVALID'));
  // Same path, another version (an old value replayed as the latest).
  await store.put(NS.secretVersions, 'a/x@2', v1);
  await assert.rejects(secrets.get('a/x'), code('PCL_ERR_KMS_CIPHERTEXT_INVALID'));
  assert.deepEqual((await secrets.get('a/x', 1)).data, { k: 'one' });
});

test('check-and-set: 0 creates only, N updates only from N', async () => {
  const { secrets } = await setup();
  assert.deepEqual(await secrets.put('db/main', { password: 'p1' }, { cas: 0 }), { version: 1 });
  await assert.rejects(secrets.put('db/main', { password: 'p2' }, { cas: 0 }), code('PCL_ERR_SECRET_CONFLICT'));
  await assert.rejects(secrets.put('db/main', { password: 'p2' }, { cas: 2 }), code('PCL_ERR_SECRET_CONFLICT'));
  assert.deepEqual(await secrets.put('db/main', { password: 'p2' }, { cas: 1 }), { version: 2 });
  await assert.rejects(secrets.put('db/main', { password: 'p3' }, { cas: -1 }), code('PCL_ERR_INVALID_ARGUMENT'));
});

test('concurrent writes to one path get distinct versions; concurrent check-and-set lets one win', async () => {
  const { secrets } = await setup();
  const versions = await Promise.all(Array.from({ length: 20 }, (_, i) => secrets.put('c/x', { i: String(i) })));
  assert.deepEqual(versions.map((v) => v.version).sort((a, b) => a - b), Array.from({ length: 20 }, (_, i) => i + 1));
  const results = await Promise.allSettled(Array.from({ length: 5 }, () => secrets.put('c/y', { v: 'x' }, { cas: 0 })));
  assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1);
});

test('at most maxVersions are kept; older ones are erased from the store', async () => {
  const { secrets, store } = await setup({ maxVersions: 3 });
  for (let i = 1; i <= 5; i++) await secrets.put('k/x', { v: `value-${i}` });
  const [info] = await secrets.list('k/');
  assert.equal(info?.latest, 5);
  assert.deepEqual(info?.versions.map((v) => v.version), [3, 4, 5]);
  await assert.rejects(secrets.get('k/x', 2), code('PCL_ERR_SECRET_NOT_FOUND'));
  assert.equal(await store.get(NS.secretVersions, 'k/x@1'), undefined);
  assert.equal(await store.get(NS.secretVersions, 'k/x@2'), undefined);
  assert.equal((await store.list(NS.secretVersions)).length, 3);
});

test('soft delete hides a version until undeleted', async () => {
  const { secrets } = await setup();
  await secrets.put('s/a', { v: '1' });
  await secrets.put('s/a', { v: '2' });
  await secrets.delete('s/a');
  await assert.rejects(secrets.get('s/a'), code('PCL_ERR_SECRET_NOT_FOUND'));
  assert.deepEqual((await secrets.get('s/a', 1)).data, { v: '1' });
  assert.deepEqual((await secrets.list())[0]?.versions.map((v) => v.deleted), [false, true]);
  await secrets.delete('s/a', [1]);
  await assert.rejects(secrets.get('s/a', 1), code('PCL_ERR_SECRET_NOT_FOUND'));
  await secrets.undelete('s/a', [1, 2]);
  assert.deepEqual((await secrets.get('s/a')).data, { v: '2' });
  assert.deepEqual((await secrets.get('s/a', 1)).data, { v: '1' });
});

test('destroy erases the ciphertext for good; undelete cannot bring it back', async () => {
  const { secrets, store } = await setup();
  await secrets.put('s/b', { v: SECRET });
  await secrets.put('s/b', { v: 'keep' });
  await secrets.destroy('s/b', [1]);
  assert.equal(await store.get(NS.secretVersions, 's/b@1'), undefined);
  await assert.rejects(secrets.get('s/b', 1), code('PCL_ERR_SECRET_NOT_FOUND'));
  await secrets.undelete('s/b', [1]);
  await assert.rejects(secrets.get('s/b', 1), code('PCL_ERR_SECRET_NOT_FOUND'));
  assert.deepEqual((await secrets.list())[0]?.versions, [
    { version: 1, createdAt: '2030-01-01T00:00:00.000Z', deleted: false, destroyed: true },
    { version: 2, createdAt: '2030-01-01T00:00:00.000Z', deleted: false, destroyed: false },
  ]);
  assert.deepEqual((await secrets.get('s/b')).data, { v: 'keep' });
});

test('unknown paths are not found; delete and destroy of an unknown path too', async () => {
  const { secrets } = await setup();
  await assert.rejects(secrets.get('no/such'), code('PCL_ERR_SECRET_NOT_FOUND'));
  await assert.rejects(secrets.delete('no/such'), code('PCL_ERR_SECRET_NOT_FOUND'));
  await assert.rejects(secrets.destroy('no/such', [1]), code('PCL_ERR_SECRET_NOT_FOUND'));
  await secrets.put('yes/here', { a: 'b' });
  await assert.rejects(secrets.get('yes/here', 2), code('PCL_ERR_SECRET_NOT_FOUND'));
});

test('list filters by prefix, sorts by path and carries no values', async () => {
  const { secrets } = await setup();
  await secrets.put('payments/z', { v: SECRET });
  await secrets.put('payments/a', { v: SECRET });
  await secrets.put('orders/a', { v: SECRET });
  const list = await secrets.list('payments/');
  assert.deepEqual(list.map((s) => s.path), ['payments/a', 'payments/z']);
  assert.ok(!JSON.stringify(list).includes(SECRET));
  assert.equal((await secrets.list()).length, 3);
  await assert.rejects(secrets.list('Payments/'), code('PCL_ERR_INVALID_ARGUMENT'));
});

test('malformed paths, versions and data are refused before anything is stored', async () => {
  const { secrets, store } = await setup();
  for (const path of ['', '/a', 'a/', 'a//b', 'a/../b', 'a/./b', '.a', 'A/b', 'a b', 'a@1', 'a%2fb', 'x'.repeat(257), 'a\\b']) {
    await assert.rejects(secrets.put(path, { k: 'v' }), code('PCL_ERR_INVALID_ARGUMENT'), path);
    await assert.rejects(secrets.get(path), code('PCL_ERR_INVALID_ARGUMENT'), path);
  }
  const bad: unknown[] = [{}, [], null, 'x', { k: 1 }, { '': 'v' }, { 'a b': 'v' }, { k: 'x'.repeat(70_000) }, Object.fromEntries(Array.from({ length: 101 }, (_, i) => [`k${i}`, 'v']))];
  for (const data of bad) {
    // Deliberately malformed input, as it could arrive from JSON.
    await assert.rejects(secrets.put('a/b', data as Record<string, string>), code('PCL_ERR_INVALID_ARGUMENT'), JSON.stringify(data)?.slice(0, 40));
  }
  for (const versions of [[], [0], [1.5], [-1], Array.from({ length: 101 }, (_, i) => i + 1)]) {
    await assert.rejects(secrets.destroy('a/b', versions), code('PCL_ERR_INVALID_ARGUMENT'));
  }
  await assert.rejects(secrets.get('a/b', 0), code('PCL_ERR_INVALID_ARGUMENT'));
  assert.equal((await store.list(NS.secretVersions)).length, 0);
});

test('a "__proto__" key is just a key', async () => {
  const { secrets } = await setup();
  const data = JSON.parse('{"__proto__":"v","k":"w"}') as Record<string, string>; // a literal object of strings
  await secrets.put('p/x', data);
  const got = await secrets.get('p/x');
  assert.equal(Object.getPrototypeOf(got.data), Object.prototype);
  assert.deepEqual(Object.keys(got.data), ['__proto__', 'k']);
});

test('waitForChange: at once when already newer, on a new version, undefined on timeout or abort', async () => {
  const { secrets, clock } = await setup();
  await secrets.put('w/x', { v: '1' });
  assert.equal(await secrets.waitForChange('w/x', 0, 30_000), 1);

  const waiting = secrets.waitForChange('w/x', 1, 30_000);
  await new Promise((r) => setImmediate(r));
  await secrets.put('w/other', { v: 'x' }); // another path does not wake it
  await secrets.put('w/x', { v: '2' });
  assert.equal(await waiting, 2);
  assert.equal(clock.pendingTimers(), 0, 'the timeout is cancelled');

  const timingOut = secrets.waitForChange('w/x', 2, 30_000);
  await new Promise((r) => setImmediate(r));
  await clock.advance(29_999);
  let settled = false;
  void timingOut.then(() => { settled = true; });
  await new Promise((r) => setImmediate(r));
  assert.equal(settled, false);
  await clock.advance(1);
  assert.equal(await timingOut, undefined);

  const ac = new AbortController();
  const aborted = secrets.waitForChange('w/x', 2, 30_000, ac.signal);
  ac.abort();
  assert.equal(await aborted, undefined);
  assert.equal(clock.pendingTimers(), 0);
  assert.equal(await secrets.waitForChange('w/x', 2, 30_000, AbortSignal.abort()), undefined);

  // Waiting on a path that does not exist yet sees its first version.
  const first = secrets.waitForChange('w/new', 0, 30_000);
  await secrets.put('w/new', { v: '1' });
  assert.equal(await first, 1);
});

test('the same behaviour over the embedded PostgreSQL store', async () => {
  const store = await PgliteStore.open();
  try {
    const { secrets } = await setup({ store, maxVersions: 2 });
    await secrets.put('pg/x', { v: SECRET });
    await secrets.put('pg/x', { v: '2' });
    await secrets.put('pg/x', { v: '3' });
    assert.deepEqual((await secrets.get('pg/x')).data, { v: '3' });
    await assert.rejects(secrets.get('pg/x', 1), code('PCL_ERR_SECRET_NOT_FOUND'));
    assert.ok(!(await dump(store)).includes(SECRET));
  } finally {
    await store.close();
  }
});

test('a sealed KMS fails the write and leaves nothing behind', async () => {
  const kms = await newKeyManager();
  const sealed = new PortcullisError('PCL_ERR_KMS_SEALED', 'sealed');
  let failEnsure = true;
  const original = kms.ensureKeyring.bind(kms);
  kms.ensureKeyring = async (...args) => {
    if (failEnsure) throw sealed;
    return original(...args);
  };
  const { secrets, store } = await setup({ kms });
  await assert.rejects(secrets.put('s/x', { v: 'x' }), code('PCL_ERR_KMS_SEALED'));
  assert.equal((await store.list(NS.secrets)).length, 0);
  failEnsure = false;
  assert.deepEqual(await secrets.put('s/x', { v: 'x' }), { version: 1 }, 'the next write tries again');
});
