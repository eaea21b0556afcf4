// Runs many generated cases — in this thread, or spread over worker threads (cedar-wasm, the
// reference, costs about a millisecond a decision, nearly all of it reading the entity store, so a
// large run wants every core) — and sums them up. Case `i` of a seed is the same wherever it runs:
// worker `w` of `n` takes the cases i ≡ w (mod n).
import { Worker } from 'node:worker_threads';
import { CaseGenerator, type GeneratorOptions } from './generator.js';
import { runCase, type Disagreement, type RunOptions } from './compare.js';

export interface BatchSpec {
  seed: number;
  /** Number of cases (policy sets); case indexes 0 .. sets-1. */
  sets: number;
  generator?: Partial<GeneratorOptions>;
  /** How many disagreements to keep in full (all are counted). */
  keep?: number;
}

export interface BatchSummary {
  sets: number;
  decisions: number;
  allow: number;
  withErrors: number;
  refused: number;
  disagreements: number;
  /** Disagreements by the kinds of difference they show, e.g. "decision,reasons". */
  disagreementKinds: Record<string, number>;
  /** The first `keep` disagreements, by case then request. */
  first: Disagreement[];
  errorKinds: Record<string, number>;
  coverage: Record<string, number>;
  engineWarnings: number;
  warningSamples: string[];
  /** Time in each engine (summed over workers), loading the policy sets included; loading alone. */
  engineMs: number;
  referenceMs: number;
  engineLoadMs: number;
  referenceLoadMs: number;
}

export function emptySummary(): BatchSummary {
  return {
    sets: 0, decisions: 0, allow: 0, withErrors: 0, refused: 0, disagreements: 0, disagreementKinds: {}, first: [],
    errorKinds: {}, coverage: {}, engineWarnings: 0, warningSamples: [], engineMs: 0, referenceMs: 0, engineLoadMs: 0, referenceLoadMs: 0,
  };
}

const addCounts = (into: Record<string, number>, from: Record<string, number> | Map<string, number>): void => {
  for (const [k, v] of from instanceof Map ? from : Object.entries(from)) into[k] = (into[k] ?? 0) + v;
};

const byPosition = (a: Disagreement, b: Disagreement): number => a.caseIndex - b.caseIndex || a.requestIndex - b.requestIndex;

export function mergeSummaries(parts: BatchSummary[], keep: number): BatchSummary {
  const out = emptySummary();
  for (const p of parts) {
    out.sets += p.sets;
    out.decisions += p.decisions;
    out.allow += p.allow;
    out.withErrors += p.withErrors;
    out.refused += p.refused;
    out.disagreements += p.disagreements;
    addCounts(out.disagreementKinds, p.disagreementKinds);
    out.first.push(...p.first);
    addCounts(out.errorKinds, p.errorKinds);
    addCounts(out.coverage, p.coverage);
    out.engineWarnings += p.engineWarnings;
    for (const w of p.warningSamples) if (out.warningSamples.length < 10 && !out.warningSamples.includes(w)) out.warningSamples.push(w);
    out.engineMs += p.engineMs;
    out.referenceMs += p.referenceMs;
    out.engineLoadMs += p.engineLoadMs;
    out.referenceLoadMs += p.referenceLoadMs;
  }
  out.first = out.first.sort(byPosition).slice(0, keep);
  return out;
}

/** Runs the cases `indexes` of a spec in this thread; `onCase` after each, with its decisions. */
export function runCases(spec: BatchSpec, indexes: Iterable<number>, onCase?: (decisions: number) => void, options: RunOptions = {}): BatchSummary {
  const gen = new CaseGenerator(spec.seed, spec.generator);
  const keep = spec.keep ?? 10;
  const s = emptySummary();
  for (const i of indexes) {
    const r = runCase(gen.generate(i), options);
    s.sets++;
    s.decisions += r.decisions;
    s.allow += r.allow;
    s.withErrors += r.withErrors;
    s.refused += r.refused;
    s.disagreements += r.disagreements.length;
    for (const d of r.disagreements) {
      const k = [...new Set(d.differences.map((x) => x.kind))].sort().join(',');
      s.disagreementKinds[k] = (s.disagreementKinds[k] ?? 0) + 1;
      if (s.first.length < keep) s.first.push(d);
    }
    addCounts(s.errorKinds, r.errorKinds);
    s.engineWarnings += r.engineWarnings.length;
    for (const w of r.engineWarnings) if (s.warningSamples.length < 10 && !s.warningSamples.includes(w)) s.warningSamples.push(w);
    s.engineMs += r.engineMs;
    s.referenceMs += r.referenceMs;
    s.engineLoadMs += r.engineLoadMs;
    s.referenceLoadMs += r.referenceLoadMs;
    onCase?.(r.decisions);
  }
  addCounts(s.coverage, gen.coverage);
  return s;
}

/** Messages from a worker (see worker.ts). */
export type WorkerMessage = { type: 'case'; decisions: number } | { type: 'done'; summary: BatchSummary } | { type: 'error'; message: string };

/** Runs a spec over `workers` threads (1: in this thread) and merges the results. */
export async function runParallel(spec: BatchSpec, workers: number, onCase?: (decisions: number) => void): Promise<BatchSummary> {
  const keep = spec.keep ?? 10;
  if (workers <= 1) {
    return mergeSummaries([runCases(spec, Array.from({ length: spec.sets }, (_, i) => i), onCase)], keep);
  }
  const parts = await Promise.all(Array.from({ length: workers }, (_, w) => new Promise<BatchSummary>((resolve, reject) => {
    const worker = new Worker(new URL('./worker.js', import.meta.url), { workerData: { spec, worker: w, workers } });
    let settled = false;
    worker.on('message', (m: WorkerMessage) => {
      if (m.type === 'case') onCase?.(m.decisions);
      else if (m.type === 'done') { settled = true; resolve(m.summary); }
      else { settled = true; reject(new Error(`worker ${w}: ${m.message}`)); }
    });
    worker.on('error', (err) => { settled = true; reject(err); });
    worker.on('exit', (code) => { if (!settled) reject(new Error(`worker ${w} exited with code ${code}`)); });
  })));
  return mergeSummaries(parts, keep);
}
