// The users admin API over a real HTTPS server with the real handler, Users, RefreshTokens and
// AdminToken: the admin token first, strict input, sessions ended on disable / delete / new
// password, TOTP enrolment answered once and never audited. Then `portcullis user …` against it.
import { after, before, beforeEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Command } from 'commander';
import { FakeClock } from '../../src/core/clock.js';
import { PortcullisError } from '../../src/core/errors.js';
import { subscribeAudit, type AdminEvent, type AuditEvent } from '../../src/core/events.js';
import { createUsersApi } from '../../src/control/users-api.js';
import { registerUserCommands } from '../../src/cli/user.js';
import { base32Decode, totp } from '../../src/identity/totp.js';
import { Users } from '../../src/identity/users.js';
import { KeyWrapper } from '../../src/kms/wrap.js';
import { MemoryStore } from '../../src/store/memory.js';
import { startAdminApi, type AdminApiServer, type Reply } from '../helpers/admin-api.js';
import { NS } from '../../src/store/store.js';
import { RefreshTokens } from '../../src/tokens/refresh-tokens.js';
import { RevocationList } from '../../src/tokens/revocations.js';

const TD = 'demo';
const configYaml = (url: string, dataDir: string): string => `
trustDomain: ${TD}
control: { url: "${url}", dataDir: "${dataDir}" }
gateway: { spiffeId: spiffe://${TD}/gateway }
services:
  - { name: orders, spiffeId: spiffe://${TD}/orders, upstream: http://127.0.0.1:1, sidecar: { listen: 127.0.0.1:2, outbound: 127.0.0.1:3 } }
routes:
  - { id: orders.list, method: GET, path: /orders, service: orders, roles: [reader] }
`;

let harness: AdminApiServer;
let adminToken: string;
let configFile: string;
let store: MemoryStore;
let clock: FakeClock;
let users: Users;
let refreshTokens: RefreshTokens;
let revocations: RevocationList;
let events: AdminEvent[] = [];
let unsubscribe: () => void;

before(async () => {
  clock = new FakeClock(Date.UTC(2030, 0, 1));
  store = new MemoryStore();
  users = new Users(store, { clock, sealer: new KeyWrapper(randomBytes(32)), privilegedRoles: ['admin'] });
  revocations = await RevocationList.open({ store, clock });
  refreshTokens = new RefreshTokens({ store, clock, revoker: revocations, accessTokenTtlSec: 900 });
  harness = await startAdminApi({
    name: 'users-api', trustDomain: TD, store, configYaml,
    api: (admin) => createUsersApi({ users, admin, clock, sessions: refreshTokens }),
  });
  ({ adminToken, configFile } = harness);
  unsubscribe = subscribeAudit((e: AuditEvent) => { if (e.type === 'admin') events.push(e); });
});

after(async () => {
  unsubscribe();
  await harness.close();
});

beforeEach(() => {
  events = [];
});

function send(method: string, path: string, token: string | undefined, body?: unknown, raw?: string): Promise<Reply> {
  return harness.send(method, path, { ...(token ? { token } : {}), ...(body !== undefined ? { body } : {}), ...(raw !== undefined ? { raw } : {}) });
}

const admin = (method: string, path: string, body?: unknown): Promise<Reply> => send(method, path, adminToken, body);
const codeOf = (r: Reply): unknown => (r.json.error as { code?: string } | undefined)?.code;
function refused(r: Reply, status: number, code: string): void {
  assert.equal(r.status, status, r.text);
  assert.equal(codeOf(r), code, r.text);
}

/** A signed-in session of `username`: a refresh-token family with its access token. */
async function session(username: string, jti: string): Promise<void> {
  await refreshTokens.issue({ clientId: 'portcullis-cli', username, scope: 'offline_access', access: { jti, exp: Math.floor(clock.now() / 1000) + 900 } });
}

test('every endpoint needs the admin token, checked before the body or the name', async () => {
  await users.add({ username: 'guard', password: 'guard-pw', roles: [] });
  for (const token of [undefined, 'pat_wrong']) {
    refused(await send('GET', '/v1/admin/users', token), 401, 'PCL_ERR_ADMIN_AUTH');
    refused(await send('POST', '/v1/admin/users/guard/disable', token), 401, 'PCL_ERR_ADMIN_AUTH');
    refused(await send('DELETE', '/v1/admin/users/guard', token), 401, 'PCL_ERR_ADMIN_AUTH');
    refused(await send('POST', '/v1/admin/users/guard/totp', token), 401, 'PCL_ERR_ADMIN_AUTH');
    refused(await send('POST', '/v1/admin/users/guard/password', token, undefined, '{not json'), 401, 'PCL_ERR_ADMIN_AUTH');
    refused(await send('POST', '/v1/admin/users/NOT%20A%20NAME/enable', token), 401, 'PCL_ERR_ADMIN_AUTH');
  }
  assert.equal((await users.get('guard'))?.disabled, false);
  assert.equal(events.length, 0);
});

test('POST /v1/admin/users (adding a user) is left to the server; GET lists without hashes or secrets', async () => {
  assert.equal((await admin('POST', '/v1/admin/users', { username: 'x', password: 'y', roles: [] })).status, 404, 'not this API\'s route');
  await users.add({ username: 'lister', password: 'lister-pw', roles: ['reader'] });
  const list = await admin('GET', '/v1/admin/users');
  assert.equal(list.status, 200);
  const found = (list.json.users as { username: string; totp: string; disabled: boolean }[]).find((u) => u.username === 'lister');
  assert.deepEqual(found && [found.totp, found.disabled], ['none', false]);
  assert.ok(!/argon2|passwordHash|sealed/.test(list.text));
  refused(await admin('PUT', '/v1/admin/users'), 405, 'PCL_ERR_METHOD_NOT_ALLOWED');
});

test('disable ends the user\'s sessions (refresh families and their access tokens); enable lets them in again', async () => {
  await users.add({ username: 'sam', password: 'sam-pw', roles: [] });
  await session('sam', 'jti-sam-1');
  await session('sam', 'jti-sam-2');
  await session('guard', 'jti-guard');
  const r = await admin('POST', '/v1/admin/users/sam/disable');
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(r.json, { username: 'sam', disabled: true, revokedSessions: 2 });
  assert.equal((await users.get('sam'))?.disabled, true);
  assert.ok(revocations.isRevoked('jti-sam-1') && revocations.isRevoked('jti-sam-2'));
  assert.equal(revocations.isRevoked('jti-guard'), false, 'other users keep their sessions');
  const nowSec = Math.floor(clock.now() / 1000);
  assert.ok(revocations.isRevokedToken({ jti: 'no-session', sub: 'sam', client_id: 'web', iat: nowSec }), 'an access token of no session is revoked too');
  assert.equal(revocations.isRevokedToken({ jti: 'guard-2', sub: 'guard', client_id: 'web', iat: nowSec }), false);
  const en = await admin('POST', '/v1/admin/users/sam/enable');
  assert.deepEqual(en.json, { username: 'sam', disabled: false, revokedSessions: 0 });
  assert.equal((await users.verifyPassword('sam', 'sam-pw')).username, 'sam');
  assert.deepEqual(events.map((e) => [e.action, e.detail.username, e.who.sub]), [['user.disable', 'sam', 'admin'], ['user.enable', 'sam', 'admin']]);
  assert.match(String(events[0]?.requestId), /^req-\d+$/);
});

test('unknown and malformed names are 404; wrong methods 405; unknown sub-paths are not this API\'s', async () => {
  refused(await admin('POST', '/v1/admin/users/nobody/disable'), 404, 'PCL_ERR_USER_NOT_FOUND');
  refused(await admin('DELETE', '/v1/admin/users/nobody'), 404, 'PCL_ERR_USER_NOT_FOUND');
  refused(await admin('POST', '/v1/admin/users/NOT%20A%20NAME/enable'), 404, 'PCL_ERR_USER_NOT_FOUND');
  refused(await admin('GET', '/v1/admin/users/guard/disable'), 405, 'PCL_ERR_METHOD_NOT_ALLOWED');
  refused(await admin('GET', '/v1/admin/users/guard'), 405, 'PCL_ERR_METHOD_NOT_ALLOWED');
  assert.equal((await admin('POST', '/v1/admin/users/guard/rename')).status, 404);
});

test('password: strict body, the new password works, the old one and the sessions do not', async () => {
  await users.add({ username: 'pat', password: 'old-pw', roles: [] });
  await session('pat', 'jti-pat');
  refused(await admin('POST', '/v1/admin/users/pat/password', { password: '' }), 400, 'PCL_ERR_INVALID_ARGUMENT');
  refused(await admin('POST', '/v1/admin/users/pat/password', { password: 'x', extra: 1 }), 400, 'PCL_ERR_INVALID_ARGUMENT');
  refused(await admin('POST', '/v1/admin/users/pat/password', { pasword: 'new-pw' }), 400, 'PCL_ERR_INVALID_ARGUMENT');
  const r = await admin('POST', '/v1/admin/users/pat/password', { password: 'new-pw' });
  assert.deepEqual(r.json, { username: 'pat', revokedSessions: 1 });
  await assert.rejects(users.verifyPassword('pat', 'old-pw'), { code: 'PCL_ERR_LOGIN_FAILED' });
  assert.equal((await users.verifyPassword('pat', 'new-pw')).username, 'pat');
  assert.ok(revocations.isRevoked('jti-pat'));
  assert.ok(!JSON.stringify(events).includes('new-pw'));
});

test('delete: the user and their sessions are gone; a second delete is 404', async () => {
  await users.add({ username: 'del', password: 'del-pw', roles: [] });
  await session('del', 'jti-del');
  const r = await admin('DELETE', '/v1/admin/users/del');
  assert.deepEqual(r.json, { username: 'del', deleted: true, revokedSessions: 1 });
  assert.equal(await users.get('del'), undefined);
  assert.ok(revocations.isRevoked('jti-del'));
  refused(await admin('DELETE', '/v1/admin/users/del'), 404, 'PCL_ERR_USER_NOT_FOUND');
  assert.deepEqual(events.map((e) => e.action), ['user.delete']);
});

test('TOTP: enrolment answers the secret once (never audited, never stored in clear); confirm; remove', async () => {
  await users.add({ username: 'olga', password: 'olga-pw', roles: ['admin'] });
  const e = await admin('POST', '/v1/admin/users/olga/totp');
  assert.equal(e.status, 201, e.text);
  const secret = String(e.json.secretBase32);
  assert.match(secret, /^[A-Z2-7]{32}$/);
  assert.match(String(e.json.otpauthUrl), /^otpauth:\/\/totp\//);
  assert.equal(e.json.status, 'pending');
  assert.ok(!JSON.stringify(events).includes(secret));
  assert.ok(!JSON.stringify(await store.list(NS.users)).includes(secret));
  const key = base32Decode(secret);
  const good = totp(key, clock.now());
  refused(await admin('POST', '/v1/admin/users/olga/totp/confirm', { code: good === '000000' ? '111111' : '000000' }), 400, 'PCL_ERR_TOTP_INVALID');
  refused(await admin('POST', '/v1/admin/users/olga/totp/confirm', { code: good, more: true }), 400, 'PCL_ERR_INVALID_ARGUMENT');
  const ok = await admin('POST', '/v1/admin/users/olga/totp/confirm', { code: good });
  assert.deepEqual(ok.json, { username: 'olga', status: 'active' });
  assert.equal(await users.secondFactor('olga'), 'totp');
  const rm = await admin('DELETE', '/v1/admin/users/olga/totp');
  assert.deepEqual(rm.json, { username: 'olga', removed: true });
  assert.equal(await users.secondFactor('olga'), 'enrolment-required');
  assert.deepEqual(events.map((x) => x.action), ['user.totp.enrol', 'user.totp.confirm', 'user.totp.remove']);
});

// ---------------------------------------------------------------------------------------------
// The CLI, in process, against the same server.

async function cli(args: string[], withAdd = false): Promise<{ out: string[]; err: string[]; error?: PortcullisError; help: string; program: Command }> {
  const out: string[] = [];
  const err: string[] = [];
  let help = '';
  const capture = { writeOut: (s: string) => { help += s; }, writeErr: (s: string) => { help += s; } };
  const program = new Command('portcullis').exitOverride().configureOutput(capture);
  // As main.ts has it today: a `user add` registered before.
  if (withAdd) program.command('user').command('add').description('main.ts\'s add');
  registerUserCommands(program, configFile);
  for (const c of [...program.commands, ...program.commands.flatMap((x) => x.commands)]) c.exitOverride().configureOutput(capture);
  const log = console.log;
  const error = console.error;
  console.log = (...a: unknown[]) => { out.push(a.join(' ')); };
  console.error = (...a: unknown[]) => { err.push(a.join(' ')); };
  try {
    await program.parseAsync(['node', 'portcullis', 'user', ...args]);
    return { out, err, help, program };
  } catch (e) {
    return { out, err, help, program, ...(e instanceof PortcullisError ? { error: e } : {}) };
  } finally {
    console.log = log;
    console.error = error;
  }
}

test('CLI: every user command answers --help; an existing `user add` is kept, a missing one added', async () => {
  for (const sub of ['list', 'add', 'disable', 'enable', 'delete', 'passwd', 'totp-enroll', 'totp-confirm', 'totp-remove']) {
    const r = await cli([sub, '--help']);
    assert.match(r.help, new RegExp(`^Usage: portcullis user ${sub}`), sub);
  }
  const kept = await cli(['--help'], true);
  const user = kept.program.commands.find((c) => c.name() === 'user');
  assert.equal(user?.commands.filter((c) => c.name() === 'add').length, 1);
  assert.equal(user?.commands.find((c) => c.name() === 'add')?.description(), 'main.ts\'s add');
});

test('CLI: add, list, disable, enable, passwd, delete (--yes required)', async () => {
  // `add` posts to /v1/admin/users, which server.ts serves; this test server has only the users API.
  const added = await cli(['add', 'carl', '--role', 'reader']);
  assert.equal(added.error?.code, 'PCL_ERR_ROUTE_NOT_FOUND');
  await users.add({ username: 'carl', password: 'carl-pw', roles: ['reader'] });
  const list = await cli(['list']);
  assert.ok(list.out.some((l) => /^carl\s+enabled\s+totp none\s+roles reader$/.test(l)), list.out.join('\n'));
  await session('carl', 'jti-carl');
  assert.deepEqual((await cli(['disable', 'carl'])).out, ['disabled carl; 1 session(s) ended']);
  assert.deepEqual((await cli(['enable', 'carl'])).out, ['enabled carl']);
  const pw = await cli(['passwd', 'carl']);
  const newPw = /shown once\): (\S+)$/.exec(pw.out[0] ?? '')?.[1] ?? '';
  assert.ok(newPw.length >= 20, pw.out.join('\n'));
  assert.equal((await users.verifyPassword('carl', newPw)).username, 'carl');
  const noYes = await cli(['delete', 'carl']);
  assert.equal(noYes.error?.code, 'PCL_ERR_INVALID_ARGUMENT');
  assert.ok(await users.get('carl'), 'nothing deleted without --yes');
  assert.deepEqual((await cli(['delete', 'carl', '--yes'])).out, ['deleted carl']);
  assert.equal((await cli(['disable', 'carl'])).error?.code, 'PCL_ERR_USER_NOT_FOUND');
});

test('CLI: totp-enroll prints the secret and URL on stdout only, with the warning on stderr; totp-confirm, totp-remove', async () => {
  await users.add({ username: 'tess', password: 'tess-pw', roles: [] });
  const r = await cli(['totp-enroll', 'tess']);
  assert.equal(r.error, undefined, r.error?.message);
  const [secret, url] = r.out;
  assert.match(secret ?? '', /^[A-Z2-7]{32}$/);
  assert.match(url ?? '', /^otpauth:\/\/totp\/Portcullis:tess\?/);
  assert.match(r.err.join('\n'), /shown ONCE/);
  assert.ok(!r.err.join('\n').includes(secret ?? '-'));
  const code = totp(base32Decode(secret ?? ''), clock.now());
  assert.deepEqual((await cli(['totp-confirm', 'tess', code])).out, ['TOTP active for tess']);
  assert.deepEqual((await cli(['totp-remove', 'tess'])).out, ['TOTP removed for tess']);
  assert.deepEqual((await cli(['totp-remove', 'tess'])).out, ['tess had no TOTP']);
});
