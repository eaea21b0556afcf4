// The Cedar engine against cedar-wasm 4.13 at scale: generated policy sets (many requests each)
// decided by both, compared on decision, determining policies and erring policies. Prints the
// decisions, the disagreements, decisions/s, time per decision in each engine, what cedar-wasm
// reported as errors, the policies the engine handed to cedar-wasm, and how often the generator
// emitted each construct. The first disagreement, also minimized, goes to a JSON repro file; any
// disagreement exits 1.
//   node dist/bench/cedar-diff.js [--decisions 1000000] [--seed 1] [--requests 100] [--workers N]
//                                 [--ill-typed 0.01] [--repro dist/cedar-diff-repro.json]
//   node dist/bench/cedar-diff.js --replay dist/cedar-diff-repro.json
import { readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { progress } from '../src/cli/progress.js';
import { CONSTRUCTS } from '../test/policy/cedar-diff/generator.js';
import { formatDisagreement, minimize, replay, type Disagreement } from '../test/policy/cedar-diff/compare.js';
import { runParallel } from '../test/policy/cedar-diff/runner.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..'); // dist/bench -> the repository

const { values: args } = parseArgs({
  options: {
    decisions: { type: 'string', default: '1000000' },
    seed: { type: 'string', default: '1' },
    requests: { type: 'string', default: '100' },
    workers: { type: 'string', default: String(availableParallelism()) },
    'ill-typed': { type: 'string', default: '0.01' },
    repro: { type: 'string', default: join(ROOT, 'dist', 'cedar-diff-repro.json') },
    replay: { type: 'string' },
  },
});

function num(name: string, v: string | undefined, min: number): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n < min) {
    console.error(`--${name} must be a number >= ${min}, got ${v}`);
    process.exit(2);
  }
  return n;
}

const fmt = (x: number): string => Math.round(x).toLocaleString('en-US');

/** Replays a repro file's minimized case (or its original) and prints both answers. */
function replayFile(file: string): void {
  // The file is this program's own output (see main).
  const repro = JSON.parse(readFileSync(file, 'utf8')) as { minimized?: Disagreement; original: Disagreement };
  const d = repro.minimized ?? repro.original;
  const r = replay(d);
  if (!r) {
    console.error('cedar-wasm rejects the repro\'s policy set');
    process.exit(2);
  }
  console.log(formatDisagreement({ ...d, ...r }));
  process.exit(r.differences.length ? 1 : 0);
}

async function main(): Promise<void> {
  if (args.replay) return replayFile(args.replay);
  const decisions = num('decisions', args.decisions, 1);
  const seed = num('seed', args.seed, 0);
  const requests = num('requests', args.requests, 1);
  const workers = Math.floor(num('workers', args.workers, 1));
  const illTypedRate = num('ill-typed', args['ill-typed'], 0);
  const sets = Math.ceil(decisions / requests);

  const bar = progress(`cedar-diff seed ${seed}`, sets * requests);
  const start = performance.now();
  const s = await runParallel({ seed, sets, generator: { requests, illTypedRate }, keep: 20 }, workers, (n) => bar.tick(n));
  const seconds = (performance.now() - start) / 1000;
  bar.done();

  const per = (ms: number): string => ((ms * 1000) / Math.max(1, s.decisions)).toFixed(1);
  console.log(`\n### Cedar engine vs cedar-wasm 4.13, differential (seed ${seed}, ${fmt(sets)} policy sets × ${requests} requests, ${workers} workers, node ${process.version})\n`);
  console.log('| decisions | allow | with erring policies | refused input | disagreements | decisions/s (both engines) | engine µs/decision | cedar-wasm µs/decision | engine load ms/set | cedar-wasm load ms/set |');
  console.log('|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  console.log(`| ${fmt(s.decisions)} | ${fmt(s.allow)} | ${fmt(s.withErrors)} | ${fmt(s.refused)} | ${fmt(s.disagreements)} | ${fmt(s.decisions / seconds)} | ${per(s.engineMs - s.engineLoadMs)} | ${per(s.referenceMs - s.referenceLoadMs)} | ${(s.engineLoadMs / s.sets).toFixed(2)} | ${(s.referenceLoadMs / s.sets).toFixed(2)} |`);

  console.log('\ncedar-wasm errors by kind: ' + Object.entries(s.errorKinds).sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${fmt(v)}`).join(', '));
  console.log(`policies the engine handed to cedar-wasm at load: ${fmt(s.engineWarnings)}${s.warningSamples.length ? ', e.g.' : ''}`);
  for (const w of s.warningSamples.slice(0, 5)) console.log(`  ${w}`);

  const missing = CONSTRUCTS.filter((c) => !(s.coverage[c] ?? 0));
  console.log(`\nconstructs emitted: ${CONSTRUCTS.length - missing.length} of ${CONSTRUCTS.length}${missing.length ? ` (never: ${missing.join(', ')})` : ''}\n`);
  const cells = CONSTRUCTS.map((c) => `${c} ${fmt(s.coverage[c] ?? 0)}`);
  const cols = 4;
  const width = Math.max(...cells.map((c) => c.length)) + 2;
  for (let i = 0; i < cells.length; i += cols) console.log('  ' + cells.slice(i, i + cols).map((c) => c.padEnd(width)).join('').trimEnd());

  if (s.disagreements > 0) {
    console.log(`\n${fmt(s.disagreements)} disagreements: ${Object.entries(s.disagreementKinds).map(([k, v]) => `${k} ${fmt(v)}`).join(', ')}`);
    const first = s.first[0];
    if (first) {
      const small = minimize(first);
      const repro = {
        regenerate: `node dist/bench/cedar-diff.js --seed ${seed} --requests ${requests} --ill-typed ${illTypedRate} (case ${first.caseIndex}, request ${first.requestIndex})`,
        replay: `node dist/bench/cedar-diff.js --replay ${args.repro}`,
        minimized: small,
        original: first,
      };
      const file = resolve(args.repro ?? 'cedar-diff-repro.json');
      writeFileSync(file, JSON.stringify(repro, null, 2));
      console.log(`the first, minimized (all of it in ${file}):\n\n${formatDisagreement(small)}`);
    }
    process.exitCode = 1;
  }
}

await main();
