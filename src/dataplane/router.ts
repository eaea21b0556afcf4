// Step 2: match method and canonical path to one configured route. No match is a refusal.
// A route may relax case or trailing-slash matching (its `pathRules`); the match then carries the
// route's canonical form of the path, which is what policy sees and what the upstream receives.
import type { RouteConfig } from '../core/config/types.js';
import { compilePathPattern } from '../core/path-pattern.js';
import type { PathAdmission, PathRules } from './normalize.js';

/** A route as the router reads it: a configured route (a RouteConfig is one), path rules optional. */
export type RoutableRoute = Omit<RouteConfig, 'pathRules'> & { pathRules?: PathRules };

export interface RouteMatch<R extends RoutableRoute = RouteConfig> {
  route: R;
  params: Record<string, string>;
  /**
   * The path as authorized and forwarded. For strict routes (the default) the normalized path
   * itself; for a case-insensitive route its literal segments are spelled as in the route pattern
   * (parameters keep the client's spelling); for `trailingSlash: 'ignore'` the trailing "/" is dropped.
   */
  canonicalPath: string;
  /** The route's path rules with defaults filled in, for checkPathRules. */
  rules: Required<PathRules>;
}

type Matcher = (path: string) => { params: Record<string, string>; canonicalPath: string } | null;

const SLASH = 0x2f;

function withDefaults(r: PathRules | undefined): Required<PathRules> {
  return {
    allowEncodedSlash: r?.allowEncodedSlash === true,
    allowSemicolon: r?.allowSemicolon === true,
    caseSensitive: r?.caseSensitive !== false,
    trailingSlash: r?.trailingSlash === 'ignore' ? 'ignore' : 'strict',
  };
}

/** ASCII-only case-insensitive comparison of path[start, start+lit.length) with a lower-case literal. */
function equalsIgnoreCase(path: string, start: number, lowerLiteral: string): boolean {
  for (let k = 0; k < lowerLiteral.length; k++) {
    let c = path.charCodeAt(start + k);
    if (c >= 0x41 && c <= 0x5a) c += 0x20;
    if (c !== lowerLiteral.charCodeAt(k)) return false;
  }
  return true;
}

/** A matcher ignoring ASCII case in literal segments; the pattern is validated by compilePathPattern first. */
function caseInsensitiveMatcher(pattern: string): Matcher {
  const segs = pattern === '/' ? [] : pattern.slice(1).split('/');
  // Per segment: the pattern's literal (canonical spelling) and its lower-case form, or null for `{name}`.
  const literals = segs.map((s) => (s.startsWith('{') ? null : s));
  const lower = literals.map((s) => (s === null ? null : s.replace(/[A-Z]/g, (c) => c.toLowerCase())));
  const names = segs.map((s) => (s.startsWith('{') ? s.slice(1, -1) : null));
  const count = segs.length;
  return (path) => {
    if (path.charCodeAt(0) !== SLASH) return null;
    if (count === 0) return path.length === 1 ? { params: Object.create(null) as Record<string, string> /* null prototype */, canonicalPath: '/' } : null;
    const len = path.length;
    const params = Object.create(null) as Record<string, string>; // null prototype: "__proto__" stays an own key
    let canonical = '';
    let start = 1;
    for (let i = 0; i < count; i++) {
      if (start > len) return null;
      let end = path.indexOf('/', start);
      if (end === -1) end = len;
      const lit = lower[i];
      if (lit !== null && lit !== undefined) {
        if (end - start !== lit.length || !equalsIgnoreCase(path, start, lit)) return null;
        canonical += '/' + (literals[i] as string); // literal at i whenever lower[i] is
      } else {
        const size = end - start;
        if (size === 0) return null;
        // Defence in depth, as in path-pattern.ts: a dot segment never becomes a parameter.
        if (path.charCodeAt(start) === 0x2e && (size === 1 || (size === 2 && path.charCodeAt(start + 1) === 0x2e))) return null;
        const value = path.slice(start, end);
        params[names[i] as string /* a name at i whenever there is no literal */] = value;
        canonical += '/' + value;
      }
      start = end + 1;
    }
    if (start !== len + 1) return null;
    return { params, canonicalPath: canonical };
  };
}

function compileRoute(route: RoutableRoute, rules: Required<PathRules>): Matcher {
  const compiled = compilePathPattern(route.path); // validates the pattern, throwing with the reason
  const exact: Matcher = rules.caseSensitive
    ? (p) => { const params = compiled.match(p); return params ? { params, canonicalPath: p } : null; }
    : caseInsensitiveMatcher(route.path);
  if (rules.trailingSlash === 'strict') return exact;
  // Normalized paths never contain "//", so at most one trailing "/" needs dropping.
  return (p) => exact(p.length > 1 && p.charCodeAt(p.length - 1) === SLASH ? p.slice(0, -1) : p);
}

export class Router<R extends RoutableRoute = RouteConfig> {
  private readonly byMethod = new Map<string, { route: R; rules: Required<PathRules>; match: Matcher }[]>();
  /**
   * What normalizeTarget may admit before routing: the union of all routes' allowances. A feature
   * no route allows is refused at normalization, before any route is even looked at.
   */
  readonly admits: Readonly<PathAdmission>;

  constructor(routes: readonly R[]) {
    // More specific first: at the first segment where two patterns differ, a literal beats a
    // parameter, so `/a/mine` is never hidden by `/a/{id}` whatever the order in the file.
    const specificity = (r: RoutableRoute): string => r.path.split('/').map((seg) => (seg.startsWith('{') ? '1' : '0')).join('');
    const ordered = [...routes].sort((a, b) => (specificity(a) < specificity(b) ? -1 : specificity(a) > specificity(b) ? 1 : 0));
    let encodedSlash = false;
    let semicolon = false;
    for (const route of ordered) {
      const rules = withDefaults(route.pathRules);
      encodedSlash ||= rules.allowEncodedSlash;
      semicolon ||= rules.allowSemicolon;
      const list = this.byMethod.get(route.method) ?? [];
      list.push({ route, rules, match: compileRoute(route, rules) });
      this.byMethod.set(route.method, list);
    }
    this.admits = Object.freeze({ encodedSlash, semicolon });
  }

  /** The most specific route for this method and normalized path, or undefined. */
  match(method: string, path: string): RouteMatch<R> | undefined {
    for (const r of this.byMethod.get(method) ?? []) {
      const m = r.match(path);
      if (m) return { route: r.route, params: m.params, canonicalPath: m.canonicalPath, rules: r.rules };
    }
    return undefined;
  }
}

/**
 * The canonical form of `path` for `route` (see RouteMatch.canonicalPath), or undefined when the
 * route does not match it. Compiles the route on every call: for tests and tools, not the hot path.
 */
export function canonicalForRoute(path: string, route: RoutableRoute): string | undefined {
  return compileRoute(route, withDefaults(route.pathRules))(path)?.canonicalPath;
}
