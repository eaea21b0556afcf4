// The Cedar engine against its reference, cedar-wasm 4.13, on generated policy sets, stores and
// requests (test/policy/cedar-diff/): the same decision, the same determining policies and the
// same erring policies on 10,000 requests from a fixed seed. Then proofs that the run means
// something: the comparison catches planted differences, the generator reached every construct
// it knows, the decisions span allow, deny, every kind of error and refused input, and our
// preparsed reference answers as the engine module's own cedarWasmDecision does.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { availableParallelism } from 'node:os';
import { cedarWasmDecision } from '../../src/policy/cedar/engine.js';
import type { Decision } from '../../src/policy/decision.js';
import type { AuthzRequest } from '../../src/policy/cedar/types.js';
import { CONSTRUCTS, CaseGenerator } from './cedar-diff/generator.js';
import {
  cedarWasm, decidingIds, differences, formatDisagreement, minimize, reference, runCase,
  type Answer, type Authorizer,
} from './cedar-diff/compare.js';
import { runParallel, type BatchSummary } from './cedar-diff/runner.js';

const SEED = 0x5eed;
const SETS = 100;
const REQUESTS = 100; // 10,000 decisions (200,000 in `npm run bench`)

let run: Promise<BatchSummary> | undefined;
/** The big run, shared by the tests that read it (started by the first one). */
const diffRun = (): Promise<BatchSummary> =>
  (run ??= runParallel({ seed: SEED, sets: SETS, generator: { requests: REQUESTS }, keep: 3 }, Math.min(2, availableParallelism())));

test('the engine decides 10,000 generated requests as cedar-wasm does', async (t) => {
  const s = await diffRun();
  t.diagnostic(`${s.decisions} decisions over ${s.sets} policy sets: ${s.allow} allow, ${s.withErrors} with erring policies, ${s.refused} refused input`);
  t.diagnostic(`engine ${Math.round(s.engineMs)} ms, cedar-wasm ${Math.round(s.referenceMs)} ms; ${s.engineWarnings} policies handed to cedar-wasm at load`);
  if (s.disagreements > 0) {
    const shown = s.first.map((d) => formatDisagreement(minimize(d, { budget: 600 })));
    assert.fail(`${s.disagreements} disagreements ${JSON.stringify(s.disagreementKinds)}; the first, minimized:\n\n${shown.join('\n\n')}`);
  }
  assert.equal(s.decisions, SETS * REQUESTS);
});

test('the generated decisions span allow, deny, every kind of error and refused input', async () => {
  const s = await diffRun();
  assert.ok(s.allow > s.decisions * 0.1 && s.allow < s.decisions * 0.9, `allow ${s.allow} of ${s.decisions}`);
  assert.ok(s.withErrors > s.decisions * 0.02, `decisions with errors: ${s.withErrors}`);
  assert.ok(s.refused > 0, 'no refused request');
  for (const kind of ['overflow', 'missing attribute', 'missing tag', 'entity not in store', 'type mismatch', 'bad extension value']) {
    assert.ok((s.errorKinds[kind] ?? 0) > 0, `cedar-wasm never reported: ${kind} (${JSON.stringify(s.errorKinds)})`);
  }
});

test('the generator emitted every construct of its list', async () => {
  const s = await diffRun();
  const missing = CONSTRUCTS.filter((c) => !(s.coverage[c] ?? 0));
  assert.deepEqual(missing, [], `never generated: ${missing.join(', ')}`);
});

test('the generator is deterministic: a seed and an index give the same case', () => {
  const a = new CaseGenerator(7).generate(3);
  const b = new CaseGenerator(7).generate(3);
  assert.deepEqual(a, b);
  assert.notDeepEqual(new CaseGenerator(8).generate(3).policies, a.policies);
});

/** cedar-wasm (in a table slot of its own) with each answer passed through `mutate` (`i`: the
 *  request's position). */
function mutant(mutate: (d: Answer, req: AuthzRequest, i: number) => Decision): Authorizer {
  const base = cedarWasm('cedar-diff-mutant');
  return {
    name: 'mutant',
    prepare(c) {
      const p = base.prepare(c);
      let i = 0;
      return { warnings: [], decide: (req, entities) => mutate(p.decide(req, entities), req, i++) };
    },
  };
}

test('the comparison catches a flipped decision, a dropped error and a stray reason, and ignores messages', () => {
  // The first case with an allow and an erring policy among its requests.
  const gen = new CaseGenerator(SEED, { requests: 60, malformedRate: 0 });
  const same = mutant((d) => d);
  let c = gen.generate(0);
  let base = runCase(c, { engine: same });
  for (let i = 1; i < 30 && !(base.withErrors > 0 && base.allow > 0); i++) {
    c = gen.generate(i);
    base = runCase(c, { engine: same });
  }
  assert.equal(base.disagreements.length, 0);
  assert.ok(base.withErrors > 0 && base.allow > 0, 'no case with an allow and an erring policy');

  const flipped = runCase(c, { engine: mutant((d, _r, i) => (i === 5 ? { ...d, decision: d.decision === 'allow' ? 'deny' : 'allow' } : d)) });
  assert.equal(flipped.disagreements.length, 1);
  assert.equal(flipped.disagreements[0]?.requestIndex, 5);
  assert.ok(flipped.disagreements[0]?.differences.some((x) => x.kind === 'decision'));

  const noErrors = runCase(c, { engine: mutant((d) => ({ ...d, errors: [] })) });
  assert.equal(noErrors.disagreements.length, base.withErrors);
  assert.ok(noErrors.disagreements.every((d) => d.differences.every((x) => x.kind === 'errored')));

  const stray = runCase(c, { engine: mutant((d) => (d.decision === 'allow' ? { ...d, reasons: [...d.reasons, 'p99'] } : d)) });
  assert.equal(stray.disagreements.length, base.allow);
  assert.ok(stray.disagreements.every((d) => d.differences.every((x) => x.kind === 'reasons')));

  const reworded = runCase(c, { engine: mutant((d) => ({ ...d, errors: d.errors.map((e) => e.replace(/: .*/s, ': something else went wrong')) })) });
  assert.equal(reworded.disagreements.length, 0);
});

test('a request cedar-wasm refuses must be denied on no policy', () => {
  const refused: Answer = { decision: 'deny', reasons: [], errors: [], refused: 'found a `null`' };
  assert.deepEqual(differences(refused, { decision: 'deny', reasons: [], errors: ['request: null in context'] }, ['p0']), []);
  assert.deepEqual(differences(refused, { decision: 'allow', reasons: ['p0'], errors: [] }, ['p0']).map((x) => x.kind), ['decision', 'reasons']);
  assert.deepEqual(differences(refused, { decision: 'deny', reasons: ['p1'], errors: [] }, ['p0', 'p1']).map((x) => x.kind), ['reasons']);
});

test('minimize shrinks a disagreement to what causes it', () => {
  const c = new CaseGenerator(SEED, { requests: 10 }).generate(2);
  const victim = c.requests[0]?.principal.id;
  // Flips the decision (only) for one principal: the policies, the store and the context are noise.
  const flip = mutant((d, req) => (req.principal.id === victim ? { ...d, decision: d.decision === 'allow' ? 'deny' : 'allow' } : d));
  const first = runCase(c, { engine: flip }).disagreements[0];
  assert.ok(first, 'the mutant must disagree');
  const small = minimize(first, { engine: flip });
  assert.equal(small.policies.length, 0);
  assert.equal(small.entities.length, 0);
  assert.deepEqual(Object.keys(small.request.context ?? {}), []);
  assert.deepEqual(small.differences.map((x) => x.kind), ['decision']);
});

test('the preparsed reference answers as the engine module\'s cedarWasmDecision does', () => {
  const gen = new CaseGenerator(SEED + 1, { requests: 15 });
  let compared = 0;
  for (let i = 0; i < 12; i++) {
    const c = gen.generate(i);
    const r = reference.prepare(c);
    const statics = Object.fromEntries(c.policies.filter((p) => p.kind === 'static').map((p) => [p.id, p.text]));
    const templates = Object.fromEntries(c.policies.filter((p) => p.kind === 'template').map((p) => [p.id, p.text]));
    c.requests.forEach((req, k) => {
      const entities = c.stores[k] ?? c.entities;
      const want = r.decide(req, entities);
      const got = cedarWasmDecision(statics, req, entities, { templates, links: c.links });
      assert.deepEqual(differences(want, got, decidingIds(c)), [], `case ${i} request ${k}`);
      compared++;
    });
  }
  assert.equal(compared, 12 * 15);
});
