// Which request headers may cross Portcullis. Clients must not be able to claim an identity, a
// source address or a different method: those headers are removed and set by us alone.
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';

export { PRINCIPAL_HEADER, PEER_HEADER, encodePrincipal } from '../core/principal.js';
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

function connectionTokens(headers: IncomingHttpHeaders): Set<string> {
  const c = headers.connection;
  return new Set((Array.isArray(c) ? c.join(',') : c ?? '').split(',').map((t) => t.trim().toLowerCase()).filter(Boolean));
}

/**
 * Headers to forward upstream: hop-by-hop, spoofable and Portcullis's own names removed, plus
 * `drop` (e.g. the consumed Authorization header); `keep` lists names trusted from this caller.
 */
export function forwardableRequestHeaders(headers: IncomingHttpHeaders, drop: readonly string[] = [], keep: readonly string[] = []): Record<string, string | string[]> {
  const listed = connectionTokens(headers);
  const out: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue;
    const trusted = keep.includes(name);
    if (!trusted && (HOP_BY_HOP.has(name) || SPOOFABLE.has(name) || listed.has(name) || name.startsWith('x-portcullis-') || drop.includes(name))) continue;
    out[name] = value;
  }
  return out;
}

/** Response headers to pass back to the client: hop-by-hop removed. */
export function forwardableResponseHeaders(headers: Record<string, string | string[] | undefined>): OutgoingHttpHeaders {
  const listed = new Set(String(headers.connection ?? '').split(',').map((t) => t.trim().toLowerCase()).filter(Boolean));
  const out: OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(headers)) {
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
