// Which request headers may cross Portcullis. Clients must not be able to claim an identity, a
// source address or a different method: those headers are removed and set by us alone. Headers
// that policy reads must arrive once: two values would let two parsers see two requests.
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import { PortcullisError } from '../core/errors.js';

export { PRINCIPAL_HEADER, PEER_HEADER } from '../core/principal.js';
import { DECISION_HEADER } from '../core/principal.js';
export const REQUEST_ID_HEADER = 'x-request-id';

const HOP_BY_HOP = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'te', 'transfer-encoding', 'upgrade', 'trailer',
  'proxy-authenticate', 'proxy-authorization', 'host', 'http2-settings',
]);

const SPOOFABLE = new Set([
  'forwarded', 'x-forwarded-for', 'x-forwarded-host', 'x-forwarded-proto', 'x-forwarded-port',
  'x-forwarded-prefix', 'x-forwarded-server', 'x-real-ip', 'x-client-ip', 'true-client-ip',
  'x-cluster-client-ip', 'cf-connecting-ip', 'fastly-client-ip', 'x-original-url', 'x-original-uri',
  'x-rewrite-url', 'x-http-method-override', 'x-http-method', 'x-method-override', REQUEST_ID_HEADER,
]);

const NO_TOKENS: ReadonlySet<string> = new Set();
const CLOSE: ReadonlySet<string> = new Set(['close']);

/** The header names a Connection header lists (hop-by-hop by RFC 9110 §7.6.1); the usual values need no parsing. */
function connectionTokens(c: string | string[] | undefined): ReadonlySet<string> {
  if (c === undefined || c === 'keep-alive') return NO_TOKENS; // keep-alive is hop-by-hop anyway
  if (c === 'close') return CLOSE;
  return new Set((Array.isArray(c) ? c.join(',') : c).split(',').map((t) => t.trim().toLowerCase()).filter(Boolean));
}

/**
 * Headers to forward upstream: hop-by-hop, spoofable and Portcullis's own names removed, plus
 * `drop` (e.g. the consumed Authorization header); `keep` lists names trusted from this caller.
 */
export function forwardableRequestHeaders(headers: IncomingHttpHeaders, drop: readonly string[] = [], keep: readonly string[] = []): Record<string, string | string[]> {
  const listed = connectionTokens(headers.connection);
  const out: Record<string, string | string[]> = {};
  for (const name of Object.keys(headers)) { // keys, not entries: no pair arrays per header
    const value = headers[name];
    // HTTP/2 pseudo-headers (:method, :path, :authority…) describe this hop only.
    if (value === undefined || name.charCodeAt(0) === 58 /* ':' */) continue;
    const trusted = keep.includes(name);
    if (!trusted && (HOP_BY_HOP.has(name) || SPOOFABLE.has(name) || listed.has(name) || name.startsWith('x-portcullis-') || drop.includes(name))) continue;
    out[name] = value;
  }
  return out;
}

/** Response headers to pass back to the client: hop-by-hop removed. */
export function forwardableResponseHeaders(headers: Record<string, string | string[] | undefined>): OutgoingHttpHeaders {
  const listed = connectionTokens(headers.connection);
  const out: OutgoingHttpHeaders = {};
  for (const name of Object.keys(headers)) {
    const value = headers[name];
    if (value === undefined || HOP_BY_HOP.has(name) || listed.has(name) || name === DECISION_HEADER) continue;
    out[name] = value;
  }
  return out;
}

/** True when the raw request carries the header more than once (Node keeps only the first). */
export function hasDuplicateHeader(rawHeaders: readonly string[], name: string): boolean {
  let seen = 0;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    if (rawHeaders[i]?.toLowerCase() === name && ++seen > 1) return true;
  }
  return false;
}

/**
 * Headers that policy or routing reads, which must each arrive at most once (assertSingleHeaders).
 * A name ending in "*" is a prefix. The gateway adds its trusted forwarding header when configured.
 */
export const POLICY_HEADERS: readonly string[] = ['authorization', 'x-api-key', 'host', 'content-type', 'content-length', 'origin', 'x-portcullis-*'];

/**
 * Throws PCL_ERR_HEADER_INVALID when the raw request carries any of `names` (lower-case; a
 * trailing "*" makes a prefix) more than once. Node keeps only the first value of some headers
 * (authorization, host, content-type) and joins others with ", " (origin, x-forwarded-for), so the
 * parsed `req.headers` cannot tell; the raw list can. What Node's parser already refuses (400
 * before any handler: obs-fold, spaces in or before a header name, controls in values, two
 * Content-Length, Content-Length with Transfer-Encoding) is not checked again here.
 */
export function assertSingleHeaders(rawHeaders: readonly string[], names: readonly string[]): void {
  const seen = new Set<string>();
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = (rawHeaders[i] ?? '').toLowerCase();
    const listed = names.some((n) => (n.endsWith('*') ? name.startsWith(n.slice(0, -1)) : name === n));
    if (!listed) continue;
    // The header's name is not client data worth hiding; its value never appears in the message.
    if (seen.has(name)) throw new PortcullisError('PCL_ERR_HEADER_INVALID', `header ${name.slice(0, 64)} appears more than once`);
    seen.add(name);
  }
}
