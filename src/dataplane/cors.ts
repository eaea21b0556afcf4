// CORS at the gateway: which browser origins may call the API. Origins are an exact list (no
// wildcards, `null` never), compared after normalizing scheme, host and port. Preflights are
// answered here and never reach a service; a cross-origin request that changes state from an
// origin not on the list is refused outright rather than merely left without CORS headers.
import type { IncomingHttpHeaders } from 'node:http';
import { PortcullisError } from '../core/errors.js';

/** `gateway.cors`. Absent: no origin is allowed (same-origin requests still pass). */
export interface CorsPolicy {
  /** Exact origins, e.g. ['https://shop.example']; no wildcards, no paths, never "null". */
  origins: string[];
  /** Methods a preflight may ask for. Default ['GET', 'HEAD', 'POST']. */
  methods?: string[];
  /** Request headers a preflight may ask for (case-insensitive). Default ['authorization', 'content-type']. */
  headers?: string[];
  /** Send access-control-allow-credentials: true (cookies, client certificates). Default false. */
  credentials?: boolean;
  /** How long a browser may cache a preflight answer, in seconds. Default 600. */
  maxAgeSec?: number;
}

export interface CorsResult {
  /** True for a preflight: the gateway answers 204 with `responseHeaders` and forwards nothing. */
  preflight: boolean;
  /** Headers to add to the response (always at least `vary`). */
  responseHeaders: Record<string, string>;
}

/** A CorsPolicy checked, with defaults filled in and origins normalized. */
export interface CompiledCors {
  origins: ReadonlySet<string>;
  methods: readonly string[];
  headers: readonly string[];
  credentials: boolean;
  maxAgeSec: number;
}

const compiled = new WeakMap<CorsPolicy, CompiledCors>();
const SAFE_METHODS = new Set(['GET', 'HEAD']);
const ORIGIN_SYNTAX = /^https?:\/\/[A-Za-z0-9.\-[\]:]+$/i;
const TOKEN = /^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/;

/**
 * An origin in the one spelling compared: lower-case scheme and host, default port elided
 * ("HTTPS://Shop.Example:443" → "https://shop.example"). Undefined for "null", anything with a
 * path, query, user info or whitespace, and schemes other than http and https.
 */
export function normalizeOrigin(origin: string): string | undefined {
  if (!ORIGIN_SYNTAX.test(origin)) return undefined;
  try {
    const u = new URL(origin);
    return u.origin === 'null' ? undefined : u.origin;
  } catch {
    return undefined; // not a URL at all
  }
}

/**
 * The policy checked and prepared once per configuration object. Throws PCL_ERR_INVALID_ARGUMENT
 * for an origin that is not exact ("*", "null", a path) or a method or header that is not a token.
 */
export function compileCorsPolicy(policy: CorsPolicy): CompiledCors {
  const cached = compiled.get(policy);
  if (cached) return cached;
  const origins = new Set<string>();
  for (const o of policy.origins) {
    const n = normalizeOrigin(o);
    if (n === undefined) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `cors.origins: ${JSON.stringify(o.slice(0, 100))} is not an exact http(s) origin (no "*", "null" or path)`);
    origins.add(n);
  }
  const methods = policy.methods ?? ['GET', 'HEAD', 'POST'];
  const headers = (policy.headers ?? ['authorization', 'content-type']).map((h) => h.toLowerCase());
  for (const t of [...methods, ...headers]) {
    if (!TOKEN.test(t)) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `cors: ${JSON.stringify(t.slice(0, 60))} is not a method or header name`);
  }
  const maxAgeSec = policy.maxAgeSec ?? 600;
  if (!Number.isInteger(maxAgeSec) || maxAgeSec < 0) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', 'cors.maxAgeSec must be a non-negative integer');
  const c: CompiledCors = { origins, methods, headers, credentials: policy.credentials === true, maxAgeSec };
  compiled.set(policy, c);
  return c;
}

function refuse(why: string): never {
  // The origin is client data: the message says which check failed, not what was sent.
  throw new PortcullisError('PCL_ERR_CORS', `CORS: ${why}`);
}

const one = (v: string | string[] | undefined): string | undefined => (Array.isArray(v) ? v.join(',') : v);

/**
 * Decides the CORS side of a request.
 * - No Origin header: not a browser cross-origin request; only `vary: Origin`.
 * - Preflight (OPTIONS with Access-Control-Request-Method): the origin must be on the list and
 *   the method and every requested header allowed, else PCL_ERR_CORS; the answer's headers are returned.
 * - Other requests from an allowed origin: access-control-allow-origin (and -credentials).
 * - Other requests from any other origin ("null" included): GET and HEAD pass without CORS
 *   headers (the browser keeps the response from the page); any other method is refused with
 *   PCL_ERR_CORS unless the origin is the gateway's own (`https://` + Host) — it would change
 *   state on behalf of a page the operator never allowed.
 */
export function handleCors(method: string, headers: IncomingHttpHeaders, policy: CorsPolicy | undefined): CorsResult {
  const rawOrigin = one(headers.origin);
  if (rawOrigin === undefined) return { preflight: false, responseHeaders: { vary: 'Origin' } };
  const c = policy ? compileCorsPolicy(policy) : undefined;
  const origin = normalizeOrigin(rawOrigin);
  const allowed = origin !== undefined && c !== undefined && c.origins.has(origin);
  const requestedMethod = one(headers['access-control-request-method']);

  if (method === 'OPTIONS' && requestedMethod !== undefined) {
    if (!allowed || !c) refuse('preflight from an origin not allowed');
    if (!c.methods.includes(requestedMethod.trim())) refuse('preflight for a method not allowed');
    const requested = (one(headers['access-control-request-headers']) ?? '').split(',').map((h) => h.trim().toLowerCase()).filter(Boolean);
    if (requested.some((h) => !c.headers.includes(h))) refuse('preflight for a request header not allowed');
    return {
      preflight: true,
      responseHeaders: {
        vary: 'Origin, Access-Control-Request-Method, Access-Control-Request-Headers',
        'access-control-allow-origin': origin,
        'access-control-allow-methods': c.methods.join(', '),
        ...(c.headers.length > 0 ? { 'access-control-allow-headers': c.headers.join(', ') } : {}),
        ...(c.credentials ? { 'access-control-allow-credentials': 'true' } : {}),
        'access-control-max-age': String(c.maxAgeSec),
      },
    };
  }

  if (allowed && c) {
    return { preflight: false, responseHeaders: { vary: 'Origin', 'access-control-allow-origin': origin, ...(c.credentials ? { 'access-control-allow-credentials': 'true' } : {}) } };
  }
  const host = one(headers.host) ?? one(headers[':authority']); // HTTP/2 names the authority instead
  const sameOrigin = origin !== undefined && host !== undefined && normalizeOrigin(`https://${host}`) === origin;
  if (!SAFE_METHODS.has(method) && !sameOrigin) refuse('state-changing request from an origin not allowed');
  return { preflight: false, responseHeaders: { vary: 'Origin' } };
}
