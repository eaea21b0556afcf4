// Step 2: match method and canonical path to one configured route. No match is a refusal.
import type { RouteConfig } from '../core/config/types.js';
import { compilePathPattern } from '../core/path-pattern.js';

export interface RouteMatch {
  route: RouteConfig;
  params: Record<string, string>;
}

export class Router {
  private readonly byMethod = new Map<string, { route: RouteConfig; match: (path: string) => Record<string, string> | null }[]>();

  constructor(routes: readonly RouteConfig[]) {
    for (const route of routes) {
      const compiled = compilePathPattern(route.path);
      const list = this.byMethod.get(route.method) ?? [];
      list.push({ route, match: (p) => compiled.match(p) });
      this.byMethod.set(route.method, list);
    }
  }

  match(method: string, path: string): RouteMatch | undefined {
    for (const r of this.byMethod.get(method) ?? []) {
      const params = r.match(path);
      if (params) return { route: r.route, params };
    }
    return undefined;
  }
}
