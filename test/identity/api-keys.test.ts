// API keys on the control plane: the pcl_ format and its checksum, a store that never holds a key,
// verify on a fake clock (expiry, rotation overlap, revocation), the revocation feed, batched
// last-used writes, audit entries without secrets, and strict input.
import { test, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { FakeClock } from '../../src/core/clock.js';
import { PortcullisError } from '../../src/core/errors.js';
import { subscribeAudit, type AdminEvent, type AuditEvent } from '../../src/core/events.js';
import {
  API_KEY_LENGTH, ApiKeys, generateApiKey, isApiKey, parseApiKey, USAGE_WRITE_INTERVAL_MS,
} from '../../src/identity/api-keys.js';
import { KeyWrapper } from '../../src/kms/wrap.js';
import { MemoryStore } from '../../src/store/memory.js';
import { NS } from '../../src/store/store.js';

const START = Date.UTC(2030, 0, 1);
const B62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';

/** A store that counts its calls, to see what touches storage. */
class CountingStore extends MemoryStore {
  gets = 0;
  apiKeyPuts = 0;
  override async get<T>(ns: string, key: string): Promise<T | undefined> {
    this.gets++;
    return super.get<T>(ns, key);
  }
  override async put(ns: string, key: string, value: unknown): Promise<void> {
    if (ns === NS.apiKeys) this.apiKeyPuts++;
    return super.put(ns, key, value);
  }
}

let clock: FakeClock;
let store: CountingStore;
let sealer: KeyWrapper;
let keys: ApiKeys;
let events: AuditEvent[];
let unsubscribe: () => void;

beforeEach(async () => {
  clock = new FakeClock(START);
  store = new CountingStore();
  sealer = new KeyWrapper(randomBytes(32));
  keys = await ApiKeys.open({ store, sealer, clock });
  events = [];
  unsubscribe = subscribeAudit((e) => events.push(e));
});
afterEach(() => unsubscribe());

const codeOf = async (p: Promise<unknown>): Promise<string> => {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof PortcullisError);
    return err.code;
  }
  return 'no error';
};

/** Independent reference of the checksum (what a secret scanner implements). */
function referenceChecksum(random: string): string {
  let v = crc32(random);
  const digits: string[] = [];
  for (let i = 0; i < 6; i++) { digits.unshift(B62[v % 62] ?? '?'); v = Math.floor(v / 62); }
  return digits.join('');
}

test('a key is pcl_ + 32 base62 + the base62 CRC32 of the random part, and keys differ', () => {
  const seen = new Set<string>();
  for (let i = 0; i < 200; i++) {
    const k = generateApiKey();
    assert.equal(k.length, API_KEY_LENGTH);
    assert.match(k, /^pcl_[0-9A-Za-z]{38}$/);
    assert.equal(k.slice(36), referenceChecksum(k.slice(4, 36)));
    assert.equal(parseApiKey(k), k);
    seen.add(k);
  }
  assert.equal(seen.size, 200);
  // A fixed vector, for scanners: crc32("0"×32) in six base62 digits.
  const random = '0'.repeat(32);
  assert.equal(isApiKey(`pcl_${random}${referenceChecksum(random)}`), true);
});

test('every one-character change is caught by the checksum or the shape check', () => {
  const k = generateApiKey();
  for (let i = 0; i < k.length; i++) {
    const c = k[i] ?? '';
    const other = c === 'x' ? 'y' : 'x';
    const changed = k.slice(0, i) + other + k.slice(i + 1);
    assert.equal(isApiKey(changed), false, `change at ${i} not caught`);
  }
  // Swapping two different adjacent characters of the random part is caught too.
  const i = [...k.slice(4, 35)].findIndex((ch, j) => ch !== k[4 + j + 1]) + 4;
  const swapped = k.slice(0, i) + (k[i + 1] ?? '') + (k[i] ?? '') + k.slice(i + 2);
  assert.equal(isApiKey(swapped), false);
});

test('junk is refused with PCL_ERR_APIKEY_INVALID, and the message never repeats it', () => {
  const k = generateApiKey();
  const junk = [
    '', 'pcl_', k.slice(0, -1), `${k}A`, `ghp_${k.slice(4)}`, `PCL_${k.slice(4)}`,
    `pcl_${k.slice(4, 20)}-${k.slice(21)}`, ` ${k}`, `${k.slice(0, 36)}000000`, 'pcl_'.padEnd(42, 'é'),
  ];
  for (const j of junk) {
    assert.throws(() => parseApiKey(j), (err: unknown) => {
      assert.ok(err instanceof PortcullisError);
      assert.equal(err.code, 'PCL_ERR_APIKEY_INVALID');
      if (j.length > 8) assert.ok(!err.message.includes(j.slice(4, 20)), 'message contains the key');
      return true;
    }, JSON.stringify(j));
  }
});

test('the store never holds a key, nor the hashing key in clear', async () => {
  const a = await keys.create({ name: 'ci', owner: 'alice', roles: ['reader'], ttlSeconds: 3600 });
  const b = await keys.create({ name: 'reports', owner: 'svc-reports', roles: ['reporting'], routes: ['reports.list'] });
  const r = await keys.rotate(a.id, { overlapSeconds: 60 });
  const hashKey = keys.snapshot().hashKey;
  let dump = '';
  for (const ns of Object.values(NS)) dump += JSON.stringify(await store.list(ns));
  for (const key of [a.key, b.key, r.key]) {
    assert.ok(!dump.includes(key.slice(4, 36)), 'a key (or its random part) is in the store');
  }
  assert.ok(!dump.includes(hashKey), 'the hashing key is stored in clear');
  assert.ok(dump.includes(a.id) && dump.includes(b.id), 'records are there, by id');
  // The admin view has no hash either.
  const listed = JSON.stringify(keys.list());
  assert.ok(!listed.includes('"hash"'));
  assert.ok(!keys.snapshotEntries().some((e) => 'lastUsedAt' in e));
});

test('verify: a valid key, then expiry on the fake clock', async () => {
  const { id, key } = await keys.create({ name: 'ci', owner: 'alice', roles: ['reader', 'writer'], ttlSeconds: 3600 });
  const ok = await keys.verify(key);
  assert.equal(ok?.id, id);
  assert.equal(ok?.owner, 'alice');
  assert.deepEqual(ok?.roles, ['reader', 'writer']);
  assert.ok(ok && !('hash' in ok));
  await clock.advance(3600_000 - 1);
  assert.equal((await keys.verify(key))?.id, id);
  await clock.advance(1);
  assert.equal(await keys.verify(key), undefined);
  assert.equal(keys.get(id)?.status, 'expired');
  assert.deepEqual(keys.snapshotEntries(), []);
});

test('junk and mistyped keys are refused before any lookup; a real key is looked up', async () => {
  const { key } = await keys.create({ name: 'ci', owner: 'alice', roles: ['reader'] });
  store.gets = 0;
  assert.equal(await keys.verify('not a key'), undefined);
  assert.equal(await keys.verify(key.slice(0, 10) + (key[10] === 'a' ? 'b' : 'a') + key.slice(11)), undefined);
  assert.equal(store.gets, 0, 'junk reached the store');
  // A well-formed key that was never issued: hashed, but nothing to look up.
  assert.equal(await keys.verify(generateApiKey()), undefined);
  assert.equal(store.gets, 0);
  assert.ok(await keys.verify(key));
  assert.equal(store.gets, 1);
});

test('revocation: verify refuses at once, the snapshot drops it, the feed names it', async () => {
  const a = await keys.create({ name: 'a', owner: 'alice', roles: ['reader'] });
  const b = await keys.create({ name: 'b', owner: 'bob', roles: ['reader'] });
  const first = keys.revokedSince();
  assert.deepEqual(first.revoked, []);
  await clock.advance(1000);
  assert.equal(await keys.revoke(a.id), true);
  assert.equal(await keys.revoke(a.id), false, 'a second revocation is a no-op');
  assert.equal(await keys.verify(a.key), undefined);
  assert.equal((await keys.verify(b.key))?.id, b.id);
  assert.deepEqual(keys.snapshotEntries().map((e) => e.id), [b.id]);
  const page = keys.revokedSince(first.cursor);
  assert.deepEqual(page.revoked, [a.id]);
  await clock.advance(1000);
  // A cursor of the revocation's own millisecond names it once more (harmless); the next one does not.
  const again = keys.revokedSince(page.cursor);
  assert.deepEqual(again.revoked, [a.id]);
  assert.deepEqual(keys.revokedSince(again.cursor).revoked, [], 'the cursor moves past it');
  assert.deepEqual(keys.revokedSince().revoked, [a.id], 'without a cursor: every revoked key that would still work');
  assert.equal(await codeOf(keys.revoke('ak_000000000000')), 'PCL_ERR_APIKEY_NOT_FOUND');
  assert.throws(() => keys.revokedSince('yesterday'), (e: unknown) => e instanceof PortcullisError && e.code === 'PCL_ERR_INVALID_ARGUMENT');
});

test('a revoked key that has expired anyway leaves the feed', async () => {
  const a = await keys.create({ name: 'a', owner: 'alice', roles: ['reader'], ttlSeconds: 60 });
  await keys.revoke(a.id);
  assert.deepEqual(keys.revokedSince().revoked, [a.id]);
  await clock.advance(60_000);
  assert.deepEqual(keys.revokedSince().revoked, []);
});

test('rotation: same scopes, the old key works until the overlap ends, then only the new one', async () => {
  const old = await keys.create({ name: 'ci', owner: 'alice', roles: ['reader'], routes: ['orders.list'], ttlSeconds: 7 * 86_400 });
  await clock.advance(86_400_000);
  const rotated = await keys.rotate(old.id, { overlapSeconds: 3600 });
  assert.notEqual(rotated.key, old.key);
  assert.equal(rotated.info.rotatedFrom, old.id);
  assert.deepEqual(rotated.info.roles, ['reader']);
  assert.deepEqual(rotated.info.routes, ['orders.list']);
  assert.equal(rotated.info.expiresAt, new Date(START + 86_400_000 + 7 * 86_400_000).toISOString(), 'the same lifetime, from now');
  assert.equal(rotated.overlapUntil, new Date(START + 86_400_000 + 3600_000).toISOString());
  assert.equal(keys.get(old.id)?.status, 'rotating');
  assert.equal(keys.get(old.id)?.rotatedTo, rotated.id);
  const entries = keys.snapshotEntries();
  assert.equal(entries.find((e) => e.id === old.id)?.notAfter, rotated.overlapUntil);
  assert.equal(entries.find((e) => e.id === rotated.id)?.notAfter, undefined);
  assert.ok(await keys.verify(old.key));
  assert.ok(await keys.verify(rotated.key));
  await clock.advance(3600_000);
  assert.equal(await keys.verify(old.key), undefined);
  assert.ok(await keys.verify(rotated.key));
  assert.equal(keys.get(old.id)?.status, 'rotated');
  assert.deepEqual(keys.snapshotEntries().map((e) => e.id), [rotated.id]);
  // Only an active key rotates: not the old one again, not a revoked one.
  assert.equal(await codeOf(keys.rotate(old.id)), 'PCL_ERR_INVALID_ARGUMENT');
  await keys.revoke(rotated.id);
  assert.equal(await codeOf(keys.rotate(rotated.id)), 'PCL_ERR_INVALID_ARGUMENT');
  assert.equal(await codeOf(keys.rotate('ak_000000000000')), 'PCL_ERR_APIKEY_NOT_FOUND');
});

test('the overlap never outlives the old key, and 0 stops it now', async () => {
  const a = await keys.create({ name: 'a', owner: 'alice', roles: ['reader'], ttlSeconds: 120 });
  const r = await keys.rotate(a.id, { overlapSeconds: 86_400 });
  assert.equal(r.overlapUntil, new Date(START + 120_000).toISOString());
  const b = await keys.create({ name: 'b', owner: 'alice', roles: ['reader'] });
  await keys.rotate(b.id, { overlapSeconds: 0 });
  assert.equal(await keys.verify(b.key), undefined);
});

test('last use: shown at once, written at most once a minute per key', async () => {
  const { id } = await keys.create({ name: 'ci', owner: 'alice', roles: ['reader'] });
  store.apiKeyPuts = 0;
  await keys.markUsed(id, START + 1000);
  assert.equal(store.apiKeyPuts, 1, 'the first use is written');
  await clock.advance(10_000);
  await keys.markUsed(id, START + 10_000);
  await clock.advance(10_000);
  await keys.markUsed(id, START + 20_000);
  await keys.markUsed(id, START + 5_000); // older than what is known: ignored
  assert.equal(store.apiKeyPuts, 1, 'uses within the minute are not written yet');
  assert.equal(keys.get(id)?.lastUsedAt, new Date(START + 20_000).toISOString());
  await clock.advance(USAGE_WRITE_INTERVAL_MS);
  assert.equal(store.apiKeyPuts, 2, 'the timer wrote the newest use');
  assert.equal((await store.get<{ lastUsedAt?: string }>(NS.apiKeys, id))?.lastUsedAt, new Date(START + 20_000).toISOString());
  // A use reported from the future (a gateway's clock ahead) is recorded as now.
  await keys.markUsed(id, clock.now() + 3600_000);
  await keys.flush();
  assert.equal((await store.get<{ lastUsedAt?: string }>(NS.apiKeys, id))?.lastUsedAt, new Date(clock.now()).toISOString());
  // Unknown ids are ignored.
  await keys.markUsed('ak_000000000000', clock.now());
});

test('a revocation is never lost to a pending last-use write', async () => {
  const { id, key } = await keys.create({ name: 'ci', owner: 'alice', roles: ['reader'] });
  await keys.markUsed(id, START);
  await keys.markUsed(id, START); // same time: nothing new
  await clock.advance(5000);
  await keys.markUsed(id, START + 5000); // pending: written by the timer later
  await keys.revoke(id);
  await clock.advance(USAGE_WRITE_INTERVAL_MS);
  await keys.flush();
  const stored = await store.get<{ revokedAt?: string; lastUsedAt?: string }>(NS.apiKeys, id);
  assert.ok(stored?.revokedAt);
  assert.equal(stored.lastUsedAt, new Date(START + 5000).toISOString());
  assert.equal(await keys.verify(key), undefined);
});

test('audit: create, rotate and revoke name the key id, never the key or its hash', async () => {
  const a = await keys.create({ name: 'ci', owner: 'alice', roles: ['reader'] }, { by: 'admin', requestId: 'req-1' });
  const r = await keys.rotate(a.id, { overlapSeconds: 60 });
  await keys.revoke(r.id);
  const admin = events.filter((e): e is AdminEvent => e.type === 'admin' && e.action.startsWith('apikey.'));
  assert.deepEqual(admin.map((e) => e.action), ['apikey.create', 'apikey.rotate', 'apikey.revoke']);
  assert.equal(admin[0]?.detail.id, a.id);
  assert.equal(admin[0]?.requestId, 'req-1');
  assert.equal(admin[1]?.detail.id, r.id);
  assert.equal(admin[1]?.detail.rotatedFrom, a.id);
  const text = JSON.stringify(admin);
  const hashes = (await store.list<{ hash: string }>(NS.apiKeys)).map((x) => x.value.hash);
  assert.equal(hashes.length, 2);
  for (const secret of [a.key, r.key, ...hashes]) assert.ok(!text.includes(secret), 'a key or hash in an audit event');
});

test('input is checked: names, owners, roles and routes as identifiers, ttl bounds', async () => {
  const ok = { name: 'ci', owner: 'alice', roles: ['reader'] };
  const bad: unknown[] = [
    { ...ok, name: '' }, { ...ok, name: 'x'.repeat(65) }, { ...ok, name: 'new\nline' },
    { ...ok, owner: '' }, { ...ok, owner: 'a b' },
    { ...ok, roles: [] }, { ...ok, roles: ['has space'] }, { ...ok, roles: ['a', 'a'] }, { ...ok, roles: 'reader' }, { ...ok, roles: [1] },
    { ...ok, routes: [] }, { ...ok, routes: ['../x'] },
    { ...ok, ttlSeconds: 59 }, { ...ok, ttlSeconds: 1.5 }, { ...ok, ttlSeconds: 3 * 365 * 86_400 }, { ...ok, ttlSeconds: '3600' },
  ];
  for (const req of bad) {
    assert.equal(await codeOf(keys.create(req as Parameters<ApiKeys['create']>[0])), 'PCL_ERR_INVALID_ARGUMENT', JSON.stringify(req)); // deliberately malformed input
  }
  assert.deepEqual(keys.list(), [], 'nothing was created');
  const a = await keys.create(ok);
  for (const overlapSeconds of [-1, 31 * 86_400, 0.5]) assert.equal(await codeOf(keys.rotate(a.id, { overlapSeconds })), 'PCL_ERR_INVALID_ARGUMENT');
});

test('keys survive a restart with the same sealer; another sealer cannot open the hashing key', async () => {
  const { id, key } = await keys.create({ name: 'ci', owner: 'alice', roles: ['reader'] });
  const again = await ApiKeys.open({ store, sealer, clock });
  assert.equal((await again.verify(key))?.id, id);
  assert.equal(again.snapshot().hashKey, keys.snapshot().hashKey);
  assert.equal(await codeOf(ApiKeys.open({ store, sealer: new KeyWrapper(randomBytes(32)), clock })), 'PCL_ERR_KEY_UNWRAP');
});
