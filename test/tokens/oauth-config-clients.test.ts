// Confidential clients declared in portcullis.yaml (tokens.clients), loaded through the config
// loader and registered as the control plane does (clientFromConfig), driven with openid-client:
// each gets tokens with its declared auth method (private_key_jwt, or tls_client_auth by its
// workload certificate), its scopes and its audience, and is refused (invalid_client, nothing
// written) with any other method.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey } from 'jose';
import * as oidc from 'openid-client';
import { parseConfig } from '../../src/core/config/load.js';
import { clientFromConfig, indexClients } from '../../src/tokens/oauth/clients.js';
import { createAccessTokenVerifier, type AccessTokenVerifier } from '../../src/tokens/verify.js';
import { AUD, CLI_CLIENT, discover, oauthError, ORDERS, post, startHarness, storeState, type Harness } from './oauth-harness.js';

const REPORTS_AUD = 'https://reports.internal.example';
const BILLING = 'spiffe://demo/shop/billing';
const ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';

let h: Harness;
let key: CryptoKey;
let reports: oidc.Configuration;
let billing: oidc.Configuration;
const verifierFor = (audience: string): AccessTokenVerifier => createAccessTokenVerifier({ jwks: h.keys.jwks(), issuer: h.url, audience, clock: h.clock, cacheSize: 0 });

before(async () => {
  const pair = await generateKeyPair('ES256', { extractable: true });
  key = pair.privateKey;
  const jwk = await exportJWK(pair.publicKey);
  const config = parseConfig(`
trustDomain: demo
tokens:
  clients:
    - clientId: reports
      jwks: { keys: [ { kty: EC, crv: P-256, x: ${jwk.x}, y: ${jwk.y}, kid: reports-1 } ] }
      scopes: [orders:read, orders:export]
      audience: ${REPORTS_AUD}
    - clientId: billing-batch
      authMethod: tls_client_auth
      spiffeId: ${BILLING}
      scopes: [invoices:write]
services:
  - { name: users, spiffeId: "spiffe://demo/users", upstream: "http://127.0.0.1:9101", sidecar: { listen: "127.0.0.1:15101", outbound: "127.0.0.1:16101" } }
`, 'clients.yaml');
  h = await startHarness({ clients: [CLI_CLIENT, ...config.tokens.clients.map(clientFromConfig)] });
  reports = await discover(h, 'reports', oidc.PrivateKeyJwt({ key, kid: 'reports-1' }));
  billing = await discover(h, 'billing-batch', oidc.TlsClientAuth());
});
after(() => h.close());

async function asPeer<T>(peer: string | undefined, fn: () => Promise<T>): Promise<T> {
  h.peer = peer;
  try {
    return await fn();
  } finally {
    h.peer = undefined;
  }
}

test('private_key_jwt client from the config: its scopes, its audience, its keys', async () => {
  const t = await oidc.clientCredentialsGrant(reports);
  assert.equal(t.scope, 'orders:read orders:export');
  const c = await verifierFor(REPORTS_AUD).verify(t.access_token);
  assert.deepEqual([c.sub, c.client_id, c.aud], ['reports', 'reports', REPORTS_AUD]);
  await assert.rejects(verifierFor(AUD).verify(t.access_token), { code: 'PCL_ERR_TOKEN_AUDIENCE' }, 'not a token for the gateway');
  assert.equal((await oauthError(oidc.clientCredentialsGrant(reports, { scope: 'invoices:write' }))).error, 'invalid_scope');
});

test('tls_client_auth client from the config: a token with the registered certificate, and only with it', async () => {
  const t = await asPeer(BILLING, () => oidc.clientCredentialsGrant(billing));
  assert.equal(t.scope, 'invoices:write');
  const c = await verifierFor(AUD).verify(t.access_token);
  assert.deepEqual([c.sub, c.client_id], ['billing-batch', 'billing-batch'], 'the registered client, not the bare workload');
  const before = await storeState(h);
  for (const peer of [undefined, ORDERS]) {
    assert.equal((await asPeer(peer, () => oauthError(oidc.clientCredentialsGrant(billing)))).error, 'invalid_client', `peer ${String(peer)}`);
  }
  assert.equal(await storeState(h), before, 'refusals write nothing');
});

test('the wrong method is refused: a key-pair client with a certificate or nothing, a certificate client with an assertion', async () => {
  const before = await storeState(h);
  // reports (private_key_jwt) presenting BILLING's certificate, or only its client_id.
  for (const peer of [BILLING, undefined]) {
    const a = await asPeer(peer, () => post(h, '/oauth2/token', { grant_type: 'client_credentials', client_id: 'reports' }));
    assert.deepEqual([a.status, a.json?.error], [401, 'invalid_client']);
  }
  // billing-batch (tls_client_auth) with a valid-looking assertion signed by reports' key: no keys of its own to check it with.
  const now = Math.floor(h.clock.now() / 1000);
  const assertion = await new SignJWT({ iss: 'billing-batch', sub: 'billing-batch', aud: h.url, iat: now, exp: now + 60, jti: randomUUID() })
    .setProtectedHeader({ alg: 'ES256', kid: 'reports-1' }).sign(key);
  const a = await asPeer(BILLING, () => post(h, '/oauth2/token', { grant_type: 'client_credentials', client_assertion_type: ASSERTION_TYPE, client_assertion: assertion }));
  assert.deepEqual([a.status, a.json?.error], [401, 'invalid_client']);
  // A client secret (HTTP Basic) is no method at all.
  const basic = await post(h, '/oauth2/token', { grant_type: 'client_credentials' }, { authorization: `Basic ${Buffer.from('reports:secret').toString('base64')}` });
  assert.deepEqual([basic.status, basic.json?.error], [401, 'invalid_client']);
  assert.equal(await storeState(h), before);
});

test('registrations are checked again where they are used: a confused one fails the start', () => {
  const jwks = { keys: [{ kty: 'OKP', crv: 'Ed25519', x: 'ONYPHXyyPAhcEaBg0f5HicZ0wrF75-H46x7OgFsCabo' }] };
  assert.throws(() => indexClients([{ clientId: 'x', type: 'confidential', authMethod: 'tls_client_auth', spiffeId: BILLING, jwks }]), { code: 'PCL_ERR_INVALID_ARGUMENT' });
  assert.throws(() => indexClients([{ clientId: 'x', type: 'confidential', authMethod: 'tls_client_auth' }]), { code: 'PCL_ERR_INVALID_ARGUMENT' });
  assert.throws(() => indexClients([{ clientId: 'x', type: 'confidential', spiffeId: BILLING, jwks }]), { code: 'PCL_ERR_INVALID_ARGUMENT' });
  assert.throws(() => indexClients([{ clientId: 'x', type: 'confidential', jwks, audience: 'two words' }]), { code: 'PCL_ERR_INVALID_ARGUMENT' });
  assert.throws(() => indexClients([{ clientId: 'x', type: 'confidential', authMethod: 'client_secret_basic' as 'tls_client_auth', spiffeId: BILLING }]), { code: 'PCL_ERR_INVALID_ARGUMENT' }); // an untyped registration
  assert.equal(indexClients([{ clientId: 'x', type: 'confidential', authMethod: 'tls_client_auth', spiffeId: BILLING }]).size, 1);
});
