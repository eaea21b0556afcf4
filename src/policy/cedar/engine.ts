// The Cedar engine: policies parsed and validated by cedar-wasm at load, compiled to closures,
// indexed by action and by the principal/resource types their scopes fix, and evaluated with
// Cedar's decision rule. A policy the compiler cannot compile is evaluated by cedar-wasm (with a
// warning at load); malformed input is refused as cedar-wasm refuses it. Errors never allow.
import { createHash } from 'node:crypto';
import { PortcullisError } from '../../core/errors.js';
import type { Decision } from '../decision.js';
import { compileConditions, compileScope, Unsupported, type CompiledScope, type Env, type ScopeConstraint } from './compile.js';
import { CONTEXT_ROOM, Entities, InputError, NeedsReference, decodeValue, readUid } from './entities.js';
import {
  cedar,
  checkPolicySet,
  parseSources,
  resolveLinks,
  toCedarPolicySet,
  validateStrict,
  type CedarPolicySet,
  type ParsedPolicy,
  type PolicyJson,
  type WasmEntityJson,
  type WasmValueJson,
} from './parse.js';
import type { AuthzRequest, EntityJson, EntityUid, LoadOptions, TemplateLink } from './types.js';
import { CedarEvalError, EntityRef, type CRecord } from './values.js';

export interface PolicyInfo {
  id: string;
  effect: 'permit' | 'forbid';
  file?: string;
  line?: number;
  /** False when cedar-wasm evaluates this policy. */
  compiled: boolean;
  annotations: Record<string, string>;
}

export interface ExplainedPolicy {
  id: string;
  effect: 'permit' | 'forbid';
  satisfied: boolean;
  error?: string;
  file?: string;
  line?: number;
}

export interface Explanation {
  decision: Decision;
  /** The policies whose scope matched the request, in load order. */
  policies: ExplainedPolicy[];
}

/** Test hooks, not configuration. */
export interface EngineInternals {
  /** Hand these policies (or all, when true) to cedar-wasm as if they could not be compiled. */
  forceFallback?: boolean | ((id: string) => boolean);
}

interface Policy {
  id: string;
  effect: 'permit' | 'forbid';
  order: number;
  info: PolicyInfo;
  /** undefined when even the scope could not be compiled. */
  scope: CompiledScope | undefined;
  /** Compiled conditions; undefined for none. Ignored when `fallback`. */
  conditions: ((env: Env) => boolean) | undefined;
  fallback: boolean;
}

interface Fallback {
  setId: string;
  policies: Policy[];
  /** Per-policy preparsed sets, for explain. */
  single: Map<string, string>;
}

const EMPTY_CONTEXT: CRecord = Object.freeze({});
const REQUEST = 'request';

// ---------- the index ----------

/** The scope fixes this side's entity type, or undefined. */
function fixedType(c: ScopeConstraint): string | undefined {
  if (c.op === '==') return c.uid.type;
  if (c.op === 'is') return c.type;
  return undefined;
}

class Bucket {
  readonly #byTypes = new Map<string, Map<string, Policy[]>>();
  constructor(
    readonly list: Policy[],
    private readonly index: PolicyIndex,
  ) {}

  /** The policies whose scope can match a principal and resource of these types. */
  forTypes(ptype: string, rtype: string): Policy[] {
    const p = this.index.principalTypes.has(ptype) ? ptype : '';
    const r = this.index.resourceTypes.has(rtype) ? rtype : '';
    let byR = this.#byTypes.get(p);
    if (byR === undefined) {
      byR = new Map();
      this.#byTypes.set(p, byR);
    }
    let list = byR.get(r);
    if (list === undefined) {
      list = this.list.filter((pol) => {
        if (!pol.scope) return true;
        const pt = fixedType(pol.scope.principal);
        const rt = fixedType(pol.scope.resource);
        return (pt === undefined || pt === p) && (rt === undefined || rt === r);
      });
      byR.set(r, list);
    }
    return list;
  }
}

/** Narrows a request to the policies whose scope can match it. Buckets are built on first use
 *  and only for names the policies mention, so requests cannot grow the cache. */
class PolicyIndex {
  readonly principalTypes = new Set<string>();
  readonly resourceTypes = new Set<string>();
  readonly #named = new Map<string, Map<string, [Bucket | undefined, Bucket | undefined]>>();
  #other: [Bucket | undefined, Bucket | undefined] = [undefined, undefined];

  constructor(private readonly policies: Policy[]) {
    for (const p of policies) {
      if (!p.scope) continue;
      const pt = fixedType(p.scope.principal);
      const rt = fixedType(p.scope.resource);
      if (pt !== undefined) this.principalTypes.add(pt);
      if (rt !== undefined) this.resourceTypes.add(rt);
      const a = p.scope.action;
      const uids = a.op === '==' ? [a.uid] : a.op === 'in' ? a.uids : [];
      for (const u of uids) {
        let ids = this.#named.get(u.type);
        if (!ids) this.#named.set(u.type, (ids = new Map()));
        if (!ids.has(u.id)) ids.set(u.id, [undefined, undefined]);
      }
    }
  }

  /** `hierarchical`: the action has parents in this request's entities, so any `action in`
   *  policy may match through them. */
  bucket(action: EntityRef, hierarchical: boolean): Bucket {
    const slot = this.#named.get(action.type)?.get(action.id) ?? this.#other;
    const i = hierarchical ? 1 : 0;
    return (slot[i] ??= new Bucket(this.policies.filter((p) => this.#actionMayMatch(p, action, hierarchical)), this));
  }

  #actionMayMatch(p: Policy, action: EntityRef, hierarchical: boolean): boolean {
    if (!p.scope) return true;
    const a = p.scope.action;
    if (a.op === 'All') return true;
    if (a.op === '==') return a.uid.type === action.type && a.uid.id === action.id;
    return hierarchical || a.uids.some((u) => u.type === action.type && u.id === action.id);
  }
}

// ---------- results ----------

function deny(errors: string[]): Decision {
  return { decision: 'deny', reasons: [], errors };
}

function internalError(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** Our entity list in the shape cedar-wasm requires (attrs and parents present). Anything
 *  malformed is passed on unchanged for cedar-wasm to refuse, hence the cast. */
function forCedar(list: readonly EntityJson[]): WasmEntityJson[] {
  if (!Array.isArray(list)) return list as unknown as WasmEntityJson[];
  let out: EntityJson[] | undefined;
  list.forEach((e, i) => {
    const plain = typeof e === 'object' && e !== null && !Array.isArray(e);
    if (plain && (e.attrs === undefined || e.parents === undefined)) {
      out ??= list.slice(0, i);
      out.push({ ...e, attrs: e.attrs ?? {}, parents: e.parents ?? [] });
    } else out?.push(e);
  });
  return (out ?? list) as unknown as WasmEntityJson[];
}

type CedarAnswer = ReturnType<typeof cedar.isAuthorized>;

/** cedar-wasm's answer in our Decision shape; a refused request is a deny with one error. */
function fromCedar(answer: CedarAnswer): Decision {
  if (answer.type === 'failure') return deny([`${REQUEST}: ${answer.errors.map((e) => e.message).join('; ')}`]);
  const d = answer.response.diagnostics;
  return {
    decision: answer.response.decision,
    reasons: [...d.reason],
    errors: d.errors.map((e) => `${e.policyId}: ${e.error.message}`),
  };
}

function cedarCall(req: AuthzRequest, entities: readonly EntityJson[]) {
  // Our CedarJson is cedar-wasm's CedarValueJson without null; the cast only widens.
  const context = (req.context ?? {}) as Record<string, WasmValueJson>;
  return { principal: req.principal, action: req.action, resource: req.resource, context, entities: forCedar(entities) };
}

/**
 * The reference: cedar-wasm's isAuthorized on policies given as `{ id: text }` (one policy per
 * entry, so ids are ours), with optional templates and links, mapped to our Decision. Used by the
 * differential tests and by the engine's fallback. Reasons and errors come in cedar-wasm's
 * (hash) order: compare them as sets.
 */
export function cedarWasmDecision(
  policiesText: Record<string, string>,
  req: AuthzRequest,
  entities: EntityJson[],
  extra: { templates?: Record<string, string>; links?: TemplateLink[] } = {},
): Decision {
  const templateLinks = (extra.links ?? []).map((l) => {
    const values: Record<string, EntityUid> = {};
    if (l.principal) values['?principal'] = l.principal;
    if (l.resource) values['?resource'] = l.resource;
    return { templateId: l.template, newId: l.id, values };
  });
  try {
    return fromCedar(
      cedar.isAuthorized({
        ...cedarCall(req, entities),
        policies: { staticPolicies: policiesText, templates: extra.templates ?? {}, templateLinks },
      }),
    );
  } catch (e) {
    // cedar-wasm throws on input its JSON reader cannot take (a lone surrogate, a bigint).
    return deny([`${REQUEST}: ${internalError(e)}`]);
  }
}

// ---------- the engine ----------

export class CedarEngine {
  readonly policies: ReadonlyArray<PolicyInfo>;
  readonly #index: PolicyIndex;
  readonly #byId: Map<string, Policy>;
  /** The whole set under our ids, for requests only cedar-wasm can evaluate. */
  readonly #reference: CedarPolicySet;
  #referenceId: string | undefined;
  /** The policies cedar-wasm evaluates, preparsed once. */
  readonly #fallback: Fallback | undefined;

  private constructor(all: Policy[], reference: CedarPolicySet, fallbackSet: CedarPolicySet | undefined) {
    this.#index = new PolicyIndex(all);
    this.#byId = new Map(all.map((p) => [p.id, p]));
    this.policies = Object.freeze(all.map((p) => p.info));
    this.#reference = reference;
    if (fallbackSet) {
      this.#fallback = { setId: preparse(fallbackSet), policies: all.filter((p) => p.fallback), single: new Map() };
    }
  }

  /** Parses, validates and compiles a policy set; throws PCL_ERR_POLICY_INVALID with file:line:col. */
  static load(opts: LoadOptions, internals: EngineInternals = {}): CedarEngine {
    const parsed = opts.parsed ?? parseSources(opts.sources);
    const links = resolveLinks(parsed, opts.links ?? []);
    const reference = toCedarPolicySet(parsed, links);
    if (links.length > 0 && !opts.parsed) checkPolicySet(reference); // links: let cedar-wasm confirm our checks
    if (opts.schema) validateStrict(opts.schema, reference, parsed, links);

    const forced = internals.forceFallback;
    const isForced = (id: string) => (typeof forced === 'function' ? forced(id) : forced === true);
    const all: Policy[] = [];
    const add = (id: string, est: PolicyJson, source: ParsedPolicy, slots: Record<string, EntityRef>) => {
      let scope: CompiledScope | undefined;
      let conditions: Policy['conditions'];
      let reason: string | undefined = isForced(id) ? 'forced' : undefined;
      try {
        scope = compileScope(est, slots);
        if (!reason) conditions = compileConditions(est);
      } catch (e) {
        if (!(e instanceof Unsupported)) throw e;
        reason = e.reason;
      }
      if (reason) opts.onWarning?.(`${source.file}:${source.line}:${source.col}: policy "${id}" is evaluated by cedar-wasm (${reason})`);
      const info: PolicyInfo = Object.freeze({
        id,
        effect: est.effect,
        file: source.file,
        line: source.line,
        compiled: reason === undefined,
        annotations: Object.freeze({ ...source.annotations }),
      });
      all.push({ id, effect: est.effect, order: all.length, info, scope, conditions, fallback: reason !== undefined });
    };
    for (const p of parsed) if (p.kind === 'static') add(p.id, p.est, p, {});
    for (const { link, template } of links) {
      const slots: Record<string, EntityRef> = {};
      if (link.principal) slots['?principal'] = new EntityRef(link.principal.type, link.principal.id);
      if (link.resource) slots['?resource'] = new EntityRef(link.resource.type, link.resource.id);
      add(link.id, template.est, template, slots);
    }

    let fallbackSet: CedarPolicySet | undefined;
    const fallbackIds = new Set(all.filter((p) => p.fallback).map((p) => p.id));
    if (fallbackIds.size > 0) {
      // toCedarPolicySet builds these as id → text records.
      const pick = (r: unknown) => Object.fromEntries(Object.entries((r ?? {}) as Record<string, string>).filter(([id]) => fallbackIds.has(id)));
      const fallbackLinks = (reference.templateLinks ?? []).filter((l) => fallbackIds.has(l.newId));
      const usedTemplates = new Set(fallbackLinks.map((l) => l.templateId));
      fallbackSet = {
        staticPolicies: pick(reference.staticPolicies),
        templates: Object.fromEntries(Object.entries((reference.templates ?? {}) as Record<string, string>).filter(([id]) => usedTemplates.has(id))),
        templateLinks: fallbackLinks,
      };
    }
    const engine = new CedarEngine(all, reference, fallbackSet);
    engine.parsed = parsed;
    return engine;
  }

  /** The parsed sources this engine was compiled from: what a control plane ships so data planes skip parsing. */
  parsed: readonly ParsedPolicy[] = [];

  /** Cedar's answer: forbid beats permit, no permit means deny, an error never allows. */
  isAuthorized(req: AuthzRequest, entities: Entities | EntityJson[]): Decision {
    try {
      return this.#run(req, entities, undefined);
    } catch (e) {
      // A bug or a blown stack, never an answer: fail closed.
      return deny([`${REQUEST}: internal error: ${internalError(e)}`]);
    }
  }

  /** The decision plus, for each policy whose scope matched, whether it held or errored. */
  explain(req: AuthzRequest, entities: Entities | EntityJson[]): Explanation {
    const seen: ExplainedPolicy[] = [];
    let d: Decision;
    try {
      d = this.#run(req, entities, seen);
    } catch (e) {
      d = deny([`${REQUEST}: internal error: ${internalError(e)}`]);
    }
    return { decision: d, policies: seen.sort((a, b) => (this.#byId.get(a.id)?.order ?? 0) - (this.#byId.get(b.id)?.order ?? 0)) };
  }

  #run(req: AuthzRequest, entities: Entities | EntityJson[], explain: ExplainedPolicy[] | undefined): Decision {
    let env: Env;
    try {
      env = this.#env(req, entities);
    } catch (e) {
      if (e instanceof InputError) return deny([`${REQUEST}: ${e.message}`]);
      if (e instanceof NeedsReference) return this.#reference_(req, entities);
      return deny([`${REQUEST}: ${internalError(e)}`]);
    }
    const entry = env.entities.get(env.action.type, env.action.id);
    const hierarchical = entry !== undefined && entry.parents.length > 0;
    const list = this.#index.bucket(env.action, hierarchical).forTypes(env.principal.type, env.resource.type);

    // Ids straight away (no per-request arrays of policies); the list is in load order.
    let permits: string[] | undefined;
    let forbids: string[] | undefined;
    let errors: string[] | undefined;
    let fallbackNeeded = false;
    for (let i = 0; i < list.length; i++) {
      const p = list[i] as Policy; // index checked
      const scope = p.scope;
      if (scope !== undefined) {
        const residual = hierarchical ? scope.residualHierarchical : scope.residual;
        if (residual !== undefined && !residual(env)) continue;
      }
      if (p.fallback) {
        fallbackNeeded = true;
        continue;
      }
      let ok = true;
      if (p.conditions) {
        try {
          ok = p.conditions(env);
        } catch (e) {
          if (!(e instanceof CedarEvalError)) return deny([`${p.id}: internal error: ${internalError(e)}`]);
          (errors ??= []).push(`${p.id}: ${e.message}`);
          explain?.push(this.#explained(p, false, e.message));
          continue;
        }
      }
      explain?.push(this.#explained(p, ok));
      if (!ok) continue;
      if (p.effect === 'forbid') (forbids ??= []).push(p.id);
      else (permits ??= []).push(p.id);
    }

    if (fallbackNeeded) {
      const r = this.#runFallback(req, env, explain);
      if (r.refused) return r.refused;
      if (r.forbids.length > 0) forbids = this.#inOrder([...(forbids ?? []), ...r.forbids]);
      if (r.permits.length > 0) permits = this.#inOrder([...(permits ?? []), ...r.permits]);
      if (r.errors.length > 0) errors = this.#inOrder([...(errors ?? []), ...r.errors]);
    }
    if (forbids) return { decision: 'deny', reasons: forbids, errors: errors ?? [] };
    if (permits) return { decision: 'allow', reasons: permits, errors: errors ?? [] };
    return { decision: 'deny', reasons: [], errors: errors ?? [] };
  }

  /** Sorts ids (or "id: message" errors) into load order. */
  #inOrder(items: string[]): string[] {
    const order = (s: string) => {
      const p = this.#byId.get(s) ?? this.#byId.get(s.slice(0, s.indexOf(': ')));
      return p?.order ?? Infinity;
    };
    return items.sort((a, b) => order(a) - order(b));
  }

  #explained(p: Policy, satisfied: boolean, error?: string): ExplainedPolicy {
    const out: ExplainedPolicy = { id: p.id, effect: p.effect, satisfied, file: p.info.file, line: p.info.line };
    if (error !== undefined) out.error = error;
    return out;
  }

  #env(req: AuthzRequest, entities: Entities | EntityJson[]): Env {
    const store = entities instanceof Entities ? entities : Entities.fromJson(entities);
    const ctx = req.context;
    let context = EMPTY_CONTEXT;
    if (ctx !== undefined) {
      // The context is any value that turns out a record (so not an entity or extension escape).
      const v = decodeValue(ctx, CONTEXT_ROOM);
      const proto = typeof v === 'object' ? (Object.getPrototypeOf(v) as unknown) : undefined;
      if (Array.isArray(v) || (proto !== Object.prototype && proto !== null)) throw new InputError('expression is not a record');
      context = v as CRecord; // a plain object: a record
    }
    return {
      principal: readUid(req.principal, 'principal'),
      action: readUid(req.action, 'action'),
      resource: readUid(req.resource, 'resource'),
      context,
      entities: store,
    };
  }

  /** Evaluates the fallback policies with cedar-wasm on the same request. */
  #runFallback(
    req: AuthzRequest,
    env: Env,
    explain: ExplainedPolicy[] | undefined,
  ): { refused?: Decision; permits: string[]; forbids: string[]; errors: string[] } {
    const out = { permits: [] as string[], forbids: [] as string[], errors: [] as string[] };
    const fb = this.#fallback;
    if (!fb) return out;
    const call = cedarCall(req, env.entities.source);
    let answer: CedarAnswer;
    try {
      answer = cedar.statefulIsAuthorized({ ...call, preparsedPolicySetId: fb.setId });
    } catch (e) {
      return { ...out, refused: deny([`${REQUEST}: ${internalError(e)}`]) };
    }
    if (answer.type === 'failure') return { ...out, refused: fromCedar(answer) };
    const d = answer.response.diagnostics;
    for (const id of d.reason) {
      const p = this.#byId.get(id);
      if (!p) return { ...out, refused: deny([`${id}: internal error: unknown policy from cedar-wasm`]) };
      (p.effect === 'forbid' ? out.forbids : out.permits).push(p.id);
    }
    for (const e of d.errors) {
      const p = this.#byId.get(e.policyId);
      if (!p) return { ...out, refused: deny([`${e.policyId}: internal error: unknown policy from cedar-wasm`]) };
      out.errors.push(`${p.id}: ${e.error.message}`);
    }
    if (explain) {
      // The determining set hides satisfied permits when a forbid holds: ask per policy.
      for (const p of fb.policies) {
        if (p.scope && !p.scope.matches(env)) continue;
        const one = this.#single(p);
        const r = cedar.statefulIsAuthorized({ ...call, preparsedPolicySetId: one });
        if (r.type === 'failure') continue;
        const err = r.response.diagnostics.errors[0];
        explain.push(this.#explained(p, r.response.diagnostics.reason.includes(p.id), err?.error.message));
      }
    }
    return out;
  }

  /** A preparsed set holding one fallback policy (for explain). */
  #single(p: Policy): string {
    const fb = this.#fallback as Fallback; // only called when there is a fallback
    let id = fb.single.get(p.id);
    if (id === undefined) {
      const ref = this.#reference;
      const statics = (ref.staticPolicies ?? {}) as Record<string, string>; // built by toCedarPolicySet as id → text
      const link = (ref.templateLinks ?? []).find((l) => l.newId === p.id);
      const set: CedarPolicySet = link
        ? { staticPolicies: {}, templates: { [link.templateId]: ((ref.templates ?? {}) as Record<string, string>)[link.templateId] ?? '' }, templateLinks: [link] }
        : { staticPolicies: { [p.id]: statics[p.id] ?? '' } };
      id = preparse(set);
      fb.single.set(p.id, id);
    }
    return id;
  }

  /** The whole request through cedar-wasm (input only it can evaluate, e.g. `unknown`). */
  #reference_(req: AuthzRequest, entities: Entities | EntityJson[]): Decision {
    this.#referenceId ??= preparse(this.#reference);
    const list = entities instanceof Entities ? entities.source : entities;
    try {
      const d = fromCedar(cedar.statefulIsAuthorized({ ...cedarCall(req, list), preparsedPolicySetId: this.#referenceId }));
      const order = (id: string) => this.#byId.get(id)?.order ?? Infinity;
      d.reasons.sort((a, b) => order(a) - order(b));
      d.errors.sort((a, b) => order(a.slice(0, a.indexOf(': '))) - order(b.slice(0, b.indexOf(': '))));
      return d;
    } catch (e) {
      return deny([`${REQUEST}: ${internalError(e)}`]);
    }
  }
}

/** Preparses a set in cedar-wasm under a name derived from its content (same set, same slot). */
function preparse(set: CedarPolicySet): string {
  const id = 'portcullis-' + createHash('sha256').update(JSON.stringify(set)).digest('hex').slice(0, 32);
  const r = cedar.preparsePolicySet(id, set);
  if (r.type === 'failure') {
    throw new PortcullisError('PCL_ERR_POLICY_INVALID', `<policy set>:1:1: cedar-wasm refused the fallback set: ${r.errors.map((e) => e.message).join('; ')}`);
  }
  return id;
}
