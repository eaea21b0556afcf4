// One test per PCL_ERR_TOKEN_* code, plus the order checks (signature before claims).
import assert from 'node:assert/strict';
import { createHmac, createPublicKey } from 'node:crypto';
import { after, before, test } from 'node:test';
import { exportJWK, generateKeyPair, SignJWT, type JWTPayload } from 'jose';
import { FakeClock } from '../../src/core/clock.js';
import type { ErrorCode } from '../../src/core/errors.js';
import type { PgliteStore } from '../../src/store/pglite.js';
import { issueAccessToken, type AccessTokenRequest } from '../../src/tokens/issue.js';
import { SigningKeys } from '../../src/tokens/signing-keys.js';
import { createAccessTokenVerifier, type AccessTokenVerifier } from '../../src/tokens/verify.js';
import { newWrapper, openMemoryStore } from './setup.js';

const ISS = 'https://control.example';
const AUD = 'https://gateway.example';
let store: PgliteStore;
let keys: SigningKeys;
let verifier: AccessTokenVerifier;
const clock = new FakeClock(Date.UTC(2030, 0, 1));

before(async () => {
  store = await openMemoryStore();
  keys = await SigningKeys.loadOrCreate({ store, wrapper: newWrapper(), clock });
  verifier = createAccessTokenVerifier({ jwks: keys.jwks(), issuer: ISS, audience: AUD, clock, clockSkewSec: 30 });
});
after(() => store.close());

const issue = async (over: Partial<AccessTokenRequest> = {}): Promise<string> =>
  (await issueAccessToken(keys, { issuer: ISS, audience: AUD, subject: 'alice', clientId: 'cli', roles: ['customer'], ttlSec: 300, clock, ...over })).token;

const b64 = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString('base64url');
const nowSec = (): number => Math.floor(clock.now() / 1000);
const standardClaims = (): JWTPayload => ({ iss: ISS, aud: AUD, sub: 'alice', client_id: 'cli', jti: 'j1', iat: nowSec(), nbf: nowSec(), exp: nowSec() + 300 });

/** Signs with our real key, with any header and claims (to reach the claim checks). */
async function signRaw(payload: JWTPayload, header: Record<string, unknown> = { typ: 'at+jwt' }): Promise<string> {
  const { kid, key } = keys.current();
  return new SignJWT(payload).setProtectedHeader({ alg: 'ES256', kid, ...header }).sign(key);
}

async function refused(token: string, code: ErrorCode, v: AccessTokenVerifier = verifier): Promise<void> {
  await assert.rejects(v.verify(token), (err: { code?: string; message?: string }) => {
    assert.equal(err.code, code);
    // No message carries the token or any part of it.
    for (const part of token.split('.').filter((p) => p.length > 8)) assert.ok(!String(err.message).includes(part), 'message leaks the token');
    return true;
  });
}

test('a token we issue verifies, with the RFC 9068 claims', async () => {
  const token = await issue({ scope: 'orders:read' });
  const [h] = token.split('.');
  assert.deepEqual(JSON.parse(Buffer.from(h ?? '', 'base64url').toString()), { alg: 'ES256', typ: 'at+jwt', kid: keys.current().kid });
  const c = await verifier.verify(token);
  assert.equal(c.iss, ISS);
  assert.equal(c.aud, AUD);
  assert.equal(c.sub, 'alice');
  assert.equal(c.client_id, 'cli');
  assert.equal(c.scope, 'orders:read');
  assert.deepEqual(c.roles, ['customer']);
  assert.equal(c.iat, nowSec());
  assert.equal(c.nbf, nowSec());
  assert.equal(c.exp, nowSec() + 300);
  assert.match(c.jti, /^[A-Za-z0-9_-]{22}$/);
});

test('token ids: 128 random bits each, never repeated, across refills of the id pool (256 ids per fill)', async () => {
  const jtis = new Set<string>();
  for (let i = 0; i < 700; i++) {
    const { jti, token } = await issueAccessToken(keys, { issuer: ISS, audience: AUD, subject: 'alice', clientId: 'cli', ttlSec: 300, clock });
    assert.match(jti, /^[A-Za-z0-9_-]{22}$/);
    assert.equal(JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString()).jti, jti);
    jtis.add(jti);
  }
  assert.equal(jtis.size, 700);
});

test('PCL_ERR_TOKEN_MALFORMED: not a JWS, bad base64, junk, oversized', async () => {
  const good = await issue();
  for (const t of ['', 'abc', 'a.b', 'a.b.c.d', '!!!.e30.sig', 'e30.e30.s!g', `${b64('x').slice(0, -1)}@.e30.sig`, 'bm90IGpzb24.e30.sig', `${b64([1])}.e30.sig`, `${b64({ typ: 'at+jwt' })}.e30.sig`, `${good}.`, 'x'.repeat(9000)]) {
    await refused(t, 'PCL_ERR_TOKEN_MALFORMED');
  }
  // Signature valid, but the payload is not a JSON object.
  const { kid, key } = keys.current();
  const h = b64({ alg: 'ES256', typ: 'at+jwt', kid });
  const p = Buffer.from('[1,2]').toString('base64url');
  const sig = await crypto.subtle.sign({ name: 'ECDSA', hash: 'SHA-256' }, key, Buffer.from(`${h}.${p}`));
  await refused(`${h}.${p}.${Buffer.from(sig).toString('base64url')}`, 'PCL_ERR_TOKEN_MALFORMED');
});

test('PCL_ERR_TOKEN_ALG: alg none crafted by hand, HS256 signed with the public key, any other alg', async () => {
  const claims = standardClaims();
  await refused(`${b64({ alg: 'none', typ: 'at+jwt' })}.${b64(claims)}.`, 'PCL_ERR_TOKEN_ALG');
  await refused(`${b64({ alg: 'none', typ: 'at+jwt' })}.${b64(claims)}.c2ln`, 'PCL_ERR_TOKEN_ALG');

  // The classic key-confusion attack: HMAC keyed with the issuer's public key, in two encodings.
  const jwk = keys.jwks().keys[0];
  assert.ok(jwk);
  const pem = createPublicKey({ key: { ...jwk }, format: 'jwk' }).export({ type: 'spki', format: 'pem' });
  for (const secret of [pem, JSON.stringify(jwk)]) {
    const input = `${b64({ alg: 'HS256', typ: 'at+jwt', kid: jwk.kid })}.${b64(claims)}`;
    await refused(`${input}.${createHmac('sha256', secret).update(input).digest('base64url')}`, 'PCL_ERR_TOKEN_ALG');
  }
  // An asymmetric alg that is simply not on the list.
  const { privateKey } = await generateKeyPair('ES384');
  await refused(await new SignJWT(claims).setProtectedHeader({ alg: 'ES384', typ: 'at+jwt', kid: jwk.kid }).sign(privateKey), 'PCL_ERR_TOKEN_ALG');
});

test('symmetric algorithms and none cannot even be configured', () => {
  for (const algorithms of [['HS256'], ['none'], ['ES256', 'HS512'], []]) {
    assert.throws(() => createAccessTokenVerifier({ jwks: keys.jwks(), issuer: ISS, audience: AUD, algorithms }), { code: 'PCL_ERR_INVALID_ARGUMENT' });
  }
});

test('PCL_ERR_TOKEN_SIGNATURE: tampered payload, unknown kid, key not in the JWKS, empty signature', async () => {
  const token = await issue();
  const [h, , s] = token.split('.');
  const tampered = `${h}.${b64({ ...standardClaims(), roles: ['admin'] })}.${s}`;
  await refused(tampered, 'PCL_ERR_TOKEN_SIGNATURE');
  await refused(`${h}.${token.split('.')[1]}.`, 'PCL_ERR_TOKEN_SIGNATURE');

  const { privateKey } = await generateKeyPair('ES256');
  const foreign = (kid: string): Promise<string> => new SignJWT(standardClaims()).setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid }).sign(privateKey);
  await refused(await foreign('unknown-kid'), 'PCL_ERR_TOKEN_SIGNATURE');
  await refused(await foreign(keys.current().kid), 'PCL_ERR_TOKEN_SIGNATURE');
});

test('PCL_ERR_TOKEN_ISSUER and PCL_ERR_TOKEN_AUDIENCE', async () => {
  await refused(await issue({ issuer: 'https://evil.example' }), 'PCL_ERR_TOKEN_ISSUER');
  await refused(await signRaw({ ...standardClaims(), iss: undefined }), 'PCL_ERR_TOKEN_ISSUER');
  await refused(await issue({ audience: 'https://other.example' }), 'PCL_ERR_TOKEN_AUDIENCE');
  await refused(await signRaw({ ...standardClaims(), aud: undefined }), 'PCL_ERR_TOKEN_AUDIENCE');
  // aud as an array containing ours is fine (RFC 7519 §4.1.3).
  assert.equal((await verifier.verify(await issue({ audience: ['x', AUD] }))).sub, 'alice');
});

test('PCL_ERR_TOKEN_EXPIRED and PCL_ERR_TOKEN_NOT_YET_VALID, with the clock skew', async () => {
  const token = await issue({ ttlSec: 60 });
  const late = new FakeClock(clock.now() + (60 + 29) * 1000);
  const v = (c: FakeClock): AccessTokenVerifier => createAccessTokenVerifier({ jwks: keys.jwks(), issuer: ISS, audience: AUD, clock: c, clockSkewSec: 30 });
  assert.equal((await v(late).verify(token)).sub, 'alice', 'within the skew');
  await late.advance(2000);
  await refused(token, 'PCL_ERR_TOKEN_EXPIRED', v(late));

  const early = new FakeClock(clock.now() - 29 * 1000);
  assert.equal((await v(early).verify(token)).sub, 'alice', 'within the skew');
  await refused(token, 'PCL_ERR_TOKEN_NOT_YET_VALID', v(new FakeClock(clock.now() - 31 * 1000)));
});

test('PCL_ERR_TOKEN_CLAIMS: missing or wrong typ, missing sub/exp/jti/client_id, roles not strings', async () => {
  const c = standardClaims();
  await refused(await signRaw(c, {}), 'PCL_ERR_TOKEN_CLAIMS');
  await refused(await signRaw(c, { typ: 'JWT' }), 'PCL_ERR_TOKEN_CLAIMS');
  for (const drop of ['sub', 'exp', 'iat', 'jti', 'client_id']) await refused(await signRaw({ ...c, [drop]: undefined }), 'PCL_ERR_TOKEN_CLAIMS');
  await refused(await signRaw({ ...c, exp: 'tomorrow' } as unknown as JWTPayload), 'PCL_ERR_TOKEN_CLAIMS'); // deliberately ill-typed claim
  await refused(await signRaw({ ...c, sub: 42 } as unknown as JWTPayload), 'PCL_ERR_TOKEN_CLAIMS'); // deliberately ill-typed claim
  await refused(await signRaw({ ...c, roles: 'admin' }), 'PCL_ERR_TOKEN_CLAIMS');
  await refused(await signRaw({ ...c, roles: ['admin', 1] }), 'PCL_ERR_TOKEN_CLAIMS');
  await refused(await signRaw({ ...c, scope: ['a'] }), 'PCL_ERR_TOKEN_CLAIMS');
  // The media-type form of typ is the same type (RFC 9068 §4).
  assert.equal((await verifier.verify(await signRaw(c, { typ: 'application/at+jwt' }))).sub, 'alice');
  assert.deepEqual((await verifier.verify(await signRaw(c))).roles, [], 'roles default to []');
});

test('order: the signature is checked before any claim', async () => {
  const { privateKey } = await generateKeyPair('ES256');
  const kid = keys.current().kid;
  // Expired, wrong issuer, wrong audience, no typ: a bad signature still wins.
  const bad = await new SignJWT({ ...standardClaims(), iss: 'https://evil.example', aud: 'x', exp: 1 }).setProtectedHeader({ alg: 'ES256', kid }).sign(privateKey);
  await refused(bad, 'PCL_ERR_TOKEN_SIGNATURE');
  // And the alg check comes before the signature.
  await refused(`${b64({ alg: 'HS256', kid })}.${bad.split('.')[1]}.${bad.split('.')[2]}`, 'PCL_ERR_TOKEN_ALG');
});

test('setJwks swaps the key set; private or symmetric keys are refused', async () => {
  const v = createAccessTokenVerifier({ jwks: keys.jwks(), issuer: ISS, audience: AUD, clock });
  const token = await issue();
  v.setJwks({ keys: [] });
  await refused(token, 'PCL_ERR_TOKEN_SIGNATURE', v);
  v.setJwks(keys.jwks());
  assert.equal((await v.verify(token)).sub, 'alice');
  const { privateKey } = await generateKeyPair('ES256', { extractable: true });
  const privateJwk = await exportJWK(privateKey);
  assert.throws(() => v.setJwks({ keys: [privateJwk] }), { code: 'PCL_ERR_INVALID_ARGUMENT' });
  assert.throws(() => v.setJwks({ keys: [{ kty: 'oct', k: 'c2VjcmV0' }] }), { code: 'PCL_ERR_INVALID_ARGUMENT' });
});

// ---- the verified-token cache ----

test('cache: a token seen again is answered from the cache, with the same claims, and frozen', async () => {
  const v = createAccessTokenVerifier({ jwks: keys.jwks(), issuer: ISS, audience: AUD, clock });
  const token = await issue();
  const first = await v.verify(token);
  const second = await v.verify(token);
  assert.equal(second, first, 'the very same (cached) claims object');
  assert.ok(Object.isFrozen(second) && Object.isFrozen(second.roles));
});

test('cache: a cached token is refused once it expires (exp plus the skew, on the fake clock)', async () => {
  const v = createAccessTokenVerifier({ jwks: keys.jwks(), issuer: ISS, audience: AUD, clock, clockSkewSec: 30 });
  const token = await issue({ ttlSec: 60 });
  await v.verify(token);
  clock.advance(60_000 + 29_000);
  await v.verify(token); // within the skew
  clock.advance(2_000);
  await refused(token, 'PCL_ERR_TOKEN_EXPIRED', v);
});

test('cache: a new key set without the signing key refuses cached tokens at once', async () => {
  const v = createAccessTokenVerifier({ jwks: keys.jwks(), issuer: ISS, audience: AUD, clock });
  const token = await issue();
  await v.verify(token);
  const other = await generateKeyPair('ES256');
  v.setJwks({ keys: [{ ...(await exportJWK(other.publicKey)), kid: 'other', alg: 'ES256', use: 'sig' }] });
  await refused(token, 'PCL_ERR_TOKEN_SIGNATURE', v);
});

test('cache: revocation is asked on every call, cached or not', async () => {
  const revoked = new Set<string>();
  const v = createAccessTokenVerifier({ jwks: keys.jwks(), issuer: ISS, audience: AUD, clock, isRevoked: (c) => revoked.has(c.jti) });
  const token = await issue();
  const claims = await v.verify(token);
  revoked.add(claims.jti);
  await refused(token, 'PCL_ERR_TOKEN_REVOKED', v);
});

test('cache: bounded, and off with cacheSize 0', async () => {
  const v = createAccessTokenVerifier({ jwks: keys.jwks(), issuer: ISS, audience: AUD, clock, cacheSize: 2 });
  const [a, b, c] = [await issue(), await issue(), await issue()];
  const ca = await v.verify(a);
  await v.verify(b);
  await v.verify(c); // evicts a, the oldest
  assert.notEqual(await v.verify(a), ca, 'a was verified again, not served from the cache');
  const off = createAccessTokenVerifier({ jwks: keys.jwks(), issuer: ISS, audience: AUD, clock, cacheSize: 0 });
  assert.notEqual(await off.verify(a), await off.verify(a));
});

// ---- the plain JWT profile of an external issuer ----

test('profile jwt: a plain JWT with a one-string role claim verifies; the at+jwt profile refuses it', async () => {
  const plain = await signRaw({ iss: ISS, aud: AUD, sub: 'user-42', role: 'user', iat: nowSec(), exp: nowSec() + 300 }, { typ: 'JWT' });
  await refused(plain, 'PCL_ERR_TOKEN_CLAIMS');
  const external = createAccessTokenVerifier({ jwks: keys.jwks(), issuer: ISS, audience: AUD, clock, profile: 'jwt', rolesClaim: 'role' });
  const c = await external.verify(plain);
  assert.equal(c.sub, 'user-42');
  assert.deepEqual(c.roles, ['user']);
  assert.equal(c.client_id, '');
  // Everything else is checked as strictly as ever.
  await refused(await signRaw({ iss: ISS, aud: 'other', sub: 'x', iat: nowSec(), exp: nowSec() + 300 }, { typ: 'JWT' }), 'PCL_ERR_TOKEN_AUDIENCE', external);
  await refused(await signRaw({ iss: ISS, aud: AUD, sub: 'x', role: 7, iat: nowSec(), exp: nowSec() + 300 }, { typ: 'JWT' }), 'PCL_ERR_TOKEN_CLAIMS', external);
});
