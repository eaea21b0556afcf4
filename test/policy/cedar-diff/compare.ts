// Runs generated cases through the engine under test and through cedar-wasm (the reference) and
// compares, per request: the decision, the set of determining policies (reasons) and the set of
// policies that erred — not the error messages, which are the engine's own. A disagreement keeps
// everything needed to replay it, and `minimize` shrinks it (fewer policies, clauses, entities,
// attributes, context keys) while the same kind of difference remains.
import { createRequire } from 'node:module';
import { setFlagsFromString } from 'node:v8';
import type * as CedarWasm from '@cedar-policy/cedar-wasm/nodejs';
import type { Decision } from '../../../src/policy/decision.js';
import type { AuthzRequest, EntityJson, TemplateLink } from '../../../src/policy/cedar/types.js';
import { CedarEngine } from '../../../src/policy/cedar/engine.js';
import { Entities } from '../../../src/policy/cedar/entities.js';
import type { DiffCase, GeneratedPolicy } from './generator.js';

// Node 20's V8 (11.3) inlines JS-to-Wasm calls into optimized code, and a lazy deoptimization on
// the way back from cedar-wasm (whose exports take and return externrefs, and call back into JS)
// sometimes aborts the process: "Fatal error ... unreachable code" in
// Deoptimizer::DoComputeBuiltinContinuation, about one run in three of 6,000 decisions. Without
// that inlining it does not happen. The flag only steers later TurboFan compilations; it is set
// here, before any call into cedar-wasm, and holds for the whole process (workers included).
setFlagsFromString('--no-turbo-inline-js-wasm-calls');

// The package's own typings describe the CommonJS build loaded here.
const cedar = createRequire(import.meta.url)('@cedar-policy/cedar-wasm/nodejs') as typeof CedarWasm;

/** A decision; `refused` when cedar-wasm refused the request as a whole (malformed input). */
export type Answer = Decision & { refused?: string };

/** A loaded policy set: decides requests against a store. */
export interface Prepared {
  decide(req: AuthzRequest, entities: EntityJson[]): Answer;
  /** Load-time warnings (for the engine: policies it handed to cedar-wasm instead of compiling). */
  warnings: string[];
}

/** Something that loads a case's policy set; throws when the set does not load. */
export interface Authorizer {
  readonly name: string;
  prepare(c: Pick<DiffCase, 'policies' | 'links'>): Prepared;
}

/** All policies and templates of a case as one policy file. */
export function policyText(c: Pick<DiffCase, 'policies'>): string {
  return c.policies.map((p) => p.text).join('\n\n');
}

/** The case's policy set in cedar-wasm's form: ids are the @id annotations. */
export function wasmPolicySet(c: Pick<DiffCase, 'policies' | 'links'>): CedarWasm.PolicySet {
  const of = (kind: GeneratedPolicy['kind']): Record<string, string> => Object.fromEntries(c.policies.filter((p) => p.kind === kind).map((p) => [p.id, p.text]));
  return {
    staticPolicies: of('static'),
    templates: of('template'),
    templateLinks: c.links.map((l) => ({
      templateId: l.template,
      newId: l.id,
      values: { ...(l.principal ? { '?principal': l.principal } : {}), ...(l.resource ? { '?resource': l.resource } : {}) },
    })),
  };
}

const toWasmEntities = (entities: EntityJson[]): CedarWasm.EntityJson[] =>
  entities.map((e) => ({ uid: e.uid, attrs: e.attrs ?? {}, parents: e.parents ?? [], ...(e.tags ? { tags: e.tags } : {}) }));

const message = (err: unknown): string => (err instanceof Error ? err.message : String(err));

// cedar-wasm keeps preparsed sets in a thread-local table; each authorizer reuses one slot of it,
// and a prepared set re-parses itself when another one took the slot since.
const slotOwners = new Map<string, object>();

/** cedar-wasm 4.13, preparsed once per set into table slot `slot`, in the Decision shape
 *  ("<policyId>: <message>"). */
export function cedarWasm(slot: string): Authorizer {
  return {
    name: 'cedar-wasm',
    prepare(c) {
      const set = wasmPolicySet(c);
      const owner = {};
      const load = (): void => {
        const r = cedar.preparsePolicySet(slot, set);
        if (r.type !== 'success') throw new Error(`cedar-wasm rejects the policy set: ${r.errors.map((e) => e.message).join('; ')}`);
        slotOwners.set(slot, owner);
      };
      load();
      return {
        warnings: [],
        decide(req, entities) {
          if (slotOwners.get(slot) !== owner) load();
          let a: CedarWasm.AuthorizationAnswer;
          try {
            a = cedar.statefulIsAuthorized({
              principal: req.principal, action: req.action, resource: req.resource, context: req.context ?? {},
              entities: toWasmEntities(entities), preparsedPolicySetId: slot,
            });
          } catch (err) {
            // cedar-wasm throws on input its JSON reader cannot take (a lone surrogate): refused too.
            return { decision: 'deny', reasons: [], errors: [], refused: `cedar-wasm threw: ${message(err)}` };
          }
          if (a.type !== 'success') return { decision: 'deny', reasons: [], errors: [], refused: a.errors.map((e) => e.message).join('; ') };
          const d = a.response;
          return { decision: d.decision, reasons: d.diagnostics.reason, errors: d.diagnostics.errors.map((e) => `${e.policyId}: ${e.error.message}`) };
        },
      };
    },
  };
}

/** The reference the runs compare with. */
export const reference = cedarWasm('cedar-diff');

/** The engine under test, loaded from the same text with the links. Every other request gets its
 *  store as an Entities built once per store (the other input form of isAuthorized) instead of the
 *  JSON list; a store Entities refuses to build goes as the list. */
export const engine: Authorizer = {
  name: 'CedarEngine',
  prepare(c) {
    const warnings: string[] = [];
    const e = CedarEngine.load({ sources: [{ text: policyText(c), file: 'cedar-diff.cedar' }], links: c.links, onWarning: (m) => warnings.push(m) });
    const built = new WeakMap<EntityJson[], Entities | null>();
    const prebuilt = (list: EntityJson[]): Entities | null => {
      let b = built.get(list);
      if (b === undefined) {
        try { b = Entities.fromJson(list); } catch { b = null; }
        built.set(list, b);
      }
      return b;
    };
    let n = 0;
    return { warnings, decide: (req, entities) => e.isAuthorized(req, (n++ % 2 === 1 && prebuilt(entities)) || entities) };
  },
};

// ---------------------------------------------------------------------------------------------
// Comparison

/** The policy id an error string names: the longest known id it starts with ("<id>: message"). */
export function erroredId(error: string, ids: readonly string[]): string {
  let best = '';
  for (const id of ids) if (id.length > best.length && error.startsWith(`${id}:`)) best = id;
  return best || `?${error.split(':')[0] ?? ''}`;
}

export type DifferenceKind = 'decision' | 'reasons' | 'errored' | 'threw';

export interface Difference { kind: DifferenceKind; text: string }

/** Ids a case's decisions may name: static policies and links (templates never decide). */
export function decidingIds(c: Pick<DiffCase, 'policies' | 'links'>): string[] {
  return [...c.policies.filter((p) => p.kind === 'static').map((p) => p.id), ...c.links.map((l) => l.id)];
}

const setDiff = (label: string, want: string[], got: string[]): string | null => {
  const w = new Set(want);
  const g = new Set(got);
  const missing = [...w].filter((x) => !g.has(x)).sort();
  const extra = [...g].filter((x) => !w.has(x)).sort();
  if (!missing.length && !extra.length) return null;
  return `${label}: cedar-wasm [${[...w].sort().join(', ')}], engine [${[...g].sort().join(', ')}]`;
};

/** How `actual` (the engine) differs from `expected` (cedar-wasm); empty when they agree. Where
 *  cedar-wasm refused the request, the engine must deny on no policy (its errors are its own). */
export function differences(expected: Answer, actual: Decision, ids: readonly string[]): Difference[] {
  const out: Difference[] = [];
  if (expected.decision !== actual.decision) out.push({ kind: 'decision', text: `decision: cedar-wasm ${expected.refused ? 'refused the request (deny)' : expected.decision}, engine ${actual.decision}` });
  if (expected.refused) {
    if (actual.reasons.length) out.push({ kind: 'reasons', text: `reasons: cedar-wasm refused the request, engine [${actual.reasons.join(', ')}]` });
    return out;
  }
  const r = setDiff('reasons', expected.reasons, actual.reasons);
  if (r) out.push({ kind: 'reasons', text: r });
  const e = setDiff('errored', expected.errors.map((x) => erroredId(x, ids)), actual.errors.map((x) => erroredId(x, ids)));
  if (e) out.push({ kind: 'errored', text: e });
  return out;
}

/** A request on which the two engines disagree, with all that is needed to replay it. */
export interface Disagreement {
  seed: number;
  caseIndex: number;
  requestIndex: number;
  policies: GeneratedPolicy[];
  links: TemplateLink[];
  entities: EntityJson[];
  request: AuthzRequest;
  reference: Answer;
  engine: Decision | { threw: string };
  differences: Difference[];
}

/** What kind of error cedar-wasm reported, from its message. */
export function errorKind(message: string): string {
  if (/overflow/.test(message)) return 'overflow';
  if (/does not have the attribute/.test(message)) return 'missing attribute';
  if (/does not have the tag/.test(message)) return 'missing tag';
  if (/does not exist/.test(message)) return 'entity not in store';
  if (/type error/.test(message)) return 'type mismatch';
  if (/extension function/.test(message)) return 'bad extension value';
  return 'other';
}

export interface CaseRun {
  decisions: number;
  allow: number;
  /** Decisions where cedar-wasm reported at least one erring policy. */
  withErrors: number;
  /** Requests cedar-wasm refused as a whole (malformed on purpose). */
  refused: number;
  disagreements: Disagreement[];
  /** cedar-wasm's errors by kind (see errorKind). */
  errorKinds: Map<string, number>;
  engineWarnings: string[];
  /** Time in each engine, loading included; and loading alone. */
  engineMs: number;
  referenceMs: number;
  engineLoadMs: number;
  referenceLoadMs: number;
}

export interface RunOptions {
  engine?: Authorizer;
  reference?: Authorizer;
  /** Only the first `requests` requests of the case. */
  requests?: number;
}

/** Decides every request of a case with both engines and collects the disagreements. */
export function runCase(c: DiffCase, options: RunOptions = {}): CaseRun {
  const eng = options.engine ?? engine;
  const ref = options.reference ?? reference;
  const run: CaseRun = { decisions: 0, allow: 0, withErrors: 0, refused: 0, disagreements: [], errorKinds: new Map(), engineWarnings: [], engineMs: 0, referenceMs: 0, engineLoadMs: 0, referenceLoadMs: 0 };
  const ids = decidingIds(c);
  const base = { seed: c.seed, caseIndex: c.index, policies: c.policies, links: c.links, entities: c.entities };
  let t = performance.now();
  const r = ref.prepare(c); // a set cedar-wasm rejects is a generator bug: let it throw
  run.referenceLoadMs = performance.now() - t;
  run.referenceMs += run.referenceLoadMs;
  let e: Prepared;
  t = performance.now();
  try {
    e = eng.prepare(c);
  } catch (err) {
    const request = c.requests[0] ?? { principal: { type: 'User', id: 'x' }, action: { type: 'Action', id: 'x' }, resource: { type: 'Doc', id: 'x' } };
    run.disagreements.push({
      ...base, requestIndex: -1, request, reference: r.decide(request, c.entities), engine: { threw: message(err) },
      differences: [{ kind: 'threw', text: `engine failed to load the policy set: ${message(err)}` }],
    });
    return run;
  }
  run.engineLoadMs = performance.now() - t;
  run.engineMs += run.engineLoadMs;
  run.engineWarnings.push(...e.warnings);
  const n = Math.min(c.requests.length, options.requests ?? Infinity);
  for (let i = 0; i < n; i++) {
    const req = c.requests[i];
    if (!req) continue;
    const entities = c.stores[i] ?? c.entities;
    t = performance.now();
    const want = r.decide(req, entities);
    const t2 = performance.now();
    run.referenceMs += t2 - t;
    let got: Decision | { threw: string };
    let diffs: Difference[];
    try {
      got = e.decide(req, entities);
      diffs = differences(want, got, ids);
    } catch (err) {
      got = { threw: message(err) };
      diffs = [{ kind: 'threw', text: `engine threw: ${message(err)}` }];
    }
    run.engineMs += performance.now() - t2;
    run.decisions++;
    if (want.decision === 'allow') run.allow++;
    if (want.errors.length) run.withErrors++;
    if (want.refused) run.refused++;
    for (const m of want.errors) { const k = errorKind(m); run.errorKinds.set(k, (run.errorKinds.get(k) ?? 0) + 1); }
    if (diffs.length) run.disagreements.push({ ...base, entities, requestIndex: i, request: req, reference: want, engine: got, differences: diffs });
  }
  return run;
}

/** Replays a (possibly edited) disagreement; the differences, or null when the engines agree or
 *  cedar-wasm rejects the edit. */
export function replay(d: Pick<Disagreement, 'policies' | 'links' | 'entities' | 'request'>, options: RunOptions = {}): { reference: Answer; engine: Decision | { threw: string }; differences: Difference[] } | null {
  const eng = options.engine ?? engine;
  const ref = options.reference ?? reference;
  let want: Answer;
  try {
    want = ref.prepare(d).decide(d.request, d.entities);
  } catch {
    return null;
  }
  try {
    const got = eng.prepare(d).decide(d.request, d.entities);
    return { reference: want, engine: got, differences: differences(want, got, decidingIds(d)) };
  } catch (err) {
    return { reference: want, engine: { threw: message(err) }, differences: [{ kind: 'threw', text: `engine threw: ${message(err)}` }] };
  }
}

// ---------------------------------------------------------------------------------------------
// Shrinking

/** Splits `s` at top-level occurrences of `sep` (outside parentheses, brackets, braces, strings). */
function splitTop(s: string, sep: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let start = 0;
  let inStr = false;
  for (let i = 0; i < s.length; i++) {
    const ch = s[i];
    if (inStr) {
      if (ch === '\\') i++;
      else if (ch === '"') inStr = false;
      continue;
    }
    if (ch === '"') inStr = true;
    else if (ch === '(' || ch === '[' || ch === '{') depth++;
    else if (ch === ')' || ch === ']' || ch === '}') depth--;
    else if (depth === 0 && s.startsWith(sep, i)) { parts.push(s.slice(start, i)); start = i + sep.length; i += sep.length - 1; }
  }
  parts.push(s.slice(start));
  return parts.map((p) => p.trim());
}

/** Smaller variants of one generated policy: a clause dropped, a scope widened, a clause body
 *  replaced by one of its top-level `&&` / `||` operands (or that operand's inside). */
function policyVariants(text: string): string[] {
  const lines = text.replace(/;\s*$/, '').split('\n');
  const out: string[] = [];
  const join = (ls: string[]): string => `${ls.join('\n')};`;
  lines.forEach((line, i) => {
    const clause = /^(when|unless) \{ (.*) \}$/.exec(line);
    if (clause) {
      out.push(join(lines.filter((_, k) => k !== i)));
      const body = clause[2] ?? '';
      for (const sep of [' && ', ' || ']) {
        const parts = splitTop(body, sep);
        if (parts.length > 1) for (const p of parts) out.push(join(lines.map((l, k) => (k === i ? `${clause[1]} { ${p} }` : l))));
      }
      const inner = /^!?\((.*)\)$/.exec(body);
      if (inner?.[1]) out.push(join(lines.map((l, k) => (k === i ? `${clause[1]} { ${inner[1]} }` : l))));
      const ite = /^if (.*) then (.*) else (.*)$/.exec(body);
      if (ite) for (const p of [ite[1], ite[2], ite[3]]) if (p) out.push(join(lines.map((l, k) => (k === i ? `${clause[1]} { ${p} }` : l))));
    }
    const scope = /^ {2}(principal|action|resource) .+?(,?)$/.exec(line);
    if (scope && !line.includes('?')) out.push(join(lines.map((l, k) => (k === i ? `  ${scope[1]}${scope[2]}` : l))));
    if (line.startsWith('@advice') || line.startsWith('//')) out.push(join(lines.filter((_, k) => k !== i)));
  });
  return out;
}

/** Shrinks a disagreement greedily while the same kinds of difference remain; at most `budget`
 *  replays. */
export function minimize(d: Disagreement, options: RunOptions & { budget?: number } = {}): Disagreement {
  let budget = options.budget ?? 2000;
  const kinds = (ds: Difference[]): string => [...new Set(ds.map((x) => x.kind))].sort().join(',');
  const target = kinds(d.differences);
  let cur: Disagreement = d;
  const attempt = (next: Pick<Disagreement, 'policies' | 'links' | 'entities' | 'request'>): boolean => {
    if (budget-- <= 0) return false;
    const r = replay(next, options);
    if (!r || !r.differences.length || kinds(r.differences) !== target) return false;
    cur = { ...cur, ...next, reference: r.reference, engine: r.engine, differences: r.differences };
    return true;
  };
  let progress = true;
  while (progress && budget > 0) {
    progress = false;
    // Whole policies (a template goes with its links), then single links.
    for (const p of [...cur.policies]) {
      if (cur.policies.includes(p) && attempt({ ...cur, policies: cur.policies.filter((x) => x !== p), links: cur.links.filter((l) => l.template !== p.id) })) progress = true;
    }
    for (const l of [...cur.links]) if (cur.links.includes(l) && attempt({ ...cur, links: cur.links.filter((x) => x !== l) })) progress = true;
    // Policy text: clauses, scopes, sub-expressions.
    for (let i = 0; i < cur.policies.length; i++) {
      let changed = true;
      while (changed && budget > 0) {
        changed = false;
        const p = cur.policies[i];
        if (!p) break;
        for (const text of policyVariants(p.text)) {
          if (attempt({ ...cur, policies: cur.policies.map((x, k) => (k === i ? { ...x, text } : x)) })) { changed = true; progress = true; break; }
        }
      }
    }
    // Entities, then their parts.
    for (const e of [...cur.entities]) if (cur.entities.includes(e) && attempt({ ...cur, entities: cur.entities.filter((x) => x !== e) })) progress = true;
    for (let i = 0; i < cur.entities.length; i++) {
      const e = cur.entities[i];
      if (!e) continue;
      const withEntity = (x: EntityJson): Pick<Disagreement, 'policies' | 'links' | 'entities' | 'request'> => ({ ...cur, entities: cur.entities.map((y, k) => (k === i ? x : y)) });
      for (const a of Object.keys(e.attrs ?? {})) {
        const cure = cur.entities[i] ?? e;
        if (!cure.attrs || !(a in cure.attrs)) continue;
        const attrs = { ...cure.attrs };
        delete attrs[a];
        if (attempt(withEntity({ ...cure, attrs }))) progress = true;
      }
      const ce = cur.entities[i] ?? e;
      if (ce.tags && attempt(withEntity({ uid: ce.uid, attrs: ce.attrs ?? {}, parents: ce.parents ?? [] }))) progress = true;
      for (const p of [...(cur.entities[i]?.parents ?? [])]) {
        const cure = cur.entities[i] ?? e;
        if (!(cure.parents ?? []).includes(p)) continue;
        if (attempt(withEntity({ ...cure, parents: (cure.parents ?? []).filter((x) => x !== p) }))) progress = true;
      }
    }
    // Context keys.
    for (const k of Object.keys(cur.request.context ?? {})) {
      if (!(k in (cur.request.context ?? {}))) continue;
      const context = { ...cur.request.context };
      delete context[k];
      if (attempt({ ...cur, request: { ...cur.request, context } })) progress = true;
    }
  }
  return cur;
}

/** A disagreement as text: the policies, the links, the store, the request and both answers. */
export function formatDisagreement(d: Disagreement): string {
  const answer = (x: Answer | { threw: string }): string => JSON.stringify(x);
  return [
    `seed ${d.seed}, case ${d.caseIndex}, request ${d.requestIndex}`,
    ...d.differences.map((x) => `  ${x.text}`),
    '--- policies',
    policyText(d),
    ...(d.links.length ? ['--- links', JSON.stringify(d.links)] : []),
    '--- entities',
    JSON.stringify(d.entities),
    '--- request',
    JSON.stringify(d.request),
    '--- cedar-wasm',
    answer(d.reference),
    '--- engine',
    answer(d.engine),
  ].join('\n');
}
