// What one Node.js event loop costs before any check, measured beside the gateway in one run:
// the shared harness's bare Node.js proxy (D), three floor proxies (bench/floor-proxy.ts), the
// gateway (E, bench/proxy-gateway.ts) and the gateway without its audit log. All behind the same
// mTLS upstream, same token, same wrk settings as ../shared/bench/proxy/run-all.sh; rounds are
// interleaved and every figure is also given as a ratio to D's from the same run.
//   npm run bench:floors       ROUNDS (3), DURATION (10 s), CONNS (64), HARNESS (../shared/bench/proxy),
//                              SYSTEMS ("F3 E E-h1": a subset; D, the reference, always runs)
// Needs wrk and openssl (the harness installs them: `CHECK_ONLY=1 npm run bench:proxy`).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createServer as createNetServer } from 'node:net';
import { connect } from 'node:tls';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url)); // dist/bench
const root = resolve(here, '../..');
const harness = resolve(process.env.HARNESS ?? join(root, '../shared/bench/proxy'));
const pki = join(harness, 'pki');
const rounds = Number(process.env.ROUNDS ?? 3);
const seconds = Number(process.env.DURATION ?? 10);
const conns = Number(process.env.CONNS ?? 64);
const HOST = '127.0.0.1';
const UPSTREAM_PORT = 18543;
const ROUTE = '/api/orders/42';

interface System { key: string; what: string; port: number; argv: string[]; env?: Record<string, string> }
/** Per system, one entry per round; errors summed. */
interface Result { rps: number[]; cpu: number[]; errors: number }
const systems = ([
  { key: 'D', what: 'bare Node.js proxy (harness: node:https server + https.Agent)', port: 18183, argv: [join(harness, 'node-proxy.js'), '--port', '18183', '--upstream-port', String(UPSTREAM_PORT), '--pki', pki] },
  { key: 'F1', what: 'TLS relay, no HTTP parsing', port: 18184, argv: [join(here, 'floor-proxy.js'), 'tls-relay'] },
  { key: 'F2', what: 'llhttp front + our pool', port: 18185, argv: [join(here, 'floor-proxy.js'), 'h1-pool'] },
  { key: 'F3', what: 'node:https front + our pool', port: 18186, argv: [join(here, 'floor-proxy.js'), 'https-pool'] },
  { key: 'E', what: 'Portcullis gateway, full pipeline', port: 18187, argv: [join(here, 'proxy-gateway.js')] },
  { key: 'E-a', what: 'E without its audit log', port: 18188, argv: [join(here, 'proxy-gateway.js')], env: { BENCH_WITHOUT: 'audit' } },
  { key: 'E-alv', what: 'E without audit, rate limit and validation', port: 18189, argv: [join(here, 'proxy-gateway.js')], env: { BENCH_WITHOUT: 'audit,limit,validate' } },
  { key: 'E-h1', what: 'E on a `node:https` server (no HTTP/2 offered)', port: 18190, argv: [join(here, 'proxy-gateway.js')], env: { BENCH_HTTP2: '0' } },
] as System[]).filter((s) => !process.env.SYSTEMS || s.key === 'D' || process.env.SYSTEMS.split(/[ ,]+/).includes(s.key));

function need(cmd: string): void {
  if (spawnSync('sh', ['-c', `command -v ${cmd}`]).status !== 0) throw new Error(`${cmd} is not installed (CHECK_ONLY=1 npm run bench:proxy installs it)`);
}
need('wrk');
need('openssl');
if (!existsSync(join(pki, 'ca.pem'))) spawnSync('bash', [join(harness, 'gen-certs.sh'), pki], { stdio: 'inherit' });
if (!existsSync(join(pki, 'tokens', 'valid.jwt'))) spawnSync(process.execPath, [join(harness, 'make-jwt.js'), pki], { stdio: 'inherit' });
const token = readFileSync(join(pki, 'tokens', 'valid.jwt'), 'utf8').trim();

const benchEnv = (port: number): Record<string, string> => ({
  BENCH_LISTEN_HOST: HOST, BENCH_LISTEN_PORT: String(port),
  BENCH_FRONT_CERT: join(pki, 'proxy-front.pem'), BENCH_FRONT_KEY: join(pki, 'proxy-front.key'),
  BENCH_UPSTREAM_URL: `https://${HOST}:${UPSTREAM_PORT}`, BENCH_UPSTREAM_SERVERNAME: 'localhost',
  BENCH_CA: join(pki, 'ca.pem'), BENCH_CLIENT_CERT: join(pki, 'proxy-client.pem'), BENCH_CLIENT_KEY: join(pki, 'proxy-client.key'),
  BENCH_JWT_PUBKEY: join(pki, 'jwt-es256.pub.pem'), BENCH_JWT_CERT: join(pki, 'jwt-es256.crt.pem'),
  BENCH_JWT_ISS: 'https://issuer.bench.local', BENCH_JWT_AUD: 'portcullis-bench', BENCH_ROUTE: ROUTE,
  PORTCULLIS_LOG_LEVEL: 'warn',
});

const children: ChildProcess[] = [];
let stopping = false;
const stopAll = (): void => { stopping = true; for (const c of children) c.kill('SIGTERM'); };
process.on('exit', stopAll);
process.on('SIGINT', () => process.exit(130));
process.on('SIGTERM', () => process.exit(143));

function start(argv: string[], env: Record<string, string>): ChildProcess {
  const child = spawn(process.execPath, argv, { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'inherit'] });
  children.push(child);
  child.on('exit', (code, signal) => {
    if (!stopping) { process.stderr.write(`\n${argv[0]} exited (${signal ?? code}); stopping\n`); process.exit(1); }
  });
  return child;
}

/** Refuses to start when something else already listens on a port we need (it would be measured instead). */
async function assertFree(port: number): Promise<void> {
  const taken = await new Promise<boolean>((done) => {
    const s = createNetServer().once('error', () => done(true)).listen(port, HOST, () => s.close(() => done(false)));
  });
  if (taken) throw new Error(`port ${port} is in use: stop what listens there (a floors run left behind?)`);
}

/** Resolves once a TLS handshake on `port` succeeds (the server is listening). */
async function ready(port: number): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const ok = await new Promise<boolean>((done) => {
      const s = connect({ host: HOST, port, rejectUnauthorized: false }, () => { s.destroy(); done(true); });
      s.on('error', () => done(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`nothing answers on port ${port}`);
}

/** utime + stime of a process, in clock ticks (1/100 s). */
function cpuTicks(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '').split(' ');
  return Number(fields[11]) + Number(fields[12]);
}

function wrk(port: number, duration: number): { requests: number; rps: number; errors: number } {
  const r = spawnSync('wrk', ['-t1', `-c${conns}`, `-d${duration}s`, '-H', `authorization: Bearer ${token}`, `https://${HOST}:${port}${ROUTE}`], { encoding: 'utf8' });
  const requests = Number(/(\d+) requests in/.exec(r.stdout)?.[1] ?? 0);
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(r.stdout)?.[1] ?? 0);
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(r.stdout)?.[1] ?? 0);
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(r.stdout);
  return { requests, rps, errors: non2xx + (sock ? sock.slice(1).reduce((a, b) => a + Number(b), 0) : 0) };
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] as number : ((s[m - 1] as number) + (s[m] as number)) / 2;
};

for (const port of [UPSTREAM_PORT, ...systems.map((s) => s.port)]) await assertFree(port);
start([join(harness, 'upstream.js'), '--port', String(UPSTREAM_PORT), '--pki', pki, '--mtls'], {});
await ready(UPSTREAM_PORT);
const pids = new Map<string, number>();
for (const s of systems) {
  const child = start(s.argv, { ...benchEnv(s.port), ...s.env });
  await ready(s.port);
  pids.set(s.key, child.pid as number);
}
for (const s of systems) wrk(s.port, 3); // warm-up: TLS sessions, JIT, pools

const results = new Map<string, Result>(systems.map((s) => [s.key, { rps: [], cpu: [], errors: 0 }]));
const total = rounds * systems.length;
let done = 0;
for (let round = 1; round <= rounds; round++) {
  for (const s of systems) {
    const pid = pids.get(s.key) as number;
    const before = cpuTicks(pid);
    const w = wrk(s.port, seconds);
    const ticks = cpuTicks(pid) - before;
    const r = results.get(s.key) as Result;
    r.rps.push(w.rps);
    r.cpu.push(w.requests > 0 ? (ticks * 10_000) / w.requests : NaN);
    r.errors += w.errors;
    done++;
    process.stderr.write(`\r[${'#'.repeat(Math.round((30 * done) / total)).padEnd(30)}] ${done}/${total} round ${round} ${s.key}: ${Math.round(w.rps)} req/s   `);
  }
}
process.stderr.write('\n');

const d = results.get('D') as Result;
const dRps = median(d.rps);
const dCpu = median(d.cpu);
const lines = [
  `Floors, ${new Date().toISOString()}: wrk -t1 -c${conns}, ${rounds} interleaved rounds of ${seconds} s, medians [min–max]`,
  '',
  '| | system | req/s | proxy CPU µs/req | CPU / D | req/s / D | errors |',
  '|---|---|---:|---:|---:|---:|---:|',
];
for (const s of systems) {
  const r = results.get(s.key) as Result;
  const rps = median(r.rps);
  const cpu = median(r.cpu);
  lines.push(`| ${s.key} | ${s.what} | ${Math.round(rps)} [${Math.round(Math.min(...r.rps))}–${Math.round(Math.max(...r.rps))}] | ${cpu.toFixed(1)} [${Math.min(...r.cpu).toFixed(0)}–${Math.max(...r.cpu).toFixed(0)}] | ${(cpu / dCpu).toFixed(2)} | ${(rps / dRps).toFixed(2)} | ${r.errors} |`);
}
process.stdout.write(`${lines.join('\n')}\n`);
process.exit(0);
