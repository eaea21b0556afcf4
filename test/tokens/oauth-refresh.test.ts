// Refresh tokens (RFC 6749 §6, RFC 9700 §4.14) driven with openid-client: issued with offline_access,
// rotated on every use, a reused token revokes its family, bound to the client, idle and absolute
// lifetimes, the user re-read at every refresh. Refused requests leave the store unchanged.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import * as oidc from 'openid-client';
import { subscribeAudit, type AdminEvent, type AuditEvent } from '../../src/core/events.js';
import { NS } from '../../src/store/store.js';
import { RefreshTokens } from '../../src/tokens/refresh-tokens.js';
import { createAccessTokenVerifier, type AccessTokenVerifier } from '../../src/tokens/verify.js';
import { AUD, CLI, CLI_CLIENT, REDIRECT, ORDERS, discover, jwtPayload, loginWithOpenIdClient, oauthError, post, startHarness, storeState, type Harness } from './oauth-harness.js';

const IDLE = 600;
const ABSOLUTE = 3600;
let h: Harness;
let cli: oidc.Configuration;
let other: oidc.Configuration;
let verifier: AccessTokenVerifier;
const events: AuditEvent[] = [];
const unsubscribe = subscribeAudit((e) => events.push(e));

before(async () => {
  h = await startHarness({
    clients: [CLI_CLIENT, { clientId: 'other-app', type: 'public', redirectUris: [REDIRECT], scopes: ['offline_access'] }],
    extra: { refreshTokenPolicy: { idleTtlSec: IDLE, absoluteTtlSec: ABSOLUTE } },
  });
  cli = await discover(h, CLI, oidc.None());
  other = await discover(h, 'other-app', oidc.None());
  verifier = createAccessTokenVerifier({ jwks: h.keys.jwks(), issuer: h.url, audience: AUD, clock: h.clock, cacheSize: 0, isRevoked: (c) => h.revocations.isRevoked(c.jti) });
});
after(async () => {
  unsubscribe();
  await h.close();
});

const login = (scope = 'offline_access orders:read'): Promise<oidc.TokenEndpointResponse> => loginWithOpenIdClient(h, cli, scope);
const refresh = (token: string, params?: Record<string, string>): Promise<oidc.TokenEndpointResponse> => oidc.refreshTokenGrant(cli, token, params);

test('offline_access gets a refresh token; only its SHA-256 is stored', async () => {
  const t = await login();
  assert.equal(t.token_type.toLowerCase(), 'bearer');
  assert.equal(t.scope, 'offline_access orders:read');
  assert.match(t.refresh_token ?? '', /^[A-Za-z0-9_-]{43}$/);
  // offline_access is about the grant: the access token carries the resource scopes only.
  const claims = await verifier.verify(t.access_token);
  assert.equal(claims.scope, 'orders:read');
  assert.equal(claims.sub, 'alice');
  const stored = JSON.stringify(await h.store.list(NS.refreshTokens));
  assert.ok(stored.length > 2);
  assert.ok(!stored.includes(t.refresh_token ?? '-'));
});

test('without offline_access there is no refresh token; an unregistered scope is refused at authorization', async () => {
  const t = await login('orders:read');
  assert.equal(t.refresh_token, undefined);
  assert.equal(t.scope, 'orders:read');
  await assert.rejects(login('orders:read admin'), (err: unknown) => err instanceof oidc.AuthorizationResponseError && err.error === 'invalid_scope');
  // The sign-in page shows what is asked for, and carries it into the form post.
  const page = await fetch(oidc.buildAuthorizationUrl(cli, { redirect_uri: REDIRECT, scope: 'offline_access orders:read', state: 's', code_challenge: 'c'.repeat(43), code_challenge_method: 'S256' }));
  const html = await page.text();
  assert.match(html, /name="scope" value="offline_access orders:read"/);
  assert.match(html, /Access requested: <code>offline_access<\/code>, <code>orders:read<\/code>/);
});

test('every refresh rotates: a new refresh token, the old one spent; the user is re-read', async () => {
  const first = await login();
  const r1 = await refresh(first.refresh_token ?? '');
  assert.ok(r1.refresh_token && r1.refresh_token !== first.refresh_token);
  const c1 = await verifier.verify(r1.access_token);
  assert.deepEqual([c1.sub, c1.client_id, c1.scope, c1.attrs?.tier], ['alice', CLI, 'orders:read', 'gold']);
  assert.deepEqual(c1.roles, ['customer']);

  // Roles changed since login: the next access token has the current ones.
  const rec = await h.store.get<Record<string, unknown>>(NS.users, 'alice');
  await h.store.put(NS.users, 'alice', { ...rec, roles: ['customer', 'support'] });
  try {
    const r2 = await refresh(r1.refresh_token);
    assert.deepEqual((await verifier.verify(r2.access_token)).roles, ['customer', 'support']);
    const success = events.filter((e): e is AdminEvent => e.type === 'admin' && e.action === 'oauth.token' && e.outcome === 'success' && e.detail.grant_type === 'refresh_token');
    assert.ok(success.length >= 2 && typeof success.at(-1)?.detail.refresh_family === 'string');
    assert.ok(!JSON.stringify(events).includes(r1.refresh_token) && !JSON.stringify(events).includes(r2.refresh_token ?? '-'));
  } finally {
    await h.store.put(NS.users, 'alice', rec);
  }
});

test('a reused refresh token is invalid_grant and revokes the family and its access tokens', async () => {
  const first = await login();
  const r1 = await refresh(first.refresh_token ?? '');
  const r2 = await refresh(r1.refresh_token ?? '');
  assert.ok(await verifier.verify(r2.access_token));

  // The first token again (an attacker's copy, or the client's): the family dies.
  assert.deepEqual(await oauthError(refresh(first.refresh_token ?? '')), { error: 'invalid_grant', status: 400 });
  assert.equal((await oauthError(refresh(r2.refresh_token ?? ''))).error, 'invalid_grant', 'the newest token of the family is revoked too');
  await assert.rejects(verifier.verify(r2.access_token), { code: 'PCL_ERR_TOKEN_REVOKED' });
  await assert.rejects(verifier.verify(r1.access_token), { code: 'PCL_ERR_TOKEN_REVOKED' });
  assert.ok(h.revocations.list().some((e) => e.jti === jwtPayload(r2.access_token).jti));
  // Another login is another family: unaffected.
  const fresh = await login();
  assert.ok((await refresh(fresh.refresh_token ?? '')).refresh_token);
});

test('two concurrent uses of one token: exactly one wins, and the race counts as reuse', async () => {
  const first = await login();
  const results = await Promise.allSettled([refresh(first.refresh_token ?? ''), refresh(first.refresh_token ?? '')]);
  const won = results.filter((r): r is PromiseFulfilledResult<oidc.TokenEndpointResponse> => r.status === 'fulfilled');
  assert.equal(won.length, 1);
  assert.equal((await oauthError(refresh(won[0]?.value.refresh_token ?? ''))).error, 'invalid_grant');
});

test('bound to its client: another client cannot use it, and trying changes nothing', async () => {
  const first = await login();
  const before = await storeState(h);
  assert.equal((await oauthError(oidc.refreshTokenGrant(other, first.refresh_token ?? ''))).error, 'invalid_grant');
  assert.equal(await storeState(h), before);
  assert.ok((await refresh(first.refresh_token ?? '')).refresh_token, 'still good for its own client');
});

test('scope may be narrowed at refresh, never widened', async () => {
  const first = await login('offline_access orders:read orders:write');
  const narrow = await refresh(first.refresh_token ?? '', { scope: 'orders:read' });
  assert.equal((await verifier.verify(narrow.access_token)).scope, 'orders:read');
  // The family keeps its scope: the next refresh without `scope` gets all of it again.
  const full = await refresh(narrow.refresh_token ?? '');
  assert.equal((await verifier.verify(full.access_token)).scope, 'orders:read orders:write');

  const small = await login('offline_access');
  const before = await storeState(h);
  assert.equal((await oauthError(refresh(small.refresh_token ?? '', { scope: 'orders:read' }))).error, 'invalid_scope');
  assert.equal(await storeState(h), before);
  assert.ok((await refresh(small.refresh_token ?? '')).refresh_token);
});

test('idle timeout: a token unused for longer than the idle period is refused', async () => {
  const first = await login();
  await h.clock.advance((IDLE - 1) * 1000);
  const r1 = await refresh(first.refresh_token ?? '');
  await h.clock.advance(IDLE * 1000);
  assert.equal((await oauthError(refresh(r1.refresh_token ?? ''))).error, 'invalid_grant');
});

test('absolute lifetime: the family ends however often it is used; purgeExpired then removes it', async () => {
  const first = await login();
  let token = first.refresh_token ?? '';
  for (let i = 0; i < 7; i++) {
    await h.clock.advance(500_000); // within the idle period every time
    token = (await refresh(token)).refresh_token ?? '';
  }
  await h.clock.advance(200_000); // 3700 s after login: past the absolute lifetime
  assert.equal((await oauthError(refresh(token))).error, 'invalid_grant');

  await h.clock.advance(ABSOLUTE * 1000); // every family so far is past its absolute expiry
  const stored = await h.store.list(NS.refreshTokens);
  assert.ok(stored.length > 0);
  const purger = new RefreshTokens({ store: h.store, clock: h.clock, revoker: h.revocations });
  assert.equal(await purger.purgeExpired(), stored.length);
  assert.deepEqual(await h.store.list(NS.refreshTokens), []);
  // The token service purges on its own too, at most hourly, when it starts a family.
  await login();
  await h.clock.advance(ABSOLUTE * 1000);
  await login();
  assert.deepEqual((await h.store.list(NS.refreshTokens)).map((r) => r.key[0]).sort(), ['f', 't'], 'only the newest family is left');
});

test('a disabled user gets invalid_grant at refresh; enabled again, the family works', async () => {
  await h.users.add({ username: 'bob', password: 'bob-secret-pw', roles: [] });
  const first = await loginWithOpenIdClient(h, cli, 'offline_access', { username: 'bob', password: 'bob-secret-pw' });
  await h.users.setDisabled('bob', true);
  const before = await storeState(h);
  assert.equal((await oauthError(refresh(first.refresh_token ?? ''))).error, 'invalid_grant');
  assert.equal(await storeState(h), before);
  await h.users.setDisabled('bob', false);
  assert.ok((await refresh(first.refresh_token ?? '')).access_token);
});

test('disabling a user revokes all their families in one operation: refused at /oauth2/token even once enabled again', async () => {
  await h.users.add({ username: 'cleo', password: 'cleo-secret-pw', roles: [] });
  const cleo = { username: 'cleo', password: 'cleo-secret-pw' };
  const laptop = await loginWithOpenIdClient(h, cli, 'offline_access orders:read', cleo);
  const phone = await loginWithOpenIdClient(h, cli, 'offline_access', cleo);
  const rotated = await refresh(phone.refresh_token ?? '');
  const someoneElse = await login();
  // What the users API does on disable (test/control/users-api.test.ts drives that path).
  await h.users.setDisabled('cleo', true);
  const sessions = new RefreshTokens({ store: h.store, clock: h.clock, revoker: h.revocations });
  assert.equal(await sessions.revokeUser('cleo'), 2, 'both sessions, counted once');
  assert.equal(await sessions.revokeUser('cleo'), 0, 'nothing left to revoke');
  await h.users.setDisabled('cleo', false);
  for (const t of [laptop.refresh_token, rotated.refresh_token]) {
    assert.equal((await oauthError(refresh(t ?? ''))).error, 'invalid_grant');
  }
  // The access tokens those families produced are revoked too (the gateway gets them in its snapshot).
  for (const t of [laptop.access_token, rotated.access_token]) {
    await assert.rejects(verifier.verify(t), { code: 'PCL_ERR_TOKEN_REVOKED' });
  }
  // Another user's session is untouched; cleo can sign in afresh.
  assert.ok((await refresh(someoneElse.refresh_token ?? '')).access_token);
  assert.ok((await loginWithOpenIdClient(h, cli, 'offline_access', cleo)).refresh_token);
});

test('refused refresh requests: the RFC code, no stack trace, store unchanged', async () => {
  const first = await login();
  const before = await storeState(h);
  const cases: [Record<string, string>, number, string][] = [
    [{ grant_type: 'refresh_token', client_id: CLI, refresh_token: 'A'.repeat(43) }, 400, 'invalid_grant'],
    [{ grant_type: 'refresh_token', client_id: CLI, refresh_token: 'not a token' }, 400, 'invalid_grant'],
    [{ grant_type: 'refresh_token', client_id: CLI }, 400, 'invalid_request'],
    [{ grant_type: 'refresh_token', client_id: 'nobody', refresh_token: first.refresh_token ?? '' }, 401, 'invalid_client'],
    [{ grant_type: 'refresh_token', refresh_token: first.refresh_token ?? '' }, 401, 'invalid_client'],
    [{ grant_type: 'refresh_token', client_id: CLI, refresh_token: first.refresh_token ?? '', scope: 'bad\\scope' }, 400, 'invalid_scope'],
  ];
  for (const [form, status, error] of cases) {
    const a = await post(h, '/oauth2/token', form);
    assert.equal(a.status, status, JSON.stringify(form));
    assert.equal(a.json?.error, error, JSON.stringify(form));
    assert.deepEqual(Object.keys(a.json ?? {}).sort(), ['error', 'error_description']);
    assert.equal(a.headers['cache-control'], 'no-store');
  }
  // A workload (certificate) is not a refresh-token client.
  h.peer = ORDERS;
  try {
    const w = await post(h, '/oauth2/token', { grant_type: 'refresh_token', refresh_token: first.refresh_token ?? '' });
    assert.equal(w.json?.error, 'unauthorized_client');
  } finally {
    h.peer = undefined;
  }
  assert.equal(await storeState(h), before);
  assert.ok((await refresh(first.refresh_token ?? '')).refresh_token, 'none of the refusals spent the token');
});
