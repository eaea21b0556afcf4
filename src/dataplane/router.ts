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
    // More specific first: at the first segment where two patterns differ, a literal beats a
    // parameter, so `/a/mine` is never hidden by `/a/{id}` whatever the order in the file.
    const specificity = (r: RouteConfig): string => r.path.split('/').map((seg) => (seg.startsWith('{') ? '1' : '0')).join('');
    const ordered = [...routes].sort((a, b) => (specificity(a) < specificity(b) ? -1 : specificity(a) > specificity(b) ? 1 : 0));
    for (const route of ordered) {
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
