// Step 1 of the pipeline: one canonical path for routing, policy and forwarding alike.
// Ambiguous input is refused, never guessed: the upstream receives exactly the path that was
// authorized. (A later issue adds per-route allowances; this cut refuses every ambiguity.)
import { PortcullisError } from '../core/errors.js';

export interface NormalizedTarget {
  /** Canonical path: unreserved percent-escapes decoded, other escapes upper-cased. */
  path: string;
  /** Raw query string without the `?`, passed through unchanged ('' when absent). */
  query: string;
}

const MAX_TARGET = 8192;
const UNRESERVED = /[A-Za-z0-9\-._~]/;
// Allowed raw path characters (RFC 3986 pchar + "/"), less ";" which some servers treat as a
// parameter delimiter (a classic authorization bypass).
const PCHAR = /^[A-Za-z0-9\-._~!$&'()*+,=:@/%]*$/;

export function normalizeTarget(target: string): NormalizedTarget {
  const refuse = (why: string): never => {
    throw new PortcullisError('PCL_ERR_PATH_INVALID', `request target refused: ${why}`);
  };
  if (target.length > MAX_TARGET) refuse('too long');
  if (!target.startsWith('/')) refuse('not in origin form');
  const q = target.indexOf('?');
  const rawPath = q === -1 ? target : target.slice(0, q);
  const query = q === -1 ? '' : target.slice(q + 1);
  if (target.includes('#')) refuse('fragment');
  if (!PCHAR.test(rawPath)) refuse('character not allowed in path');
  // eslint-disable-next-line no-control-regex -- matching control characters is the point
  if (/[\u0000-\u001f\u007f]/.test(query)) refuse('control character in query');

  let out = '';
  for (let i = 0; i < rawPath.length; i++) {
    const ch = rawPath[i];
    if (ch !== '%') { out += ch; continue; }
    const hex = rawPath.slice(i + 1, i + 3);
    if (!/^[0-9A-Fa-f]{2}$/.test(hex)) refuse('bad percent-encoding');
    const decoded = String.fromCharCode(parseInt(hex, 16));
    // Encoded "/", "\", NUL, controls and "%" itself would mean different paths to different parsers.
    if (UNRESERVED.test(decoded)) out += decoded;
    else if (decoded === '/' || decoded === '\\' || decoded === '%' || decoded === ';' || decoded.charCodeAt(0) < 0x20 || decoded.charCodeAt(0) >= 0x7f) refuse('encoded separator or control character');
    else out += '%' + hex.toUpperCase();
    i += 2;
  }
  const segments = out.split('/').slice(1);
  for (let i = 0; i < segments.length; i++) {
    const s = segments[i];
    if (s === '.' || s === '..') refuse('dot segment');
    if (s === '' && i < segments.length - 1) refuse('empty segment');
  }
  return { path: out, query };
}

/** The target as forwarded: exactly the canonical path that was authorized, and the raw query. */
export function forwardTarget(t: NormalizedTarget): string {
  return t.query ? `${t.path}?${t.query}` : t.path;
}
