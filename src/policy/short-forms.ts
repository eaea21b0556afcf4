// The config's short forms (route roles, allowed calls) written out as Cedar, with the schema
// declarations of Portcullis's own request model, so one engine decides everything and explains
// every decision the same way (docs/policy.md).
import type { PortcullisConfig } from '../core/config/types.js';
import { compilePathPattern, parseOperation } from '../core/path-pattern.js';
import { operationGroup, operationId } from './request-model.js';

/** A Cedar string literal. */
export const cedarString = (s: string): string => JSON.stringify(s);

/** The Cedar policies the short forms compile to, one per rule, each with its @id. */
export function shortFormPolicies(config: PortcullisConfig): string {
  const out: string[] = [];
  const serviceId = new Map(config.services.map((s) => [s.name, s.spiffeId]));
  for (const r of config.routes) {
    const id = cedarString(r.id);
    if (r.roles.length > 0) {
      const roles = r.roles.map((role) => `principal in Role::${cedarString(role)}`).join(' || ');
      out.push(`@id(${cedarString(`route:${r.id}`)})\npermit(principal, action == Action::${id}, resource == Route::${id}) when { ${roles} };`);
    }
    // The gateway may forward exactly what it routes, to the service the route names.
    out.push(`@id(${cedarString(`route:${r.id}:forward`)})\npermit(principal == Workload::${cedarString(config.gateway.spiffeId)}, ` +
      `action == Action::${cedarString(operationId(r.method, r.path))}, resource == Service::${cedarString(r.service)});`);
  }
  for (const c of config.calls) {
    const caller = serviceId.get(c.from) ?? '';
    for (const op of c.operations) {
      const { method, pattern } = parseOperation(op);
      out.push(`@id(${cedarString(`call:${c.from}->${c.to}:${method} ${pattern}`)})\npermit(principal == Workload::${cedarString(caller)}, ` +
        `action == Action::${cedarString(operationId(method, pattern))}, resource == Service::${cedarString(c.to)});`);
    }
  }
  return out.join('\n\n') + '\n';
}

export interface DeclaredOperation {
  method: string;
  pattern: string;
  match: (path: string) => Record<string, string> | null;
}

/** Every operation declared for each service, in config order (routes first, then calls). */
export function declaredOperations(config: PortcullisConfig): Map<string, DeclaredOperation[]> {
  const ops = new Map<string, DeclaredOperation[]>(config.services.map((s) => [s.name, []]));
  const add = (service: string, method: string, pattern: string): void => {
    const list = ops.get(service);
    if (!list || list.some((o) => o.method === method && o.pattern === pattern)) return;
    const compiled = compilePathPattern(pattern);
    list.push({ method, pattern, match: (p) => compiled.match(p) });
  };
  for (const r of config.routes) add(r.service, r.method, r.path);
  for (const c of config.calls) for (const op of c.operations) { const { method, pattern } = parseOperation(op); add(c.to, method, pattern); }
  return ops;
}

const paramsType = (pattern: string): string =>
  `{ ${[...pattern.matchAll(/\{([^}]+)\}/g)].map((m) => `${cedarString(m[1] ?? '')}: String`).join(', ')} }`;

/**
 * Schema declarations of the request model: appended to the user's schema. `User` is declared
 * only when the user's schema does not declare it (it then carries the users' own attributes).
 */
export function modelSchema(config: PortcullisConfig, declareUser: boolean): string {
  const lines = [
    '// Declared by Portcullis (docs/policy.md): the request model of the gateway and the sidecars.',
    'entity Role;',
    'entity Workload;',
    'entity Service;',
    'entity Route { service: String };',
    ...(declareUser ? ['entity User in [Role] { roles: Set<String> };'] : []),
    'type PortcullisTime = { hour: Long, minute: Long, weekday: Long };',
    'action "read";',
    'action "write";',
  ];
  for (const r of config.routes) {
    lines.push(`action ${cedarString(r.id)} appliesTo { principal: [User], resource: [Route], context: { time: PortcullisTime, now: datetime, sourceIp: ipaddr, method: String, path: String, params: ${paramsType(r.path)} } };`);
  }
  const seen = new Set<string>();
  for (const list of declaredOperations(config).values()) {
    for (const op of list) {
      const id = operationId(op.method, op.pattern);
      if (seen.has(id)) continue;
      seen.add(id);
      lines.push(`action ${cedarString(id)} in [${cedarString(operationGroup(op.method))}] appliesTo { principal: [Workload], resource: [Service], context: { method: String, path: String, params: ${paramsType(op.pattern)}, user?: String } };`);
    }
  }
  return lines.join('\n') + '\n';
}
