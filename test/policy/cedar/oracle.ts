// cedar-wasm as the oracle: load the same policies (named by @id) into the engine and into the
// reference, decide the same request, and compare what the differential tester compares: the
// decision, the set of determining policies and the set of policies that erred.
import assert from 'node:assert/strict';
import type { Decision } from '../../../src/policy/decision.js';
import { CedarEngine, cedarWasmDecision, type EngineInternals } from '../../../src/policy/cedar/engine.js';
import { cedar } from '../../../src/policy/cedar/parse.js';
import type { AuthzRequest, EntityJson, EntityUid, TemplateLink } from '../../../src/policy/cedar/types.js';

export const U = (type: string, id: string): EntityUid => ({ type, id });

/** Policies by id; each text is one policy without its @id, which is added here. */
export type Policies = Record<string, string>;

export interface Pair {
  engine: CedarEngine;
  warnings: string[];
  ours(req: AuthzRequest, entities: EntityJson[]): Decision;
  reference(req: AuthzRequest, entities: EntityJson[]): Decision;
}

let preparsed = 0;

const withId = (id: string, text: string) => `@id(${JSON.stringify(id)})\n${text}`;

export function pair(policies: Policies, opts: { templates?: Policies; links?: TemplateLink[]; internals?: EngineInternals } = {}): Pair {
  const statics = Object.fromEntries(Object.entries(policies).map(([id, t]) => [id, withId(id, t)]));
  const templates = Object.fromEntries(Object.entries(opts.templates ?? {}).map(([id, t]) => [id, withId(id, t)]));
  const warnings: string[] = [];
  const engine = CedarEngine.load(
    { sources: [{ text: [...Object.values(statics), ...Object.values(templates)].join('\n'), file: 'test.cedar' }], links: opts.links ?? [], onWarning: (m) => warnings.push(m) },
    opts.internals,
  );
  // Large sets are preparsed once (cedarWasmDecision parses on every call); both paths map
  // cedar-wasm's answer the same way, and small sets keep exercising cedarWasmDecision.
  const big = Object.keys(statics).length > 20;
  const slot = `oracle-${++preparsed}`;
  const wasmLinks = (opts.links ?? []).map((l) => ({
    templateId: l.template,
    newId: l.id,
    values: { ...(l.principal ? { '?principal': l.principal } : {}), ...(l.resource ? { '?resource': l.resource } : {}) },
  }));
  if (big) cedar.preparsePolicySet(slot, { staticPolicies: statics, templates, templateLinks: wasmLinks });
  return {
    engine,
    warnings,
    ours: (req, entities) => engine.isAuthorized(req, entities),
    reference: big
      ? (req, entities) => {
          // Our JSON forms are cedar-wasm's (it validates them itself): the casts only relabel.
          const a = cedar.statefulIsAuthorized({ ...req, context: (req.context ?? {}) as never, entities: entities as never, preparsedPolicySetId: slot });
          if (a.type === 'failure') return { decision: 'deny', reasons: [], errors: [`request: ${a.errors.map((e) => e.message).join('; ')}`] };
          return { decision: a.response.decision, reasons: a.response.diagnostics.reason, errors: a.response.diagnostics.errors.map((e) => `${e.policyId}: ${e.error.message}`) };
        }
      : (req, entities) => cedarWasmDecision(statics, req, entities, { templates, links: opts.links ?? [] }),
  };
}

/** The parts of a decision the differential tester compares (ids, not messages). */
export function shape(d: Decision): { decision: string; reasons: string[]; errored: string[] } {
  return {
    decision: d.decision,
    reasons: [...d.reasons].sort(),
    errored: d.errors.map((e) => e.slice(0, e.indexOf(': '))).sort(),
  };
}

export function assertAgree(p: Pair, req: AuthzRequest, entities: EntityJson[], label: string): Decision {
  const ours = p.ours(req, entities);
  const ref = p.reference(req, entities);
  assert.deepEqual(shape(ours), shape(ref), `${label}\n  engine:    ${JSON.stringify(ours)}\n  cedar-wasm: ${JSON.stringify(ref)}`);
  return ours;
}

/** One `when` expression as a permit, checked against cedar-wasm. */
export function assertExprAgrees(expr: string, req: AuthzRequest, entities: EntityJson[]): Decision {
  return assertAgree(pair({ p: `permit(principal, action, resource) when { ${expr} };` }), req, entities, expr);
}
