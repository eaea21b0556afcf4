// Recorded attack sequences replayed against the running shop (SCENARIOS.md §1): normal traffic
// raises no alert; a password-guessing run and mallory's order-id sweep each raise theirs within
// the window — in the audit log and at a signed webhook — and the sweep blocks mallory.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startSystem, type RunningSystem } from '../../src/cli/system.js';
import { demoUsers } from '../../src/cli/demo.js';
import { CLI_CLIENT_ID } from '../../src/control/server.js';
import { loginWithPkce } from '../../src/tokens/client/pkce-login.js';
import { AdminClient, readAdminToken } from '../../src/cli/admin-client.js';
import { verifyWebhookSignature } from '../../src/detect/index.js';
import { cliPath, repoRoot } from '../helpers/paths.js';
import { auditEvents } from '../helpers/audit.js';
import { call, codeOf, freePortBlock, freePorts } from '../helpers/net.js';

let sys: RunningSystem;
let dir: string;
let ca: string;
let receiver: Server;
const secret = randomBytes(32);
/** What the webhook receiver got, with whether each signature verified. */
const delivered: { verified: boolean; alert: { rule: string; subject: Record<string, string> } }[] = [];

const alerts = (component: string): { action?: string; detail?: Record<string, unknown> }[] =>
  auditEvents(dir, component).filter((e) => e.type === 'admin' && e.action === 'detect.alert') as { detail?: Record<string, unknown> }[];
const allAlerts = (): unknown[] => ['control', 'gateway', 'sidecar-users', 'sidecar-orders', 'sidecar-payments'].flatMap(alerts);
const login = (username: string, password: string) => loginWithPkce({ controlUrl: sys.controlUrl, caPem: ca, clientId: CLI_CLIENT_ID, username, password });
const gw = (path: string, token: string) => call(sys.gatewayUrl + path, { ca, headers: { authorization: `Bearer ${token}` } });

/** Audit entries are written with group commit: poll briefly instead of sleeping a fixed time. */
async function eventually<T>(fn: () => T | undefined, what: string): Promise<T> {
  for (let i = 0; i < 100; i++) {
    const v = fn();
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.fail(`timed out waiting for ${what}`);
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pcl-attacks-'));
  receiver = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const verified = verifyWebhookSignature(secret, req.headers, body, Date.now());
      delivered.push({ verified, alert: (JSON.parse(body) as { data: { rule: string; subject: Record<string, string> } }).data });
      res.writeHead(204).end();
    });
  });
  const [control, gateway, hook] = await freePorts(3);
  await new Promise<void>((r) => receiver.listen(hook, '127.0.0.1', () => r()));
  sys = await startSystem({
    template: join(repoRoot, 'examples', 'shop', 'portcullis.yaml'),
    dataDir: dir, controlListen: `127.0.0.1:${control}`, gatewayListen: `127.0.0.1:${gateway}`,
    portBase: await freePortBlock(9), users: demoUsers('shop'),
    env: { PCL_TEST_WEBHOOK_SECRET: `whsec_${secret.toString('base64')}` },
    overrides: {
      detection: {
        rules: [
          { id: 'login-brute-force', kind: 'brute-force', severity: 'high', threshold: 5, windowSeconds: 300 },
          { id: 'order-enumeration', kind: 'enumeration', severity: 'high', threshold: 5, windowSeconds: 300, block: { seconds: 600 } },
          { id: 'refused-call', kind: 'workload-refused', severity: 'critical' },
        ],
        webhook: { url: `http://127.0.0.1:${hook}/alerts`, secretEnv: 'PCL_TEST_WEBHOOK_SECRET' },
      },
    },
  });
  ca = readFileSync(sys.caFile, 'utf8');
});

after(async () => {
  await sys?.stop();
  await new Promise((r) => receiver?.close(r));
  rmSync(dir, { recursive: true, force: true });
});

test('normal traffic raises no alert: one mistyped password, customers reading their own orders', async () => {
  await assert.rejects(login('bob', 'not-his-password'));
  const bob = (await login('bob', sys.passwords.bob ?? '')).accessToken;
  const alice = (await login('alice', sys.passwords.alice ?? '')).accessToken;
  for (let i = 0; i < 3; i++) {
    assert.equal((await gw('/shop/orders/o-1', alice)).status, 200);
    assert.equal((await gw('/shop/orders/o-2', bob)).status, 200);
    assert.equal((await gw('/shop/orders', alice)).status, 200);
  }
  await new Promise((r) => setTimeout(r, 500)); // let group commit write whatever there is
  assert.deepEqual(allAlerts(), []);
  assert.deepEqual(delivered, []);
});

test('guessing a password raises a brute-force alert at the control plane, signed to the webhook', async () => {
  for (let i = 0; i < 6; i++) await assert.rejects(login('ada', `guess-${i}`));
  const alert = await eventually(() => alerts('control').find((a) => a.detail?.rule === 'login-brute-force'), 'the brute-force alert');
  assert.equal(alert.detail?.kind, 'brute-force');
  const hook = await eventually(() => delivered.find((d) => d.alert.rule === 'login-brute-force'), 'the webhook delivery');
  assert.equal(hook.verified, true, 'the Standard Webhooks signature verifies with the shared secret');
  assert.equal(alerts('control').filter((a) => a.detail?.rule === 'login-brute-force').length, 1, 'one alert per subject per window, not one per guess');
});

test('a typed name that is no account is recorded only as its keyed hash, which `portcullis audit hash` reproduces', async () => {
  const typed = `Hunter2-${randomBytes(3).toString('hex')}`; // a password typed into the username field
  await assert.rejects(login(typed, 'x'));
  await eventually(() => auditEvents(dir, 'control').find((e) => e.type === 'admin' && e.action === 'oauth.login' && (e.who as { sub?: string }).sub?.startsWith('hmac:')), 'the failed login');
  assert.ok(!JSON.stringify(auditEvents(dir, 'control')).includes(typed), 'the typed value is nowhere in the log');
  const r = spawnSync(process.execPath, [cliPath, 'audit', 'hash', '-', '--config', sys.configFile], { input: `${typed}\n`, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const hashes = auditEvents(dir, 'control').filter((e) => e.type === 'admin' && e.action === 'oauth.login').map((e) => (e.who as { sub?: string }).sub);
  assert.match(r.stdout.trim(), /^hmac:[0-9a-f]{32}$/);
  assert.ok(hashes.includes(r.stdout.trim()), `${r.stdout.trim()} among ${hashes.join(', ')}`);
});

test('a probe in the query of an allowed request is recorded by its signature name, never the query itself', async () => {
  const alice = (await login('alice', sys.passwords.alice ?? '')).accessToken;
  const r = await gw('/shop/orders?q=1+UNION+SELECT+password+FROM+users', alice);
  assert.equal(r.status, 200, 'allowed: the route permits alice');
  const e = await eventually(() => auditEvents(dir, 'gateway').find((x) => x.decision === 'allow' && ((x.what as { signatures?: string[] }).signatures ?? []).includes('sql-injection')), 'the recorded signature');
  assert.ok(!JSON.stringify(e).includes('UNION'), 'the query is not in the audit event');
});

test("mallory's order-id sweep raises an enumeration alert and blocks her, here at once and in the control plane's list", async () => {
  const mallory = (await login('mallory', sys.passwords.mallory ?? '')).accessToken;
  for (const id of ['o-1', 'o-2', 'o-4', 'o-5', 'o-6']) { // five distinct refusals: the threshold
    const r = await gw(`/shop/orders/${id}`, mallory);
    assert.equal(r.status, 404, `${id}: foreign and missing orders look the same`);
  }
  const alert = await eventually(() => alerts('sidecar-orders').find((a) => a.detail?.rule === 'order-enumeration'), 'the enumeration alert');
  assert.equal(alert.detail?.principal, 'mallory');
  // The orders sidecar applies the block itself: her own order is now refused there.
  const blocked = await gw('/shop/orders/o-3', mallory);
  assert.equal(blocked.status, 403);
  assert.equal(codeOf(blocked), 'PCL_ERR_BLOCKED');
  const orders = sys.config.services.find((s) => s.name === 'orders');
  const seen = (await call(`${orders?.upstream ?? ''}/__seen`)).json as { path: string; sub?: string }[];
  assert.ok(!seen.some((x) => x.sub === 'mallory' && x.path === '/shop/orders/o-3'), 'the blocked request never reached orders');
  const refusal = await eventually(() => auditEvents(dir, 'sidecar-orders').find((e) => e.code === 'PCL_ERR_BLOCKED'), 'the blocked decision');
  assert.equal((refusal.who as { sub?: string }).sub, 'mallory');
  const admin = new AdminClient(sys.controlUrl, ca, readAdminToken(dir) ?? '');
  try {
    const { blocks } = await admin.call<{ blocks: { kind: string; value: string; rule: string }[] }>('GET', '/v1/admin/blocks');
    assert.ok(blocks.some((b) => b.kind === 'principal' && b.value === 'mallory' && b.rule === 'order-enumeration'), JSON.stringify(blocks));
  } finally {
    await admin.close();
  }
  // Alice is not affected.
  const alice = (await login('alice', sys.passwords.alice ?? '')).accessToken;
  assert.equal((await gw('/shop/orders/o-1', alice)).status, 200);
});
