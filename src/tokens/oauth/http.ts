// Framework-free HTTP helpers for the OAuth endpoints: bounded form bodies, JSON, HTML, redirects,
// and the response headers every answer carries.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { readBoundedBody } from '../../core/body.js';
import { OAuthError } from './errors.js';

/** RFC 6749 forms are tiny; 16 KiB leaves room for long state values and nothing more. */
export const FORM_BODY_LIMIT = 16 * 1024;

const FORM_TYPE = 'application/x-www-form-urlencoded';

/**
 * Reads an application/x-www-form-urlencoded body of at most `limit` bytes. Refuses (413) as soon
 * as the declared or received size passes the limit, without buffering the rest.
 */
export async function readForm(req: IncomingMessage, limit = FORM_BODY_LIMIT): Promise<URLSearchParams> {
  const type = (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase();
  if (type !== FORM_TYPE) throw new OAuthError('PCL_ERR_OAUTH_INVALID_REQUEST', `body must be ${FORM_TYPE}`, { status: 415 });
  const body = await readBoundedBody(req, limit, () => tooLarge(limit));
  return new URLSearchParams(body.toString('utf8'));
}

function tooLarge(limit: number): OAuthError {
  return new OAuthError('PCL_ERR_OAUTH_INVALID_REQUEST', `body larger than ${limit} bytes`, { status: 413 });
}

/** Names of parameters sent more than once (RFC 6749 §3.1: each parameter at most once). */
export function repeatedParams(params: URLSearchParams): string[] {
  const seen = new Set<string>();
  const repeated = new Set<string>();
  for (const k of params.keys()) {
    if (seen.has(k)) repeated.add(k);
    seen.add(k);
  }
  return [...repeated];
}

/** Throws invalid_request when a parameter came more than once (endpoints where none may). */
export function refuseRepeated(params: URLSearchParams, allowed: readonly string[] = []): void {
  const repeated = repeatedParams(params).filter((k) => !allowed.includes(k));
  if (repeated.length > 0) throw new OAuthError('PCL_ERR_OAUTH_INVALID_REQUEST', `parameter repeated: ${repeated.slice(0, 3).join(', ')}`);
}

/**
 * JSON; unless `headers` sets its own Cache-Control, with the no-store + no-cache pair RFC 6749
 * §5.1 requires on token responses.
 */
export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  const caching = 'Cache-Control' in headers ? {} : { 'Cache-Control': 'no-store', Pragma: 'no-cache' };
  res.writeHead(status, {
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': Buffer.byteLength(text),
    'X-Content-Type-Options': 'nosniff',
    ...caching,
    ...headers,
  });
  res.end(text);
}

/** Headers for every HTML page: strict CSP, no framing, no caching, no referrer. */
export function sendHtml(res: ServerResponse, status: number, html: string, csp: string): void {
  res.writeHead(status, {
    'Content-Type': 'text/html; charset=utf-8',
    'Content-Length': Buffer.byteLength(html),
    'Content-Security-Policy': csp,
    'X-Frame-Options': 'DENY',
    'X-Content-Type-Options': 'nosniff',
    'Referrer-Policy': 'no-referrer',
    'Cache-Control': 'no-store',
    Pragma: 'no-cache',
  });
  res.end(html);
}

export function sendRedirect(res: ServerResponse, location: string): void {
  res.writeHead(302, {
    Location: location,
    'Cache-Control': 'no-store',
    Pragma: 'no-cache',
    // The code is in the Location query: keep it out of any Referer sent from the client's page.
    'Referrer-Policy': 'no-referrer',
    'Content-Length': 0,
  });
  res.end();
}

export function sendMethodNotAllowed(res: ServerResponse, allow: string[]): void {
  sendJson(res, 405, { error: 'invalid_request', error_description: 'method not allowed' }, { Allow: allow.join(', ') });
}
