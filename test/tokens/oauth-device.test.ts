// The device authorization grant (RFC 8628) over a real HTTP server (PGlite in memory, FakeClock):
// openid-client plays the device (initiateDeviceAuthorization, pollDeviceAuthorizationGrant), the
// verification page is posted as a browser would. Refusals: wrong, expired and used user codes,
// denial, slow_down, a replayed device code, clients without the grant, user-code guessing (per
// source and globally), the TOTP step and forged consent.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';
import { exportJWK, generateKeyPair, type CryptoKey } from 'jose';
import * as oidc from 'openid-client';
import { request } from 'undici';
import { FakeClock } from '../../src/core/clock.js';
import { subscribeAudit, type AdminEvent, type AuditEvent } from '../../src/core/events.js';
import { base32Decode, totp } from '../../src/identity/totp.js';
import { Users } from '../../src/identity/users.js';
import { KeyWrapper } from '../../src/kms/wrap.js';
import { MemoryStore } from '../../src/store/memory.js';
import type { PgliteStore } from '../../src/store/pglite.js';
import { NS } from '../../src/store/store.js';
import { DeviceAuthorizations, formatUserCode, normalizeUserCode, USER_CODE_ALPHABET } from '../../src/tokens/oauth/device-codes.js';
import { createOAuthRouter, DEVICE_CODE_GRANT, type OAuthClient } from '../../src/tokens/oauth/router.js';
import { UserCodeGuard } from '../../src/tokens/oauth/user-code-guard.js';
import { RevocationList } from '../../src/tokens/revocations.js';
import { SigningKeys } from '../../src/tokens/signing-keys.js';
import { createAccessTokenVerifier, type AccessTokenVerifier } from '../../src/tokens/verify.js';
import { newWrapper, openMemoryStore, startServer } from './setup.js';

const AUD = 'https://gateway.example';
const TV = 'tv-app';
const CLI = 'portcullis-cli';
const BATCH = 'batch';
const T0 = Date.UTC(2030, 0, 1);
const PER_SOURCE = 5;
const GLOBAL = 40;

let store: PgliteStore;
let server: { url: string; close: () => Promise<void> };
let users: Users;
let revocations: RevocationList;
let verifier: AccessTokenVerifier;
let tv: oidc.Configuration;
let cli: oidc.Configuration;
const clock = new FakeClock(T0);
/** The source address the (test) server reports for the next request. */
let source = '127.0.0.1';
const events: AdminEvent[] = [];
const unsubscribe = subscribeAudit((e: AuditEvent) => { if (e.type === 'admin') events.push(e); });
let rootKey: Buffer;
let batchKey: CryptoKey;
let batchJwk: Record<string, unknown>;

before(async () => {
  store = await openMemoryStore();
  const keys = await SigningKeys.loadOrCreate({ store, wrapper: newWrapper(), clock });
  users = new Users(store, { clock, sealer: new KeyWrapper(randomBytes(32)), privilegedRoles: ['admin'] });
  await users.add({ username: 'alice', password: 'alice-pw', roles: ['customer'], attributes: { tier: 'gold' } });
  await users.add({ username: 'root', password: 'root-pw', roles: ['admin'] });
  rootKey = base32Decode((await users.enrollTotp('root')).secretBase32);
  await users.confirmTotp('root', totp(rootKey, clock.now() - 30_000));
  await users.add({ username: 'rita', password: 'rita-pw', roles: ['admin'] });
  revocations = await RevocationList.open({ store, clock });
  const pair = await generateKeyPair('ES256', { extractable: true });
  batchKey = pair.privateKey;
  batchJwk = { ...(await exportJWK(pair.publicKey)), kid: 'batch-1', alg: 'ES256' };
  const clients: OAuthClient[] = [
    // A device-only public client: no redirect URI at all.
    { clientId: TV, type: 'public', redirectUris: [], scopes: ['offline_access', 'orders:read'], grantTypes: [DEVICE_CODE_GRANT] },
    { clientId: CLI, type: 'public', redirectUris: ['http://127.0.0.1/callback'], scopes: ['offline_access'] },
    { clientId: BATCH, type: 'confidential', jwks: { keys: [batchJwk] }, scopes: ['orders:read'], grantTypes: [DEVICE_CODE_GRANT] },
  ];
  let router: ReturnType<typeof createOAuthRouter> | undefined;
  server = await startServer((req, res) => {
    router ??= createOAuthRouter({
      issuer: server.url, audience: AUD, accessTokenTtl: 900, users, keys, store, clock, revocations, clients,
      deviceAuthorization: { userCodeLimits: { perSource: PER_SOURCE, global: GLOBAL } },
    });
    return router(req, res, { sourceAddress: source });
  });
  tv = await configFor(TV, oidc.None());
  cli = await configFor(CLI, oidc.None());
  verifier = createAccessTokenVerifier({ jwks: keys.jwks(), issuer: server.url, audience: AUD, clock, cacheSize: 0, isRevoked: (c) => revocations.isRevoked(c.jti) });
});
after(async () => {
  unsubscribe();
  await server.close();
  await store.close();
});

/** openid-client from our metadata; each token request moves the server's clock 5 s on (the device waited its interval). */
function configFor(clientId: string, auth: oidc.ClientAuth): Promise<oidc.Configuration> {
  const tick: oidc.CustomFetch = async (url, options) => {
    if (url.endsWith('/oauth2/token')) await clock.advance(5000);
    return fetch(url, options);
  };
  return oidc.discovery(new URL(server.url), clientId, undefined, auth, { execute: [oidc.allowInsecureRequests], [oidc.customFetch]: tick });
}

interface Page { status: number; headers: Record<string, string | string[] | undefined>; text: string }

/** The verification page, as a browser posts it. */
async function device(fields: Record<string, string>, from = source): Promise<Page> {
  source = from;
  const r = await request(`${server.url}/device`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(fields).toString() });
  return { status: r.statusCode, headers: r.headers, text: await r.body.text() };
}

const hidden = (p: Page, name: string): string => new RegExp(`name="${name}" value="([^"]+)"`).exec(p.text)?.[1] ?? '';

/** A person allows (or denies) a user code: code, sign-in, decision. Returns the last page. */
async function decide(userCode: string, decision: 'approve' | 'deny', from = '198.51.100.7', who = { username: 'alice', password: 'alice-pw' }): Promise<Page> {
  const entered = await device({ user_code: userCode }, from);
  assert.equal(entered.status, 200, entered.text);
  const signedIn = await device({ user_code: userCode, ...who }, from);
  assert.equal(signedIn.status, 200, signedIn.text);
  return device({ consent_ticket: hidden(signedIn, 'consent_ticket'), decision }, from);
}

/** One poll, as a device sends it (no waiting). */
async function pollOnce(config: oidc.Configuration, deviceCode: string): Promise<{ error: string } | oidc.TokenEndpointResponse> {
  try {
    return await oidc.genericGrantRequest(config, DEVICE_CODE_GRANT, { device_code: deviceCode });
  } catch (err) {
    if (err instanceof oidc.ResponseBodyError) return { error: err.error };
    throw err;
  }
}

const errorOf = (r: { error: string } | oidc.TokenEndpointResponse): string | undefined => ('error' in r && typeof r.error === 'string' ? r.error : undefined);

test('metadata lists the device authorization endpoint and the grant (RFC 8628 §4)', () => {
  const m = tv.serverMetadata();
  assert.equal(m.device_authorization_endpoint, `${server.url}/oauth2/device_authorization`);
  assert.ok(m.grant_types_supported?.includes(DEVICE_CODE_GRANT));
});

test('end to end with openid-client: the device polls, the person allows, tokens once; a replay revokes them', async () => {
  events.length = 0;
  const a = await oidc.initiateDeviceAuthorization(tv, { scope: 'offline_access orders:read' });
  assert.match(a.user_code, /^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$/);
  assert.match(a.device_code, /^[A-Za-z0-9_-]{43}$/);
  assert.equal(a.verification_uri, `${server.url}/device`);
  assert.equal(a.verification_uri_complete, `${server.url}/device?user_code=${a.user_code}`);
  assert.equal(a.expires_in, 600);
  assert.equal(a.interval, 5);
  // Only hashes are stored: neither code can be read back from the store.
  const stored = JSON.stringify(await store.list(NS.deviceCodes));
  for (const secret of [a.device_code, a.user_code, a.user_code.replace('-', '')]) assert.ok(!stored.includes(secret));

  // The device polls (openid-client waits `interval`; here 20 ms, while the server's clock moves 5 s a poll).
  const polled = oidc.pollDeviceAuthorizationGrant(tv, { ...a, interval: 0.02 });
  const prefilled = await request(String(a.verification_uri_complete));
  const prefilledText = await prefilled.body.text();
  assert.equal(prefilled.statusCode, 200);
  assert.match(prefilledText, new RegExp(`name="user_code" value="${a.user_code}"`), 'the complete URI prefills the code, the person still confirms it');
  assert.match(String(prefilled.headers['content-security-policy']), /form-action 'self'(;|$)/);
  assert.equal(prefilled.headers['x-frame-options'], 'DENY');

  // Case and the dash do not matter (RFC 8628 §6.1).
  const typed = a.user_code.replace('-', ' ').toLowerCase();
  const login = await device({ user_code: typed }, '198.51.100.7');
  assert.equal(login.status, 200);
  assert.match(login.text, /<strong>tv-app<\/strong>/, 'the page names the client');
  assert.match(login.text, /<code>orders:read<\/code>/, 'and the scope it asks for');
  assert.match(login.text, new RegExp(`shows the code ${a.user_code}`), 'and the code to compare with the device');
  assert.match(login.text, /name="password"/);
  const consent = await device({ user_code: hidden(login, 'user_code'), username: 'alice', password: 'alice-pw' }, '198.51.100.7');
  assert.equal(consent.status, 200);
  assert.match(consent.text, /value="approve"/);
  assert.match(consent.text, /value="deny"/);
  const done = await device({ consent_ticket: hidden(consent, 'consent_ticket'), decision: 'approve' }, '198.51.100.7');
  assert.equal(done.status, 200);
  assert.match(done.text, /Device connected/);

  const tokens = await polled;
  assert.equal(tokens.token_type.toLowerCase(), 'bearer');
  assert.equal(tokens.scope, 'offline_access orders:read');
  assert.ok(tokens.refresh_token, 'offline_access: a refresh token');
  const claims = await verifier.verify(tokens.access_token);
  assert.deepEqual([claims.sub, claims.client_id, claims.scope], ['alice', TV, 'orders:read']);
  assert.deepEqual(claims.roles, ['customer']);
  assert.deepEqual(claims.attrs, { tier: 'gold' });
  const refreshed = await oidc.refreshTokenGrant(tv, tokens.refresh_token);
  assert.equal((await verifier.verify(refreshed.access_token)).sub, 'alice');

  // Audited like the other grants; no code or token in any event.
  const actions = events.map((e) => `${e.action}:${e.outcome}`);
  for (const want of ['oauth.device_authorization:success', 'oauth.login:success', 'oauth.device.decision:success', 'oauth.token:success']) assert.ok(actions.includes(want), want);
  assert.equal(events.find((e) => e.action === 'oauth.login')?.detail['flow'], 'device');
  assert.ok(!events.some((e) => e.action === 'oauth.token' && e.detail.error === 'authorization_pending'), 'pending polls are not audited');
  const all = JSON.stringify(events);
  for (const secret of [a.device_code, a.user_code, tokens.access_token, tokens.refresh_token]) assert.ok(!all.includes(secret));

  // Exactly once: the same device code again is invalid_grant, and what it issued is revoked.
  assert.equal(errorOf(await pollOnce(tv, a.device_code)), 'invalid_grant');
  await assert.rejects(verifier.verify(tokens.access_token), { code: 'PCL_ERR_TOKEN_REVOKED' });
  await assert.rejects(verifier.verify(refreshed.access_token), { code: 'PCL_ERR_TOKEN_REVOKED' }, 'the refresh family with it');
  assert.equal((await oauthErrorOf(oidc.refreshTokenGrant(tv, refreshed.refresh_token ?? ''))), 'invalid_grant');
  // The user code is spent too.
  assert.equal((await device({ user_code: a.user_code }, '198.51.100.8')).status, 400);
});

async function oauthErrorOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    if (err instanceof oidc.ResponseBodyError) return err.error;
    throw err;
  }
  return 'none';
}

test('authorization_pending, then slow_down when polled sooner than the interval; each slow_down adds 5 s for good', async () => {
  const a = await oidc.initiateDeviceAuthorization(tv, { scope: 'orders:read' });
  const raw = (over: Record<string, string> = {}): Promise<Response> => fetch(`${server.url}/oauth2/token`, {
    method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: DEVICE_CODE_GRANT, device_code: a.device_code, client_id: TV, ...over }).toString(),
  });
  const err = async (r: Promise<Response>): Promise<string> => ((await (await r).json()) as { error: string }).error; // RFC 6749 §5.2 body
  assert.equal(await err(raw()), 'authorization_pending');
  assert.equal(await err(raw()), 'slow_down', 'at once again: too fast; the interval is 10 s now');
  await clock.advance(5000);
  assert.equal(await err(raw()), 'slow_down', '5 s later is too fast too; 15 s now');
  await clock.advance(15_000);
  assert.equal(await err(raw()), 'authorization_pending', 'waited the interval');
  await clock.advance(10_000);
  assert.equal(await err(raw()), 'slow_down', 'the interval stays 15 s: 10 s is too fast (and it becomes 20)');
  // openid-client sees the same.
  await clock.advance(20_000);
  const viaLib = await oidc.genericGrantRequest(tv, DEVICE_CODE_GRANT, { device_code: a.device_code }).catch((e: unknown) => e);
  assert.ok(viaLib instanceof oidc.ResponseBodyError && viaLib.error === 'authorization_pending');
});

test('denied: access_denied, and it stays denied; the decision cannot be taken twice', async () => {
  const a = await oidc.initiateDeviceAuthorization(tv, {});
  const page = await decide(a.user_code, 'deny');
  assert.equal(page.status, 200);
  assert.match(page.text, /Request denied/);
  assert.equal(errorOf(await pollOnce(tv, a.device_code)), 'access_denied');
  assert.equal(errorOf(await pollOnce(tv, a.device_code)), 'access_denied');
  await assert.rejects(oidc.pollDeviceAuthorizationGrant(tv, { ...a, interval: 0.01 }), (e: unknown) => e instanceof oidc.ResponseBodyError && e.error === 'access_denied');
  assert.equal((await device({ user_code: a.user_code }, '198.51.100.9')).status, 400, 'the user code is spent');
});

test('expired: expired_token for the device, the wrong-code page for the person', async () => {
  const a = await oidc.initiateDeviceAuthorization(tv, {});
  const login = await device({ user_code: a.user_code }, '198.51.100.10');
  assert.equal(login.status, 200);
  await clock.advance(600_000);
  assert.equal(errorOf(await pollOnce(tv, a.device_code)), 'expired_token');
  const late = await device({ user_code: a.user_code }, '198.51.100.10');
  assert.equal(late.status, 400);
  assert.match(late.text, /wrong or has expired/);
  // Signing in on the page opened before the expiry does not help either.
  const signIn = await device({ user_code: a.user_code, username: 'alice', password: 'alice-pw' }, '198.51.100.10');
  assert.equal(signIn.status, 400);
});

test('a consent ticket is the only way to decide: forged, replayed or another form get nothing', async () => {
  const a = await oidc.initiateDeviceAuthorization(tv, {});
  const before = JSON.stringify(await store.list(NS.deviceCodes));
  for (const forged of [{ consent_ticket: randomBytes(32).toString('base64url'), decision: 'approve' }, { consent_ticket: 'x', decision: 'approve' }]) {
    const r = await device(forged, '198.51.100.11');
    assert.equal(r.status, 400);
  }
  assert.equal(JSON.stringify(await store.list(NS.deviceCodes)), before, 'a forged decision changed nothing');
  // The user code alone with a decision (a cross-site post without credentials) is only the code step.
  const noTicket = await device({ user_code: a.user_code, decision: 'approve' }, '198.51.100.11');
  assert.equal(noTicket.status, 200);
  assert.match(noTicket.text, /name="password"/);
  const signedIn = await device({ user_code: a.user_code, username: 'alice', password: 'alice-pw' }, '198.51.100.11');
  const ticket = hidden(signedIn, 'consent_ticket');
  assert.equal((await device({ consent_ticket: ticket, decision: 'maybe' }, '198.51.100.11')).status, 400);
  assert.equal((await device({ consent_ticket: ticket, decision: 'approve' }, '198.51.100.11')).status, 200);
  assert.equal((await device({ consent_ticket: ticket, decision: 'deny' }, '198.51.100.11')).status, 400, 'a ticket works once');
  assert.equal(errorOf(await pollOnce(tv, a.device_code)), undefined, 'the first decision stands');
});

test('the sign-in is the authorize page\'s: wrong password, throttling, TOTP step, privileged role without a second factor', async () => {
  const a = await oidc.initiateDeviceAuthorization(tv, { scope: 'orders:read' });
  const from = '203.0.113.40';
  const wrong = await device({ user_code: a.user_code, username: 'alice', password: 'nope' }, from);
  assert.equal(wrong.status, 401);
  assert.match(wrong.text, /Wrong username or password/);
  assert.equal((await device({ user_code: a.user_code, username: 'ghost', password: 'nope' }, from)).text, wrong.text, 'the same page for an unknown user');
  // A privileged role without a second factor: refused after the right password.
  const rita = await device({ user_code: a.user_code, username: 'rita', password: 'rita-pw' }, from);
  assert.equal(rita.status, 403);
  assert.match(rita.text, /totp-enroll/);
  // TOTP: the password answers the code form, bound to this user code.
  const step1 = await device({ user_code: a.user_code, username: 'root', password: 'root-pw' }, from);
  assert.equal(step1.status, 200);
  assert.match(step1.text, /autocomplete="one-time-code"/);
  assert.ok(!step1.text.includes('root-pw'));
  const challenge = hidden(step1, 'login_challenge');
  // Moved to another device's user code, the challenge is gone.
  const other = await oidc.initiateDeviceAuthorization(tv, {});
  const moved = await device({ user_code: other.user_code, login_challenge: challenge, code: totp(rootKey, clock.now()) }, from);
  assert.equal(moved.status, 401);
  assert.match(moved.text, /interrupted/);
  const step1b = await device({ user_code: a.user_code, username: 'root', password: 'root-pw' }, from);
  const badCode = await device({ user_code: a.user_code, login_challenge: hidden(step1b, 'login_challenge'), code: '000000' }, from);
  assert.equal(badCode.status, 401);
  const consent = await device({ user_code: a.user_code, login_challenge: hidden(step1b, 'login_challenge'), code: totp(rootKey, clock.now()) }, from);
  assert.equal(consent.status, 200);
  assert.match(consent.text, /act as <strong>root<\/strong>/);
  assert.equal((await device({ consent_ticket: hidden(consent, 'consent_ticket'), decision: 'approve' }, from)).status, 200);
  const tokens = await pollOnce(tv, a.device_code);
  assert.ok(!('error' in tokens));
  assert.equal((await verifier.verify(tokens.access_token)).sub, 'root');
  assert.equal(tokens.refresh_token, undefined, 'no offline_access asked: no refresh token');
  assert.equal(events.filter((e) => e.action === 'oauth.login' && e.outcome === 'success').at(-1)?.detail.secondFactor, 'totp');
});

test('clients without the grant are refused at both endpoints; another client\'s device code is invalid_grant', async () => {
  const before = JSON.stringify(await store.list(NS.deviceCodes));
  const refused = await oidc.initiateDeviceAuthorization(cli, {}).catch((e: unknown) => e);
  assert.ok(refused instanceof oidc.ResponseBodyError && refused.error === 'unauthorized_client');
  assert.equal(JSON.stringify(await store.list(NS.deviceCodes)), before, 'nothing stored');
  const a = await oidc.initiateDeviceAuthorization(tv, {});
  assert.equal(errorOf(await pollOnce(cli, a.device_code)), 'unauthorized_client');
  assert.equal((await oidc.initiateDeviceAuthorization(tv, { scope: 'admin' }).catch((e: unknown) => e) as oidc.ResponseBodyError).error, 'invalid_scope');
  // A confidential client authenticates with private_key_jwt, as at the token endpoint.
  // The assertion's times from the server's (fake) clock.
  const onFakeTime: oidc.ModifyAssertionFunction = (_header, payload) => {
    const now = Math.floor(clock.now() / 1000);
    Object.assign(payload, { iat: now, nbf: now, exp: now + 60 });
  };
  const batch = await configFor(BATCH, oidc.PrivateKeyJwt({ key: batchKey, kid: 'batch-1' }, { [oidc.modifyAssertion]: onFakeTime }));
  const b = await oidc.initiateDeviceAuthorization(batch, { scope: 'orders:read' });
  assert.equal(errorOf(await pollOnce(batch, a.device_code)), 'invalid_grant', 'the TV\'s code, polled by another client');
  assert.equal(errorOf(await pollOnce(tv, a.device_code)), 'authorization_pending', '...which left it alone');
  await decide(b.user_code, 'approve', '198.51.100.12');
  const tokens = await pollOnce(batch, b.device_code);
  assert.ok(!('error' in tokens));
  assert.deepEqual([(await verifier.verify(tokens.access_token)).sub, (await verifier.verify(tokens.access_token)).client_id], ['alice', BATCH]);
  // Unknown and malformed device codes.
  assert.equal(errorOf(await pollOnce(tv, randomBytes(32).toString('base64url'))), 'invalid_grant');
  assert.equal(errorOf(await pollOnce(tv, 'not-a-code')), 'invalid_grant');
});

test('user-code guessing is limited per source: then even the right code is refused unchecked, other sources are not slowed', async () => {
  const a = await oidc.initiateDeviceAuthorization(tv, {});
  const attacker = '192.0.2.50';
  // A right code from the same source in between does not reset the count.
  for (let i = 0; i < PER_SOURCE; i++) {
    assert.equal((await device({ user_code: 'BCDF-GHJK' }, attacker)).status, 400);
    if (i === 2) assert.equal((await device({ user_code: a.user_code }, attacker)).status, 200);
  }
  const blocked = await device({ user_code: a.user_code }, attacker);
  assert.equal(blocked.status, 429);
  assert.ok(Number(blocked.headers['retry-after']) > 0);
  assert.ok(!blocked.text.includes('name="password"'), 'not looked up');
  assert.equal((await device({ user_code: a.user_code }, '192.0.2.51')).status, 200, 'another address is not slowed down');
  const failures = events.filter((e) => e.action === 'oauth.device.verify');
  assert.ok(failures.some((e) => e.detail.code === 'PCL_ERR_USER_CODE_THROTTLED' && e.who.sourceAddress === attacker));
  await clock.advance(15 * 60_000);
  const b = await oidc.initiateDeviceAuthorization(tv, {});
  assert.equal((await device({ user_code: b.user_code }, attacker)).status, 200, 'after the window the source may try again');
});

test('user-code guessing is limited globally: many sources together hit the global limit', async () => {
  await clock.advance(15 * 60_000); // a fresh window
  const a = await oidc.initiateDeviceAuthorization(tv, {});
  let refusedAt = -1;
  for (let i = 0; i < GLOBAL + 5 && refusedAt < 0; i++) {
    const r = await device({ user_code: 'ZZZZ-ZZZZ' }, `10.${i >> 8}.${i & 255}.1`);
    if (r.status === 429) refusedAt = i;
  }
  assert.equal(refusedAt, GLOBAL, 'the global limit stops the distributed guesser');
  assert.equal((await device({ user_code: a.user_code }, '203.0.113.99')).status, 429, 'while it holds, nobody gets a lookup');
  await clock.advance(15 * 60_000);
  const b = await oidc.initiateDeviceAuthorization(tv, {});
  assert.equal((await device({ user_code: b.user_code }, '203.0.113.99')).status, 200);
});

test('user codes: RFC 8628 §6.1 alphabet and form; case, spaces and the dash ignored; anything else refused', () => {
  assert.equal(normalizeUserCode('wdjb-mjht'), 'WDJBMJHT');
  assert.equal(normalizeUserCode(' WDJB MJHT '), 'WDJBMJHT');
  assert.equal(formatUserCode('WDJBMJHT'), 'WDJB-MJHT');
  for (const bad of ['WDJB-MJH', 'WDJB-MJHTX', 'AEIO-UAEI', '1234-5678', 'WDJB_MJHT', 'W'.repeat(40), '']) assert.equal(normalizeUserCode(bad), undefined, bad);
  assert.equal(USER_CODE_ALPHABET.length, 20);
});

test('device authorizations are bounded: at maxPending the endpoint refuses until expired ones are swept', async () => {
  const memClock = new FakeClock(T0);
  const d = new DeviceAuthorizations(new MemoryStore(), memClock, { maxPending: 2, ttlSec: 60 });
  const codes = new Set<string>();
  for (let i = 0; i < 2; i++) {
    const issued = await d.issue(TV, []);
    assert.ok(issued);
    assert.ok([...issued.userCode.replace('-', '')].every((c) => USER_CODE_ALPHABET.includes(c)));
    codes.add(issued.userCode);
  }
  assert.equal(codes.size, 2);
  assert.equal(await d.issue(TV, []), undefined, 'full');
  await memClock.advance(60_000 + 10 * 60_000); // expired, and past the grace for late polls
  assert.ok(await d.issue(TV, []), 'the sweep made room');
  assert.throws(() => new DeviceAuthorizations(new MemoryStore(), memClock, { intervalSec: 0 }), { code: 'PCL_ERR_INVALID_ARGUMENT' });
});

test('the guard counts an attempt when it starts and takes it back when the code was right', () => {
  const g = new UserCodeGuard({ clock: new FakeClock(T0), perSource: 2, global: 100 });
  const first = g.attempt('192.0.2.1');
  const second = g.attempt('192.0.2.1');
  assert.ok(first.allowed && second.allowed);
  assert.equal(g.attempt('192.0.2.1').allowed, false, 'two in flight already count');
  first.succeeded();
  first.succeeded(); // settling twice changes nothing
  assert.equal(g.attempt('192.0.2.1').allowed, true);
  assert.equal(g.attempt('192.0.2.1').allowed, false);
});

test('registrations: grantTypes may list only the device grant; only a device client may have no redirect URI', async () => {
  const base = { issuer: server.url, audience: AUD, accessTokenTtl: 900, users, keys: await SigningKeys.loadOrCreate({ store: new MemoryStore(), wrapper: newWrapper(), clock }), store: new MemoryStore(), clock };
  assert.throws(() => createOAuthRouter({ ...base, clients: [{ clientId: 'x', type: 'public', redirectUris: ['http://127.0.0.1/cb'], grantTypes: ['client_credentials'] }] }), { code: 'PCL_ERR_INVALID_ARGUMENT' });
  assert.throws(() => createOAuthRouter({ ...base, clients: [{ clientId: 'x', type: 'public', redirectUris: [] }] }), { code: 'PCL_ERR_INVALID_ARGUMENT' });
  assert.doesNotThrow(() => createOAuthRouter({ ...base, clients: [{ clientId: 'x', type: 'public', redirectUris: [], grantTypes: [DEVICE_CODE_GRANT] }] }));
});
