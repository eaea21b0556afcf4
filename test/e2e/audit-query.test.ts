// Search across the system: the gateway ships its decisions through the REAL NATS JetStream to the
// control plane's audit store, and `portcullis audit query` / `audit tail` find a refused call.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'nats';
import { startSystem, type RunningSystem } from '../../src/cli/system.js';
import type { AuditEvent } from '../../src/core/events.js';
import { cliPath, repoRoot } from '../helpers/paths.js';
import { call, freePortBlock, freePorts } from '../helpers/net.js';

const NATS_URL = process.env.NATS_URL ?? 'nats://127.0.0.1:4222';
const tag = randomBytes(4).toString('hex');
const names = { stream: `PCL_E2E_${tag}`, subjectPrefix: `pcle2e${tag}.audit`, durable: `pcl-e2e-${tag}` };
const up = await new Promise<boolean>((resolve) => {
  const u = new URL(NATS_URL);
  const s = netConnect(Number(u.port || 4222), u.hostname);
  s.setTimeout(1000, () => { s.destroy(); resolve(false); });
  s.once('connect', () => { s.end(); resolve(true); });
  s.once('error', () => resolve(false));
});
const skip = up ? false : `NATS is not reachable at ${NATS_URL} (.ci/run starts it)`;

let sys: RunningSystem | undefined;
let dir: string;
let ca: string;

before(async () => {
  if (!up) return;
  dir = mkdtempSync(join(tmpdir(), 'pcl-auditq-'));
  // The shop, with its own JetStream names so that runs never share a stream or a consumer.
  const [control, gateway] = await freePorts(2);
  sys = await startSystem({
    template: join(repoRoot, 'examples', 'shop', 'portcullis.yaml'), overrides: { audit: { nats: names } }, dataDir: join(dir, 'data'), controlListen: `127.0.0.1:${control}`, gatewayListen: `127.0.0.1:${gateway}`,
    portBase: await freePortBlock(9), env: { NATS_URL, PORTCULLIS_LOG_LEVEL: 'warn' },
  });
  ca = readFileSync(sys.caFile, 'utf8');
});

after(async () => {
  await sys?.stop();
  if (up) {
    const nc = await connect({ servers: NATS_URL });
    await (await nc.jetstreamManager()).streams.delete(names.stream).catch(() => undefined);
    await nc.close();
  }
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const cli = (args: string[]): { code: number; stdout: string; stderr: string } => {
  const r = spawnSync(process.execPath, [cliPath, ...args, '--config', sys?.configFile ?? ''], { encoding: 'utf8' });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
};

async function eventually<T>(what: string, fn: () => T | undefined, ms = 10_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

test('a refused call at the gateway is found by `audit query --decision deny --route`', { skip, timeout: 20_000 }, async () => {
  const path = `/shop/orders/o-${tag}/refund`;
  const r = await call(`${sys?.gatewayUrl}${path}`, { ca, method: 'POST' });
  assert.equal(r.status, 401, 'no token: refused at the edge');

  const table = await eventually('the refusal in the audit store', () => {
    const q = cli(['audit', 'query', '--decision', 'deny', '--route', 'shop.orders.refund', '--since', '-5m']);
    assert.equal(q.code, 0, q.stderr);
    return q.stdout.includes(path) ? q.stdout : undefined;
  });
  assert.match(table, /^TIME\s+COMPONENT\s+DECISION\s+STATUS/m, 'a readable table by default');
  assert.match(table, new RegExp(`gateway\\s+deny\\s+401\\s+-\\s+shop\\.orders\\.refund\\s+POST ${path}`));

  const json = cli(['audit', 'query', '--decision', 'deny', '--route', 'shop.orders.refund', '--json']);
  assert.equal(json.code, 0, json.stderr);
  const events = JSON.parse(json.stdout) as AuditEvent[]; // the CLI's --json output
  const mine = events.find((e) => e.type === 'decision' && e.what.path === path);
  assert.ok(mine && mine.type === 'decision');
  assert.equal(mine.component, 'gateway');
  assert.equal(mine.decision, 'deny');
  assert.ok(events.every((e) => e.type === 'decision' && e.decision === 'deny' && e.what.route === 'shop.orders.refund'), 'only what was asked for');

  // The control plane's own events are in the same store, and filters that match nothing say so.
  assert.match(cli(['audit', 'query', '--component', 'control']).stdout, /join-token\.create/);
  assert.match(cli(['audit', 'query', '--principal', `nobody-${tag}`]).stdout, /no matching audit events/);
  const bad = cli(['audit', 'query', '--decision', 'maybe']);
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /decision must be allow or deny/);
});

test('`audit tail` follows new decisions until Ctrl-C', { skip, timeout: 20_000 }, async () => {
  const tail = spawn(process.execPath, [cliPath, 'audit', 'tail', '--route', 'shop.orders.refund', '--json', '--config', sys?.configFile ?? ''], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  tail.stdout.on('data', (d: Buffer) => { out += d.toString(); });
  const exited = new Promise<number | null>((r) => tail.once('exit', (code) => r(code)));
  try {
    await new Promise((r) => setTimeout(r, 1500)); // the first poll has run
    const path = `/shop/orders/t-${tag}/refund`;
    assert.equal((await call(`${sys?.gatewayUrl}${path}`, { ca, method: 'POST' })).status, 401);
    await eventually('the new refusal in the tail', () => (out.includes(path) ? true : undefined));
    const line = out.split('\n').find((l) => l.includes(path)) ?? '';
    assert.equal((JSON.parse(line) as AuditEvent).component, 'gateway', 'one JSON event per line');
  } finally {
    tail.kill('SIGINT');
  }
  assert.equal(await exited, 0, 'Ctrl-C ends the tail cleanly');
});
