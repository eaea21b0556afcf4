// `portcullis keys list | rotate [--force]` against the real admin API (createKeysApi) over HTTPS
// with a certificate of our CA, as the CLI meets a control plane: what it prints, the refusals it
// reports by code, the audit events, and that no key material ever leaves the API.
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:https';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, beforeEach, test } from 'node:test';
import { Command } from 'commander';
import { AdminClient } from '../../src/cli/admin-client.js';
import { registerKeysCommands } from '../../src/cli/keys.js';
import { AdminToken } from '../../src/control/admin-token.js';
import { createKeysApi, KEYS_PATH, KEYS_ROTATE_PATH, type KeysListReply } from '../../src/control/keys-api.js';
import { sendJson } from '../../src/control/http.js';
import { FakeClock } from '../../src/core/clock.js';
import { asPortcullisError } from '../../src/core/errors.js';
import { subscribeAudit, type AdminEvent } from '../../src/core/events.js';
import { CertificateAuthority } from '../../src/identity/ca.js';
import { createWorkloadKeyAndCsr } from '../../src/identity/workload-key.js';
import { KeyWrapper } from '../../src/kms/wrap.js';
import { MemoryStore } from '../../src/store/memory.js';
import { SigningKeys } from '../../src/tokens/signing-keys.js';
import { randomBytes } from 'node:crypto';

let server: Server;
let dir: string;
let configFile: string;
let url: string;
let caPem: string;
let keys: SigningKeys;
let clock: FakeClock;
let events: AdminEvent[] = [];
let unsubscribe: () => void;

before(async () => {
  const store = new MemoryStore();
  const wrapper = new KeyWrapper(randomBytes(32));
  clock = new FakeClock(Date.UTC(2030, 0, 1));
  keys = await SigningKeys.loadOrCreate({ store, wrapper, clock });
  dir = mkdtempSync(join(tmpdir(), 'pcl-keys-cli-'));
  const { admin } = await AdminToken.loadOrCreate(store, dir);
  // TLS as the control plane serves it: a certificate of the trust domain's CA, the bundle in the data directory.
  const ca = await CertificateAuthority.loadOrCreate({ store, wrapper, trustDomain: 'demo' });
  const { keyPem, csrPem } = await createWorkloadKeyAndCsr('spiffe://demo/control');
  const cert = await ca.issue({ csrPem, spiffeId: 'spiffe://demo/control', ipAddresses: ['127.0.0.1'] });
  caPem = ca.trustBundlePem();
  writeFileSync(join(dir, 'ca.pem'), caPem);
  const api = createKeysApi({ keys, admin, clock });
  let n = 0;
  server = createServer({ key: keyPem, cert: cert.chainPem }, (req, res) => {
    const requestId = `req-${++n}`;
    // As ControlPlane.handle: a refusal becomes its status and public JSON.
    api(req, res, { requestId }).then(
      (handled) => { if (!handled) sendJson(res, 404, { error: { code: 'PCL_ERR_ROUTE_NOT_FOUND', message: 'not found' } }); },
      (err: unknown) => { const e = asPortcullisError(err); sendJson(res, e.status, e.toPublicJSON()); },
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const addr = server.address();
  url = `https://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;
  configFile = join(dir, 'portcullis.yaml');
  writeFileSync(configFile, `trustDomain: demo\ncontrol:\n  url: ${url}\n  dataDir: ${dir}\nservices:\n  - { name: api, spiffeId: spiffe://demo/api, upstream: http://127.0.0.1:1, sidecar: { listen: 127.0.0.1:2, outbound: 127.0.0.1:3 } }\n`);
  unsubscribe = subscribeAudit((e) => { if (e.type === 'admin') events.push(e); });
});

after(async () => {
  unsubscribe();
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
  rmSync(dir, { recursive: true, force: true });
});

beforeEach(() => { events = []; });

/** Runs `portcullis <args>` in process; returns the printed lines. */
async function run(...args: string[]): Promise<string[]> {
  const lines: string[] = [];
  const cli = new Command('portcullis').exitOverride();
  registerKeysCommands(cli, configFile, (l) => lines.push(l));
  await cli.parseAsync(args, { from: 'user' });
  return lines;
}

const admin = (): AdminClient => new AdminClient(url, caPem, readFileSync(join(dir, 'admin.token'), 'utf8').trim());

test('keys list: a header, then the current and the next key with algorithm and times', async () => {
  const lines = await run('keys', 'list');
  const [cur, next] = keys.list();
  assert.ok(cur && next);
  assert.match(lines[0] ?? '', /^STATE +ALG +KID +PUBLISHED +SIGNING FROM +LEAVES JWKS$/);
  assert.match(lines[1] ?? '', new RegExp(`^current +ES256 +${cur.kid} +2030-01-01T00:00:00.000Z +2030-01-01T00:00:00.000Z +-$`));
  assert.match(lines[2] ?? '', new RegExp(`^next +ES256 +${next.kid} +2030-01-01T00:00:00.000Z +- +-$`));
  assert.equal(lines.length, 3);
});

test('the API shows no key material, and refuses without the admin token', async () => {
  const c = admin();
  try {
    const reply = await c.call<KeysListReply>('GET', KEYS_PATH);
    assert.equal(reply.keys.length, 2);
    assert.equal(reply.publishLeadMs, 60_000);
    for (const k of reply.keys) assert.deepEqual(Object.keys(k).filter((f) => !['kid', 'alg', 'state', 'createdAt', 'publishedAt', 'activatedAt', 'retiredAt', 'retireAt'].includes(f)), []);
  } finally {
    await c.close();
  }
  const stranger = new AdminClient(url, caPem, 'pat_not-the-token');
  try {
    await assert.rejects(stranger.call('GET', KEYS_PATH), { code: 'PCL_ERR_ADMIN_AUTH' });
    await assert.rejects(stranger.call('POST', KEYS_ROTATE_PATH, {}), { code: 'PCL_ERR_ADMIN_AUTH' });
  } finally {
    await stranger.close();
  }
  assert.deepEqual(events, [], 'nothing rotated, nothing audited');
});

test('rotate input is strict: force must be a boolean, no other field, POST only', async () => {
  const c = admin();
  try {
    await assert.rejects(c.call('POST', KEYS_ROTATE_PATH, { force: 'yes' }), { code: 'PCL_ERR_INVALID_ARGUMENT' });
    await assert.rejects(c.call('POST', KEYS_ROTATE_PATH, { kid: 'x' }), { code: 'PCL_ERR_INVALID_ARGUMENT' });
    await assert.rejects(c.call('GET', KEYS_ROTATE_PATH), { code: 'PCL_ERR_METHOD_NOT_ALLOWED' });
    await assert.rejects(c.call('DELETE', KEYS_PATH), { code: 'PCL_ERR_METHOD_NOT_ALLOWED' });
    await assert.rejects(c.call('GET', '/v1/admin/keys/other'), { code: 'PCL_ERR_ROUTE_NOT_FOUND' });
  } finally {
    await c.close();
  }
});

test('keys rotate right after start is refused (the next key is newly published) and the refusal is audited', async () => {
  const before = keys.current().kid;
  await assert.rejects(run('keys', 'rotate'), { code: 'PCL_ERR_KEY_ROTATION_TOO_EARLY' });
  assert.equal(keys.current().kid, before);
  assert.equal(events.length, 1);
  assert.equal(events[0]?.action, 'keys.rotate');
  assert.equal(events[0]?.outcome, 'failure');
  assert.equal(events[0]?.detail.code, 'PCL_ERR_KEY_ROTATION_TOO_EARLY');
});

test('keys rotate once the next key is published: it signs, the old one is retired until its tokens expired; audited with the request id', async () => {
  await clock.advance(60_000);
  const [cur, next] = keys.list();
  assert.ok(cur && next);
  const lines = await run('keys', 'rotate');
  assert.equal(keys.current().kid, next.kid);
  assert.equal(lines[0], `signing with ${next.kid} (was ${cur.kid}); next key ${keys.list()[1]?.kid} published`);
  const retireAt = new Date(clock.now() + 10_000 + 900_000 + 30_000).toISOString();
  assert.equal(lines[1], `${cur.kid} stays in the JWKS until ${retireAt}, when the last token it signed has expired`);
  assert.equal(events.length, 1);
  assert.equal(events[0]?.outcome, 'success');
  assert.equal(events[0]?.who.sub, 'admin');
  assert.match(events[0]?.requestId ?? '', /^req-\d+$/);
  assert.deepEqual(events[0]?.detail, { force: false, rotated: true, from: cur.kid, to: next.kid, next: keys.list()[1]?.kid, retireAt });
  const list = await run('keys', 'list');
  assert.match(list[3] ?? '', new RegExp(`^retired +ES256 +${cur.kid} .* ${retireAt.replace(/\./g, '\\.')}$`));
});

test('keys rotate --force: the old key leaves the JWKS at once', async () => {
  const old = keys.current().kid;
  const lines = await run('keys', 'rotate', '--force');
  assert.equal(lines[1], `${old} removed from the JWKS: tokens it signed are refused from the data planes' next snapshot refresh`);
  assert.ok(!keys.jwks().keys.some((k) => k.kid === old));
  assert.equal(keys.list().find((k) => k.kid === old)?.state, 'removed');
  assert.equal(events[0]?.detail.force, true);
});
