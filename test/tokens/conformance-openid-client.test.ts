// Conformance of the token service with an independent client, openid-client v6, end to end: RFC 8414
// discovery from /.well-known/oauth-authorization-server, the authorization code flow with PKCE S256
// (RFC 7636) as openid-client drives it, the RFC 9207 `iss` check, refresh with offline_access and
// reuse refused (RFC 9700 §4.14.2), revocation (RFC 7009) and introspection (RFC 7662). Each step
// goes through openid-client's own request building and response validation, not hand-built requests.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import * as oidc from 'openid-client';
import { request } from 'undici';
import { isValidCodeVerifier, s256Challenge, verifyS256 } from '../../src/tokens/oauth/pkce.js';
import { createAccessTokenVerifier, type AccessTokenVerifier } from '../../src/tokens/verify.js';
import { AUD, CLI, ORDERS, REDIRECT, jwtPayload, oauthError, startHarness, type Harness } from './oauth-harness.js';

// RFC 7636 Appendix B.
const RFC7636_VERIFIER = 'dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk';
const RFC7636_CHALLENGE = 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM';
const ALICE = { username: 'alice', password: 'alice-secret-pw' };

let h: Harness;
/** The CLI (public client, `none`), discovered from the RFC 8414 document. */
let cli: oidc.Configuration;
/** A protected resource (the orders workload, `tls_client_auth`): its requests come with h.peer set. */
let resource: oidc.Configuration;
let verifier: AccessTokenVerifier;
/** Every request openid-client sent, as "METHOD /path". */
const sent: string[] = [];

const recordingFetch: oidc.CustomFetch = (url, options) => {
  sent.push(`${options.method} ${new URL(url).pathname}`);
  return fetch(url, options);
};

/** RFC 8414 discovery (algorithm oauth2: /.well-known/oauth-authorization-server), plain http for loopback. */
const discoverOAuth2 = (clientId: string, auth: oidc.ClientAuth): Promise<oidc.Configuration> =>
  oidc.discovery(new URL(h.url), clientId, undefined, auth, { algorithm: 'oauth2', execute: [oidc.allowInsecureRequests], [oidc.customFetch]: recordingFetch });

before(async () => {
  h = await startHarness();
  sent.length = 0;
  cli = await discoverOAuth2(CLI, oidc.None());
  resource = await discoverOAuth2(ORDERS, oidc.TlsClientAuth());
  verifier = createAccessTokenVerifier({ jwks: h.keys.jwks(), issuer: h.url, audience: AUD, clock: h.clock, cacheSize: 0, isRevoked: (c) => h.revocations.isRevoked(c.jti) });
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

interface Authorization { verifier: string; state: string; callback: URL }

/**
 * openid-client builds the authorization URL; the "browser" opens it, then posts the sign-in form
 * with the hidden fields the page carries, and follows nothing: the 302 is the callback.
 */
async function authorize(scope: string): Promise<Authorization> {
  const pkce = oidc.randomPKCECodeVerifier();
  const state = oidc.randomState();
  const authUrl = oidc.buildAuthorizationUrl(cli, {
    redirect_uri: REDIRECT, scope, state,
    code_challenge: await oidc.calculatePKCECodeChallenge(pkce), code_challenge_method: 'S256',
  });
  const page = await request(authUrl);
  const html = await page.body.text();
  // A request refused before sign-in (RFC 6749 §4.1.2.1) goes straight back to the client.
  if (page.statusCode === 302) return { verifier: pkce, state, callback: new URL(String(page.headers.location)) };
  assert.equal(page.statusCode, 200);
  const form = new URLSearchParams();
  for (const m of html.matchAll(/<input type="hidden" name="([a-z_]+)" value="([^"]*)">/g)) form.set(m[1] ?? '', m[2] ?? '');
  assert.equal(form.get('code_challenge'), authUrl.searchParams.get('code_challenge'), 'the sign-in page carries the PKCE challenge');
  form.set('username', ALICE.username);
  form.set('password', ALICE.password);
  const login = await request(new URL(String(/action="([^"]+)"/.exec(html)?.[1]), h.url), {
    method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: form.toString(),
  });
  await login.body.dump();
  assert.equal(login.statusCode, 302);
  return { verifier: pkce, state, callback: new URL(String(login.headers.location)) };
}

const redeem = (a: Authorization, callback = a.callback): Promise<oidc.TokenEndpointResponse> =>
  oidc.authorizationCodeGrant(cli, callback, { pkceCodeVerifier: a.verifier, expectedState: a.state });

test('PKCE S256: the RFC 7636 Appendix B vector, and openid-client computes what we verify', async () => {
  assert.equal(s256Challenge(RFC7636_VERIFIER), RFC7636_CHALLENGE);
  assert.equal(verifyS256(RFC7636_VERIFIER, RFC7636_CHALLENGE), true);
  assert.equal(await oidc.calculatePKCECodeChallenge(RFC7636_VERIFIER), RFC7636_CHALLENGE);
  for (let i = 0; i < 8; i++) {
    const v = oidc.randomPKCECodeVerifier();
    assert.ok(isValidCodeVerifier(v));
    assert.ok(verifyS256(v, await oidc.calculatePKCECodeChallenge(v)));
    assert.equal(verifyS256(v, RFC7636_CHALLENGE), false);
  }
});

test('discovery (RFC 8414) from /.well-known/oauth-authorization-server', () => {
  assert.deepEqual(sent, ['GET /.well-known/oauth-authorization-server', 'GET /.well-known/oauth-authorization-server']);
  const m = cli.serverMetadata();
  assert.equal(m.issuer, h.url);
  assert.equal(m.authorization_endpoint, `${h.url}/oauth2/authorize`);
  assert.equal(m.token_endpoint, `${h.url}/oauth2/token`);
  assert.equal(m.revocation_endpoint, `${h.url}/oauth2/revoke`);
  assert.equal(m.introspection_endpoint, `${h.url}/oauth2/introspect`);
  assert.deepEqual(m.code_challenge_methods_supported, ['S256']);
  assert.equal(m.authorization_response_iss_parameter_supported, true);
  assert.ok(m.supportsPKCE('S256'));
  assert.equal(m.supportsPKCE('plain'), false);
});

test('authorization code + PKCE S256 driven by openid-client: a verified token for the user', async () => {
  const a = await authorize('orders:read');
  assert.equal(a.callback.searchParams.get('state'), a.state);
  assert.equal(a.callback.searchParams.get('iss'), h.url);
  sent.length = 0;
  const t = await redeem(a);
  assert.deepEqual(sent, ['POST /oauth2/token']);
  assert.equal(t.token_type.toLowerCase(), 'bearer');
  assert.equal(t.expires_in, 900);
  assert.equal(t.refresh_token, undefined, 'no offline_access, no refresh token');
  const claims = await verifier.verify(t.access_token);
  assert.deepEqual([claims.sub, claims.client_id, claims.scope], ['alice', CLI, 'orders:read']);
  assert.deepEqual(claims.roles, ['customer']);
  // The code worked once: openid-client presenting it again gets invalid_grant.
  assert.deepEqual(await oauthError(redeem(a)), { error: 'invalid_grant', status: 400 });
});

test('PKCE and state are enforced: a wrong verifier burns the code; a wrong state never reaches the server', async () => {
  const a = await authorize('orders:read');
  sent.length = 0;
  await assert.rejects(oidc.authorizationCodeGrant(cli, a.callback, { pkceCodeVerifier: a.verifier, expectedState: oidc.randomState() }));
  assert.deepEqual(sent, [], 'openid-client refused the callback itself');
  const other = oidc.randomPKCECodeVerifier();
  assert.deepEqual(await oauthError(oidc.authorizationCodeGrant(cli, a.callback, { pkceCodeVerifier: other, expectedState: a.state })), { error: 'invalid_grant', status: 400 });
  assert.equal((await oauthError(redeem(a))).error, 'invalid_grant', 'a failed redemption burns the code');
});

/** openid-client's refusal of an authorization response for its `iss` parameter (the reason is in `cause`). */
const issRefused = (err: unknown): boolean =>
  err instanceof oidc.ClientError && err.code === 'OAUTH_INVALID_RESPONSE' && err.cause instanceof Error && /"iss" \(issuer\)/.test(err.cause.message);

test('RFC 9207: a callback whose iss is missing or another issuer is refused; the genuine one is accepted', async () => {
  const a = await authorize('orders:read');
  const forged = new URL(a.callback);
  forged.searchParams.set('iss', 'https://evil.example');
  const stripped = new URL(a.callback);
  stripped.searchParams.delete('iss');
  sent.length = 0;
  await assert.rejects(redeem(a, forged), issRefused);
  await assert.rejects(redeem(a, stripped), issRefused);
  assert.deepEqual(sent, [], 'the mix-up defence is client-side: the code was never sent');
  assert.ok((await redeem(a)).access_token);
  // An error response carries iss too, so openid-client gets past the check to the error itself.
  await assert.rejects(authorize('admin').then((r) => redeem(r)), (err: unknown) => err instanceof oidc.AuthorizationResponseError && err.error === 'invalid_scope');
});

test('refresh with offline_access: rotated on use; a reused refresh token is refused and kills the family', async () => {
  const t = await redeem(await authorize('offline_access orders:read'));
  assert.equal(t.scope, 'offline_access orders:read');
  assert.ok(t.refresh_token);
  const r1 = await oidc.refreshTokenGrant(cli, t.refresh_token);
  assert.ok(r1.refresh_token && r1.refresh_token !== t.refresh_token);
  assert.equal((await verifier.verify(r1.access_token)).sub, 'alice');
  assert.deepEqual(await oauthError(oidc.refreshTokenGrant(cli, t.refresh_token)), { error: 'invalid_grant', status: 400 });
  assert.equal((await oauthError(oidc.refreshTokenGrant(cli, r1.refresh_token))).error, 'invalid_grant', 'the newest token of the family is revoked too');
  await assert.rejects(verifier.verify(r1.access_token), { code: 'PCL_ERR_TOKEN_REVOKED' });
});

test('revocation (RFC 7009): a refresh token ends its family, an access token joins the revocation list', async () => {
  const t = await redeem(await authorize('offline_access orders:read'));
  await oidc.tokenRevocation(cli, t.refresh_token ?? '');
  assert.equal((await oauthError(oidc.refreshTokenGrant(cli, t.refresh_token ?? ''))).error, 'invalid_grant');

  const u = await redeem(await authorize('orders:read'));
  assert.ok(await verifier.verify(u.access_token));
  await oidc.tokenRevocation(cli, u.access_token, { token_type_hint: 'access_token' });
  await assert.rejects(verifier.verify(u.access_token), { code: 'PCL_ERR_TOKEN_REVOKED' });
  assert.ok(h.revocations.list().some((e) => e.jti === jwtPayload(u.access_token).jti));
  // §2.2: revoking again, or revoking garbage, is a 200 all the same (openid-client resolves).
  await oidc.tokenRevocation(cli, u.access_token);
  await oidc.tokenRevocation(cli, 'not-a-token');
});

test('introspection (RFC 7662): the claims for a protected resource, {active:false} once revoked, 401 for the client', async () => {
  const t = await redeem(await authorize('offline_access orders:read'));
  const p = jwtPayload(t.access_token);
  const info = await asResource(() => oidc.tokenIntrospection(resource, t.access_token));
  assert.deepEqual({ ...info }, {
    active: true, iss: h.url, sub: 'alice', aud: AUD, client_id: CLI, scope: 'orders:read', token_type: 'Bearer',
    exp: p.exp, iat: p.iat, nbf: p.nbf, jti: p.jti, roles: ['customer'], attrs: { tier: 'gold' },
  });
  const refresh = await asResource(() => oidc.tokenIntrospection(resource, t.refresh_token ?? ''));
  assert.deepEqual([refresh.active, refresh.sub, refresh.client_id, refresh.scope], [true, 'alice', CLI, 'offline_access orders:read']);

  await oidc.tokenRevocation(cli, t.refresh_token ?? '');
  assert.deepEqual({ ...(await asResource(() => oidc.tokenIntrospection(resource, t.access_token))) }, { active: false });
  assert.deepEqual({ ...(await asResource(() => oidc.tokenIntrospection(resource, t.refresh_token ?? ''))) }, { active: false });
  // The public client is no protected resource: refused with a challenge, whatever the token.
  const refused = await oauthError(oidc.tokenIntrospection(cli, t.access_token));
  assert.equal(refused.status, 401);
});
