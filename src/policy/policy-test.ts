// `portcullis policy test` and `policy explain`: cases written as the running system would ask
// them (a route at the gateway, a call at a sidecar, a resource in the SDK, or a raw Cedar
// request), built with the same request model, so a passing test is a statement about production.
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { PortcullisError } from '../core/errors.js';
import { checkUserAttributes, type UserAttributes } from '../core/principal.js';
import type { AuthzRequest, CedarJson, EntityJson } from './cedar/types.js';
import type { Decision } from './decision.js';
import { parseEntityRef, type PolicySet } from './policy-set.js';
import { callRequest, routeRequest, uid, userEntities, type UserPrincipal } from './request-model.js';

export interface PolicyTestUser {
  roles: string[];
  attrs?: UserAttributes;
}

export interface PolicyTestCase {
  name: string;
  /** A gateway decision for this route id. */
  route?: string;
  user?: string;
  params?: Record<string, string>;
  method?: string;
  path?: string;
  sourceIp?: string;
  time?: string;
  /** A sidecar decision. */
  call?: { from: string; to: string; method: string; path: string; user?: string };
  /** An SDK decision. */
  sdk?: { user: string; action: string; resource: string; context?: Record<string, CedarJson> };
  /** A raw Cedar request: entity references as `Type::"id"`. */
  request?: { principal: string; action: string; resource: string; context?: Record<string, CedarJson> };
  entities?: EntityJson[];
  expect: 'allow' | 'deny';
  /** When given, the exact set of deciding policy ids. */
  reasons?: string[];
}

export interface PolicyTestFile {
  users: Record<string, PolicyTestUser>;
  entities: EntityJson[];
  cases: PolicyTestCase[];
}

export interface PolicyTestResult {
  name: string;
  passed: boolean;
  expected: { decision: 'allow' | 'deny'; reasons?: string[] };
  actual: Decision;
}

const fail = (file: string, msg: string): PortcullisError => new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `${file}: ${msg}`);

/** Reads and checks a test file's shape; every problem names the case. */
export function readPolicyTestFile(file: string): PolicyTestFile {
  let raw: unknown;
  try {
    raw = parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw fail(file, `cannot read test file: ${(err as Error).message}`);
  }
  const doc = (raw ?? {}) as Partial<PolicyTestFile>;
  const users = doc.users ?? {};
  for (const [name, u] of Object.entries(users)) {
    if (!u || !Array.isArray(u.roles) || !u.roles.every((r) => typeof r === 'string')) throw fail(file, `user ${name}: roles must be a list of names`);
    const bad = u.attrs === undefined ? undefined : checkUserAttributes(u.attrs);
    if (bad) throw fail(file, `user ${name}: ${bad}`);
  }
  if (!Array.isArray(doc.cases) || doc.cases.length === 0) throw fail(file, 'no cases');
  doc.cases.forEach((c, i) => {
    const label = `case ${i + 1} (${c?.name ?? 'unnamed'})`;
    if (!c || typeof c.name !== 'string') throw fail(file, `${label}: name missing`);
    if (c.expect !== 'allow' && c.expect !== 'deny') throw fail(file, `${label}: expect must be allow or deny`);
    const kinds = [c.route, c.call, c.sdk, c.request].filter((k) => k !== undefined).length;
    if (kinds !== 1) throw fail(file, `${label}: exactly one of route, call, sdk, request`);
    if (c.reasons !== undefined && !(Array.isArray(c.reasons) && c.reasons.every((r) => typeof r === 'string'))) throw fail(file, `${label}: reasons must be a list of policy ids`);
  });
  return { users, entities: doc.entities ?? [], cases: doc.cases };
}

/** The Cedar request and entities a case stands for. */
export function caseRequest(set: PolicySet, file: PolicyTestFile, c: PolicyTestCase): { request: AuthzRequest; entities: EntityJson[] } {
  const g = set.bundle.generated;
  const userOf = (name: string | undefined): UserPrincipal => {
    const u = name === undefined ? undefined : file.users[name];
    if (!u || name === undefined) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `case "${c.name}": unknown user ${JSON.stringify(name)}`);
    return { sub: name, roles: u.roles, ...(u.attrs ? { attrs: u.attrs } : {}) };
  };
  const extra = [...file.entities, ...(c.entities ?? [])];
  let q: { request: AuthzRequest; entities: EntityJson[] };
  if (c.route !== undefined) {
    const route = g.routes[c.route];
    if (!route) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `case "${c.name}": unknown route ${c.route}`);
    q = routeRequest({
      route: { id: c.route, service: route.service }, principal: userOf(c.user), method: c.method ?? 'GET', path: c.path ?? '/',
      params: c.params ?? {}, sourceIp: c.sourceIp ?? '127.0.0.1', nowMs: c.time ? Date.parse(c.time) : Date.now(), timeZone: g.timeZone,
    });
  } else if (c.call) {
    const caller = g.workloads[c.call.from];
    if (!caller) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `case "${c.name}": unknown workload ${c.call.from}`);
    const op = set.operationOf(c.call.to, c.call.method, c.call.path);
    q = callRequest({ service: c.call.to, caller, method: c.call.method, path: c.call.path, pattern: op?.pattern, params: op?.params ?? {}, ...(c.call.user ? { user: c.call.user } : {}) });
  } else if (c.sdk) {
    const p = userOf(c.sdk.user);
    q = { request: { principal: uid('User', p.sub), action: uid('Action', c.sdk.action), resource: parseEntityRef(c.sdk.resource), context: c.sdk.context ?? {} }, entities: userEntities(p) };
  } else {
    const r = c.request;
    if (!r) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `case "${c.name}": no request`);
    q = { request: { principal: parseEntityRef(r.principal), action: parseEntityRef(r.action), resource: parseEntityRef(r.resource), context: r.context ?? {} }, entities: [] };
  }
  return { request: q.request, entities: [...q.entities, ...extra] };
}

const sameSet = (a: readonly string[], b: readonly string[]): boolean => a.length === b.length && [...a].sort().join('\n') === [...b].sort().join('\n');

export function runPolicyTests(set: PolicySet, file: PolicyTestFile): PolicyTestResult[] {
  return file.cases.map((c) => {
    const { request, entities } = caseRequest(set, file, c);
    const actual = set.engine.isAuthorized(request, entities);
    const passed = actual.decision === c.expect && (c.reasons === undefined || sameSet(actual.reasons, c.reasons));
    return { name: c.name, passed, expected: { decision: c.expect, ...(c.reasons ? { reasons: c.reasons } : {}) }, actual };
  });
}
