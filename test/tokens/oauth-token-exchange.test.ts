// Token exchange (RFC 8693) driven with openid-client's genericGrantRequest: a workload (certificate)
// trades a user's access token for a narrower one — one allowed audience, a subset of the scope, no
// longer-lived than the original — with itself in `act`. Every refusal, and that it changes nothing.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { SignJWT, generateKeyPair } from 'jose';
import * as oidc from 'openid-client';
import { createAccessTokenVerifier } from '../../src/tokens/verify.js';
import { AUD, CLI, ORDERS, PAYMENTS, discover, jwtPayload, loginWithOpenIdClient, oauthError, post, startHarness, storeState, type Harness } from './oauth-harness.js';

const GRANT = 'urn:ietf:params:oauth:grant-type:token-exchange';
const AT = 'urn:ietf:params:oauth:token-type:access_token';
const LEDGER = 'https://ledger.internal';

let h: Harness;
let cli: oidc.Configuration;
let orders: oidc.Configuration;
let payments: oidc.Configuration;

before(async () => {
  h = await startHarness({ extra: { tokenExchange: { audiences: [PAYMENTS, LEDGER] } } });
  cli = await discover(h, CLI, oidc.None());
  orders = await discover(h, ORDERS, oidc.TlsClientAuth());
  payments = await discover(h, PAYMENTS, oidc.TlsClientAuth());
});
after(() => h.close());

/** The request as `as` (a workload) sends it over its certificate. */
async function exchange(as: string, config: oidc.Configuration, params: Record<string, string> | URLSearchParams): Promise<oidc.TokenEndpointResponse> {
  h.peer = as;
  try {
    return await oidc.genericGrantRequest(config, GRANT, params);
  } finally {
    h.peer = undefined;
  }
}

const userToken = async (scope = 'orders:read orders:write'): Promise<string> => (await loginWithOpenIdClient(h, cli, scope)).access_token;

test('metadata offers the grant when configured', async () => {
  const m = await (await fetch(`${h.url}/.well-known/oauth-authorization-server`)).json() as { grant_types_supported: string[] }; // RFC 8414 metadata
  assert.ok(m.grant_types_supported.includes(GRANT));
});

test('the exchanged token: same user, the workload in act, one audience, narrowed scope', async () => {
  const subject = await userToken();
  const r = await exchange(ORDERS, orders, { subject_token: subject, subject_token_type: AT, audience: PAYMENTS, scope: 'orders:read' });
  assert.equal(r.issued_token_type, AT);
  assert.equal(r.token_type.toLowerCase(), 'bearer');
  assert.equal(r.scope, 'orders:read');
  assert.equal(r.refresh_token, undefined);
  // The downstream service verifies it with its own audience; the gateway's audience does not accept it.
  const downstream = createAccessTokenVerifier({ jwks: h.keys.jwks(), issuer: h.url, audience: PAYMENTS, clock: h.clock });
  const c = await downstream.verify(r.access_token);
  assert.deepEqual([c.sub, c.client_id, c.aud, c.scope], ['alice', ORDERS, PAYMENTS, 'orders:read']);
  assert.deepEqual(c.roles, ['customer']);
  assert.deepEqual(c.attrs, { tier: 'gold' });
  assert.deepEqual(jwtPayload(r.access_token).act, { sub: ORDERS });
  const edge = createAccessTokenVerifier({ jwks: h.keys.jwks(), issuer: h.url, audience: AUD, clock: h.clock });
  await assert.rejects(edge.verify(r.access_token), { code: 'PCL_ERR_TOKEN_AUDIENCE' });

  // Without `scope`, the subject token's whole scope; `resource` (RFC 8707) works like audience.
  const all = await exchange(ORDERS, orders, { subject_token: subject, subject_token_type: AT, resource: LEDGER });
  assert.equal(all.scope, 'orders:read orders:write');
  assert.equal(jwtPayload(all.access_token).aud, LEDGER);
});

test('a chain: the next workload exchanges again, and act nests (§4.1)', async () => {
  const first = await exchange(ORDERS, orders, { subject_token: await userToken(), subject_token_type: AT, audience: PAYMENTS, scope: 'orders:read' });
  const second = await exchange(PAYMENTS, payments, { subject_token: first.access_token, subject_token_type: AT, audience: LEDGER });
  assert.deepEqual(jwtPayload(second.access_token).act, { sub: PAYMENTS, act: { sub: ORDERS } });
  assert.equal(jwtPayload(second.access_token).sub, 'alice');
  assert.equal(second.scope, 'orders:read');
  // A token meant for payments cannot be exchanged by orders.
  assert.equal((await oauthError(exchange(ORDERS, orders, { subject_token: first.access_token, subject_token_type: AT, audience: LEDGER }))).error, 'invalid_grant');
});

test('never outlives the subject token', async () => {
  const subject = await userToken();
  await h.clock.advance(800_000); // 100 s left of 900
  const r = await exchange(ORDERS, orders, { subject_token: subject, subject_token_type: AT, audience: PAYMENTS });
  assert.ok(r.expires_in !== undefined && r.expires_in <= 100 && r.expires_in > 0);
  assert.ok(Number(jwtPayload(r.access_token).exp) <= Number(jwtPayload(subject).exp));
});

test('refused: audience, scope, subject token, token types, client — each with its RFC code, nothing changed', async () => {
  const revoked = await userToken();
  await oidc.tokenRevocation(cli, revoked);
  const expired = await userToken();
  await h.clock.advance(901_000);
  const fresh = await userToken('orders:read');
  const { privateKey } = await generateKeyPair('ES256');
  const foreign = await new SignJWT({ client_id: CLI, scope: 'orders:read' }).setProtectedHeader({ alg: 'ES256', typ: 'at+jwt' }).setIssuer(h.url)
    .setSubject('alice').setAudience(AUD).setIssuedAt(Math.floor(h.clock.now() / 1000)).setExpirationTime(Math.floor(h.clock.now() / 1000) + 300).setJti('f1').sign(privateKey);
  const base = { subject_token: fresh, subject_token_type: AT, audience: PAYMENTS };
  const before = await storeState(h);

  const cases: [Record<string, string> | URLSearchParams, string][] = [
    [{ ...base, audience: 'https://elsewhere.example' }, 'invalid_target'],
    [new URLSearchParams([['subject_token', fresh], ['subject_token_type', AT], ['audience', PAYMENTS], ['audience', LEDGER]]), 'invalid_target'],
    [{ subject_token: fresh, subject_token_type: AT, resource: 'not a uri' }, 'invalid_target'],
    [{ subject_token: fresh, subject_token_type: AT, resource: `${LEDGER}#frag` }, 'invalid_target'],
    [{ ...base, scope: 'orders:write' }, 'invalid_scope'],
    [{ ...base, scope: 'orders:read admin' }, 'invalid_scope'],
    [{ ...base, subject_token: revoked }, 'invalid_grant'],
    [{ ...base, subject_token: expired }, 'invalid_grant'],
    [{ ...base, subject_token: foreign }, 'invalid_grant'],
    [{ ...base, subject_token: 'garbage' }, 'invalid_grant'],
    [{ ...base, subject_token_type: 'urn:ietf:params:oauth:token-type:refresh_token' }, 'unsupported_token_type'],
    [{ ...base, requested_token_type: 'urn:ietf:params:oauth:token-type:id_token' }, 'unsupported_token_type'],
    [{ ...base, actor_token: fresh, actor_token_type: AT }, 'invalid_request'],
    [{ subject_token: fresh, subject_token_type: AT }, 'invalid_request'],
    [{ audience: PAYMENTS, subject_token_type: AT }, 'invalid_request'],
  ];
  for (const [params, error] of cases) {
    assert.equal((await oauthError(exchange(ORDERS, orders, params))).error, error, String(new URLSearchParams(params)).slice(0, 120));
  }
  // Not a workload: a public client may not exchange; nobody at all is not authenticated.
  assert.equal((await oauthError(oidc.genericGrantRequest(cli, GRANT, base))).error, 'unauthorized_client');
  const anon = await post(h, '/oauth2/token', { grant_type: GRANT, ...base });
  assert.equal(anon.status, 401);
  assert.equal(anon.json?.error, 'invalid_client');
  assert.equal(await storeState(h), before);
  assert.ok((await exchange(ORDERS, orders, base)).access_token, 'the same subject token still exchanges');
});

test('off unless configured: unsupported_grant_type, and not in the metadata', async () => {
  const plain = await startHarness();
  try {
    const m = await (await fetch(`${plain.url}/.well-known/oauth-authorization-server`)).json() as { grant_types_supported: string[] }; // RFC 8414 metadata
    assert.ok(!m.grant_types_supported.includes(GRANT));
    plain.peer = ORDERS;
    const a = await post(plain, '/oauth2/token', { grant_type: GRANT, subject_token: 'x', subject_token_type: AT, audience: PAYMENTS });
    assert.equal(a.json?.error, 'unsupported_grant_type');
  } finally {
    await plain.close();
  }
});
