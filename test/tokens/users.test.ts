import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { parseOptions } from '@node-rs/argon2';
import { Users } from '../../src/identity/users.js';
import type { PgliteStore } from '../../src/store/pglite.js';
import { NS } from '../../src/store/store.js';
import { openMemoryStore } from './setup.js';

let store: PgliteStore;
let users: Users;

before(async () => {
  store = await openMemoryStore();
  users = new Users(store);
  await users.add({ username: 'alice', password: 'correct horse', roles: ['customer'], attributes: { store: 's1' } });
});
after(() => store.close());

test('add stores an argon2id PHC hash with the OWASP parameters, and get never returns it', async () => {
  const raw = await store.get<Record<string, unknown>>(NS.users, 'alice');
  const phc = raw?.passwordHash;
  assert.equal(typeof phc, 'string');
  assert.match(String(phc), /^\$argon2id\$v=19\$m=19456,t=2,p=1\$/);
  const p = parseOptions(String(phc));
  assert.deepEqual([p.memoryCost, p.timeCost, p.parallelism], [19456, 2, 1]);
  assert.ok(!JSON.stringify(raw).includes('correct horse'));
  assert.deepEqual(await users.get('alice'), { username: 'alice', roles: ['customer'], attributes: { store: 's1' }, disabled: false });
  assert.equal(await users.get('nobody'), undefined);
});

test('a second add of the same username is PCL_ERR_USER_EXISTS', async () => {
  await assert.rejects(users.add({ username: 'alice', password: 'x', roles: [] }), { code: 'PCL_ERR_USER_EXISTS' });
});

test('usernames are 1-64 characters of [a-z0-9._-]', async () => {
  for (const username of ['', 'Alice', 'a b', 'a/b', 'x'.repeat(65), 'ü']) {
    await assert.rejects(users.add({ username, password: 'pw', roles: [] }), { code: 'PCL_ERR_INVALID_ARGUMENT' }, username);
  }
  await users.add({ username: 'a.b_c-9', password: 'pw', roles: [] });
  await users.add({ username: 'x'.repeat(64), password: 'pw', roles: [] });
});

test('verifyPassword: right password gives the user; wrong, unknown, invalid name and disabled all give PCL_ERR_LOGIN_FAILED', async () => {
  assert.equal((await users.verifyPassword('alice', 'correct horse')).username, 'alice');
  await assert.rejects(users.verifyPassword('alice', 'wrong'), { code: 'PCL_ERR_LOGIN_FAILED' });
  await assert.rejects(users.verifyPassword('nobody', 'correct horse'), { code: 'PCL_ERR_LOGIN_FAILED' });
  await assert.rejects(users.verifyPassword('NOT VALID', 'x'), { code: 'PCL_ERR_LOGIN_FAILED' });
  await users.add({ username: 'dis', password: 'pw', roles: [] });
  await users.setDisabled('dis', true);
  await assert.rejects(users.verifyPassword('dis', 'pw'), { code: 'PCL_ERR_LOGIN_FAILED' });
  await users.setDisabled('dis', false);
  assert.equal((await users.verifyPassword('dis', 'pw')).disabled, false);
});

test('an unknown user costs an argon2 verification too (no fast path)', async () => {
  // Coarse by design: both must take argon2 time (milliseconds), not a map lookup (microseconds).
  const time = async (u: string): Promise<number> => {
    const t = performance.now();
    await users.verifyPassword(u, 'wrong').catch(() => undefined);
    return performance.now() - t;
  };
  await time('nobody'); // warm-up
  const [known, unknown] = [await time('alice'), await time('nobody')];
  assert.ok(unknown > known / 4, `unknown ${unknown.toFixed(1)} ms vs known ${known.toFixed(1)} ms`);
});
