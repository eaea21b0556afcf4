// The CLI's OAuth clients against the real endpoints (PGlite in memory, FakeClock): the PKCE login
// with the TOTP second step, the device login's polling (interval, slow_down, denial, expiry), and
// the session file (mode 0600, refresh before expiry, a reused refresh token ends the session,
// logout revokes). The device's waits are the test's: each moves the server's clock.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { request } from 'undici';
import { FakeClock } from '../../src/core/clock.js';
import { base32Decode, totp } from '../../src/identity/totp.js';
import { Users } from '../../src/identity/users.js';
import { KeyWrapper } from '../../src/kms/wrap.js';
import type { PgliteStore } from '../../src/store/pglite.js';
import { loginWithDevice, type DevicePrompt } from '../../src/tokens/client/device-login.js';
import { loginWithPkce } from '../../src/tokens/client/pkce-login.js';
import { defaultSessionFile, endSession, freshAccessToken, loadSession, saveSession, sessionFromTokens } from '../../src/tokens/client/session.js';
import { createOAuthRouter, DEVICE_CODE_GRANT } from '../../src/tokens/oauth/router.js';
import { RevocationList } from '../../src/tokens/revocations.js';
import { SigningKeys } from '../../src/tokens/signing-keys.js';
import { createAccessTokenVerifier, type AccessTokenVerifier } from '../../src/tokens/verify.js';
import { newWrapper, openMemoryStore, startServer } from './setup.js';

const CLI = 'portcullis-cli';
const AUD = 'https://gateway.example';
const T0 = Date.UTC(2030, 0, 1);

let store: PgliteStore;
let server: { url: string; close: () => Promise<void> };
let verifier: AccessTokenVerifier;
let dir: string;
let rootKey: Buffer;
const clock = new FakeClock(T0);

before(async () => {
  store = await openMemoryStore();
  const keys = await SigningKeys.loadOrCreate({ store, wrapper: newWrapper(), clock });
  const users = new Users(store, { clock, sealer: new KeyWrapper(randomBytes(32)), privilegedRoles: ['admin'] });
  await users.add({ username: 'alice', password: 'alice-pw', roles: ['customer'] });
  await users.add({ username: 'root', password: 'root-pw', roles: ['admin'] });
  rootKey = base32Decode((await users.enrollTotp('root')).secretBase32);
  await users.add({ username: 'rita', password: 'rita-pw', roles: ['admin'] });
  const revocations = await RevocationList.open({ store, clock });
  let router: ReturnType<typeof createOAuthRouter> | undefined;
  server = await startServer((req, res) => {
    router ??= createOAuthRouter({
      issuer: server.url, audience: AUD, accessTokenTtl: 900, users, keys, store, clock, revocations,
      clients: [{ clientId: CLI, type: 'public', redirectUris: ['http://127.0.0.1/callback'], scopes: ['offline_access'], grantTypes: [DEVICE_CODE_GRANT] }],
    });
    return router(req, res, { sourceAddress: '127.0.0.1' });
  });
  verifier = createAccessTokenVerifier({ jwks: keys.jwks(), issuer: server.url, audience: AUD, clock, cacheSize: 0, isRevoked: (c) => revocations.isRevoked(c.jti) });
  dir = mkdtempSync(join(tmpdir(), 'pcl-session-'));
});
after(async () => {
  await server.close();
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

async function page(fields: Record<string, string>): Promise<{ status: number; text: string }> {
  const r = await request(`${server.url}/device`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(fields).toString() });
  return { status: r.statusCode, text: await r.body.text() };
}

/** The person at the verification page. */
async function personDecides(userCode: string, decision: 'approve' | 'deny'): Promise<void> {
  const signedIn = await page({ user_code: userCode, username: 'alice', password: 'alice-pw' });
  const ticket = /name="consent_ticket" value="([^"]+)"/.exec(signedIn.text)?.[1] ?? '';
  assert.equal((await page({ consent_ticket: ticket, decision })).status, 200);
}

test('PKCE login: a TOTP account gets the code step; without a code, or with a wrong one, it is refused with its code', async () => {
  const base = { controlUrl: server.url, clientId: CLI, username: 'root', password: 'root-pw', scope: 'offline_access' };
  await assert.rejects(loginWithPkce(base), { code: 'PCL_ERR_TOTP_INVALID' });
  await assert.rejects(loginWithPkce({ ...base, totpCode: async () => '000000' }), { code: 'PCL_ERR_TOTP_INVALID' });
  let asked = 0;
  const t = await loginWithPkce({ ...base, totpCode: async () => { asked++; return totp(rootKey, clock.now()); } });
  assert.equal(asked, 1);
  assert.equal((await verifier.verify(t.accessToken)).sub, 'root');
  assert.ok(t.refreshToken, 'offline_access: a refresh token');
  // A privileged role without a second factor, and a wrong password.
  await assert.rejects(loginWithPkce({ ...base, username: 'rita', password: 'rita-pw' }), { code: 'PCL_ERR_TOTP_ENROLMENT_REQUIRED' });
  await assert.rejects(loginWithPkce({ ...base, username: 'alice', password: 'nope' }), (e: Error & { code?: string }) => e.code === 'PCL_ERR_LOGIN_FAILED' && !e.message.includes('nope'));
  // An account without a second factor is never asked.
  const plain = await loginWithPkce({ ...base, username: 'alice', password: 'alice-pw', totpCode: async () => assert.fail('not asked') });
  assert.equal((await verifier.verify(plain.accessToken)).sub, 'alice');
});

test('device login: waits the interval, adds 5 s at slow_down, returns the tokens once allowed', async () => {
  const waits: number[] = [];
  let prompt: DevicePrompt | undefined;
  const tokens = await loginWithDevice({
    controlUrl: server.url, clientId: CLI, scope: 'offline_access',
    prompt: (p) => { prompt = p; },
    now: () => clock.now(),
    sleep: async (ms) => {
      waits.push(ms);
      // The 2nd wait is cut short (the server sees a poll too soon: slow_down); the person allows at the 4th.
      if (waits.length !== 2) await clock.advance(ms);
      if (waits.length === 4 && prompt) await personDecides(prompt.userCode, 'approve');
    },
  });
  assert.deepEqual(waits, [5000, 5000, 10_000, 10_000]);
  assert.equal(prompt?.verificationUri, `${server.url}/device`);
  assert.equal(prompt?.verificationUriComplete, `${server.url}/device?user_code=${prompt?.userCode}`);
  assert.equal((await verifier.verify(tokens.accessToken)).sub, 'alice');
  assert.ok(tokens.refreshToken);
});

test('device login: denied, and expired, end with their codes', async () => {
  const deny = loginWithDevice({
    controlUrl: server.url, clientId: CLI,
    prompt: (p) => { void personDecides(p.userCode, 'deny'); },
    now: () => clock.now(),
    sleep: async (ms) => { await clock.advance(ms); await new Promise((r) => setTimeout(r, 50)); },
  });
  await assert.rejects(deny, { code: 'PCL_ERR_OAUTH_ACCESS_DENIED' });
  await assert.rejects(loginWithDevice({
    controlUrl: server.url, clientId: CLI, prompt: () => undefined, now: () => clock.now(), sleep: (ms) => clock.advance(ms * 20),
  }), { code: 'PCL_ERR_OAUTH_EXPIRED_TOKEN' });
  await assert.rejects(loginWithDevice({ controlUrl: server.url, clientId: 'nobody', prompt: () => assert.fail('no prompt') }), { code: 'PCL_ERR_OAUTH_INVALID_CLIENT' });
});

test('session file: mode 0600, refreshed when expired, a reused refresh token ends it, logout revokes', async () => {
  const file = join(dir, 'sessions', 'a.json');
  const now = (): number => clock.now();
  const ctx = { file, controlUrl: server.url, now };
  const t = await loginWithPkce({ controlUrl: server.url, clientId: CLI, username: 'alice', password: 'alice-pw', scope: 'offline_access' });
  saveSession(file, sessionFromTokens(server.url, CLI, t, clock.now()));
  assert.equal(statSync(file).mode & 0o777, 0o600);
  assert.equal(statSync(join(dir, 'sessions')).mode & 0o777, 0o700);

  assert.equal(await freshAccessToken(ctx), t.accessToken, 'still valid: no refresh');
  const before = join(dir, 'before.json');
  copyFileSync(file, before);
  await clock.advance(900_000 - 30_000); // less than a minute left: refreshed first
  const refreshed = await freshAccessToken(ctx);
  assert.notEqual(refreshed, t.accessToken);
  assert.equal((await verifier.verify(refreshed)).sub, 'alice');
  assert.notEqual(loadSession(file)?.refreshToken, t.refreshToken, 'the rotated refresh token is kept');
  assert.equal(statSync(file).mode & 0o777, 0o600);

  // The old file again (its refresh token spent): reuse ends the session, and the server revokes the family.
  copyFileSync(before, file);
  chmodSync(file, 0o600);
  await assert.rejects(freshAccessToken(ctx), { code: 'PCL_ERR_SESSION_EXPIRED' });
  assert.equal(existsSync(file), false, 'the ended session is deleted');
  await assert.rejects(verifier.verify(refreshed), { code: 'PCL_ERR_TOKEN_REVOKED' });
  await assert.rejects(freshAccessToken(ctx), { code: 'PCL_ERR_SESSION_EXPIRED' }, 'not signed in');

  // A session file others can read is refused, not used; one of another control plane too.
  const t2 = await loginWithPkce({ controlUrl: server.url, clientId: CLI, username: 'alice', password: 'alice-pw', scope: 'offline_access' });
  saveSession(file, sessionFromTokens(server.url, CLI, t2, clock.now()));
  chmodSync(file, 0o644);
  await assert.rejects(freshAccessToken(ctx), { code: 'PCL_ERR_INVALID_ARGUMENT' });
  chmodSync(file, 0o600);
  await assert.rejects(freshAccessToken({ ...ctx, controlUrl: 'https://elsewhere.example' }), { code: 'PCL_ERR_INVALID_ARGUMENT' });

  // Logout: the family is revoked at the server, the file deleted.
  assert.equal(await endSession(ctx), true);
  assert.equal(existsSync(file), false);
  await assert.rejects(verifier.verify(t2.accessToken), { code: 'PCL_ERR_TOKEN_REVOKED' });
  assert.equal(await endSession(ctx), false, 'nothing to end');
  assert.ok(!readFileSync(before, 'utf8').includes('alice-pw'), 'no password on disk');
});

test('the default session file is per control plane, under XDG_CONFIG_HOME, overridable', () => {
  const a = defaultSessionFile('https://a.example', { XDG_CONFIG_HOME: '/cfg' });
  assert.match(a, /^\/cfg\/portcullis\/sessions\/[0-9a-f]{16}\.json$/);
  assert.notEqual(a, defaultSessionFile('https://b.example', { XDG_CONFIG_HOME: '/cfg' }));
  assert.equal(defaultSessionFile('https://a.example', { PORTCULLIS_SESSION_FILE: '/x.json' }), '/x.json');
});
