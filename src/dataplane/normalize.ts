// Step 1 of the pipeline: one canonical path for routing, policy and forwarding alike.
// What has one safe reading is resolved (dot segments, duplicate slashes, escaped unreserved
// characters); what different parsers read differently is refused, or — for the few things a
// route may legitimately need (encoded slashes, ";") — admitted only when the caller says some
// route allows it, and then checked against the matched route's own rules (checkPathRules).
// The upstream receives exactly the canonical path that was authorized. See docs/normalization.md.
import { PortcullisError } from '../core/errors.js';

/** What normalization found that a route must explicitly allow (see PathRules). */
export interface PathFlags {
  /** `%2F` or `%5C` kept encoded (upper-cased) inside a segment. */
  encodedSlash: boolean;
  /** `;` (raw, or as `%3B`) somewhere in the path: a parameter delimiter to some servers. */
  semicolon: boolean;
  /** The path ends with "/" (and is not "/" itself). */
  trailingSlash: boolean;
}

export interface NormalizedTarget {
  /**
   * Canonical path: unreserved percent-escapes decoded, other escapes upper-cased, dot segments
   * resolved, duplicate slashes merged. Always ASCII, always starts with "/", never contains "//".
   */
  path: string;
  /** Raw query string without the `?`, passed through unchanged ('' when absent). */
  query: string;
  flags: PathFlags;
}

/** A route's allowances for ambiguous path features. Every default is the strict choice. */
export interface PathRules {
  /** Admit `%2F` / `%5C` inside a segment (kept encoded when forwarded). Default false. */
  allowEncodedSlash?: boolean;
  /** Admit `;` in the path (forwarded as is). Default false. */
  allowSemicolon?: boolean;
  /** Match literal segments exactly (true) or ignoring ASCII case (false). Default true. */
  caseSensitive?: boolean;
  /** 'strict': "/a/" and "/a" are different paths; 'ignore': "/a/" matches the route "/a". Default 'strict'. */
  trailingSlash?: 'strict' | 'ignore';
}

/**
 * What normalizeTarget may admit before the route is known: the union of the allowances of all
 * routes (Router.admits). Anything not admitted here is refused at once. Default: nothing.
 */
export interface PathAdmission {
  encodedSlash?: boolean;
  semicolon?: boolean;
}

/** Longest request target accepted (characters); longer is refused before any parsing. */
export const MAX_TARGET = 8192;

// Allowed raw path characters: RFC 3986 pchar + "/" (";" included: flagged, not refused here).
const PCHAR = /^[A-Za-z0-9\-._~!$&'()*+,;=:@/%]*$/;
// Raw query characters: printable ASCII except "#" (a fragment never reaches a server).
const QUERY = /^[\x21-\x22\x24-\x7e]*$/;
const HEX = /^[0-9A-Fa-f]{2}$/;

function refuse(why: string): never {
  // `why` names the rule broken, never the offending input.
  throw new PortcullisError('PCL_ERR_PATH_INVALID', `request target refused: ${why}`);
}

function isUnreserved(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c === 0x2d || c === 0x2e || c === 0x5f || c === 0x7e;
}

/** Decodes escaped unreserved characters and upper-cases the rest; refuses what has no single reading. */
function decodeEscapes(rawPath: string, admit: PathAdmission, flags: PathFlags): string {
  if (!rawPath.includes('%')) return rawPath;
  let out = '';
  for (let i = 0; i < rawPath.length; i++) {
    const ch = rawPath.charAt(i);
    if (ch !== '%') { out += ch; continue; }
    const hex = rawPath.slice(i + 1, i + 3);
    if (!HEX.test(hex)) refuse(`bad percent-encoding at offset ${i}`);
    const code = parseInt(hex, 16);
    i += 2;
    if (isUnreserved(code)) { out += String.fromCharCode(code); continue; }
    // "%25" would decode to an escape that a second decoder reads again (double encoding).
    if (code === 0x25) refuse(`encoded "%" (double encoding) at offset ${i - 2}`);
    // NUL and controls truncate or split paths in C-based servers and log pipelines.
    if (code < 0x20 || code === 0x7f) refuse(`encoded control character at offset ${i - 2}`);
    // Non-ASCII bytes: overlong UTF-8 ("%c0%ae") and fullwidth forms ("%ef%bc%8f") turn into
    // "." or "/" in lenient decoders or after Unicode normalization. Not supported at all.
    if (code >= 0x80) refuse(`encoded non-ASCII byte at offset ${i - 2}`);
    if (code === 0x2f || code === 0x5c) {
      if (!admit.encodedSlash) refuse(`encoded "/" or "\\" at offset ${i - 2}`);
      flags.encodedSlash = true;
    } else if (code === 0x3b) {
      if (!admit.semicolon) refuse(`encoded ";" at offset ${i - 2}`);
      flags.semicolon = true;
    }
    out += '%' + hex.toUpperCase();
  }
  return out;
}

/**
 * True when some upstream could read a segment as ending in "." — and so as a dot segment, or as
 * the name without its dot (Windows and some frameworks strip a trailing dot: "/admin." → "/admin").
 * With `deep`, also the parts a lenient server sees: before a ";" parameter ("..;" — Tomcat; also
 * "..%3B", for servers that decode first) and between encoded slashes ("a%2F..%2Fb" — decoders
 * that split on them).
 */
function endsWithDot(segment: string, deep: boolean): boolean {
  if (segment.charCodeAt(segment.length - 1) === 0x2e) return true;
  if (!deep) return false;
  for (const part of segment.split(/%2F|%5C/)) {
    const bare = part.split(/;|%3B/, 1)[0] ?? '';
    if (bare.charCodeAt(bare.length - 1) === 0x2e) return true;
  }
  return false;
}

/**
 * Splits a request target into its canonical path and raw query, or throws PCL_ERR_PATH_INVALID.
 *
 * Resolved: escaped unreserved characters ("%2e" → "."), dot segments ("/a/./b" → "/a/b",
 * "/a/b/../c" → "/a/c"), duplicate slashes ("//a///b" → "/a/b").
 * Refused: targets longer than MAX_TARGET, anything but origin form ("http://…", "*"), fragments,
 * characters outside RFC 3986 pchar (raw "\", spaces, non-ASCII), bad or double ("%25") encoding,
 * encoded control or non-ASCII bytes, ".." above the root, segments ending in "." ("/admin.",
 * "..."), dot segments hidden behind ";" or between encoded slashes ("/a/..;/b"), and — unless
 * `admit` says some route allows them — encoded slashes and ";". What is admitted is reported in
 * `flags`; the caller must then call checkPathRules with the matched route's rules.
 */
export function normalizeTarget(target: string, admit: PathAdmission = {}): NormalizedTarget {
  if (target.length > MAX_TARGET) refuse(`longer than ${MAX_TARGET} characters`);
  if (target.charCodeAt(0) !== 0x2f) refuse('not in origin form');
  if (target.includes('#')) refuse('fragment');
  const q = target.indexOf('?');
  const rawPath = q === -1 ? target : target.slice(0, q);
  const query = q === -1 ? '' : target.slice(q + 1);
  if (!PCHAR.test(rawPath)) refuse('character not allowed in path');
  if (!QUERY.test(query)) refuse('character not allowed in query');

  const flags: PathFlags = { encodedSlash: false, semicolon: false, trailingSlash: false };
  if (rawPath.includes(';')) {
    if (!admit.semicolon) refuse('";" in path');
    flags.semicolon = true;
  }
  const decoded = decodeEscapes(rawPath, admit, flags);

  // Dot-segment removal (RFC 3986 §5.2.4) over "/"-separated segments, merging empty ones.
  // Encoded slashes stay "%2F" here, so they never separate segments.
  const segments = decoded.split('/');
  const out: string[] = [];
  let trailing = false;
  for (let i = 1; i < segments.length; i++) {
    const s = segments[i] as string; // i < segments.length
    const last = i === segments.length - 1;
    trailing = last; // a last segment that is "", "." or ".." leaves a trailing "/"
    if (s === '' || s === '.') continue;
    if (s === '..') {
      if (out.pop() === undefined) refuse('".." above the root');
      continue;
    }
    if (endsWithDot(s, flags.semicolon || flags.encodedSlash)) refuse(`segment ${i} ends with "." (or hides a dot segment)`);
    out.push(s);
    trailing = false;
  }
  const path = '/' + out.join('/') + (trailing && out.length > 0 ? '/' : '');
  flags.trailingSlash = path.length > 1 && trailing;
  return { path, query, flags };
}

/**
 * Throws PCL_ERR_PATH_INVALID when the target has a feature the matched route does not allow.
 * Called after routing with the route's rules (all defaults strict). Case and trailing slash are
 * routing matters (Router): a path the route's rules do not admit simply does not match it.
 */
export function checkPathRules(t: NormalizedTarget, rules: PathRules = {}): void {
  if (t.flags.encodedSlash && rules.allowEncodedSlash !== true) refuse('encoded "/" or "\\" not allowed on this route');
  if (t.flags.semicolon && rules.allowSemicolon !== true) refuse('";" not allowed on this route');
}

/**
 * The target as forwarded: exactly the canonical path that was authorized, and the raw query.
 * `path` (default `t.path`) is the route's canonical form when the router rewrote it (RouteMatch.canonicalPath).
 */
export function forwardTarget(t: NormalizedTarget, path: string = t.path): string {
  return t.query ? `${path}?${t.query}` : path;
}
