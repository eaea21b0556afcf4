// POST /oauth2/introspect (RFC 7662) driven with openid-client's tokenIntrospection: only workloads
// (certificate) and the admin token may ask; an active token's claims, or exactly {active:false}
// whatever made it inactive; access tokens by signature, refresh tokens by hash.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { SignJWT, generateKeyPair } from 'jose';
import * as oidc from 'openid-client';
import { AUD, CLI, ORDERS, discover, jwtPayload, loginWithOpenIdClient, post, startHarness, storeState, type Harness } from './oauth-harness.js';

let h: Harness;
let cli: oidc.Configuration;
/** A protected resource asking with its workload certificate. */
let resource: oidc.Configuration;
/** The operator asking with the admin token. */
let operator: oidc.Configuration;

before(async () => {
  h = await startHarness();
  cli = await discover(h, CLI, oidc.None());
  resource = await discover(h, ORDERS, oidc.TlsClientAuth());
  operator = await discover(h, 'admin', oidc.None(), undefined, { authorization: `Bearer ${h.adminToken}` });
});
after(() => h.close());

async function asResource<T>(fn: () => Promise<T>): Promise<T> {
  h.peer = ORDERS;
  try {
    return await fn();
  } finally {
    h.peer = undefined;
  }
}

test('an active access token: its claims (§2.2), for a workload and for the operator', async () => {
  const t = await loginWithOpenIdClient(h, cli, 'orders:read');
  const p = jwtPayload(t.access_token);
  const expected = {
    active: true, iss: h.url, sub: 'alice', aud: AUD, client_id: CLI, scope: 'orders:read', token_type: 'Bearer',
    exp: p.exp, iat: p.iat, nbf: p.nbf, jti: p.jti, roles: ['customer'], attrs: { tier: 'gold' },
  };
  assert.deepEqual({ ...(await asResource(() => oidc.tokenIntrospection(resource, t.access_token))) }, expected);
  assert.deepEqual({ ...(await oidc.tokenIntrospection(operator, t.access_token, { token_type_hint: 'access_token' })) }, expected);
});

test('inactive for every reason, with the identical answer {active:false}', async () => {
  const live = await loginWithOpenIdClient(h, cli, '');
  const revoked = await loginWithOpenIdClient(h, cli, '');
  await oidc.tokenRevocation(cli, revoked.access_token);
  // Our issuer and our claims, but a key that is not ours.
  const { privateKey } = await generateKeyPair('ES256');
  const foreign = await new SignJWT({ client_id: CLI }).setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid: 'x' }).setIssuer(h.url)
    .setSubject('alice').setAudience(AUD).setIssuedAt().setExpirationTime('5m').setJti('j1').sign(privateKey);
  const [head, body] = live.access_token.split('.');
  const tampered = `${head}.${Buffer.from(JSON.stringify({ ...jwtPayload(live.access_token), sub: 'admin' })).toString('base64url')}.${live.access_token.split('.')[2]}`;
  const expiring = await loginWithOpenIdClient(h, cli, '');
  await h.clock.advance(901_000);
  const tokens = [revoked.access_token, foreign, tampered, expiring.access_token, 'garbage', 'A'.repeat(43), `${head}.${body}`, 'x'.repeat(9000)];
  for (const token of tokens) {
    const a = await asResource(() => post(h, '/oauth2/introspect', { token }));
    assert.equal(a.status, 200);
    assert.equal(a.text, '{"active":false}');
    assert.equal(a.headers['cache-control'], 'no-store');
  }
  assert.deepEqual({ ...(await oidc.tokenIntrospection(operator, foreign)) }, { active: false });
});

test('refresh tokens by hash: active while usable, inactive once rotated or the user is disabled', async () => {
  const t = await loginWithOpenIdClient(h, cli, 'offline_access orders:read');
  const now = Math.floor(h.clock.now() / 1000);
  const info = await oidc.tokenIntrospection(operator, t.refresh_token ?? '', { token_type_hint: 'refresh_token' });
  assert.deepEqual({ ...info }, { active: true, iss: h.url, sub: 'alice', client_id: CLI, scope: 'offline_access orders:read', iat: now, exp: now + 7 * 86_400 });

  const r = await oidc.refreshTokenGrant(cli, t.refresh_token ?? '');
  assert.deepEqual({ ...(await oidc.tokenIntrospection(operator, t.refresh_token ?? '')) }, { active: false }, 'spent by rotation');
  assert.equal((await oidc.tokenIntrospection(operator, r.refresh_token ?? '')).active, true);
  await h.users.setDisabled('alice', true);
  try {
    assert.deepEqual({ ...(await oidc.tokenIntrospection(operator, r.refresh_token ?? '')) }, { active: false });
  } finally {
    await h.users.setDisabled('alice', false);
  }
});

test('only workloads and the operator may introspect (§2.1); refusals change nothing', async () => {
  const t = await loginWithOpenIdClient(h, cli, '');
  const before = await storeState(h);
  // A public client (or anyone) without a certificate or the admin token.
  const anon = await post(h, '/oauth2/introspect', { token: t.access_token, client_id: CLI });
  assert.equal(anon.status, 401);
  assert.equal(anon.json?.error, 'invalid_client');
  assert.equal(anon.headers['www-authenticate'], 'Bearer realm="portcullis"');
  assert.ok(!anon.text.includes('active'));
  const wrong = await post(h, '/oauth2/introspect', { token: t.access_token }, { authorization: 'Bearer pat_wrong' });
  assert.equal(wrong.status, 401);
  assert.equal(wrong.json?.error, 'invalid_token');
  assert.equal(wrong.headers['www-authenticate'], 'Bearer realm="portcullis", error="invalid_token"');
  await assert.rejects(oidc.tokenIntrospection(cli, t.access_token), (err: unknown) => err instanceof oidc.WWWAuthenticateChallengeError && err.status === 401);

  const missing = await asResource(() => post(h, '/oauth2/introspect', {}));
  assert.equal(missing.status, 400);
  assert.equal(missing.json?.error, 'invalid_request');
  const repeated = await asResource(() => post(h, '/oauth2/introspect', 'token=a&token=b'));
  assert.equal(repeated.json?.error, 'invalid_request');
  assert.equal(await storeState(h), before);
});
