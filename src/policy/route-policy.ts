// First-cut evaluator for the config's short forms: roles per route, and which service may call
// which operation. Pure functions over a compiled, frozen policy set; deny by default.
import type { PortcullisConfig, RouteConfig } from '../core/config/types.js';
import { compilePathPattern, parseOperation } from '../core/path-pattern.js';
import { denyByDefault, type Decision } from './decision.js';

export interface Principal {
  sub: string;
  roles: readonly string[];
}

/** Edge rule: may this principal call this route? */
export function authorizeRoute(route: RouteConfig, principal: Principal): Decision {
  const id = `route:${route.id}`;
  if (route.roles.length === 0) return { decision: 'allow', reasons: [id], errors: [] };
  for (const r of principal.roles) {
    if (route.roles.includes(r)) return { decision: 'allow', reasons: [id], errors: [] };
  }
  return denyByDefault;
}

interface CompiledCall {
  id: string;
  caller: string;
  method: string;
  match: (path: string) => Record<string, string> | null;
}

/** Workload rules for one called service: who (SPIFFE ID) may call which operation on it. */
export class CallPolicy {
  private readonly rules: CompiledCall[];

  constructor(config: PortcullisConfig, service: string) {
    const spiffeOf = new Map(config.services.map((s) => [s.name, s.spiffeId]));
    const rules: CompiledCall[] = [];
    for (const c of config.calls) {
      if (c.to !== service) continue;
      const caller = spiffeOf.get(c.from);
      if (!caller) continue; // config validation guarantees it exists
      for (const op of c.operations) {
        const { method, pattern } = parseOperation(op);
        const compiled = compilePathPattern(pattern);
        rules.push({ id: `call:${c.from}->${c.to}:${method} ${pattern}`, caller, method, match: (p) => compiled.match(p) });
      }
    }
    // The gateway may reach exactly the operations that routes expose for this service.
    for (const r of config.routes) {
      if (r.service !== service) continue;
      const compiled = compilePathPattern(r.path);
      rules.push({ id: `route:${r.id}`, caller: config.gateway.spiffeId, method: r.method, match: (p) => compiled.match(p) });
    }
    this.rules = rules;
  }

  authorize(callerSpiffeId: string, method: string, path: string): Decision {
    for (const r of this.rules) {
      if (r.caller === callerSpiffeId && r.method === method && r.match(path)) {
        return { decision: 'allow', reasons: [r.id], errors: [] };
      }
    }
    return denyByDefault;
  }
}
