// Signing keys: storage (wrapped, kid-bound), the lifecycle next → current → retired → removed on a
// fake clock, replicas that race at start and at rotation, forced rotation, EdDSA keys, and a
// tampered store refused.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { calculateJwkThumbprint } from 'jose';
import { FakeClock } from '../../src/core/clock.js';
import { MemoryStore } from '../../src/store/memory.js';
import type { PgliteStore } from '../../src/store/pglite.js';
import { NS } from '../../src/store/store.js';
import { issueAccessToken } from '../../src/tokens/issue.js';
import { DEFAULT_PUBLISH_LEAD_MS, SigningKeys, type SigningKeysOptions } from '../../src/tokens/signing-keys.js';
import { createAccessTokenVerifier } from '../../src/tokens/verify.js';
import { newWrapper, openMemoryStore } from './setup.js';

let store: PgliteStore;
const wrapper = newWrapper();
before(async () => { store = await openMemoryStore(); });
after(() => store.close());

const T0 = Date.UTC(2030, 0, 1);
const MIN = 60_000;
const kids = (jwks: { keys: { kid?: string }[] }): string[] => jwks.keys.map((k) => k.kid ?? '');
const tokenFrom = async (keys: SigningKeys, clock: FakeClock, ttlSec = 900): Promise<string> =>
  (await issueAccessToken(keys, { issuer: 'https://iss', audience: 'aud', subject: 's', clientId: 'c', ttlSec, clock })).token;
const verifierOf = (keys: SigningKeys, clock: FakeClock, algorithms?: string[]) =>
  createAccessTokenVerifier({ jwks: keys.jwks(), issuer: 'https://iss', audience: 'aud', clock, cacheSize: 0, ...(algorithms ? { algorithms } : {}) });
/** A fresh in-memory store and clock, for tests that follow time. */
const fresh = (o: Partial<SigningKeysOptions> = {}) => {
  const clock = new FakeClock(T0);
  const opts: SigningKeysOptions = { store: new MemoryStore(), wrapper: newWrapper(), clock, ...o };
  return { clock, opts, open: () => SigningKeys.loadOrCreate(opts) };
};

test('first start creates a current and a next key, stored wrapped, found again by a second loadOrCreate', async () => {
  const first = await SigningKeys.loadOrCreate({ store, wrapper });
  const second = await SigningKeys.loadOrCreate({ store, wrapper });
  assert.equal(second.current().kid, first.current().kid);
  assert.deepEqual(second.jwks(), first.jwks());
  assert.deepEqual(first.list().map((k) => k.state), ['current', 'next']);
  const records = await store.list<Record<string, unknown>>(NS.signingKeys);
  assert.equal(records.length, 2);
  for (const r of records) {
    assert.deepEqual(Object.keys(r.value).sort(), ['alg', 'createdAt', 'kid', 'wrapped']);
    assert.match(String(r.value.wrapped), /^pcl:v1:/);
  }

  // A token from the first instance verifies with the JWKS of the second.
  const { token } = await issueAccessToken(first, { issuer: 'https://iss', audience: 'aud', subject: 's', clientId: 'c', ttlSec: 60 });
  const claims = await createAccessTokenVerifier({ jwks: second.jwks(), issuer: 'https://iss', audience: 'aud' }).verify(token);
  assert.equal(claims.sub, 's');
});

test('JWKS: current then next, public members only, kid = RFC 7638 thumbprint, ES256, use sig; the private key is not extractable', async () => {
  const keys = await SigningKeys.loadOrCreate({ store, wrapper });
  const set = keys.jwks().keys;
  assert.equal(set.length, 2);
  for (const jwk of set) {
    assert.deepEqual(Object.keys(jwk).sort(), ['alg', 'crv', 'kid', 'kty', 'use', 'x', 'y']);
    assert.equal(jwk.kid, await calculateJwkThumbprint(jwk));
    assert.equal(jwk.alg, 'ES256');
  }
  const cur = keys.current();
  assert.equal(cur.kid, set[0]?.kid);
  assert.equal(keys.list()[1]?.kid, set[1]?.kid);
  assert.equal(cur.alg, 'ES256');
  assert.equal(cur.key.type, 'private');
  assert.equal(cur.key.extractable, false);
  // Nothing the admin API shows carries key material.
  assert.doesNotMatch(JSON.stringify(keys.list()), /"(d|x|y|wrapped)"/);
});

test('another master key cannot load the stored keys (PCL_ERR_KEY_UNWRAP)', async () => {
  await SigningKeys.loadOrCreate({ store, wrapper });
  await assert.rejects(SigningKeys.loadOrCreate({ store, wrapper: newWrapper() }), { code: 'PCL_ERR_KEY_UNWRAP' });
});

test('a record moved under another kid is refused (associated data binds the kid)', async () => {
  const keys = await SigningKeys.loadOrCreate({ store, wrapper });
  const [cur, next] = keys.list();
  assert.ok(cur && next);
  const saved = await store.get<{ kid: string; wrapped: string }>(NS.signingKeys, next.kid);
  const moved = await store.get<{ kid: string; wrapped: string }>(NS.signingKeys, cur.kid);
  assert.ok(saved && moved);
  await store.put(NS.signingKeys, next.kid, { ...moved, kid: next.kid });
  try {
    await assert.rejects(SigningKeys.loadOrCreate({ store, wrapper }), { code: 'PCL_ERR_KEY_UNWRAP' });
  } finally {
    await store.put(NS.signingKeys, next.kid, saved);
  }
});

test('replicas starting together on an empty store agree on one current and one next key; the loser leaves nothing behind', async () => {
  const { opts } = fresh();
  const [a, b, c] = await Promise.all([SigningKeys.loadOrCreate(opts), SigningKeys.loadOrCreate(opts), SigningKeys.loadOrCreate(opts)]);
  assert.ok(a && b && c);
  assert.equal(b.current().kid, a.current().kid);
  assert.equal(c.current().kid, a.current().kid);
  assert.deepEqual(kids(b.jwks()), kids(a.jwks()));
  assert.equal((await opts.store.list(NS.signingKeys)).length, 2);
});

test('a key stored by the previous version (no log) is adopted and signs on', async () => {
  const { opts, open } = fresh();
  const legacy = await open();
  const legacyKid = legacy.current().kid;
  // What the previous version left: one key record, no log, no next key.
  await opts.store.delete(NS.signingKeyRotations, 'genesis');
  await opts.store.delete(NS.signingKeys, legacy.list()[1]?.kid ?? '');
  const token = await tokenFrom(legacy, opts.clock as FakeClock);
  const adopted = await open();
  assert.equal(adopted.current().kid, legacyKid);
  assert.deepEqual(adopted.list().map((k) => k.state), ['current', 'next']);
  assert.equal((await verifierOf(adopted, opts.clock as FakeClock).verify(token)).sub, 's');
});

test('rotation: refused before the next key was published for the publish lead; then next signs, the old key stays published until its last token expired, then leaves and is pruned', async () => {
  const { clock, open } = fresh({ maxTokenLifetimeMs: 15 * MIN, clockSkewMs: 30_000, replicaLagMs: 10_000 });
  const keys = await open();
  const [k0, k1] = keys.list().map((k) => k.kid);
  assert.ok(k0 && k1);
  assert.equal(keys.current().kid, k0);
  assert.deepEqual(kids(keys.jwks()), [k0, k1], 'the next key is published before it signs anything');

  await clock.advance(DEFAULT_PUBLISH_LEAD_MS - 1);
  await assert.rejects(keys.rotate(), { code: 'PCL_ERR_KEY_ROTATION_TOO_EARLY' });
  assert.equal(keys.current().kid, k0, 'a refused rotation changes nothing');

  await clock.advance(1);
  const old = await tokenFrom(keys, clock);
  const r = await keys.rotate();
  assert.equal(r.rotated, true);
  assert.equal(r.from, k0);
  assert.equal(r.to, k1);
  assert.equal(keys.current().kid, k1);
  const k2 = r.next;
  const window = 10_000 + 15 * MIN + 30_000;
  assert.equal(r.retireAt, new Date(clock.now() + window).toISOString());
  assert.deepEqual(kids(keys.jwks()), [k1, k2, k0]);
  assert.deepEqual(keys.list().map((k) => [k.kid, k.state]), [[k1, 'current'], [k2, 'next'], [k0, 'retired']]);

  // The token of the old key verifies until it expires, with the JWKS of any moment before retireAt.
  await clock.advance(15 * MIN - 1000);
  assert.equal((await verifierOf(keys, clock).verify(old)).sub, 's');
  await clock.advance(window - 15 * MIN + 1000 - 1);
  assert.deepEqual(kids(keys.jwks()), [k1, k2, k0]);
  await clock.advance(1);
  assert.deepEqual(kids(keys.jwks()), [k1, k2], 'removed at retireAt');
  assert.equal(keys.list()[2]?.state, 'removed');
  assert.deepEqual(await keys.prune(), [k0]);
  assert.deepEqual(keys.list().map((k) => k.kid), [k1, k2]);
  // The new current signs, and a second rotation is due the publish lead after the first.
  assert.equal(keys.activatedAt(), clock.now() - window);
  assert.equal((await keys.rotate()).to, k2);
});

test('two replicas rotating at once: one rotation happens, both report it and sign with the same key', async () => {
  const { clock, opts } = fresh();
  const a = await SigningKeys.loadOrCreate(opts);
  const b = await SigningKeys.loadOrCreate(opts);
  await clock.advance(DEFAULT_PUBLISH_LEAD_MS);
  const [ra, rb] = await Promise.all([a.rotate(), b.rotate()]);
  assert.deepEqual([ra.rotated, rb.rotated].sort(), [false, true]);
  assert.equal(ra.to, rb.to);
  assert.equal(ra.next, rb.next);
  assert.equal(a.current().kid, b.current().kid);
  assert.deepEqual(kids(a.jwks()), kids(b.jwks()));
  assert.equal((await opts.store.list(NS.signingKeys)).length, 3, "the loser's new key was discarded");
  // A replica that did not rotate learns of it at its next reload.
  const c = await SigningKeys.loadOrCreate(opts);
  await clock.advance(DEFAULT_PUBLISH_LEAD_MS);
  await c.rotate();
  assert.notEqual(a.current().kid, c.current().kid);
  await a.reload();
  assert.equal(a.current().kid, c.current().kid);
});

test('forced rotation: allowed at once, and the old key leaves the JWKS immediately; its tokens are refused', async () => {
  const { clock, open } = fresh();
  const keys = await open();
  const k0 = keys.current().kid;
  const token = await tokenFrom(keys, clock);
  assert.equal((await verifierOf(keys, clock).verify(token)).sub, 's');
  const r = await keys.rotate({ force: true });
  assert.equal(r.force, true);
  assert.equal(r.retireAt, r.at);
  assert.ok(!kids(keys.jwks()).includes(k0));
  await assert.rejects(verifierOf(keys, clock).verify(token), { code: 'PCL_ERR_TOKEN_SIGNATURE' });
  assert.deepEqual(await keys.prune(), [k0], 'the compromised private key is destroyed');
});

test('a forced rotation that loses the race to a scheduled one still takes the old key out of the JWKS', async () => {
  const { clock, opts } = fresh();
  const a = await SigningKeys.loadOrCreate(opts);
  const b = await SigningKeys.loadOrCreate(opts);
  const k0 = a.current().kid;
  await clock.advance(DEFAULT_PUBLISH_LEAD_MS);
  const [scheduled, forced] = await Promise.all([a.rotate({ by: 'scheduler' }), b.rotate({ force: true })]);
  assert.deepEqual([scheduled.rotated, forced.rotated].sort(), [false, true], 'both tried to rotate k0');
  assert.equal(forced.from, k0);
  assert.equal(forced.force, true);
  await a.reload();
  for (const keys of [a, b]) assert.ok(!kids(keys.jwks()).includes(k0));
  assert.equal(a.list().find((k) => k.kid === k0)?.state, 'removed');
});

test('EdDSA keys: Ed25519 JWKs with alg EdDSA; tokens verify when the verifier allows EdDSA and are refused otherwise', async () => {
  const { clock, opts } = fresh();
  const es = await SigningKeys.loadOrCreate(opts);
  assert.equal(es.current().alg, 'ES256');
  // Switching algorithm goes through a rotation: existing keys keep theirs, new ones get EdDSA.
  const ed = await SigningKeys.loadOrCreate({ ...opts, alg: 'EdDSA' });
  await clock.advance(DEFAULT_PUBLISH_LEAD_MS);
  await ed.rotate();
  await clock.advance(DEFAULT_PUBLISH_LEAD_MS);
  await ed.rotate();
  assert.equal(ed.current().alg, 'EdDSA');
  const jwk = ed.jwks().keys[0];
  assert.ok(jwk);
  assert.deepEqual(Object.keys(jwk).sort(), ['alg', 'crv', 'kid', 'kty', 'use', 'x']);
  assert.equal(jwk.kty, 'OKP');
  assert.equal(jwk.crv, 'Ed25519');
  assert.equal(jwk.alg, 'EdDSA');
  assert.equal(jwk.kid, await calculateJwkThumbprint(jwk));
  assert.deepEqual(ed.jwks().keys.map((k) => k.alg), ['EdDSA', 'EdDSA', 'ES256', 'ES256'], 'current, next, then both retired ES256 keys');
  const token = await tokenFrom(ed, clock);
  assert.equal((await verifierOf(ed, clock, ['ES256', 'EdDSA']).verify(token)).sub, 's');
  await assert.rejects(verifierOf(ed, clock).verify(token), { code: 'PCL_ERR_TOKEN_ALG' });
  // Reloaded from the store by another instance, the EdDSA key signs the same.
  const again = await SigningKeys.loadOrCreate(opts);
  assert.equal(again.current().kid, ed.current().kid);
  assert.equal(again.current().alg, 'EdDSA');
});

test('options are checked: unknown algorithm, negative durations', async () => {
  const { opts } = fresh();
  await assert.rejects(SigningKeys.loadOrCreate({ ...opts, alg: 'HS256' as 'ES256' }), { code: 'PCL_ERR_INVALID_ARGUMENT' }); // deliberately wrong, for the refusal
  await assert.rejects(SigningKeys.loadOrCreate({ ...opts, publishLeadMs: -1 }), { code: 'PCL_ERR_INVALID_ARGUMENT' });
  await assert.rejects(SigningKeys.loadOrCreate({ ...opts, maxTokenLifetimeMs: 1.5 }), { code: 'PCL_ERR_INVALID_ARGUMENT' });
});

test('a tampered rotation log fails closed (PCL_ERR_STORE)', async () => {
  const { opts, open } = fresh();
  const keys = await open();
  const [cur, next] = keys.list();
  assert.ok(cur && next);
  // A rotation entry naming a key that was never the next one.
  await opts.store.insert(NS.signingKeyRotations, `from:${cur.kid}`, { kind: 'rotation', from: cur.kid, to: cur.kid, next: next.kid, at: new Date(T0).toISOString(), retireAt: new Date(T0).toISOString(), force: false, by: 'x' });
  await assert.rejects(keys.reload(), { code: 'PCL_ERR_STORE' });
  await assert.rejects(open(), { code: 'PCL_ERR_STORE' });
  // The instance keeps signing with what it had loaded.
  assert.equal(keys.current().kid, cur.kid);
});

test('orphan key records (a writer that crashed before its log entry) are never published and are pruned after the grace time', async () => {
  const { clock, opts, open } = fresh();
  const keys = await open();
  const [cur] = keys.list();
  assert.ok(cur);
  const record = await opts.store.get<Record<string, unknown>>(NS.signingKeys, cur.kid);
  await opts.store.insert(NS.signingKeys, 'orphan', { ...record, kid: 'orphan', createdAt: new Date(T0).toISOString() });
  await keys.reload();
  assert.ok(!kids(keys.jwks()).includes('orphan'));
  assert.deepEqual(await keys.prune(), []);
  await clock.advance(3_600_000);
  assert.deepEqual(await keys.prune(), ['orphan']);
});
