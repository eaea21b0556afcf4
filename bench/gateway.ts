// The gateway's cost of its own audit log and detection: one process holds the control plane, the
// gateway, the orders sidecar and a trivial upstream; a separate load process sends keep-alive
// HTTPS requests with a valid token to GET /shop/orders (Cedar decision at the gateway and at the
// sidecar, mTLS hop, JSON answer). Variants alternate: "off" (no audit recorder, no detector:
// decisions are published to no one) and "on" (each decision appended to the hash-chained log with
// group commit and signed checkpoints, and observed by every default detection rule).
//   node dist/bench/gateway.js      BENCH_SECONDS (5), BENCH_ROUNDS (3), BENCH_CONNECTIONS (32)
import { fork } from 'node:child_process';
import { createServer } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Agent, request } from 'undici';
import { loadConfig } from '../src/core/config/load.js';
import type { PortcullisConfig } from '../src/core/config/types.js';
import { createLogger } from '../src/core/log.js';
import { ControlPlane } from '../src/control/server.js';
import { ControlClient } from '../src/dataplane/control-client.js';
import { Gateway } from '../src/dataplane/gateway.js';
import { ActivePolicies } from '../src/dataplane/policies.js';
import { Sidecar } from '../src/dataplane/sidecar.js';
import { SnapshotSource } from '../src/dataplane/snapshot.js';
import { WorkloadIdentity } from '../src/dataplane/workload-identity.js';
import { KeyWrapper } from '../src/kms/wrap.js';
import { MemoryStore } from '../src/store/memory.js';
import { issueAccessToken } from '../src/tokens/issue.js';
import { AuditRecorder } from '../src/cli/runtime.js';
import { WorkloadSigner } from '../src/audit/signers.js';
import { startDetection } from '../src/cli/detection.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 32);
const root = fileURLToPath(new URL('../../', import.meta.url));

interface LoadResult { requests: number; errors: number; seconds: number; p50: number; p99: number }

/** The load process: CONNECTIONS request loops for SECONDS; reports rate and latency percentiles. */
async function load(url: string, token: string, ca: string): Promise<LoadResult> {
  const agent = new Agent({ connections: CONNECTIONS, pipelining: 1, connect: { ca } });
  const lat: number[] = [];
  let errors = 0;
  const end = performance.now() + SECONDS * 1000;
  const loop = async (): Promise<void> => {
    while (performance.now() < end) {
      const t = performance.now();
      try {
        const r = await request(url, { dispatcher: agent, headers: { authorization: `Bearer ${token}` } });
        await r.body.dump();
        if (r.statusCode !== 200) errors++;
        else lat.push(performance.now() - t);
      } catch {
        errors++;
      }
    }
  };
  const start = performance.now();
  await Promise.all(Array.from({ length: CONNECTIONS }, loop));
  const seconds = (performance.now() - start) / 1000;
  await agent.close();
  lat.sort((a, b) => a - b);
  const pct = (p: number): number => lat[Math.min(lat.length - 1, Math.floor(lat.length * p))] ?? NaN;
  return { requests: lat.length, errors, seconds, p50: pct(0.5), p99: pct(0.99) };
}

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const a = s.address();
  await new Promise((r) => s.close(r));
  return typeof a === 'object' && a ? a.port : 0;
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'pcl-bench-gw-'));
  const base = loadConfig(join(root, 'examples', 'shop', 'portcullis.yaml'));
  const [control, gw, up, inbound, outbound] = await Promise.all([freePort(), freePort(), freePort(), freePort(), freePort()]);
  const config: PortcullisConfig = {
    ...base,
    control: { ...base.control, listen: `127.0.0.1:${control}`, url: `https://127.0.0.1:${control}`, dataDir: dir },
    gateway: { ...base.gateway, listen: `127.0.0.1:${gw}` },
    tokens: { ...base.tokens, issuer: `https://127.0.0.1:${control}`, audience: `https://127.0.0.1:${gw}` },
    services: base.services.map((s) => s.name === 'orders' ? { ...s, upstream: `http://127.0.0.1:${up}`, sidecar: { listen: `127.0.0.1:${inbound}`, outbound: `127.0.0.1:${outbound}` } } : s),
  };
  const cp = await ControlPlane.create({ config, store: new MemoryStore(), wrapper: new KeyWrapper(Buffer.alloc(32, 7)) });
  await cp.listen();
  const body = JSON.stringify({ orders: [{ id: 'o-1', owner: 'alice', items: [{ sku: 'tea', qty: 2 }] }] });
  const upstream = createServer((req, res) => { req.resume(); res.writeHead(200, { 'content-type': 'application/json' }).end(body); });
  await new Promise<void>((r) => upstream.listen(up, '127.0.0.1', () => r()));
  const identity = async (spiffeId: string): Promise<{ id: WorkloadIdentity; control: ControlClient }> => {
    const c = new ControlClient(config.control.url, cp.ca.trustBundlePem());
    const id = await WorkloadIdentity.obtain({ spiffeId, control: c, stateDir: mkdtempSync(join(dir, 'id-')), joinToken: await cp.joinTokens.create(spiffeId) });
    return { id, control: c };
  };
  const orders = await identity('spiffe://demo/shop/orders');
  const sidecar = new Sidecar({ config, service: 'orders', identity: orders.id, policies: new ActivePolicies(cp.policies.current()) });
  await sidecar.listen();
  const g = await identity(config.gateway.spiffeId);
  const snapshot = new SnapshotSource({ control: g.control, identity: g.id, stateDir: join(dir, 'gw-state') });
  await snapshot.init();
  const gateway = new Gateway({ config, identity: g.id, snapshot, policies: new ActivePolicies(snapshot) });
  await gateway.listen();
  const token = (await issueAccessToken(cp.keys, { issuer: config.tokens.issuer, audience: config.tokens.audience, subject: 'alice', clientId: 'bench', roles: ['customer'], ttlSec: 3600 })).token;
  const url = `https://127.0.0.1:${gw}/shop/orders`;

  const runLoad = (): Promise<LoadResult> => new Promise((resolve, reject) => {
    const child = fork(fileURLToPath(import.meta.url), ['load', url, token], { env: { ...process.env, BENCH_CA: cp.ca.trustBundlePem() } });
    child.once('message', (m) => resolve(m as LoadResult));
    child.once('error', reject);
  });

  const results: Record<'off' | 'on', LoadResult[]> = { off: [], on: [] };
  for (let round = 0; round < ROUNDS; round++) {
    for (const variant of ['off', 'on'] as const) {
      let stop = async (): Promise<void> => {};
      if (variant === 'on') {
        const logger = createLogger('bench', 'warn');
        const recorder = new AuditRecorder(join(dir, `audit-${round}`), logger);
        await recorder.open(new WorkloadSigner(() => g.id.current()));
        const detection = startDetection({ config, logger });
        stop = async () => { await detection?.stop(); await recorder.close(); };
      }
      results[variant].push(await runLoad());
      await stop();
      const r = results[variant].at(-1);
      process.stderr.write(`round ${round + 1} ${variant}: ${Math.round((r?.requests ?? 0) / (r?.seconds ?? 1))} req/s\n`);
    }
  }
  const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
  const summary = (v: 'off' | 'on') => ({
    rate: median(results[v].map((r) => r.requests / r.seconds)),
    p50: median(results[v].map((r) => r.p50)),
    p99: median(results[v].map((r) => r.p99)),
    errors: results[v].reduce((a, r) => a + r.errors, 0),
  });
  const off = summary('off');
  const on = summary('on');
  console.log(`gateway GET /shop/orders, ${CONNECTIONS} connections, ${SECONDS} s x ${ROUNDS} rounds, median (Cedar at gateway and sidecar, mTLS hop)`);
  console.log(`  audit+detection off  ${off.rate.toFixed(0).padStart(7)} req/s  p50 ${off.p50.toFixed(2)} ms  p99 ${off.p99.toFixed(2)} ms  errors ${off.errors}`);
  console.log(`  audit+detection on   ${on.rate.toFixed(0).padStart(7)} req/s  p50 ${on.p50.toFixed(2)} ms  p99 ${on.p99.toFixed(2)} ms  errors ${on.errors}`);
  console.log(`  cost of audit+detection: ${((1 - on.rate / off.rate) * 100).toFixed(1)}% throughput (aim: at most 10%)`);
  snapshot.stop();
  await gateway.close();
  await sidecar.close();
  await cp.close();
  await new Promise((r) => upstream.close(r));
  rmSync(dir, { recursive: true, force: true });
  process.exit(0);
}

if (process.argv[2] === 'load') {
  const [, , , url, token] = process.argv;
  load(url ?? '', token ?? '', process.env.BENCH_CA ?? '').then((r) => { process.send?.(r); process.exit(0); }, (err: unknown) => { console.error(err); process.exit(1); });
} else {
  main().catch((err: unknown) => { console.error(err); process.exit(1); });
}
