// Route path patterns: "/shop/orders/{id}". Literal segments compare exactly; `{name}` matches
// exactly one non-empty segment. No regular expression is ever built from a pattern, so a pattern
// can neither inject regex syntax nor cause catastrophic backtracking, and matching is a linear
// scan of the path with no allocation until a match is certain (the router's hot path).
//
// match() works on the path the normalizer produced (DESIGN.md pipeline step 1): it does no
// percent-decoding, dot-segment removal or case folding itself, and compares bytes as given.
import { PortcullisError } from './errors.js';

/** The HTTP methods a route or a call rule may name (the schema's `method` enum is checked against this). */
export const HTTP_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'] as const;
export type HttpMethod = (typeof HTTP_METHODS)[number];

export interface PathPattern {
  /** The pattern as written, e.g. "/shop/orders/{id}". */
  readonly pattern: string;
  /** Parameter names in order of appearance, e.g. ["id"]. */
  readonly params: readonly string[];
  /**
   * The pattern with every parameter name erased ("/shop/orders/{}"): two patterns with the same
   * shape match exactly the same paths, so two routes with one method and one shape conflict.
   */
  readonly shape: string;
  /** Parameters by name (a null-prototype object) when `path` matches, otherwise null. */
  match(path: string): Record<string, string> | null;
}

/** Characters allowed in a literal segment: RFC 3986 pchar without `%` (patterns match decoded paths) and `*` (no wildcards). */
const LITERAL_SEGMENT = /^[A-Za-z0-9._~!$&'()+,;=:@-]+$/;
const PARAM_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const MAX_PATTERN_LENGTH = 1024;

const SLASH = 0x2f;

function invalid(pattern: string, why: string): PortcullisError {
  // The pattern comes from configuration, not from a client: quoting it (escaped) helps the operator.
  return new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `invalid path pattern ${JSON.stringify(pattern.slice(0, 120))}: ${why}`);
}

/**
 * Compiles a path pattern once; the result's match() is then cheap enough for every request.
 * Throws PCL_ERR_INVALID_ARGUMENT for a pattern that is not "/" followed by segments, each either
 * literal or `{name}`.
 */
export function compilePathPattern(pattern: string): PathPattern {
  if (typeof pattern !== 'string' || pattern.length === 0) throw invalid(String(pattern), 'it is empty');
  if (pattern.length > MAX_PATTERN_LENGTH) throw invalid(pattern, `it is longer than ${MAX_PATTERN_LENGTH} characters`);
  if (pattern.charCodeAt(0) !== SLASH) throw invalid(pattern, 'it must start with "/"');

  // Per segment: the literal text, or null for a parameter (whose name is in `names` at the same index).
  const literals: (string | null)[] = [];
  const names: (string | null)[] = [];
  const params: string[] = [];
  const shapeParts: string[] = [];

  if (pattern !== '/') {
    for (const segment of pattern.slice(1).split('/')) {
      if (segment.length === 0) throw invalid(pattern, 'it has an empty segment ("//" or a trailing "/")');
      if (segment.charCodeAt(0) === 0x7b /* { */ && segment.charCodeAt(segment.length - 1) === 0x7d /* } */) {
        const name = segment.slice(1, -1);
        if (!PARAM_NAME.test(name)) throw invalid(pattern, `parameter {${name}} must be a letter or "_" followed by letters, digits or "_"`);
        if (params.includes(name)) throw invalid(pattern, `parameter {${name}} appears twice`);
        params.push(name);
        literals.push(null);
        names.push(name);
        shapeParts.push('{}');
        continue;
      }
      if (segment === '.' || segment === '..') throw invalid(pattern, 'dot segments never reach a route (the normalizer removes them)');
      if (!LITERAL_SEGMENT.test(segment)) {
        throw invalid(pattern, `segment "${segment.slice(0, 60)}" must be literal (letters, digits, -._~!$&'()+,;=:@) or a whole {name}; "%", "*" and partial {…} are not allowed`);
      }
      literals.push(segment);
      names.push(null);
      shapeParts.push(segment);
    }
  }

  const count = literals.length;
  const shape = '/' + shapeParts.join('/');

  const match = (path: string): Record<string, string> | null => {
    if (typeof path !== 'string' || path.charCodeAt(0) !== SLASH) return null;
    if (count === 0) return path.length === 1 ? Object.create(null) as Record<string, string> /* null prototype: no inherited keys */ : null;
    const len = path.length;
    let values: string[] | undefined;
    let start = 1; // first character of the current segment
    for (let i = 0; i < count; i++) {
      if (start > len) return null; // the path has fewer segments than the pattern
      let end = path.indexOf('/', start);
      if (end === -1) end = len;
      const literal = literals[i];
      if (literal !== null && literal !== undefined) {
        if (end - start !== literal.length || !path.startsWith(literal, start)) return null;
      } else {
        const size = end - start;
        if (size === 0) return null; // `{name}` never matches an empty segment
        // Defence in depth: a dot segment that escaped normalization never becomes a parameter.
        if (path.charCodeAt(start) === 0x2e && (size === 1 || (size === 2 && path.charCodeAt(start + 1) === 0x2e))) return null;
        (values ??= []).push(path.slice(start, end));
      }
      start = end + 1;
    }
    if (start !== len + 1) return null; // extra segments, or a trailing "/"
    // Null prototype: a parameter named "__proto__" or "constructor" stays a plain own key.
    const result = Object.create(null) as Record<string, string>;
    if (values !== undefined) for (let i = 0; i < params.length; i++) result[params[i] as string /* i < params.length */] = values[i] as string /* one value per param */;
    return result;
  };

  return Object.freeze({ pattern, params: Object.freeze(params), shape, match });
}

/** "POST /payments/charge" → { method: 'POST', pattern: '/payments/charge' }; throws PCL_ERR_INVALID_ARGUMENT otherwise. */
export function parseOperation(operation: string): { method: HttpMethod; pattern: string } {
  if (typeof operation !== 'string') throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', 'an operation must be a string "METHOD /path"');
  const space = operation.indexOf(' ');
  const method = space === -1 ? operation : operation.slice(0, space);
  if (space === -1 || !isHttpMethod(method)) {
    throw new PortcullisError(
      'PCL_ERR_INVALID_ARGUMENT',
      `operation ${JSON.stringify(operation.slice(0, 120))} must be "METHOD /path" with METHOD one of ${HTTP_METHODS.join(', ')} and a single space`,
    );
  }
  const pattern = operation.slice(space + 1);
  compilePathPattern(pattern); // validates, throwing with the reason
  return { method, pattern };
}

export function isHttpMethod(value: string): value is HttpMethod {
  // Widening the tuple's element type only, so includes() accepts any string.
  return (HTTP_METHODS as readonly string[]).includes(value);
}
