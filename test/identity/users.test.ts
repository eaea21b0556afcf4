// Users beyond the basics of test/tokens/users.test.ts: re-hashing old parameters, the same hashing
// work for every failure (counted through a hasher spy, not timed), list / password / delete, and
// the TOTP second factor (sealed secret, enrolment, confirmation, replay, privileged roles).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { beforeEach, test } from 'node:test';
import { Algorithm, hash, parseOptions } from '@node-rs/argon2';
import { FakeClock } from '../../src/core/clock.js';
import { base32Decode, hotp, totp, totpStep } from '../../src/identity/totp.js';
import { argon2Hasher, needsRehash, Users, type PasswordHasher } from '../../src/identity/users.js';
import { KeyWrapper } from '../../src/kms/wrap.js';
import { MemoryStore } from '../../src/store/memory.js';
import { NS } from '../../src/store/store.js';

const T0 = Date.UTC(2030, 0, 1);

/** The real argon2 hasher, counting its calls. */
function spyHasher(): PasswordHasher & { calls: { hash: number; verify: number } } {
  const calls = { hash: 0, verify: 0 };
  return {
    calls,
    hash: (p) => { calls.hash++; return argon2Hasher.hash(p); },
    verify: (h, p) => { calls.verify++; return argon2Hasher.verify(h, p); },
    needsRehash: (h) => argon2Hasher.needsRehash(h),
  };
}

let store: MemoryStore;
let clock: FakeClock;
let hasher: ReturnType<typeof spyHasher>;
let users: Users;

beforeEach(async () => {
  store = new MemoryStore();
  clock = new FakeClock(T0);
  hasher = spyHasher();
  users = new Users(store, { clock, hasher, sealer: new KeyWrapper(randomBytes(32)), privilegedRoles: ['admin'] });
  await users.add({ username: 'alice', password: 'alice-pw', roles: ['customer'] });
});

const stored = (name: string): Promise<Record<string, unknown> | undefined> => store.get<Record<string, unknown>>(NS.users, name);

test('needsRehash: true for other parameters, another variant or garbage; false for the current ones', async () => {
  assert.equal(needsRehash(await hash('x', { algorithm: Algorithm.Argon2id, memoryCost: 19456, timeCost: 2, parallelism: 1 })), false);
  assert.equal(needsRehash(await hash('x', { algorithm: Algorithm.Argon2id, memoryCost: 4096, timeCost: 1, parallelism: 1 })), true);
  assert.equal(needsRehash(await hash('x', { algorithm: Algorithm.Argon2i, memoryCost: 19456, timeCost: 2, parallelism: 1 })), true);
  assert.equal(needsRehash('$2b$10$notargon'), true);
});

test('a hash with weaker parameters is replaced at the next successful login, not at a failed one', async () => {
  const weak = await hash('alice-pw', { algorithm: Algorithm.Argon2id, memoryCost: 4096, timeCost: 1, parallelism: 1 });
  await store.put(NS.users, 'alice', { ...(await stored('alice')), passwordHash: weak });
  await assert.rejects(users.verifyPassword('alice', 'wrong'), { code: 'PCL_ERR_LOGIN_FAILED' });
  assert.equal((await stored('alice'))?.passwordHash, weak);
  assert.equal((await users.verifyPassword('alice', 'alice-pw')).username, 'alice');
  const now = String((await stored('alice'))?.passwordHash);
  assert.notEqual(now, weak);
  const p = parseOptions(now);
  assert.deepEqual([p.memoryCost, p.timeCost, p.parallelism], [19456, 2, 1]);
  assert.equal((await users.verifyPassword('alice', 'alice-pw')).username, 'alice', 'the new hash verifies');
});

test('every failure costs exactly one hash verification: unknown, invalid name, wrong password, disabled', async () => {
  await users.add({ username: 'dora', password: 'dora-pw', roles: [] });
  await users.setDisabled('dora', true);
  const cases: [string, string][] = [['nobody', 'x'], ['NOT A NAME', 'x'], ['alice', 'wrong'], ['dora', 'dora-pw'], ['alice', 'x'.repeat(5000)]];
  for (const [name, pw] of cases) {
    const before = hasher.calls.verify;
    await assert.rejects(users.verifyPassword(name, pw), { code: 'PCL_ERR_LOGIN_FAILED' });
    assert.equal(hasher.calls.verify - before, 1, name);
  }
  const before = hasher.calls.verify;
  await users.verifyPassword('alice', 'alice-pw');
  assert.equal(hasher.calls.verify - before, 1);
});

test('list: every user with status and second factor, never a hash or secret', async () => {
  await users.add({ username: 'bob', password: 'bob-pw', roles: ['admin'] });
  await users.setDisabled('bob', true);
  await users.enrollTotp('bob');
  const list = await users.list();
  assert.deepEqual(list.map((u) => [u.username, u.disabled, u.totp]), [['alice', false, 'none'], ['bob', true, 'pending']]);
  assert.equal(list[0]?.createdAt, new Date(T0).toISOString());
  assert.ok(!/passwordHash|sealed|argon2/.test(JSON.stringify(list)));
});

test('setPassword replaces the password; unknown users and bad passwords are refused', async () => {
  await users.setPassword('alice', 'new-pw');
  await assert.rejects(users.verifyPassword('alice', 'alice-pw'), { code: 'PCL_ERR_LOGIN_FAILED' });
  assert.equal((await users.verifyPassword('alice', 'new-pw')).username, 'alice');
  await assert.rejects(users.setPassword('nobody', 'pw'), { code: 'PCL_ERR_USER_NOT_FOUND' });
  await assert.rejects(users.setPassword('alice', ''), { code: 'PCL_ERR_INVALID_ARGUMENT' });
  await assert.rejects(users.setDisabled('nobody', true), { code: 'PCL_ERR_USER_NOT_FOUND' });
});

test('delete removes the user for good; a second delete is PCL_ERR_USER_NOT_FOUND; the name can be reused', async () => {
  await users.delete('alice');
  assert.equal(await users.get('alice'), undefined);
  await assert.rejects(users.verifyPassword('alice', 'alice-pw'), { code: 'PCL_ERR_LOGIN_FAILED' });
  await assert.rejects(users.delete('alice'), { code: 'PCL_ERR_USER_NOT_FOUND' });
  await assert.rejects(users.delete('NOT VALID'), { code: 'PCL_ERR_USER_NOT_FOUND' });
  await users.add({ username: 'alice', password: 'other-pw', roles: [] });
  assert.deepEqual((await users.get('alice'))?.roles, []);
});

test('delete forgets the throttle state of the account', async () => {
  for (let i = 0; i < 5; i++) await users.throttle.attempt('alice', '203.0.113.1');
  assert.equal((await users.throttle.attempt('alice', '203.0.113.1')).allowed, false);
  await users.delete('alice');
  assert.equal((await users.throttle.attempt('alice', '203.0.113.1')).allowed, true);
});

test('TOTP enrolment: secret sealed at rest (never in clear), pending until a code confirms it', async () => {
  assert.equal(await users.secondFactor('alice'), 'none');
  const e = await users.enrollTotp('alice');
  assert.match(e.secretBase32, /^[A-Z2-7]{32}$/);
  assert.match(e.otpauthUrl, /^otpauth:\/\/totp\/Portcullis:alice\?secret=[A-Z2-7]{32}&issuer=Portcullis/);
  const raw = JSON.stringify(await stored('alice'));
  assert.ok(!raw.includes(e.secretBase32));
  assert.ok(!raw.includes(base32Decode(e.secretBase32).toString('base64')) && !raw.includes(base32Decode(e.secretBase32).toString('hex')));
  // Pending: the sign-in asks for a code already (the first valid one confirms it).
  assert.equal(await users.secondFactor('alice'), 'totp');
  const key = base32Decode(e.secretBase32);
  await assert.rejects(users.confirmTotp('alice', '000000' === totp(key, T0) ? '111111' : '000000'), { code: 'PCL_ERR_TOTP_INVALID' });
  await users.confirmTotp('alice', totp(key, T0));
  assert.equal((await users.list())[0]?.totp, 'active');
  await assert.rejects(users.confirmTotp('alice', totp(key, T0)), { code: 'PCL_ERR_INVALID_ARGUMENT' }, 'nothing pending any more');
});

test('TOTP sign-in step: a code works once; the next step\'s code works; two steps late does not', async () => {
  const key = base32Decode((await users.enrollTotp('alice')).secretBase32);
  assert.equal(await users.verifyTotp('alice', totp(key, T0)), true, 'first valid code activates the pending secret');
  assert.equal(await users.verifyTotp('alice', totp(key, T0)), false, 'replay in the same window');
  const step = totpStep(T0);
  // The previous step's code is in the window but older than the one used: refused too.
  assert.equal(await users.verifyTotp('alice', hotp(key, step - 1)), false);
  await clock.advance(30_000);
  assert.equal(await users.verifyTotp('alice', `${totp(key, clock.now()).slice(0, 3)} ${totp(key, clock.now()).slice(3)}`), true, 'spaces are ignored');
  await clock.advance(90_000);
  assert.equal(await users.verifyTotp('alice', hotp(key, step + 1)), false, 'expired');
  assert.equal(await users.verifyTotp('alice', 'abcdef'), false);
  assert.equal(await users.verifyTotp('nobody', totp(key, clock.now())), false);
});

test('TOTP: concurrent uses of one code: exactly one wins', async () => {
  const key = base32Decode((await users.enrollTotp('alice')).secretBase32);
  await users.confirmTotp('alice', hotp(key, totpStep(T0) - 1));
  const code = totp(key, T0);
  const results = await Promise.all(Array.from({ length: 5 }, () => users.verifyTotp('alice', code)));
  assert.equal(results.filter(Boolean).length, 1);
});

test('TOTP: a disabled user\'s code is refused; removeTotp removes it', async () => {
  const key = base32Decode((await users.enrollTotp('alice')).secretBase32);
  await users.setDisabled('alice', true);
  assert.equal(await users.verifyTotp('alice', totp(key, T0)), false);
  await users.setDisabled('alice', false);
  assert.equal(await users.removeTotp('alice'), true);
  assert.equal(await users.removeTotp('alice'), false);
  assert.equal(await users.secondFactor('alice'), 'none');
  assert.equal(await users.verifyTotp('alice', totp(key, T0)), false);
});

test('TOTP: a sealed secret copied to another user does not unseal (bound to the name)', async () => {
  await users.add({ username: 'mallory', password: 'm-pw', roles: [] });
  const key = base32Decode((await users.enrollTotp('alice')).secretBase32);
  const alice = await stored('alice');
  await store.put(NS.users, 'mallory', { ...(await stored('mallory')), totpPending: alice?.totpPending });
  await assert.rejects(users.verifyTotp('mallory', totp(key, T0)), { code: 'PCL_ERR_KEY_UNWRAP' });
});

test('privileged roles need a second factor: enrolment-required until one is enrolled', async () => {
  await users.add({ username: 'root', password: 'root-pw', roles: ['ops', 'admin'] });
  assert.equal(users.isPrivileged({ roles: ['admin'] }), true);
  assert.equal(users.isPrivileged({ roles: ['customer'] }), false);
  assert.equal(await users.secondFactor('root'), 'enrolment-required');
  await users.enrollTotp('root');
  assert.equal(await users.secondFactor('root'), 'totp');
  await assert.rejects(users.secondFactor('nobody'), { code: 'PCL_ERR_USER_NOT_FOUND' });
});

test('without a sealer TOTP cannot be enrolled; privilegedRoles must be role names', async () => {
  const plain = new Users(store, { clock });
  await assert.rejects(plain.enrollTotp('alice'), { code: 'PCL_ERR_INTERNAL' });
  assert.throws(() => new Users(store, { privilegedRoles: ['bad role'] }), { code: 'PCL_ERR_INVALID_ARGUMENT' });
});
