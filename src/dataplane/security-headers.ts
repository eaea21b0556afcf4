// Security headers on what the gateway sends back: the full set on responses Portcullis itself
// generates (errors, preflights), and on proxied responses the headers that protect the client
// whatever the service forgot, with the headers that advertise server software removed.
import type { OutgoingHttpHeaders } from 'node:http';

export interface SecurityHeaderOptions {
  /** Send Strict-Transport-Security (`gateway.hsts`). Default true: the gateway only speaks TLS. */
  hsts?: boolean;
}

/** One year, and subdomains: the usual preload-eligible policy without opting into preload. */
export const HSTS_VALUE = 'max-age=31536000; includeSubDomains';

/** For Portcullis's own responses (JSON errors, 204 preflights): nothing to render, frame or load. */
const OWN_CSP = "default-src 'none'; frame-ancestors 'none'";

/** Response headers that only tell an attacker which software and version to target. */
export const FINGERPRINT_HEADERS: readonly string[] = [
  'server', 'x-powered-by', 'x-aspnet-version', 'x-aspnetmvc-version', 'x-generator', 'x-runtime', 'x-backend-server',
];

/**
 * The headers for a response Portcullis generates itself: strict-transport-security (unless
 * `hsts: false`), x-content-type-options: nosniff, referrer-policy: no-referrer,
 * x-frame-options: DENY, content-security-policy: default-src 'none'; frame-ancestors 'none'.
 */
export function securityHeaders(opts: SecurityHeaderOptions = {}): Record<string, string> {
  return {
    ...(opts.hsts !== false ? { 'strict-transport-security': HSTS_VALUE } : {}),
    'x-content-type-options': 'nosniff',
    'referrer-policy': 'no-referrer',
    'x-frame-options': 'DENY',
    'content-security-policy': OWN_CSP,
  };
}

/**
 * Secures a proxied response's headers (returns a new object; names compared case-insensitively,
 * output names lower-case):
 * - removes FINGERPRINT_HEADERS;
 * - always sets strict-transport-security (unless `hsts: false`, which leaves the service's header
 *   as it is) and x-content-type-options: nosniff, replacing the service's values — the gateway,
 *   not the service, owns the transport;
 * - adds referrer-policy: no-referrer and x-frame-options: DENY when the service set neither that
 *   header nor (for framing) a CSP `frame-ancestors` — a service that chose is left alone;
 * - does not add a content-security-policy: what a page may load is the service's decision;
 * - when the service sent no content-type and the response may have a body (`status` not 1xx,
 *   204 or 304), sets content-type: application/octet-stream, so with nosniff a browser never
 *   guesses HTML or script from the bytes (strict content types).
 */
export function applyResponseSecurity(headers: OutgoingHttpHeaders, opts: SecurityHeaderOptions & { status?: number } = {}): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(headers)) {
    const lower = name.toLowerCase();
    if (value === undefined || FINGERPRINT_HEADERS.includes(lower)) continue;
    out[lower] = value;
  }
  // With `hsts: false` the gateway neither sets nor removes the header: the service's own choice stands.
  if (opts.hsts !== false) out['strict-transport-security'] = HSTS_VALUE;
  out['x-content-type-options'] = 'nosniff';
  if (out['referrer-policy'] === undefined) out['referrer-policy'] = 'no-referrer';
  const csp = out['content-security-policy'];
  const framingChosen = out['x-frame-options'] !== undefined || /frame-ancestors/i.test(Array.isArray(csp) ? csp.join(',') : String(csp ?? ''));
  if (!framingChosen) out['x-frame-options'] = 'DENY';
  const status = opts.status ?? 200;
  const bodiless = status < 200 || status === 204 || status === 304;
  if (out['content-type'] === undefined && !bodiless) out['content-type'] = 'application/octet-stream';
  return out;
}
