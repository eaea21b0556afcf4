// The shared authorization benchmark (Cedar via cedar-wasm, Casbin; ../shared/bench/authz beside
// the repository, or PORTCULLIS_SHARED_BENCH) with our Cedar engine as its ENGINE
// (bench/cedar-adapter.cjs). The benchmark is copied to a cache directory and npm-installed once
// per version of its files. First `bench.js verify` must find no disagreement between the engine
// and cedar-wasm on its 10,000 requests; then the timing: every variant in 3 fresh processes
// (run-all.js, about 8 minutes), or with --quick the engine, cedar-wasm stateful and Casbin
// enforceSync once each. Reported as decisions/s, p50 and p99, and the ratio to cedar-wasm.
//   node dist/bench/authz.js [--quick]      PORTCULLIS_SHARED_BENCH, PORTCULLIS_BENCH_CACHE
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { progress } from '../src/cli/progress.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..'); // dist/bench -> the repository
const SOURCE = resolve(process.env.PORTCULLIS_SHARED_BENCH ?? join(ROOT, '..', 'shared', 'bench', 'authz'));
const CACHE = resolve(process.env.PORTCULLIS_BENCH_CACHE ?? join(tmpdir(), 'portcullis-authz-bench'));
const ADAPTER = join(ROOT, 'bench', 'cedar-adapter.cjs');
const ENGINE_JS = join(ROOT, 'dist', 'src', 'policy', 'cedar', 'engine.js');
const QUICK_VARIANTS = ['engine', 'cedar-stateful', 'casbin-enum'];

const { values: args } = parseArgs({ options: { quick: { type: 'boolean', default: false } } });

function fail(message: string): never {
  console.error(message);
  process.exit(1);
}

/** The benchmark's files in a directory of their own, with its dependencies installed. */
function prepare(): string {
  if (!existsSync(join(SOURCE, 'bench.js'))) fail(`no authz benchmark at ${SOURCE} (set PORTCULLIS_SHARED_BENCH)`);
  const files = readdirSync(SOURCE).filter((f) => f.endsWith('.js') || f === 'package.json').sort();
  const hash = createHash('sha256');
  for (const f of files) hash.update(f).update(readFileSync(join(SOURCE, f)));
  const dir = join(CACHE, hash.digest('hex').slice(0, 16));
  const stamp = join(dir, '.installed');
  if (existsSync(stamp)) return dir;
  mkdirSync(dir, { recursive: true });
  for (const f of files) copyFileSync(join(SOURCE, f), join(dir, f));
  console.error(`installing the authz benchmark's dependencies in ${dir}`);
  execFileSync('npm', ['install', '--no-audit', '--no-fund', '--loglevel=error'], { cwd: dir, stdio: ['ignore', 'inherit', 'inherit'] });
  writeFileSync(stamp, new Date().toISOString());
  return dir;
}

/** Runs one of the benchmark's scripts with our engine; its standard output. */
function run(dir: string, script: string, argv: string[]): string {
  const r = spawnSync(process.execPath, [script, ...argv], {
    cwd: dir, env: { ...process.env, ENGINE: ADAPTER }, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 64 * 1024 * 1024,
  });
  if (r.status !== 0) fail(`${script} ${argv.join(' ')} failed (exit ${r.status ?? r.signal})\n${r.stdout}`);
  return r.stdout;
}

/** The JSON object on the last line of a script's output. */
function lastJson<T>(out: string): T {
  const line = out.trim().split('\n').pop() ?? '';
  return JSON.parse(line) as T; // bench.js prints its result as one JSON line
}

interface Timing { variant: string; n: number; opsPerSec: number; meanUs: number; p50Us: number; p99Us: number }

interface Verify {
  requests: number;
  allow: number;
  deny: number;
  disagreements_cedar_vs_engine: number | string;
  disagreements_cedar_vs_casbinEnum: number;
  mutant_offhours21_disagreements: number;
}

function main(): void {
  if (!existsSync(ENGINE_JS)) fail(`${ENGINE_JS} is missing: npm run build first`);
  const dir = prepare();
  const steps = 1 + (args.quick ? QUICK_VARIANTS.length : 1);
  const bar = progress(`authz bench${args.quick ? ' (quick)' : ''}`, steps);

  // bench.js prints its verify result as one pretty-printed JSON object.
  const v = JSON.parse(run(dir, 'bench.js', ['verify'])) as Verify;
  bar.tick();
  if (v.disagreements_cedar_vs_engine !== 0) {
    bar.done();
    fail(`verify: the engine disagrees with cedar-wasm on ${v.disagreements_cedar_vs_engine} of ${v.requests} requests`);
  }

  let timings: Timing[];
  let how: string;
  if (args.quick) {
    timings = QUICK_VARIANTS.map((variant) => {
      const t = lastJson<Timing>(run(dir, 'bench.js', ['time', variant]));
      bar.tick();
      return t;
    });
    how = 'one run per variant';
  } else {
    run(dir, 'run-all.js', []);
    bar.tick();
    // run-all.js writes its medians to results.json.
    const results = JSON.parse(readFileSync(join(dir, 'results.json'), 'utf8')) as { runs: number; variants: Record<string, Omit<Timing, 'variant'>> };
    timings = Object.entries(results.variants).map(([variant, t]) => ({ ...t, variant }));
    how = `median of ${results.runs} fresh processes per variant`;
  }
  bar.done();

  const fmt = (x: number): string => Math.round(x).toLocaleString('en-US');
  const base = timings.find((t) => t.variant === 'cedar-stateful');
  const engine = timings.find((t) => t.variant === 'engine');
  console.log(`\n### Authorization engines side by side: the shared RBAC + ABAC workload (100 policies, 10,000 requests; ${how}; node ${process.version})\n`);
  console.log(`verify: ${fmt(v.requests)} requests (${fmt(v.allow)} allow, ${fmt(v.deny)} deny): engine vs cedar-wasm ${v.disagreements_cedar_vs_engine} disagreements, Casbin vs cedar-wasm ${v.disagreements_cedar_vs_casbinEnum}, planted mutant caught ${fmt(v.mutant_offhours21_disagreements)} times\n`);
  console.log('| variant | decisions/s | mean µs | p50 µs | p99 µs | decisions/s vs cedar-stateful |');
  console.log('|---|---:|---:|---:|---:|---:|');
  for (const t of [...timings].sort((a, b) => b.opsPerSec - a.opsPerSec)) {
    const name = t.variant === 'engine' ? 'engine (ours)' : t.variant;
    console.log(`| ${name} | ${fmt(t.opsPerSec)} | ${t.meanUs.toFixed(1)} | ${t.p50Us.toFixed(1)} | ${t.p99Us.toFixed(1)} | ${base ? (t.opsPerSec / base.opsPerSec).toFixed(2) : '-'} |`);
  }
  if (engine && base) {
    console.log(`\nengine / cedar-stateful: ${(engine.opsPerSec / base.opsPerSec).toFixed(1)}× the decisions/s, p50 ${(base.p50Us / engine.p50Us).toFixed(1)}× lower, p99 ${(base.p99Us / engine.p99Us).toFixed(1)}× lower`);
  }
}

main();
