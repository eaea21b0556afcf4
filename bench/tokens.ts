// The token service's and the CA's throughput, side by side in one run, each with p50/p99 latency:
//   - access tokens through the real token endpoint (client_credentials, workload mTLS client auth);
//   - introspections (RFC 7662) by a workload;
//   - certificates through POST /v1/workload/renew (a CSR per request);
//   - in-process: issueAccessToken alone (the JWT signature) and CertificateAuthority.issue alone.
// The control plane runs in this process; the HTTP load comes from a forked process over keep-alive
// mTLS connections, so the two do not share an event loop. Besides the wall-clock rate, the table
// gives the control plane's CPU time per operation: on a shared machine, "operations per CPU-second"
// is the figure to hold against the aims (3,000 tokens/s and 1,000 certificates/s on one core).
// As in `portcullis control`, every operation's audit event goes to the hash-chained log (group
// commit) and to the audit store; BENCH_AUDIT=0 leaves both out, to see what they cost.
//   node dist/bench/tokens.js   BENCH_SECONDS (5), BENCH_WARMUP (1), BENCH_CONNECTIONS (16),
//                               BENCH_CSRS (400), BENCH_ONLY (e.g. "token" to profile one phase), BENCH_AUDIT (1)
import { fork, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Agent, request } from 'undici';
import { loadConfig } from '../src/core/config/load.js';
import type { PortcullisConfig } from '../src/core/config/types.js';
import { ControlPlane } from '../src/control/server.js';
import { AuditRecorder } from '../src/cli/runtime.js';
import { AuditStoreSink } from '../src/audit/store-sink.js';
import { silentLogger } from '../src/core/log.js';
import { ControlClient } from '../src/dataplane/control-client.js';
import { WorkloadIdentity } from '../src/dataplane/workload-identity.js';
import { createWorkloadKeyAndCsr } from '../src/identity/workload-key.js';
import { KeyWrapper } from '../src/kms/wrap.js';
import { MemoryStore } from '../src/store/memory.js';
import { issueAccessToken } from '../src/tokens/issue.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const WARMUP = Number(process.env.BENCH_WARMUP ?? 1);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 16);
const CSRS = Number(process.env.BENCH_CSRS ?? 400);
const AUDIT = process.env.BENCH_AUDIT !== '0';
const ONLY = process.env.BENCH_ONLY?.split(',').map((s) => s.trim()).filter(Boolean);
const WORKLOAD = 'spiffe://demo/shop/orders';
const TOKEN_AIM = 3000;
const CERT_AIM = 1000;
const root = fileURLToPath(new URL('../../', import.meta.url));

type HttpPhase = 'token' | 'introspect' | 'renew';
type Phase = HttpPhase | 'sign' | 'ca';
const wanted = (p: Phase): boolean => ONLY === undefined || ONLY.includes(p);

/** What the load process is given: where to send, and the workload credentials to send with. */
interface LoadInit { type: 'init'; base: string; ca: string; key: string; cert: string; token: string }
type ToLoad = LoadInit | { type: 'run'; phase: HttpPhase } | { type: 'exit' };
type FromLoad = { type: 'ready' } | { type: 'measuring' } | { type: 'result'; result: Measured };

/** One measured phase: successful operations, their latencies' percentiles, CPU spent. */
interface Measured { ops: number; errors: number; seconds: number; p50: number; p99: number; cpuSec: number }
interface Row extends Measured { label: string; serverCpuSec: number; aim?: number }

const cpuSeconds = (since: NodeJS.CpuUsage): number => {
  const u = process.cpuUsage(since);
  return (u.user + u.system) / 1e6;
};

/** Latencies (ms) → p50, p99; sorts in place. */
function percentiles(lat: number[]): { p50: number; p99: number } {
  lat.sort((a, b) => a - b);
  const at = (p: number): number => lat[Math.min(lat.length - 1, Math.floor(lat.length * p))] ?? NaN;
  return { p50: at(0.5), p99: at(0.99) };
}

// ---------------------------------------------------------------------------------------------
// The load process.

/** `connections` loops sending `send` back to back until `until`; latencies of the successful ones. */
async function drive(connections: number, until: number, send: () => Promise<boolean>): Promise<{ lat: number[]; errors: number }> {
  const lat: number[] = [];
  let errors = 0;
  const loop = async (): Promise<void> => {
    while (performance.now() < until) {
      const t = performance.now();
      try {
        if (await send()) lat.push(performance.now() - t);
        else errors++;
      } catch {
        errors++;
      }
    }
  };
  await Promise.all(Array.from({ length: connections }, loop));
  return { lat, errors };
}

async function loadProcess(): Promise<void> {
  const reply = (m: FromLoad): void => void process.send?.(m);
  const init = await new Promise<LoadInit>((resolve) => process.once('message', (m) => resolve(m as LoadInit))); // the first message is always init
  // A pool of distinct CSRs, made before anything is timed. The CA verifies and signs each request
  // in full and keeps nothing per CSR, so a CSR coming round again costs it the same.
  const csrs: string[] = [];
  for (let i = 0; i < CSRS; i += 16) {
    csrs.push(...(await Promise.all(Array.from({ length: Math.min(16, CSRS - i) }, async () => (await createWorkloadKeyAndCsr(WORKLOAD)).csrPem))));
  }
  let next = 0;
  const form = { 'content-type': 'application/x-www-form-urlencoded' };
  const post = async (agent: Agent, path: string, headers: Record<string, string>, body: string, ok: (text: string) => boolean): Promise<boolean> => {
    const r = await request(init.base + path, { method: 'POST', dispatcher: agent, headers, body });
    const text = await r.body.text();
    return r.statusCode === 200 && ok(text);
  };
  const senders: Record<HttpPhase, (agent: Agent) => Promise<boolean>> = {
    token: (a) => post(a, '/oauth2/token', form, 'grant_type=client_credentials', (t) => t.startsWith('{"access_token":"ey')),
    introspect: (a) => post(a, '/oauth2/introspect', form, `token=${init.token}`, (t) => t.startsWith('{"active":true')),
    renew: (a) => post(a, '/v1/workload/renew', { 'content-type': 'application/json' }, JSON.stringify({ csr: csrs[next++ % csrs.length] }), (t) => t.includes('BEGIN CERTIFICATE')),
  };
  reply({ type: 'ready' });
  process.on('message', (m: ToLoad) => {
    if (m.type === 'exit') process.exit(0);
    if (m.type !== 'run') return;
    void (async () => {
      const agent = new Agent({ connections: CONNECTIONS, pipelining: 1, connect: { ca: init.ca, key: init.key, cert: init.cert } });
      const send = senders[m.phase];
      await drive(CONNECTIONS, performance.now() + WARMUP * 1000, () => send(agent)); // connections open, JIT warm
      reply({ type: 'measuring' });
      const cpu = process.cpuUsage();
      const start = performance.now();
      const { lat, errors } = await drive(CONNECTIONS, start + SECONDS * 1000, () => send(agent));
      const seconds = (performance.now() - start) / 1000;
      const cpuSec = cpuSeconds(cpu);
      await agent.close();
      reply({ type: 'result', result: { ops: lat.length, errors, seconds, ...percentiles(lat), cpuSec } });
    })();
  });
}

// ---------------------------------------------------------------------------------------------
// The control plane's process.

/** Calls `op` back to back (one at a time) for `seconds`: rate, latency percentiles, CPU. */
async function inProcess(label: string, aim: number, op: (i: number) => Promise<unknown>): Promise<Row> {
  for (let i = 0, end = performance.now() + WARMUP * 1000; performance.now() < end; i++) await op(i);
  const lat: number[] = [];
  const cpu = process.cpuUsage();
  const start = performance.now();
  const end = start + SECONDS * 1000;
  for (let i = 0; performance.now() < end; i++) {
    const t = performance.now();
    await op(i);
    lat.push(performance.now() - t);
  }
  const seconds = (performance.now() - start) / 1000;
  const cpuSec = cpuSeconds(cpu);
  return { label, aim, ops: lat.length, errors: 0, seconds, ...percentiles(lat), cpuSec, serverCpuSec: cpuSec };
}

/** Runs one HTTP phase in the load process; the server's CPU is counted from the end of warm-up. */
function overHttp(child: ChildProcess, phase: HttpPhase, label: string, aim?: number): Promise<Row> {
  return new Promise((resolve) => {
    let cpu = process.cpuUsage();
    const onMessage = (m: FromLoad): void => {
      if (m.type === 'measuring') cpu = process.cpuUsage();
      if (m.type !== 'result') return;
      child.off('message', onMessage);
      resolve({ label, ...(aim === undefined ? {} : { aim }), ...m.result, serverCpuSec: cpuSeconds(cpu) });
    };
    child.on('message', onMessage);
    child.send({ type: 'run', phase } satisfies ToLoad);
  });
}

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const a = s.address();
  await new Promise((r) => s.close(r));
  return typeof a === 'object' && a ? a.port : 0;
}

function printTable(rows: Row[]): void {
  const cols = ['what', 'ops/s', 'p50 ms', 'p99 ms', 'errors', 'server cores', 'load cores', 'CP ms/op', 'ops/CPU-s', 'aim/s', 'wall/aim', 'CPU-s/aim'];
  const cells = rows.map((r) => {
    const rate = r.ops / r.seconds;
    const perCpu = r.ops / r.serverCpuSec;
    const inProc = r.serverCpuSec === r.cpuSec;
    return [
      r.label, rate.toFixed(0), r.p50.toFixed(2), r.p99.toFixed(2), String(r.errors),
      (r.serverCpuSec / r.seconds).toFixed(2), inProc ? '-' : (r.cpuSec / r.seconds).toFixed(2),
      ((r.serverCpuSec * 1000) / r.ops).toFixed(3), perCpu.toFixed(0),
      r.aim === undefined ? '-' : String(r.aim),
      r.aim === undefined ? '-' : `${(rate / r.aim).toFixed(2)}x`,
      r.aim === undefined ? '-' : `${(perCpu / r.aim).toFixed(2)}x`,
    ];
  });
  const widths = cols.map((c, i) => Math.max(c.length, ...cells.map((row) => (row[i] ?? '').length)));
  const line = (row: string[]): string => row.map((v, i) => (i === 0 ? v.padEnd(widths[i] ?? 0) : v.padStart(widths[i] ?? 0))).join('  ');
  console.log(line(cols));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const row of cells) console.log(line(row));
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'pcl-bench-tokens-'));
  const base = loadConfig(join(root, 'examples', 'shop', 'portcullis.yaml'));
  const port = await freePort();
  const url = `https://127.0.0.1:${port}`;
  const config: PortcullisConfig = {
    ...base,
    control: { ...base.control, listen: `127.0.0.1:${port}`, url, dataDir: dir },
    tokens: { ...base.tokens, issuer: url },
  };
  const store = new MemoryStore();
  const recorder = AUDIT ? new AuditRecorder(join(dir, 'audit'), silentLogger) : undefined;
  await recorder?.open(undefined);
  const sink = AUDIT ? new AuditStoreSink({ store, logger: silentLogger }) : undefined;
  const cp = await ControlPlane.create({ config, store, wrapper: new KeyWrapper(Buffer.alloc(32, 7)) });
  await cp.listen();
  const workload = await WorkloadIdentity.obtain({
    spiffeId: WORKLOAD, control: new ControlClient(url, cp.ca.trustBundlePem()), stateDir: mkdtempSync(join(dir, 'id-')), joinToken: await cp.joinTokens.create(WORKLOAD),
  });
  const tokenRequest = { issuer: config.tokens.issuer, audience: config.tokens.audience, subject: 'alice', clientId: 'portcullis-cli', roles: ['customer'], scope: 'orders:read', ttlSec: config.tokens.accessTokenTtl };
  const userToken = (await issueAccessToken(cp.keys, tokenRequest)).token;

  const child = fork(fileURLToPath(import.meta.url), ['load'], { execArgv: [] }); // no --cpu-prof in the load process
  const ready = new Promise<void>((resolve) => child.once('message', () => resolve()));
  child.send({ type: 'init', base: url, ca: cp.ca.trustBundlePem(), key: workload.current().keyPem, cert: workload.current().chainPem, token: userToken } satisfies ToLoad);

  const rows: Row[] = [];
  const note = (r: Row): void => {
    rows.push(r);
    process.stderr.write(`${r.label}: ${(r.ops / r.seconds).toFixed(0)}/s\n`);
  };
  // Nothing else runs while a phase is measured: the load process makes its CSRs first.
  await ready;
  if (wanted('sign')) note(await inProcess('issueAccessToken (in-process)', TOKEN_AIM, () => issueAccessToken(cp.keys, tokenRequest)));
  if (wanted('ca')) {
    const csrs = await Promise.all(Array.from({ length: 64 }, async () => (await createWorkloadKeyAndCsr(WORKLOAD)).csrPem));
    note(await inProcess('CA issue() (in-process)', CERT_AIM, (i) => cp.ca.issue({ csrPem: csrs[i % csrs.length] ?? '', spiffeId: WORKLOAD })));
  }
  if (wanted('token')) note(await overHttp(child, 'token', 'POST /oauth2/token client_credentials', TOKEN_AIM));
  if (wanted('introspect')) note(await overHttp(child, 'introspect', 'POST /oauth2/introspect'));
  if (wanted('renew')) note(await overHttp(child, 'renew', 'POST /v1/workload/renew', CERT_AIM));
  child.send({ type: 'exit' } satisfies ToLoad);

  // The load average tells whether the wall-clock figures were measured on a busy machine.
  console.log(`token service and CA, node ${process.version}, ${cpus().length} CPUs, load average ${loadavg().map((l) => l.toFixed(1)).join(' ')}`);
  console.log(`audit: ${AUDIT ? 'on (hash-chained log with group commit, and the audit store)' : 'off (BENCH_AUDIT=0)'}`);
  console.log(`${SECONDS} s per phase after ${WARMUP} s warm-up; HTTP: ${CONNECTIONS} keep-alive mTLS connections from a separate process, ${CSRS} distinct CSRs round-robin`);
  console.log('ops/s: wall-clock rate; server/load cores: CPU-seconds per second of the control plane / the load process;');
  console.log('CP ms/op, ops/CPU-s: the control plane\'s CPU per operation (all its threads) - the one-core capacity; aims: 3,000 tokens/s, 1,000 certificates/s on one core\n');
  printTable(rows);
  await cp.close();
  await sink?.close();
  await recorder?.close();
  rmSync(dir, { recursive: true, force: true });
  process.exit(0);
}

if (process.argv[2] === 'load') {
  loadProcess().catch((err: unknown) => { console.error(err); process.exit(1); });
} else {
  main().catch((err: unknown) => { console.error(err); process.exit(1); });
}
