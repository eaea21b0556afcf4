// private_key_jwt client authentication (RFC 7523 §2.2/§3, OIDC Core §9) for confidential machine
// clients, driven with openid-client's PrivateKeyJwt + clientCredentialsGrant; the refused paths with
// assertions built by hand (a conforming library never sends them). Each refusal is invalid_client
// and writes nothing; a jti works once.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose';
import * as oidc from 'openid-client';
import { FakeClock } from '../../src/core/clock.js';
import { MemoryStore } from '../../src/store/memory.js';
import { NS } from '../../src/store/store.js';
import { SeenAssertions } from '../../src/tokens/oauth/client-assertion.js';
import { indexClients } from '../../src/tokens/oauth/clients.js';
import { createAccessTokenVerifier, type AccessTokenVerifier } from '../../src/tokens/verify.js';
import { AUD, CLI, CLI_CLIENT, discover, jwtPayload, oauthError, post, startHarness, storeState, type Harness } from './oauth-harness.js';

const BATCH = 'billing-batch';
const ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';

let h: Harness;
let key: CryptoKey;
let publicJwk: JWK;
let batch: oidc.Configuration;
let verifier: AccessTokenVerifier;

before(async () => {
  const pair = await generateKeyPair('ES256', { extractable: true });
  key = pair.privateKey;
  publicJwk = { ...(await exportJWK(pair.publicKey)), kid: 'batch-1', alg: 'ES256', use: 'sig' };
  h = await startHarness({
    clients: [CLI_CLIENT, { clientId: BATCH, type: 'confidential', jwks: { keys: [publicJwk] }, scopes: ['invoices:read', 'invoices:write'] }],
  });
  batch = await discover(h, BATCH, oidc.PrivateKeyJwt({ key, kid: 'batch-1' }));
  verifier = createAccessTokenVerifier({ jwks: h.keys.jwks(), issuer: h.url, audience: AUD, clock: h.clock, cacheSize: 0, isRevoked: (c) => h.revocations.isRevoked(c.jti) });
});
after(() => h.close());

/** An assertion as the FakeClock sees time; `over` changes or (undefined) removes claims. */
async function assertion(over: Record<string, unknown> = {}, signWith: CryptoKey | Uint8Array = key, header: Record<string, unknown> = { alg: 'ES256', kid: 'batch-1' }): Promise<string> {
  const now = Math.floor(h.clock.now() / 1000);
  const claims: Record<string, unknown> = { iss: BATCH, sub: BATCH, aud: h.url, iat: now, exp: now + 60, jti: randomUUID(), ...over };
  for (const [k, v] of Object.entries(claims)) if (v === undefined) delete claims[k];
  return new SignJWT(claims).setProtectedHeader(header as { alg: string }).sign(signWith); // the header always carries alg
}

const cc = (a: string, extra: Record<string, string> = {}): ReturnType<typeof post> =>
  post(h, '/oauth2/token', { grant_type: 'client_credentials', client_assertion_type: ASSERTION_TYPE, client_assertion: a, ...extra });

test('client_credentials with private_key_jwt: the registered scopes, or a subset', async () => {
  const all = await oidc.clientCredentialsGrant(batch);
  assert.equal(all.scope, 'invoices:read invoices:write');
  assert.equal(all.refresh_token, undefined);
  const c = await verifier.verify(all.access_token);
  assert.deepEqual([c.sub, c.client_id, c.scope], [BATCH, BATCH, 'invoices:read invoices:write']);
  assert.deepEqual(c.roles, []);
  const some = await oidc.clientCredentialsGrant(batch, { scope: 'invoices:read' });
  assert.equal((await verifier.verify(some.access_token)).scope, 'invoices:read');
  assert.equal((await oauthError(oidc.clientCredentialsGrant(batch, { scope: 'invoices:read admin' }))).error, 'invalid_scope');
  // The token endpoint URL as aud works as well as the issuer (RFC 7523 §3).
  assert.equal((await cc(await assertion({ aud: `${h.url}/oauth2/token` }))).status, 200);
});

test('a jti works once (replay refused), and is kept only until the assertion expires', async () => {
  const a = await assertion();
  assert.equal((await cc(a)).status, 200);
  const replay = await cc(a);
  assert.equal(replay.status, 401);
  assert.equal(replay.json?.error, 'invalid_client');
  assert.ok((await h.store.list(NS.clientAssertions)).length > 0);
  assert.ok(!JSON.stringify(await h.store.list(NS.clientAssertions)).includes(String(jwtPayload(a).jti)), 'only a hash of the jti is kept');

  const clock = new FakeClock(1_700_000_000_000);
  const seen = new SeenAssertions(new MemoryStore(), clock);
  assert.equal(await seen.firstUse(BATCH, 'j', 1_700_000_060), true);
  assert.equal(await seen.firstUse(BATCH, 'j', 1_700_000_060), false);
  assert.equal(await seen.firstUse('other', 'j', 1_700_000_060), true, 'per client');
  assert.equal(await seen.purgeExpired(), 0);
  await clock.advance(120_000);
  assert.equal(await seen.purgeExpired(), 2);
});

test('every bad assertion is invalid_client (401) and writes nothing', async () => {
  const now = Math.floor(h.clock.now() / 1000);
  const other = (await generateKeyPair('ES256')).privateKey;
  const hmac = new TextEncoder().encode('a shared secret that nobody registered!');
  const cases: [string, Promise<string>, Record<string, string>?][] = [
    ['signed by another key', assertion({}, other)],
    ['HS256 (no secret is registered)', assertion({}, hmac, { alg: 'HS256' })],
    ['aud is someone else', assertion({ aud: 'https://other.example' })],
    ['aud is our revocation endpoint', assertion({ aud: `${h.url}/oauth2/revoke` })],
    ['aud names us and someone else', assertion({ aud: [h.url, 'https://other.example'] })],
    ['valid for 10 minutes', assertion({ exp: now + 600 })],
    ['expired', assertion({ iat: now - 600, exp: now - 120 })],
    ['not yet valid', assertion({ nbf: now + 120, exp: now + 180 })],
    ['no exp', assertion({ exp: undefined })],
    ['no jti', assertion({ jti: undefined })],
    ['sub is not the client', assertion({ sub: 'someone' })],
    ['iss is a public client', assertion({ iss: CLI, sub: CLI })],
    ['iss is unknown', assertion({ iss: 'ghost', sub: 'ghost' })],
    ['client_id differs from iss', assertion(), { client_id: CLI }],
    ['not a JWT', Promise.resolve('not-a-jwt')],
  ];
  const before = await storeState(h);
  for (const [why, a, extra] of cases) {
    const r = await cc(await a, extra);
    assert.equal(r.status, 401, why);
    assert.equal(r.json?.error, 'invalid_client', why);
  }
  const wrongType = await post(h, '/oauth2/token', { grant_type: 'client_credentials', client_assertion_type: 'urn:example:saml', client_assertion: await assertion() });
  assert.equal(wrongType.json?.error, 'invalid_client');
  const typeOnly = await post(h, '/oauth2/token', { grant_type: 'client_credentials', client_assertion_type: ASSERTION_TYPE });
  assert.equal(typeOnly.json?.error, 'invalid_request');
  // A confidential client naming itself without proving it.
  const bare = await post(h, '/oauth2/token', { grant_type: 'client_credentials', client_id: BATCH });
  assert.equal(bare.status, 401);
  assert.equal(bare.json?.error, 'invalid_client');
  assert.equal(await storeState(h), before);
});

test('a confidential client may not use the user grants', async () => {
  const r = await post(h, '/oauth2/token', { grant_type: 'authorization_code', code: 'x', redirect_uri: 'http://127.0.0.1/callback', code_verifier: 'v'.repeat(43), client_assertion_type: ASSERTION_TYPE, client_assertion: await assertion() });
  assert.equal(r.json?.error, 'unauthorized_client');
  const g = await fetch(`${h.url}/oauth2/authorize?${new URLSearchParams({ response_type: 'code', client_id: BATCH, redirect_uri: 'http://127.0.0.1/callback', state: 's', code_challenge: 'c'.repeat(43), code_challenge_method: 'S256' }).toString()}`, { redirect: 'manual' });
  assert.equal(g.status, 400, 'no login page for a machine client');
  // And a public client may not use client_credentials.
  assert.equal((await post(h, '/oauth2/token', { grant_type: 'client_credentials', client_id: CLI })).json?.error, 'unauthorized_client');
});

test('revocation with private_key_jwt: its own token', async () => {
  const t = await oidc.clientCredentialsGrant(batch);
  await oidc.tokenRevocation(batch, t.access_token);
  await assert.rejects(verifier.verify(t.access_token), { code: 'PCL_ERR_TOKEN_REVOKED' });
});

test('registration: public keys only, no refresh tokens, no SPIFFE IDs', () => {
  const bad: unknown[] = [
    { clientId: 'x', type: 'confidential', jwks: { keys: [{ ...publicJwk, d: 'AAAA' }] } },
    { clientId: 'x', type: 'confidential', jwks: { keys: [{ kty: 'oct', k: 'AAAA' }] } },
    { clientId: 'x', type: 'confidential', jwks: { keys: [] } },
    { clientId: 'x', type: 'confidential', jwks: { keys: [publicJwk] }, scopes: ['offline_access'] },
    { clientId: 'x', type: 'confidential', jwks: { keys: [publicJwk] }, scopes: ['bad scope'] },
    { clientId: 'spiffe://demo/x', type: 'confidential', jwks: { keys: [publicJwk] } },
    { clientId: 'x', type: 'secret', redirectUris: [] },
  ];
  for (const c of bad) assert.throws(() => indexClients([c as Parameters<typeof indexClients>[0][number]]), { code: 'PCL_ERR_INVALID_ARGUMENT' }, JSON.stringify(c)); // deliberately malformed registrations
  assert.equal(indexClients([{ clientId: 'x', type: 'confidential', jwks: { keys: [publicJwk] } }]).get('x')?.type, 'confidential');
});
