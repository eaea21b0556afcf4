// The OAuth endpoints over a real HTTP server: the PKCE flow end to end, and each way it must fail.
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { Readable } from 'node:stream';
import { after, before, test } from 'node:test';
import { request } from 'undici';
import { FakeClock } from '../../src/core/clock.js';
import { subscribeAudit, type AuditEvent } from '../../src/core/events.js';
import { Users } from '../../src/identity/users.js';
import type { PgliteStore } from '../../src/store/pglite.js';
import { loginWithPkce } from '../../src/tokens/client/pkce-login.js';
import { createOAuthRouter } from '../../src/tokens/oauth/router.js';
import { s256Challenge } from '../../src/tokens/oauth/pkce.js';
import { SigningKeys } from '../../src/tokens/signing-keys.js';
import { createAccessTokenVerifier, type AccessTokenVerifier } from '../../src/tokens/verify.js';
import { newWrapper, openMemoryStore, startServer } from './setup.js';

const AUD = 'https://gateway.example';
const CLIENT = 'portcullis-cli';
const REDIRECT = 'http://127.0.0.1/callback';
const SPIFFE = 'spiffe://demo/shop/orders';
const VERIFIER = 'dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk';

let store: PgliteStore;
let server: { url: string; close: () => Promise<void> };
let verifier: AccessTokenVerifier;
let users: Users;
/** What the (test) server "verified" in the TLS handshake for the next request. */
let peerSpiffeId: string | undefined;
const clock = new FakeClock();
const events: AuditEvent[] = [];
const unsubscribe = subscribeAudit((e) => events.push(e));

before(async () => {
  store = await openMemoryStore();
  const keys = await SigningKeys.loadOrCreate({ store, wrapper: newWrapper(), clock });
  users = new Users(store);
  await users.add({ username: 'alice', password: 'alice-secret-pw', roles: ['customer'] });
  await users.add({ username: 'dora', password: 'dora-secret-pw', roles: ['customer'] });
  await users.setDisabled('dora', true);
  // The issuer must be known before the router exists, and the port after the server listens:
  // one router per issuer, built lazily on first request.
  let router: ReturnType<typeof createOAuthRouter> | undefined;
  server = await startServer((req, res) => {
    router ??= createOAuthRouter({
      issuer: server.url, audience: AUD, accessTokenTtl: 900, users, keys, store, clock,
      clients: [{ clientId: CLIENT, type: 'public', redirectUris: [REDIRECT] }],
      hashId: async (v) => 'hmac:' + createHmac('sha256', 'test-audit-ids').update(v).digest('hex').slice(0, 32),
    });
    return router(req, res, { ...(peerSpiffeId ? { peerSpiffeId } : {}), sourceAddress: '127.0.0.1' });
  });
  verifier = createAccessTokenVerifier({ jwks: keys.jwks(), issuer: server.url, audience: AUD, clock });
});
after(async () => {
  unsubscribe();
  await server.close();
  await store.close();
});

interface Answer { status: number; headers: Record<string, string | string[] | undefined>; text: string; json: Record<string, unknown> | undefined }

async function call(method: 'GET' | 'POST', path: string, form?: Record<string, string>, headers: Record<string, string> = {}): Promise<Answer> {
  const r = await request(server.url + path, {
    method,
    headers: form ? { 'content-type': 'application/x-www-form-urlencoded', ...headers } : headers,
    ...(form ? { body: new URLSearchParams(form).toString() } : {}),
  });
  const text = await r.body.text();
  let json: Record<string, unknown> | undefined;
  try { json = JSON.parse(text) as Record<string, unknown>; } catch { json = undefined; } // shape asserted by each test
  return { status: r.statusCode, headers: r.headers, text, json };
}

const authParams = (over: Record<string, string | undefined> = {}): Record<string, string> => {
  const p: Record<string, string | undefined> = {
    response_type: 'code', client_id: CLIENT, redirect_uri: REDIRECT,
    code_challenge: s256Challenge(VERIFIER), code_challenge_method: 'S256', state: 'st-123', ...over,
  };
  return Object.fromEntries(Object.entries(p).filter((e): e is [string, string] => e[1] !== undefined));
};

const location = (a: Answer): URL => new URL(String(a.headers.location));

/** Logs alice in and returns the code from the redirect. */
async function getCode(over: Record<string, string | undefined> = {}): Promise<string> {
  const a = await call('POST', '/oauth2/authorize', { ...authParams(over), username: 'alice', password: 'alice-secret-pw' });
  assert.equal(a.status, 302, a.text);
  const code = location(a).searchParams.get('code');
  assert.ok(code);
  return code;
}

const exchange = (code: string, over: Record<string, string> = {}): Promise<Answer> =>
  call('POST', '/oauth2/token', { grant_type: 'authorization_code', client_id: CLIENT, code, redirect_uri: REDIRECT, code_verifier: VERIFIER, ...over });

test('metadata (RFC 8414) at both well-known paths, and the JWKS', async () => {
  for (const path of ['/.well-known/oauth-authorization-server', '/.well-known/openid-configuration']) {
    const m = await call('GET', path);
    assert.equal(m.status, 200);
    assert.deepEqual(m.json, {
      issuer: server.url,
      authorization_endpoint: `${server.url}/oauth2/authorize`,
      token_endpoint: `${server.url}/oauth2/token`,
      jwks_uri: `${server.url}/.well-known/jwks.json`,
      revocation_endpoint: `${server.url}/oauth2/revoke`,
      introspection_endpoint: `${server.url}/oauth2/introspect`,
      device_authorization_endpoint: `${server.url}/oauth2/device_authorization`,
      response_types_supported: ['code'],
      response_modes_supported: ['query'],
      // No token exchange: it is off unless configured.
      grant_types_supported: ['authorization_code', 'refresh_token', 'client_credentials', 'urn:ietf:params:oauth:grant-type:device_code'],
      code_challenge_methods_supported: ['S256'],
      token_endpoint_auth_methods_supported: ['none', 'private_key_jwt', 'tls_client_auth'],
      token_endpoint_auth_signing_alg_values_supported: ['ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519', 'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512'],
      revocation_endpoint_auth_methods_supported: ['none', 'private_key_jwt', 'tls_client_auth'],
      revocation_endpoint_auth_signing_alg_values_supported: ['ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519', 'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512'],
      introspection_endpoint_auth_methods_supported: ['tls_client_auth'],
      tls_client_certificate_bound_access_tokens: false,
      authorization_response_iss_parameter_supported: true,
    });
  }
  const j = await call('GET', '/.well-known/jwks.json');
  assert.equal(j.status, 200);
  const keys = j.json?.keys;
  // The current key, and (with key rotation) the next one published ahead of use.
  assert.ok(Array.isArray(keys) && keys.length >= 1);
  assert.ok(!j.text.includes('"d"'));
});

test('the full authorization code + PKCE flow through loginWithPkce', async () => {
  events.length = 0;
  const { accessToken, expiresIn } = await loginWithPkce({ controlUrl: server.url, clientId: CLIENT, username: 'alice', password: 'alice-secret-pw' });
  assert.equal(expiresIn, 900);
  const claims = await verifier.verify(accessToken);
  assert.equal(claims.sub, 'alice');
  assert.equal(claims.client_id, CLIENT);
  assert.deepEqual(claims.roles, ['customer']);

  const admin = events.filter((e) => e.type === 'admin');
  assert.deepEqual(admin.map((e) => `${e.action}:${e.outcome}`), ['oauth.login:success', 'oauth.token:success']);
  assert.equal(admin[0]?.who.sub, 'alice');
  assert.equal(admin[1]?.detail.jti, claims.jti);
  const logged = JSON.stringify(events);
  assert.ok(!logged.includes('alice-secret-pw') && !logged.includes(accessToken) && !logged.includes(accessToken.split('.')[2] ?? '-'));
});

test('loginWithPkce reports a wrong password and an unknown client with their codes', async () => {
  await assert.rejects(loginWithPkce({ controlUrl: server.url, clientId: CLIENT, username: 'alice', password: 'nope' }), { code: 'PCL_ERR_LOGIN_FAILED' });
  await assert.rejects(loginWithPkce({ controlUrl: server.url, clientId: 'who', username: 'alice', password: 'alice-secret-pw' }), { code: 'PCL_ERR_OAUTH_INVALID_CLIENT' });
});

test('GET /oauth2/authorize: an accessible form under a strict CSP', async () => {
  const a = await call('GET', `/oauth2/authorize?${new URLSearchParams(authParams()).toString()}`);
  assert.equal(a.status, 200);
  assert.equal(a.headers['x-frame-options'], 'DENY');
  assert.match(String(a.headers['content-security-policy']), /^default-src 'none'; style-src 'unsafe-inline'; .*form-action 'self'/);
  assert.equal(a.headers['cache-control'], 'no-store');
  assert.match(a.text, /<html lang="en">/);
  assert.match(a.text, /<label for="username">/);
  assert.match(a.text, /<label for="password">/);
  assert.match(a.text, /<form method="post" action="\/oauth2\/authorize">/);
  assert.ok(!/<script/i.test(a.text));
  assert.match(a.text, /name="state" value="st-123"/);
});

test('a loopback redirect URI on another port is accepted (RFC 8252 §7.3)', async () => {
  const a = await call('GET', `/oauth2/authorize?${new URLSearchParams(authParams({ redirect_uri: 'http://127.0.0.1:49152/callback' })).toString()}`);
  assert.equal(a.status, 200);
});

test('unknown client or unregistered redirect URI: an error page, never a redirect', async () => {
  for (const over of [{ client_id: 'nope' }, { client_id: undefined }, { redirect_uri: 'https://evil.example/callback' }, { redirect_uri: 'http://localhost/callback' }, { redirect_uri: undefined }]) {
    const a = await call('GET', `/oauth2/authorize?${new URLSearchParams(authParams(over)).toString()}`);
    assert.equal(a.status, 400, JSON.stringify(over));
    assert.equal(a.headers.location, undefined);
    assert.match(a.text, /cannot be completed/);
    const p = await call('POST', '/oauth2/authorize', { ...authParams(over), username: 'alice', password: 'alice-secret-pw' });
    assert.equal(p.status, 400);
    assert.equal(p.headers.location, undefined);
  }
});

test('plain or missing PKCE, wrong response_type, missing state: redirected back with an error and iss', async () => {
  const cases: [Record<string, string | undefined>, string][] = [
    [{ code_challenge_method: 'plain', code_challenge: VERIFIER }, 'invalid_request'],
    [{ code_challenge_method: undefined }, 'invalid_request'],
    [{ code_challenge: undefined }, 'invalid_request'],
    [{ code_challenge: 'short' }, 'invalid_request'],
    [{ response_type: 'token' }, 'unsupported_response_type'],
    [{ state: undefined }, 'invalid_request'],
    [{ scope: 'admin' }, 'invalid_scope'],
  ];
  for (const [over, error] of cases) {
    const a = await call('GET', `/oauth2/authorize?${new URLSearchParams(authParams(over)).toString()}`);
    assert.equal(a.status, 302, JSON.stringify(over));
    const l = location(a);
    assert.equal(`${l.origin}${l.pathname}`, REDIRECT);
    assert.equal(l.searchParams.get('error'), error);
    assert.equal(l.searchParams.get('iss'), server.url);
    assert.equal(l.searchParams.get('code'), null);
    assert.equal(l.searchParams.get('state'), over.state === undefined && 'state' in over ? null : 'st-123');
  }
  // The same checks on the form post: no code for a plain challenge even with the right password.
  const p = await call('POST', '/oauth2/authorize', { ...authParams({ code_challenge_method: 'plain', code_challenge: VERIFIER }), username: 'alice', password: 'alice-secret-pw' });
  assert.equal(p.status, 302);
  assert.equal(location(p).searchParams.get('code'), null);
});

test('POST /oauth2/authorize: the redirect carries code, state and iss; the code is stored hashed', async () => {
  const a = await call('POST', '/oauth2/authorize', { ...authParams(), username: 'alice', password: 'alice-secret-pw' });
  assert.equal(a.status, 302);
  const l = location(a);
  assert.equal(l.searchParams.get('state'), 'st-123');
  assert.equal(l.searchParams.get('iss'), server.url);
  const code = l.searchParams.get('code') ?? '';
  assert.match(code, /^[A-Za-z0-9_-]{43}$/);
  const stored = await store.list('auth_codes');
  assert.ok(stored.length > 0);
  assert.ok(!JSON.stringify(stored).includes(code));
});

test('wrong password, unknown user and disabled user get the same status and the same body', async () => {
  events.length = 0;
  const answers = await Promise.all([
    { username: 'alice', password: 'wrong' },
    { username: 'nobody', password: 'alice-secret-pw' },
    { username: 'dora', password: 'dora-secret-pw' },
    { username: 'NOT A NAME', password: 'x' },
  ].map((cred) => call('POST', '/oauth2/authorize', { ...authParams(), ...cred })));
  for (const a of answers) {
    assert.equal(a.status, 401);
    assert.equal(a.text, answers[0]?.text);
    assert.equal(a.headers.location, undefined);
  }
  assert.match(answers[0]?.text ?? '', /role="alert"/);
  const failures = events.filter((e) => e.type === 'admin' && e.action === 'oauth.login' && e.outcome === 'failure');
  assert.equal(failures.length, 4);
  // Account names are recorded as they are; a name that is no account (maybe a password typed into
  // the wrong field) only as its keyed hash.
  const subs = failures.map((e) => e.who.sub).sort();
  assert.deepEqual(subs.filter((s) => !s?.startsWith('hmac:')), ['alice', 'dora']);
  assert.equal(subs.filter((s) => /^hmac:[0-9a-f]{32}$/.test(s ?? '')).length, 2);
  assert.ok(!JSON.stringify(events).includes('nobody') && !JSON.stringify(events).includes('NOT A NAME'));
  assert.ok(!JSON.stringify(events).includes('alice-secret-pw') && !JSON.stringify(events).includes('dora-secret-pw'));
});

test('token response: RFC 6749 §5.1 with Cache-Control: no-store', async () => {
  const t = await exchange(await getCode());
  assert.equal(t.status, 200, t.text);
  assert.equal(t.headers['cache-control'], 'no-store');
  assert.equal(t.headers.pragma, 'no-cache');
  assert.equal(t.json?.token_type, 'Bearer');
  assert.equal(t.json?.expires_in, 900);
  assert.equal(typeof t.json?.access_token, 'string');
  assert.deepEqual(Object.keys(t.json ?? {}).sort(), ['access_token', 'expires_in', 'token_type']);
});

test('a wrong verifier is invalid_grant, and burns the code', async () => {
  const code = await getCode();
  const bad = await exchange(code, { code_verifier: VERIFIER.replace('d', 'e') });
  assert.equal(bad.status, 400);
  assert.equal(bad.json?.error, 'invalid_grant');
  assert.equal(bad.headers['cache-control'], 'no-store');
  assert.equal((await exchange(code)).json?.error, 'invalid_grant');
});

test('a code works once', async () => {
  const code = await getCode();
  assert.equal((await exchange(code)).status, 200);
  const again = await exchange(code);
  assert.equal(again.status, 400);
  assert.equal(again.json?.error, 'invalid_grant');
});

test('a code expires after 60 s', async () => {
  const code = await getCode();
  await clock.advance(60_000);
  assert.equal((await exchange(code)).json?.error, 'invalid_grant');
  const fresh = await getCode();
  await clock.advance(59_000);
  assert.equal((await exchange(fresh)).status, 200);
});

test('a redirect_uri other than the authorization request\'s is invalid_grant', async () => {
  const code = await getCode({ redirect_uri: 'http://127.0.0.1:5000/callback' });
  assert.equal((await exchange(code, { redirect_uri: REDIRECT })).json?.error, 'invalid_grant');
  const code2 = await getCode({ redirect_uri: 'http://127.0.0.1:5000/callback' });
  assert.equal((await exchange(code2, { redirect_uri: 'http://127.0.0.1:5000/callback' })).status, 200);
});

test('a user disabled between login and exchange gets no token', async () => {
  await users.add({ username: 'eve', password: 'eve-secret-pw', roles: [] });
  const a = await call('POST', '/oauth2/authorize', { ...authParams(), username: 'eve', password: 'eve-secret-pw' });
  const code = location(a).searchParams.get('code') ?? '';
  await users.setDisabled('eve', true);
  assert.equal((await exchange(code)).json?.error, 'invalid_grant');
});

test('token endpoint request errors', async () => {
  assert.equal((await exchange('x', { client_id: 'nope' })).status, 401);
  assert.equal((await exchange('x', { client_id: 'nope' })).json?.error, 'invalid_client');
  assert.equal((await call('POST', '/oauth2/token', { grant_type: 'password', username: 'alice', password: 'x' })).json?.error, 'unsupported_grant_type');
  assert.equal((await call('POST', '/oauth2/token', { client_id: CLIENT })).json?.error, 'invalid_request');
  assert.equal((await call('POST', '/oauth2/token', { grant_type: 'authorization_code', client_id: CLIENT })).json?.error, 'invalid_request');
  assert.equal((await call('POST', '/oauth2/token', { grant_type: 'client_credentials' }, { authorization: 'Basic eDp5' })).json?.error, 'invalid_client');
  const dup = await request(`${server.url}/oauth2/token`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'grant_type=client_credentials&grant_type=authorization_code' });
  assert.equal(((await dup.body.json()) as { error?: string }).error, 'invalid_request'); // RFC 6749 error body
  const json = await request(`${server.url}/oauth2/token`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
  await json.body.dump();
  assert.equal(json.statusCode, 415);
  const big = await request(`${server.url}/oauth2/token`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: `grant_type=${'a'.repeat(17 * 1024)}` });
  await big.body.dump();
  assert.equal(big.statusCode, 413);
  // Chunked (no Content-Length): refused while streaming, not after buffering everything.
  const body = Readable.from((function* () { for (let i = 0; i < 64; i++) yield Buffer.alloc(1024, 0x61); })());
  const streamed = await request(`${server.url}/oauth2/token`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body })
    .catch((err: unknown) => (err instanceof Error ? err : new Error(String(err))));
  if (!(streamed instanceof Error)) { // the server may close before the client finishes sending
    await streamed.body.dump();
    assert.equal(streamed.statusCode, 413);
  }
  const get = await call('GET', '/oauth2/token');
  assert.equal(get.status, 405);
  assert.equal(get.headers.allow, 'POST');
  assert.equal((await call('GET', '/not-oauth')).status, 404, 'paths it does not own are left to the caller');
});

test('client_credentials: only with a verified workload certificate (tls_client_auth)', async () => {
  events.length = 0;
  peerSpiffeId = undefined;
  const none = await call('POST', '/oauth2/token', { grant_type: 'client_credentials' });
  assert.equal(none.status, 401);
  assert.equal(none.json?.error, 'invalid_client');
  const claimed = await call('POST', '/oauth2/token', { grant_type: 'client_credentials', client_id: SPIFFE });
  assert.equal(claimed.json?.error, 'invalid_client', 'a client_id alone authenticates nothing');

  peerSpiffeId = SPIFFE;
  try {
    const ok = await call('POST', '/oauth2/token', { grant_type: 'client_credentials' });
    assert.equal(ok.status, 200, ok.text);
    const claims = await verifier.verify(String(ok.json?.access_token));
    assert.equal(claims.sub, SPIFFE);
    assert.equal(claims.client_id, SPIFFE);
    assert.deepEqual(claims.roles, []);
    assert.equal((await call('POST', '/oauth2/token', { grant_type: 'client_credentials', client_id: SPIFFE })).status, 200);
    const other = await call('POST', '/oauth2/token', { grant_type: 'client_credentials', client_id: 'spiffe://demo/shop/payments' });
    assert.equal(other.status, 401);
    assert.equal(other.json?.error, 'invalid_client');
  } finally {
    peerSpiffeId = undefined;
  }
  const issued = events.filter((e) => e.type === 'admin' && e.action === 'oauth.token' && e.outcome === 'success');
  assert.equal(issued.length, 2);
  assert.equal(issued[0]?.who.spiffeId, SPIFFE);
});
