// The API-key endpoints over a real HTTPS server with the real handler, ApiKeys and AdminToken:
// the admin token is required before anything else, input is strict, a key appears in one answer
// only, the gateway (and only it) reads the revocation feed and reports uses. Then the CLI as an
// operator runs it, against the same server: help, a key printed once with a warning on stderr.
import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { Command } from 'commander';
import { FakeClock } from '../../src/core/clock.js';
import { parseConfig } from '../../src/core/config/load.js';
import { PortcullisError } from '../../src/core/errors.js';
import { subscribeAudit, type AdminEvent, type AuditEvent } from '../../src/core/events.js';
import { createApiKeyApi } from '../../src/control/apikey-api.js';
import { ApiKeys, isApiKey } from '../../src/identity/api-keys.js';
import { KeyWrapper } from '../../src/kms/wrap.js';
import { MemoryStore } from '../../src/store/memory.js';
import { startAdminApi, type AdminApiServer, type Reply } from '../helpers/admin-api.js';
import { NS } from '../../src/store/store.js';
import { parseDurationSeconds, registerApiKeyCommands } from '../../src/cli/apikey.js';

const TD = 'demo';
const GATEWAY = `spiffe://${TD}/gateway`;
const SIDECAR = `spiffe://${TD}/orders`;
const configYaml = (url: string, dataDir: string): string => `
trustDomain: ${TD}
control: { url: "${url}", dataDir: "${dataDir}" }
gateway: { spiffeId: ${GATEWAY} }
services:
  - { name: orders, spiffeId: ${SIDECAR}, upstream: http://127.0.0.1:1, sidecar: { listen: 127.0.0.1:2, outbound: 127.0.0.1:3 } }
routes:
  - { id: orders.list, method: GET, path: /orders, service: orders, roles: [reader] }
  - { id: orders.create, method: POST, path: /orders, service: orders, roles: [writer] }
`;

type Who = { peer: string } | { token: string } | 'anonymous';

let harness: AdminApiServer;
let adminToken: string;
let dataDir: string;
let configFile: string;
let store: MemoryStore;
let clock: FakeClock;
let apiKeys: ApiKeys;
let events: AuditEvent[] = [];
let unsubscribe: () => void;

before(async () => {
  clock = new FakeClock(Date.UTC(2030, 0, 1));
  store = new MemoryStore();
  apiKeys = await ApiKeys.open({ store, sealer: new KeyWrapper(randomBytes(32)), clock });
  harness = await startAdminApi({
    name: 'apikey-api', trustDomain: TD, store, configYaml,
    // The config only needs its routes and gateway here, not the server's URL.
    api: (admin, dir) => createApiKeyApi({ apiKeys, admin, config: parseConfig(configYaml('https://127.0.0.1:1', dir), 'apikey-api.yaml') }),
  });
  ({ adminToken, dataDir, configFile } = harness);
  unsubscribe = subscribeAudit((e) => events.push(e));
});

after(async () => {
  unsubscribe();
  await harness.close();
});

beforeEach(() => {
  events = [];
});

function send(method: string, path: string, who: Who, body?: unknown, o: { raw?: string; contentType?: string } = {}): Promise<Reply> {
  return harness.send(method, path, {
    ...(who !== 'anonymous' && 'peer' in who ? { peer: who.peer } : {}), ...(who !== 'anonymous' && 'token' in who ? { token: who.token } : {}),
    ...(body !== undefined ? { body } : {}), ...o,
  });
}

const admin = (): Who => ({ token: adminToken });
const gateway: Who = { peer: GATEWAY };
const codeOf = (r: Reply): unknown => (r.json.error as { code?: string } | undefined)?.code;
function refused(r: Reply, status: number, code: string): void {
  assert.equal(r.status, status, r.text);
  assert.equal(codeOf(r), code, r.text);
}
const storedCount = async (): Promise<number> => (await store.list(NS.apiKeys)).length;
const createBody = { name: 'ci', owner: 'alice', roles: ['reader'], routes: ['orders.list'], ttlSeconds: 86_400 };

test('every admin endpoint needs the admin token, checked before the body', async () => {
  const before = await storedCount();
  for (const who of ['anonymous', { token: 'pat_wrong' }, gateway] as Who[]) {
    refused(await send('POST', '/v1/admin/apikeys', who, createBody), 401, 'PCL_ERR_ADMIN_AUTH');
    refused(await send('GET', '/v1/admin/apikeys', who), 401, 'PCL_ERR_ADMIN_AUTH');
    refused(await send('POST', '/v1/admin/apikeys/ak_000000000000/rotate', who, {}), 401, 'PCL_ERR_ADMIN_AUTH');
    refused(await send('DELETE', '/v1/admin/apikeys/ak_000000000000', who), 401, 'PCL_ERR_ADMIN_AUTH');
    // Even a malformed body is never looked at without the token.
    refused(await send('POST', '/v1/admin/apikeys', who, undefined, { raw: '{not json' }), 401, 'PCL_ERR_ADMIN_AUTH');
  }
  assert.equal(await storedCount(), before, 'nothing was created');
});

test('create answers the key once; list, the store and the audit entry never show it', async () => {
  const r = await send('POST', '/v1/admin/apikeys', admin(), createBody);
  assert.equal(r.status, 201, r.text);
  const key = String(r.json.key);
  const id = String(r.json.id);
  assert.ok(isApiKey(key));
  assert.match(id, /^ak_[0-9A-Za-z]{12}$/);
  assert.equal(r.json.status, 'active');
  assert.deepEqual(r.json.routes, ['orders.list']);
  assert.equal(r.json.expiresAt, new Date(clock.now() + 86_400_000).toISOString());
  assert.equal(r.json.hash, undefined);
  const list = await send('GET', '/v1/admin/apikeys', admin());
  assert.equal(list.status, 200);
  assert.ok(list.text.includes(id));
  assert.ok(!list.text.includes(key.slice(4, 36)) && !list.text.includes('"hash"'));
  const audit = events.filter((e): e is AdminEvent => e.type === 'admin' && e.action === 'apikey.create');
  assert.equal(audit.length, 1);
  assert.equal(audit[0]?.detail.id, id);
  assert.match(String(audit[0]?.requestId), /^req-\d+$/, 'the entry carries the request id');
  assert.ok(!JSON.stringify(audit).includes(key.slice(4, 36)));
  assert.equal((await apiKeys.verify(key))?.id, id);
});

test('create input is strict: roles and routes as identifiers of the config, ttl bounds, known fields', async () => {
  const before = await storedCount();
  const bad: [unknown, string][] = [
    [{ ...createBody, roles: [] }, 'empty roles'],
    [{ ...createBody, roles: ['read er'] }, 'role not an identifier'],
    [{ ...createBody, routes: ['orders.delete'] }, 'route not in the config'],
    [{ ...createBody, ttlSeconds: 10 }, 'ttl too short'],
    [{ ...createBody, ttlSeconds: '90d' }, 'ttl not a number'],
    [{ ...createBody, ttlSecond: 60 }, 'misspelt field'],
    [{ ...createBody, name: 7 }, 'name not a string'],
    [{ ...createBody, owner: 'a\u0000b' }, 'control character in owner'],
    [[createBody], 'an array body'],
  ];
  for (const [body, why] of bad) {
    const r = await send('POST', '/v1/admin/apikeys', admin(), body);
    assert.equal(r.status, 400, why);
    assert.equal(codeOf(r), 'PCL_ERR_INVALID_ARGUMENT', why);
  }
  refused(await send('POST', '/v1/admin/apikeys', admin(), undefined, { raw: JSON.stringify(createBody), contentType: 'text/plain' }), 400, 'PCL_ERR_INVALID_ARGUMENT');
  refused(await send('POST', '/v1/admin/apikeys', admin(), undefined, { raw: '{"name":' }), 400, 'PCL_ERR_INVALID_ARGUMENT');
  refused(await send('PUT', '/v1/admin/apikeys', admin(), createBody), 405, 'PCL_ERR_METHOD_NOT_ALLOWED');
  assert.equal(await storedCount(), before, 'nothing was created');
});

test('rotate answers the new key and the old one\'s overlap end; revoke is idempotent; unknown ids are 404', async () => {
  const created = await send('POST', '/v1/admin/apikeys', admin(), { name: 'rot', owner: 'bob', roles: ['writer'] });
  const id = String(created.json.id);
  const rotated = await send('POST', `/v1/admin/apikeys/${id}/rotate`, admin(), { overlapSeconds: 600 });
  assert.equal(rotated.status, 201, rotated.text);
  assert.ok(isApiKey(String(rotated.json.key)));
  assert.notEqual(rotated.json.key, created.json.key);
  assert.equal(rotated.json.rotatedFrom, id);
  assert.deepEqual(rotated.json.previous, { id, overlapUntil: new Date(clock.now() + 600_000).toISOString() });
  refused(await send('POST', `/v1/admin/apikeys/${id}/rotate`, admin(), {}), 400, 'PCL_ERR_INVALID_ARGUMENT');
  // No body: the default overlap.
  const newId = String(rotated.json.id);
  const again = await send('POST', `/v1/admin/apikeys/${newId}/rotate`, admin());
  assert.equal(again.status, 201, again.text);
  assert.equal((again.json.previous as { overlapUntil: string }).overlapUntil, new Date(clock.now() + 86_400_000).toISOString());
  refused(await send('POST', `/v1/admin/apikeys/${String(again.json.id)}/rotate`, admin(), { overlapSeconds: -5 }), 400, 'PCL_ERR_INVALID_ARGUMENT');
  refused(await send('POST', `/v1/admin/apikeys/${String(again.json.id)}/rotate`, admin(), { overlap: 5 }), 400, 'PCL_ERR_INVALID_ARGUMENT');

  const revoked = await send('DELETE', `/v1/admin/apikeys/${id}`, admin());
  assert.deepEqual(revoked.json, { id, revoked: true, alreadyRevoked: false });
  assert.deepEqual((await send('DELETE', `/v1/admin/apikeys/${id}`, admin())).json, { id, revoked: false, alreadyRevoked: true });
  refused(await send('DELETE', '/v1/admin/apikeys/ak_000000000000', admin()), 404, 'PCL_ERR_APIKEY_NOT_FOUND');
  refused(await send('DELETE', '/v1/admin/apikeys/not-an-id', admin()), 404, 'PCL_ERR_APIKEY_NOT_FOUND');
  refused(await send('POST', '/v1/admin/apikeys/ak_000000000000/rotate', admin(), {}), 404, 'PCL_ERR_APIKEY_NOT_FOUND');
  refused(await send('GET', `/v1/admin/apikeys/${id}`, admin()), 405, 'PCL_ERR_METHOD_NOT_ALLOWED');
  const actions = events.filter((e): e is AdminEvent => e.type === 'admin').map((e) => e.action);
  assert.deepEqual(actions, ['apikey.create', 'apikey.rotate', 'apikey.rotate', 'apikey.revoke']);
});

test('the revocation feed is for the gateway only, and names revoked keys after its cursor', async () => {
  refused(await send('GET', '/v1/apikeys/revoked', 'anonymous'), 401, 'PCL_ERR_PEER_CERT_REQUIRED');
  refused(await send('GET', '/v1/apikeys/revoked', { peer: SIDECAR }), 403, 'PCL_ERR_PEER_IDENTITY');
  refused(await send('GET', '/v1/apikeys/revoked', admin()), 401, 'PCL_ERR_PEER_CERT_REQUIRED');
  await clock.advance(1000); // past the revocations of earlier tests
  const first = await send('GET', '/v1/apikeys/revoked', gateway);
  assert.equal(first.status, 200, first.text);
  const cursor = String(first.json.cursor);
  await clock.advance(1000);
  const created = await send('POST', '/v1/admin/apikeys', admin(), { name: 'feed', owner: 'carol', roles: ['reader'] });
  const id = String(created.json.id);
  await send('DELETE', `/v1/admin/apikeys/${id}`, admin());
  const page = await send('GET', `/v1/apikeys/revoked?since=${encodeURIComponent(cursor)}`, gateway);
  assert.deepEqual(page.json.revoked, [id]);
  refused(await send('GET', '/v1/apikeys/revoked?since=yesterday', gateway), 400, 'PCL_ERR_INVALID_ARGUMENT');
  refused(await send('GET', '/v1/apikeys/revoked?after=1', gateway), 400, 'PCL_ERR_INVALID_ARGUMENT');
  refused(await send('POST', '/v1/apikeys/revoked', gateway, {}), 405, 'PCL_ERR_METHOD_NOT_ALLOWED');
});

test('usage reports from the gateway set lastUsedAt; malformed ones are refused whole', async () => {
  const created = await send('POST', '/v1/admin/apikeys', admin(), { name: 'used', owner: 'dave', roles: ['reader'] });
  const id = String(created.json.id);
  const at = new Date(clock.now()).toISOString();
  refused(await send('POST', '/v1/apikeys/used', { peer: SIDECAR }, { used: [{ id, at }] }), 403, 'PCL_ERR_PEER_IDENTITY');
  refused(await send('POST', '/v1/apikeys/used', gateway, { used: [{ id, at }, { id: 'x', at }] }), 400, 'PCL_ERR_INVALID_ARGUMENT');
  refused(await send('POST', '/v1/apikeys/used', gateway, { used: [{ id, at: 'now' }] }), 400, 'PCL_ERR_INVALID_ARGUMENT');
  refused(await send('POST', '/v1/apikeys/used', gateway, { used: 'all' }), 400, 'PCL_ERR_INVALID_ARGUMENT');
  assert.equal(apiKeys.get(id)?.lastUsedAt, undefined, 'a refused report changed nothing');
  const ok = await send('POST', '/v1/apikeys/used', gateway, { used: [{ id, at }] });
  assert.deepEqual(ok.json, { accepted: 1 });
  assert.equal(apiKeys.get(id)?.lastUsedAt, at);
});

test('paths it does not own are left to the caller', async () => {
  const r = await send('GET', '/v1/admin/blocks', admin());
  assert.equal(r.status, 404);
  assert.equal(codeOf(r), 'PCL_ERR_ROUTE_NOT_FOUND');
});

// ---------------------------------------------------------------------------------------------
// The CLI, in process, against the same server.

/** Runs `portcullis apikey …`; returns what went to stdout and stderr, or the error thrown. */
async function cli(args: string[]): Promise<{ out: string[]; err: string[]; error?: PortcullisError; help?: string }> {
  const out: string[] = [];
  const err: string[] = [];
  let help = '';
  const program = new Command('portcullis').exitOverride().configureOutput({ writeOut: (s) => { help += s; }, writeErr: (s) => { help += s; } });
  registerApiKeyCommands(program, configFile);
  for (const c of program.commands) c.exitOverride().configureOutput({ writeOut: (s) => { help += s; }, writeErr: (s) => { help += s; } });
  for (const c of program.commands.flatMap((x) => x.commands)) c.exitOverride().configureOutput({ writeOut: (s) => { help += s; }, writeErr: (s) => { help += s; } });
  const log = console.log;
  const error = console.error;
  console.log = (...a: unknown[]) => { out.push(a.join(' ')); };
  console.error = (...a: unknown[]) => { err.push(a.join(' ')); };
  try {
    await program.parseAsync(['node', 'portcullis', 'apikey', ...args]);
    return { out, err, help };
  } catch (e) {
    if (e instanceof PortcullisError) return { out, err, error: e, help };
    return { out, err, help };
  } finally {
    console.log = log;
    console.error = error;
  }
}

test('CLI: every apikey command answers --help', async () => {
  for (const args of [[], ['create'], ['list'], ['rotate'], ['revoke']]) {
    const r = await cli([...args, '--help']);
    assert.match(r.help ?? '', /^Usage: portcullis apikey/, args.join(' '));
  }
  assert.match((await cli(['create', '--help'])).help ?? '', /--ttl <duration>/);
  assert.match((await cli(['rotate', '--help'])).help ?? '', /--overlap <duration>.*\n?.*24h/);
});

test('CLI: durations are whole numbers with s, m, h or d', () => {
  assert.equal(parseDurationSeconds('90d', '--ttl'), 90 * 86_400);
  assert.equal(parseDurationSeconds('24h', '--ttl'), 86_400);
  assert.equal(parseDurationSeconds('30m', '--ttl'), 1800);
  assert.equal(parseDurationSeconds('45', '--ttl'), 45);
  for (const bad of ['', '1.5h', '-1d', '90 days', '1w', 'd']) {
    assert.throws(() => parseDurationSeconds(bad, '--ttl'), (e: unknown) => e instanceof PortcullisError && e.code === 'PCL_ERR_INVALID_ARGUMENT', bad);
  }
});

test('CLI: a bad --ttl is refused before the config is read or the control plane called', async () => {
  const before = await storedCount();
  const r = await cli(['create', '--name', 'x', '--owner', 'alice', '--roles', 'reader', '--ttl', '90x', '-c', join(dataDir, 'missing.yaml')]);
  assert.equal(r.error?.code, 'PCL_ERR_INVALID_ARGUMENT');
  assert.equal(await storedCount(), before);
});

test('CLI: create prints the key alone on stdout, once, with a warning on stderr; list, rotate, revoke', async () => {
  const created = await cli(['create', '--name', 'cli key', '--owner', 'erin', '--roles', 'reader,writer', '--routes', 'orders.list', '--ttl', '90d']);
  assert.equal(created.error, undefined, created.error?.message);
  assert.equal(created.out.length, 1);
  const key = created.out[0] ?? '';
  assert.ok(isApiKey(key), 'stdout is the key alone');
  assert.match(created.err.join('\n'), /shown ONCE and cannot be shown again/);
  assert.ok(!created.err.join('\n').includes(key.slice(4, 36)), 'the key is not on stderr');
  const info = await apiKeys.verify(key);
  assert.ok(info);
  assert.deepEqual(info.roles, ['reader', 'writer']);
  assert.deepEqual(info.routes, ['orders.list']);
  assert.equal(info.expiresAt, new Date(clock.now() + 90 * 86_400_000).toISOString());

  const listed = await cli(['list']);
  const line = listed.out.find((l) => l.startsWith(info.id)) ?? '';
  assert.match(line, /active/);
  assert.ok(!listed.out.join('\n').includes(key.slice(4, 36)));

  const rotated = await cli(['rotate', info.id, '--overlap', '1h']);
  assert.equal(rotated.error, undefined, rotated.error?.message);
  const newKey = rotated.out[0] ?? '';
  assert.ok(isApiKey(newKey) && newKey !== key);
  assert.match(rotated.err.join('\n'), new RegExp(`${info.id} keeps working until ${new Date(clock.now() + 3600_000).toISOString()}`));

  const revoked = await cli(['revoke', info.id]);
  assert.deepEqual(revoked.out, [`revoked ${info.id}`]);
  assert.equal(await apiKeys.verify(key), undefined);
  const missing = await cli(['revoke', 'ak_000000000000']);
  assert.equal(missing.error?.code, 'PCL_ERR_APIKEY_NOT_FOUND');
});
