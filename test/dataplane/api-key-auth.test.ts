// The gateway's API-key authenticator against real snapshots of the control plane's ApiKeys:
// the two headers and their refusals, the checksum before hashing, the constant-time comparison
// of the whole HMAC, expiry and rotation overlap on a fake clock, revocation by snapshot and by
// the fast feed (which an older snapshot cannot undo), route scopes, and the background sync.
import { test, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { FakeClock } from '../../src/core/clock.js';
import { PortcullisError } from '../../src/core/errors.js';
import { ApiKeys, generateApiKey, hashApiKey, type ApiKeySnapshotEntry } from '../../src/identity/api-keys.js';
import { ApiKeyAuthenticator, ApiKeyRevocationSync, type ApiKeyControl, type ApiKeyHeaders } from '../../src/dataplane/api-key-auth.js';
import { KeyWrapper } from '../../src/kms/wrap.js';
import { MemoryStore } from '../../src/store/memory.js';

const START = Date.UTC(2030, 0, 1);

let clock: FakeClock;
let keys: ApiKeys;
let auth: ApiKeyAuthenticator;

beforeEach(async () => {
  clock = new FakeClock(START);
  keys = await ApiKeys.open({ store: new MemoryStore(), sealer: new KeyWrapper(randomBytes(32)), clock });
  auth = new ApiKeyAuthenticator(clock);
});

/** The snapshot the control plane would send now, applied. */
const sync = (): void => { auth.applySnapshot(keys.snapshot()); };

/** The refusal's code; asserts no part of the key is in the message. */
function refusal(headers: ApiKeyHeaders, key: string, opts: { routeId?: string } = {}): string {
  try {
    auth.authenticate(headers, opts);
  } catch (err) {
    assert.ok(err instanceof PortcullisError);
    if (key.length > 8) assert.ok(!err.message.includes(key.slice(4, 16)) && !err.message.includes(key.slice(-12)), 'message contains the key');
    return err.code;
  }
  return 'accepted';
}

test('a key in X-API-Key or in Authorization: ApiKey gives the owner, roles and routes', async () => {
  const { id, key } = await keys.create({ name: 'ci', owner: 'alice', roles: ['reader'], routes: ['orders.list'] });
  sync();
  const expected = { id, owner: 'alice', roles: ['reader'], routes: ['orders.list'] };
  assert.deepEqual(auth.authenticate({ 'x-api-key': key }), expected);
  assert.deepEqual(auth.authenticate({ authorization: `ApiKey ${key}` }), expected);
  assert.deepEqual(auth.authenticate({ authorization: `apikey ${key}` }), expected, 'the scheme is case-insensitive');
  assert.equal(ApiKeyAuthenticator.presented({ 'x-api-key': key }), true);
  assert.equal(ApiKeyAuthenticator.presented({ authorization: `ApiKey ${key}` }), true);
  assert.equal(ApiKeyAuthenticator.presented({ authorization: 'Bearer eyJ...' }), false);
  assert.equal(ApiKeyAuthenticator.presented({}), false);
});

test('both headers, a repeated header, another scheme or no key are refused', async () => {
  const { key } = await keys.create({ name: 'ci', owner: 'alice', roles: ['reader'] });
  sync();
  assert.equal(refusal({ 'x-api-key': key, authorization: `ApiKey ${key}` }, key), 'PCL_ERR_APIKEY_INVALID');
  assert.equal(refusal({ 'x-api-key': key, authorization: 'Bearer abc.def.ghi' }, key), 'PCL_ERR_APIKEY_INVALID');
  assert.equal(refusal({ 'x-api-key': [key, key] }, key), 'PCL_ERR_APIKEY_INVALID');
  assert.equal(refusal({ authorization: `Bearer ${key}` }, key), 'PCL_ERR_APIKEY_INVALID');
  assert.equal(refusal({ authorization: `Basic ${Buffer.from(`x:${key}`).toString('base64')}` }, key), 'PCL_ERR_APIKEY_INVALID');
  assert.equal(refusal({ authorization: `ApiKey ${key} extra` }, key), 'PCL_ERR_APIKEY_INVALID');
  assert.equal(refusal({}, key), 'PCL_ERR_TOKEN_MISSING');
});

test('malformed keys and bad checksums are refused; so is a well-formed key never issued', async () => {
  const { key } = await keys.create({ name: 'ci', owner: 'alice', roles: ['reader'] });
  sync();
  const typo = key.slice(0, 20) + (key[20] === 'Q' ? 'R' : 'Q') + key.slice(21);
  for (const k of [typo, key.slice(0, -1), `${key}0`, `ghp_${key.slice(4)}`, 'pcl_short', generateApiKey()]) {
    assert.equal(refusal({ 'x-api-key': k }, k), 'PCL_ERR_APIKEY_INVALID', k.slice(0, 4));
  }
});

test('the whole HMAC is compared: an entry sharing only the lookup half is refused', async () => {
  const key = generateApiKey();
  const hashKey = randomBytes(32);
  const real = hashApiKey(hashKey, key);
  const forged = Buffer.from(real);
  forged[31] = (forged[31] ?? 0) ^ 1; // same first 16 bytes (the lookup key), different tail
  const entry = (hash: Buffer): ApiKeySnapshotEntry => ({ hash: hash.toString('base64url'), id: 'ak_AAAAAAAAAAAA', owner: 'mallory', roles: ['admin'] });
  auth.update(hashKey, [entry(forged)]);
  assert.equal(refusal({ 'x-api-key': key }, key), 'PCL_ERR_APIKEY_INVALID');
  auth.update(hashKey, [entry(real)]);
  assert.equal(auth.authenticate({ 'x-api-key': key }).owner, 'mallory');
});

test('expiry is checked on the clock at every request, without a new snapshot', async () => {
  const { id, key } = await keys.create({ name: 'ci', owner: 'alice', roles: ['reader'], ttlSeconds: 600 });
  sync();
  await clock.advance(599_999);
  assert.equal(auth.authenticate({ 'x-api-key': key }).id, id);
  await clock.advance(1);
  assert.equal(refusal({ 'x-api-key': key }, key), 'PCL_ERR_APIKEY_INVALID');
});

test('rotation: the old key works until its overlap ends, the new one after', async () => {
  const old = await keys.create({ name: 'ci', owner: 'alice', roles: ['reader'] });
  const rotated = await keys.rotate(old.id, { overlapSeconds: 60 });
  sync();
  assert.equal(auth.authenticate({ 'x-api-key': old.key }).id, old.id);
  assert.equal(auth.authenticate({ 'x-api-key': rotated.key }).id, rotated.id);
  await clock.advance(60_000);
  assert.equal(refusal({ 'x-api-key': old.key }, old.key), 'PCL_ERR_APIKEY_INVALID', 'the snapshot is unchanged; the clock decides');
  assert.equal(auth.authenticate({ 'x-api-key': rotated.key }).id, rotated.id);
});

test('revoked: gone after the next snapshot, or at once through the feed', async () => {
  const a = await keys.create({ name: 'a', owner: 'alice', roles: ['reader'] });
  const b = await keys.create({ name: 'b', owner: 'bob', roles: ['reader'] });
  sync();
  const stale = keys.snapshot(); // a snapshot taken before the revocations below
  await keys.revoke(a.id);
  assert.equal(auth.authenticate({ 'x-api-key': a.key }).id, a.id, 'not yet: this data plane has not heard');
  sync();
  assert.equal(refusal({ 'x-api-key': a.key }, a.key), 'PCL_ERR_APIKEY_INVALID');
  // The fast path: the feed names b; an older snapshot arriving afterwards cannot bring it back.
  await keys.revoke(b.id);
  assert.equal(auth.revoke(keys.revokedSince().revoked), 1);
  assert.equal(refusal({ 'x-api-key': b.key }, b.key), 'PCL_ERR_APIKEY_INVALID');
  auth.applySnapshot(stale);
  assert.equal(refusal({ 'x-api-key': b.key }, b.key), 'PCL_ERR_APIKEY_INVALID', 'a stale snapshot undid a revocation');
  sync();
  assert.equal(auth.size(), 0);
});

test('route scopes: a key limited to routes is forbidden elsewhere', async () => {
  const scoped = await keys.create({ name: 'r', owner: 'alice', roles: ['reader'], routes: ['orders.list'] });
  const open = await keys.create({ name: 'o', owner: 'bob', roles: ['reader'] });
  sync();
  assert.equal(auth.authenticate({ 'x-api-key': scoped.key }, { routeId: 'orders.list' }).id, scoped.id);
  assert.equal(refusal({ 'x-api-key': scoped.key }, scoped.key, { routeId: 'orders.delete' }), 'PCL_ERR_FORBIDDEN');
  assert.equal(auth.authenticate({ 'x-api-key': open.key }, { routeId: 'orders.delete' }).id, open.id);
});

test('fail closed: no snapshot yet, none in the snapshot, malformed entries, a short hashing key', async () => {
  const { key } = await keys.create({ name: 'ci', owner: 'alice', roles: ['reader'], ttlSeconds: 600 });
  assert.equal(refusal({ 'x-api-key': key }, key), 'PCL_ERR_SNAPSHOT_UNAVAILABLE');
  sync();
  auth.applySnapshot(undefined);
  assert.equal(refusal({ 'x-api-key': key }, key), 'PCL_ERR_APIKEY_INVALID');
  const snap = keys.snapshot();
  const good = snap.entries[0];
  assert.ok(good);
  const hashKey = Buffer.from(snap.hashKey, 'base64url');
  // An unreadable expiry must not mean "never expires"; a short hash or bad id is no entry.
  const bad = [{ ...good, expiresAt: 'soon' }, { ...good, notAfter: 'later' }, { ...good, hash: 'AAAA' }, { ...good, id: 'x' }, { ...good, roles: 'reader' }];
  assert.deepEqual(auth.update(hashKey, bad as ApiKeySnapshotEntry[]), { accepted: 0, skipped: 5 }); // deliberately malformed
  assert.equal(refusal({ 'x-api-key': key }, key), 'PCL_ERR_APIKEY_INVALID');
  assert.throws(() => auth.update(randomBytes(16), snap.entries), (e: unknown) => e instanceof PortcullisError && e.code === 'PCL_ERR_INVALID_ARGUMENT');
});

test('uses are gathered for the control plane and drained once', async () => {
  const { id, key } = await keys.create({ name: 'ci', owner: 'alice', roles: ['reader'] });
  sync();
  auth.authenticate({ 'x-api-key': key });
  await clock.advance(5000);
  auth.authenticate({ 'x-api-key': key });
  assert.deepEqual(auth.drainUsage(), [{ id, at: new Date(START + 5000).toISOString() }]);
  assert.deepEqual(auth.drainUsage(), []);
});

/** A control plane double backed by the real ApiKeys, with a switch to fail. */
function control(): ApiKeyControl & { calls: (string | undefined)[]; reports: { id: string; at: string }[][]; down: boolean } {
  const c = {
    calls: [] as (string | undefined)[], reports: [] as { id: string; at: string }[][], down: false,
    revokedSince: async (since: string | undefined) => {
      c.calls.push(since);
      if (c.down) throw new Error('control plane unreachable');
      return keys.revokedSince(since);
    },
    reportUsage: async (used: { id: string; at: string }[]) => {
      c.reports.push(used);
      for (const u of used) await keys.markUsed(u.id, Date.parse(u.at));
    },
  };
  return c;
}

test('the sync polls every 2 s with its cursor: a revocation is refused within one poll', async () => {
  const a = await keys.create({ name: 'a', owner: 'alice', roles: ['reader'] });
  sync();
  const c = control();
  const s = new ApiKeyRevocationSync({ authenticator: auth, control: c, clock });
  s.start();
  await clock.advance(2000);
  assert.deepEqual(c.calls, [undefined], 'the first poll asks for everything');
  await keys.revoke(a.id);
  assert.equal(auth.authenticate({ 'x-api-key': a.key }).id, a.id);
  await clock.advance(2000);
  assert.equal(c.calls.length, 2);
  assert.equal(typeof c.calls[1], 'string', 'later polls pass the cursor');
  assert.equal(refusal({ 'x-api-key': a.key }, a.key), 'PCL_ERR_APIKEY_INVALID');
  s.stop();
  await clock.advance(10_000);
  assert.equal(c.calls.length, 2, 'stopped');
});

test('the sync reports uses once a minute, and lastUsedAt follows', async () => {
  const a = await keys.create({ name: 'a', owner: 'alice', roles: ['reader'] });
  sync();
  const c = control();
  const s = new ApiKeyRevocationSync({ authenticator: auth, control: c, clock });
  s.start();
  await clock.advance(10_000);
  auth.authenticate({ 'x-api-key': a.key });
  await clock.advance(20_000);
  assert.equal(c.reports.length, 0);
  await clock.advance(30_000);
  assert.deepEqual(c.reports, [[{ id: a.id, at: new Date(START + 10_000).toISOString() }]]);
  assert.equal(keys.get(a.id)?.lastUsedAt, new Date(START + 10_000).toISOString());
  s.stop();
});

test('with maxStalenessMs, keys are refused while the feed is down too long, and work again after', async () => {
  const a = await keys.create({ name: 'a', owner: 'alice', roles: ['reader'] });
  sync();
  const c = control();
  const s = new ApiKeyRevocationSync({ authenticator: auth, control: c, clock, maxStalenessMs: 10_000 });
  s.start();
  await clock.advance(2000);
  c.down = true;
  await clock.advance(10_000);
  assert.equal(auth.authenticate({ 'x-api-key': a.key }).id, a.id, 'within the allowed staleness');
  await clock.advance(2000);
  assert.equal(refusal({ 'x-api-key': a.key }, a.key), 'PCL_ERR_SNAPSHOT_UNAVAILABLE');
  c.down = false;
  await clock.advance(2000);
  assert.equal(auth.authenticate({ 'x-api-key': a.key }).id, a.id);
  s.stop();
});
