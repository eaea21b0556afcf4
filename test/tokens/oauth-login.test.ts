// The sign-in form over a real HTTP server (PGlite in memory, FakeClock): one page and status for
// every failure, throttled ones included (those add Retry-After and check nothing), the TOTP
// second step, and privileged roles without a second factor.
import assert from 'node:assert/strict';
import { createHmac, randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';
import { request } from 'undici';
import { FakeClock } from '../../src/core/clock.js';
import { subscribeAudit, type AdminEvent, type AuditEvent } from '../../src/core/events.js';
import { base32Decode, totp } from '../../src/identity/totp.js';
import { argon2Hasher, Users, type PasswordHasher } from '../../src/identity/users.js';
import { KeyWrapper } from '../../src/kms/wrap.js';
import type { PgliteStore } from '../../src/store/pglite.js';
import { NS } from '../../src/store/store.js';
import { s256Challenge } from '../../src/tokens/oauth/pkce.js';
import { createOAuthRouter } from '../../src/tokens/oauth/router.js';
import { SigningKeys } from '../../src/tokens/signing-keys.js';
import { newWrapper, openMemoryStore, startServer } from './setup.js';

const CLIENT = 'portcullis-cli';
const REDIRECT = 'http://127.0.0.1/callback';
const VERIFIER = 'dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk';
const T0 = Date.UTC(2030, 0, 1);

let store: PgliteStore;
let server: { url: string; close: () => Promise<void> };
let users: Users;
const clock = new FakeClock(T0);
const verifyCalls = { n: 0 };
const hasher: PasswordHasher = { ...argon2Hasher, verify: (h, p) => { verifyCalls.n++; return argon2Hasher.verify(h, p); } };
/** The source address the (test) server reports for the next request. */
let source = '127.0.0.1';
const events: AdminEvent[] = [];
const unsubscribe = subscribeAudit((e: AuditEvent) => { if (e.type === 'admin') events.push(e); });
/** TOTP keys of the users enrolled below. */
const keys = new Map<string, Buffer>();

before(async () => {
  store = await openMemoryStore();
  const signing = await SigningKeys.loadOrCreate({ store, wrapper: newWrapper(), clock });
  users = new Users(store, { clock, hasher, sealer: new KeyWrapper(randomBytes(32)), privilegedRoles: ['admin'] });
  await users.add({ username: 'alice', password: 'alice-pw', roles: ['customer'] });
  await users.add({ username: 'dora', password: 'dora-pw', roles: ['customer'] });
  await users.setDisabled('dora', true);
  for (const name of ['tom', 'tina', 'ted']) {
    await users.add({ username: name, password: `${name}-pw`, roles: ['customer'] });
    const key = base32Decode((await users.enrollTotp(name)).secretBase32);
    keys.set(name, key);
    await users.confirmTotp(name, totp(key, clock.now() - 30_000));
  }
  await users.add({ username: 'root', password: 'root-pw', roles: ['admin'] });
  await users.add({ username: 'rita', password: 'rita-pw', roles: ['admin'] });
  let router: ReturnType<typeof createOAuthRouter> | undefined;
  server = await startServer((req, res) => {
    router ??= createOAuthRouter({
      issuer: server.url, audience: 'https://gateway.example', accessTokenTtl: 900, users, keys: signing, store, clock,
      clients: [{ clientId: CLIENT, type: 'public', redirectUris: [REDIRECT] }],
      hashId: async (v) => 'hmac:' + createHmac('sha256', 'test').update(v).digest('hex').slice(0, 32),
    });
    return router(req, res, { sourceAddress: source });
  });
});
after(async () => {
  unsubscribe();
  await server.close();
  await store.close();
});

interface Answer { status: number; headers: Record<string, string | string[] | undefined>; text: string }

const authParams = (over: Record<string, string> = {}): Record<string, string> => ({
  response_type: 'code', client_id: CLIENT, redirect_uri: REDIRECT,
  code_challenge: s256Challenge(VERIFIER), code_challenge_method: 'S256', state: 'st-1', ...over,
});

async function post(fields: Record<string, string>, from = source): Promise<Answer> {
  source = from;
  const r = await request(`${server.url}/oauth2/authorize`, {
    method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ ...authParams(), ...fields }).toString(),
  });
  return { status: r.statusCode, headers: r.headers, text: await r.body.text() };
}

const login = (username: string, password: string, from?: string): Promise<Answer> => post({ username, password }, from);
const challengeOf = (a: Answer): string => /name="login_challenge" value="([^"]+)"/.exec(a.text)?.[1] ?? '';
const codeOf = (a: Answer): string | null => new URL(String(a.headers.location)).searchParams.get('code');
const lastFailure = (): AdminEvent | undefined => events.filter((e) => e.action === 'oauth.login' && e.outcome === 'failure').at(-1);

test('wrong password, unknown user, disabled user and a throttled attempt: one status, one page; throttled adds Retry-After and checks nothing', async () => {
  const from = '198.51.100.1';
  const answers: Answer[] = [];
  const calls: number[] = [];
  for (const [u, p] of [['alice', 'wrong'], ['nobody', 'alice-pw'], ['dora', 'dora-pw'], ['NOT A NAME', 'x']] as const) {
    const before = verifyCalls.n;
    answers.push(await login(u, p, from));
    calls.push(verifyCalls.n - before);
  }
  // Four more failures for alice from this network, then her RIGHT password is refused unchecked.
  for (let i = 0; i < 4; i++) await login('alice', `wrong-${i}`, from);
  const before = verifyCalls.n;
  const throttled = await login('alice', 'alice-pw', from);
  assert.equal(verifyCalls.n - before, 0, 'no password check while throttled');
  assert.deepEqual(calls, [1, 1, 1, 1], 'one hash verification for every kind of failure');
  for (const a of [...answers, throttled]) {
    assert.equal(a.status, 401);
    assert.equal(a.text, answers[0]?.text);
    assert.equal(a.headers.location, undefined);
  }
  for (const a of answers) assert.equal(a.headers['retry-after'], undefined);
  assert.equal(throttled.headers['retry-after'], '2');
  assert.equal(lastFailure()?.detail.code, 'PCL_ERR_LOGIN_THROTTLED');
  assert.equal(lastFailure()?.who.sub, 'alice');
});

test('an unknown name is throttled exactly like an account (no existence oracle), and audited only as its hash', async () => {
  const from = '198.51.100.2';
  for (let i = 0; i < 5; i++) await login('ghost', `pw-${i}`, from);
  const a = await login('ghost', 'pw', from);
  assert.equal(a.status, 401);
  assert.equal(a.headers['retry-after'], '2');
  assert.match(String(lastFailure()?.who.sub), /^hmac:[0-9a-f]{32}$/);
  assert.ok(!JSON.stringify(events).includes('ghost'));
});

test('the attacker\'s network is slowed down, the real user elsewhere is not; after the wait the password works', async () => {
  const attacker = '192.0.2.66';
  for (let i = 0; i < 6; i++) await login('alice', `guess-${i}`, attacker);
  assert.ok((await login('alice', 'alice-pw', attacker)).headers['retry-after']);
  const real = await login('alice', 'alice-pw', '203.0.113.10');
  assert.equal(real.status, 302);
  assert.ok(codeOf(real));
  await clock.advance(2000);
  const later = await login('alice', 'alice-pw', attacker);
  assert.equal(later.status, 302, 'after the wait the right password works');
});

test('TOTP user: the password step answers the code form (accessible, no password in it); the code completes the sign-in', async () => {
  events.length = 0;
  const step1 = await login('tom', 'tom-pw', '203.0.113.20');
  assert.equal(step1.status, 200);
  assert.match(step1.text, /<label for="code">One-time code<\/label>/);
  assert.match(step1.text, /<input type="text" id="code" name="code" inputmode="numeric" autocomplete="one-time-code"[^>]* required/);
  assert.match(step1.text, /aria-describedby="code-help"/);
  assert.ok(!step1.text.includes('tom-pw') && !step1.text.includes('name="password"'));
  const challenge = challengeOf(step1);
  assert.match(challenge, /^[A-Za-z0-9_-]{43}$/);
  assert.ok(!JSON.stringify(await store.list(NS.loginChallenges)).includes(challenge), 'only a hash of the challenge is stored');
  const key = keys.get('tom') ?? Buffer.alloc(0);
  const step2 = await post({ login_challenge: challenge, code: totp(key, clock.now()) }, '203.0.113.20');
  assert.equal(step2.status, 302, step2.text);
  assert.ok(codeOf(step2));
  const success = events.filter((e) => e.action === 'oauth.login' && e.outcome === 'success');
  assert.deepEqual(success.map((e) => [e.who.sub, e.detail.secondFactor]), [['tom', 'totp']]);
  // The challenge worked once.
  const again = await post({ login_challenge: challenge, code: totp(key, clock.now()) }, '203.0.113.20');
  assert.equal(again.status, 401);
  assert.match(again.text, /name="password"/, 'back to the password step');
});

test('TOTP: a wrong code keeps the challenge; a used code cannot sign in again (replay)', async () => {
  const key = keys.get('tina') ?? Buffer.alloc(0);
  const code = totp(key, clock.now());
  const step1 = await login('tina', 'tina-pw', '203.0.113.21');
  const challenge = challengeOf(step1);
  const wrong = await post({ login_challenge: challenge, code: code === '123456' ? '654321' : '123456' }, '203.0.113.21');
  assert.equal(wrong.status, 401);
  assert.match(wrong.text, /role="alert" id="code-error"/);
  assert.match(wrong.text, /aria-invalid="true"/);
  assert.equal(challengeOf(wrong), challenge);
  assert.equal(lastFailure()?.detail.reason, 'wrong one-time code');
  assert.equal((await post({ login_challenge: challenge, code }, '203.0.113.21')).status, 302);
  // Someone who saw the password and the code: the same code again is refused.
  const replay1 = await login('tina', 'tina-pw', '192.0.2.99');
  const replay = await post({ login_challenge: challengeOf(replay1), code }, '192.0.2.99');
  assert.equal(replay.status, 401);
  assert.match(replay.text, /id="code-error"/);
});

test('TOTP: a challenge is bound to its authorization request and expires after 5 minutes', async () => {
  const key = keys.get('tom') ?? Buffer.alloc(0);
  const step1 = await login('tom', 'tom-pw', '203.0.113.22');
  const moved = await post({ login_challenge: challengeOf(step1), code: totp(key, clock.now()), state: 'other-state' }, '203.0.113.22');
  assert.equal(moved.status, 401);
  assert.match(moved.text, /interrupted or took too long/);
  assert.equal((await post({ login_challenge: 'x'.repeat(43), code: '123456' })).status, 401);
  const late = await login('tom', 'tom-pw', '203.0.113.22');
  await clock.advance(5 * 60_000);
  const expired = await post({ login_challenge: challengeOf(late), code: totp(key, clock.now()) }, '203.0.113.22');
  assert.equal(expired.status, 401);
  assert.match(expired.text, /interrupted or took too long/);
});

test('TOTP: code guesses are throttled; re-entering the password does not buy fresh guesses', async () => {
  const from = '203.0.113.23';
  const key = keys.get('ted') ?? Buffer.alloc(0);
  const good = totp(key, clock.now());
  const bad = good === '000000' ? '111111' : '000000';
  let challenge = challengeOf(await login('ted', 'ted-pw', from));
  for (let i = 0; i < 5; i++) {
    const a = await post({ login_challenge: challenge, code: bad }, from);
    assert.equal(a.status, 401);
    challenge = challengeOf(a) || challenge;
  }
  // Five wrong codes: the challenge is used up and the (account, network) delay has begun.
  const pw = await login('ted', 'ted-pw', from);
  assert.equal(pw.status, 401);
  assert.ok(pw.headers['retry-after'], 'the password step is throttled too');
  await clock.advance(2000);
  const step1 = await login('ted', 'ted-pw', from);
  assert.equal(step1.status, 200);
  const ok = await post({ login_challenge: challengeOf(step1), code: totp(key, clock.now()) }, from);
  assert.equal(ok.status, 302);
});

test('privileged role without a second factor: refused with the enrolment message (only after the right password)', async () => {
  events.length = 0;
  const wrong = await login('root', 'wrong', '203.0.113.30');
  assert.equal(wrong.status, 401);
  assert.match(wrong.text, /Wrong username or password/);
  const right = await login('root', 'root-pw', '203.0.113.30');
  assert.equal(right.status, 403);
  assert.match(right.text, /second factor is required/);
  assert.match(right.text, /portcullis user totp-enroll/);
  assert.equal(right.headers.location, undefined);
  assert.equal(lastFailure()?.detail.code, 'PCL_ERR_TOTP_ENROLMENT_REQUIRED');
});

test('privileged role with a pending enrolment: the code step, and the first valid code activates it', async () => {
  const key = base32Decode((await users.enrollTotp('rita')).secretBase32);
  const step1 = await login('rita', 'rita-pw', '203.0.113.31');
  assert.equal(step1.status, 200);
  const step2 = await post({ login_challenge: challengeOf(step1), code: totp(key, clock.now()) }, '203.0.113.31');
  assert.equal(step2.status, 302);
  assert.equal((await users.list()).find((u) => u.username === 'rita')?.totp, 'active');
});

test('a TOTP user with a wrong password gets the same page as everyone else, not the code form', async () => {
  const a = await login('tom', 'wrong', '203.0.113.40');
  const b = await login('alice', 'wrong', '203.0.113.40');
  assert.equal(a.status, 401);
  assert.equal(a.text, b.text);
});
