// Scope values (RFC 6749 §3.3): parsing, and the subset checks every grant makes. Scope is always
// narrowed, never widened: a grant gets at most what the client is registered for, a refresh or an
// exchange at most what the original grant had.
import { OAuthError } from './errors.js';

/** Asks for refresh tokens (OpenID Connect Core §11; the name is widely understood by clients). */
export const OFFLINE_ACCESS = 'offline_access';

/** RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ). */
const SCOPE_TOKEN = /^[\x21\x23-\x5b\x5d-\x7e]{1,128}$/;
const MAX_SCOPE_VALUES = 50;

export function isValidScopeToken(s: unknown): s is string {
  return typeof s === 'string' && SCOPE_TOKEN.test(s);
}

/**
 * The values of a `scope` parameter (duplicates dropped, order kept). Null or empty means none.
 * Malformed scope is `invalid_scope` (the parameter is present, its value unacceptable).
 */
export function parseScope(raw: string | null): string[] {
  if (raw === null || raw === '') return [];
  const values = raw.split(' ');
  if (values.length > MAX_SCOPE_VALUES || !values.every((v) => SCOPE_TOKEN.test(v))) {
    throw new OAuthError('PCL_ERR_OAUTH_INVALID_SCOPE', 'scope must be space-separated scope tokens (RFC 6749 §3.3)');
  }
  return [...new Set(values)];
}

/** The requested scope when it is within `allowed`; `invalid_scope` otherwise (RFC 6749 §5.2). */
export function narrowScope(requested: string[], allowed: readonly string[]): string[] {
  const outside = requested.filter((s) => !allowed.includes(s));
  if (outside.length > 0) throw new OAuthError('PCL_ERR_OAUTH_INVALID_SCOPE', 'the requested scope exceeds what may be granted');
  return requested;
}

/** The space-separated form, or undefined for no scope. */
export function formatScope(values: readonly string[]): string | undefined {
  return values.length === 0 ? undefined : values.join(' ');
}

/** The scope an access token carries: offline_access is about the grant, not about any resource. */
export function accessTokenScope(granted: readonly string[]): string | undefined {
  return formatScope(granted.filter((s) => s !== OFFLINE_ACCESS));
}
