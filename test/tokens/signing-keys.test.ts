import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { calculateJwkThumbprint } from 'jose';
import type { PgliteStore } from '../../src/store/pglite.js';
import { NS } from '../../src/store/store.js';
import { issueAccessToken } from '../../src/tokens/issue.js';
import { SigningKeys } from '../../src/tokens/signing-keys.js';
import { createAccessTokenVerifier } from '../../src/tokens/verify.js';
import { newWrapper, openMemoryStore } from './setup.js';

let store: PgliteStore;
const wrapper = newWrapper();
before(async () => { store = await openMemoryStore(); });
after(() => store.close());

test('the key is created once, stored wrapped, and found again by a second loadOrCreate', async () => {
  const first = await SigningKeys.loadOrCreate({ store, wrapper });
  const second = await SigningKeys.loadOrCreate({ store, wrapper });
  assert.equal(second.current().kid, first.current().kid);
  assert.deepEqual(second.jwks(), first.jwks());
  const records = await store.list<Record<string, unknown>>(NS.signingKeys);
  assert.equal(records.length, 1);
  assert.deepEqual(Object.keys(records[0]?.value ?? {}).sort(), ['alg', 'createdAt', 'kid', 'wrapped']);
  assert.match(String(records[0]?.value.wrapped), /^pcl:v1:/);

  // A token from the first instance verifies with the JWKS of the second.
  const { token } = await issueAccessToken(first, { issuer: 'https://iss', audience: 'aud', subject: 's', clientId: 'c', ttlSec: 60 });
  const claims = await createAccessTokenVerifier({ jwks: second.jwks(), issuer: 'https://iss', audience: 'aud' }).verify(token);
  assert.equal(claims.sub, 's');
});

test('JWKS: public members only, kid = RFC 7638 thumbprint, ES256, use sig; the private key is not extractable', async () => {
  const keys = await SigningKeys.loadOrCreate({ store, wrapper });
  const [jwk] = keys.jwks().keys;
  assert.ok(jwk);
  assert.deepEqual(Object.keys(jwk).sort(), ['alg', 'crv', 'kid', 'kty', 'use', 'x', 'y']);
  assert.equal(jwk.kid, await calculateJwkThumbprint(jwk));
  assert.equal(jwk.alg, 'ES256');
  const cur = keys.current();
  assert.equal(cur.kid, jwk.kid);
  assert.equal(cur.alg, 'ES256');
  assert.equal(cur.key.type, 'private');
  assert.equal(cur.key.extractable, false);
});

test('another master key cannot load the stored key (PCL_ERR_KEY_UNWRAP)', async () => {
  await SigningKeys.loadOrCreate({ store, wrapper });
  await assert.rejects(SigningKeys.loadOrCreate({ store, wrapper: newWrapper() }), { code: 'PCL_ERR_KEY_UNWRAP' });
});

test('a record moved under another kid is refused (associated data binds the kid)', async () => {
  const [r] = await store.list<{ kid: string; wrapped: string }>(NS.signingKeys);
  assert.ok(r);
  const fakeKid = 'A'.repeat(43);
  await store.put(NS.signingKeys, fakeKid, { ...r.value, kid: fakeKid, createdAt: '2999-01-01T00:00:00.000Z' });
  try {
    await assert.rejects(SigningKeys.loadOrCreate({ store, wrapper }), { code: 'PCL_ERR_KEY_UNWRAP' });
  } finally {
    await store.delete(NS.signingKeys, fakeKid);
  }
});
