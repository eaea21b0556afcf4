// Content-Type check of a request that carries a body: exactly one media type (RFC 9110 §8.3),
// among those the route accepts, and UTF-8 for JSON. A body whose type the gateway does not parse
// must not reach a service that would parse it differently (JSON smuggled as text/plain, UTF-16
// JSON that the gateway reads as garbage but the service decodes).
import { PortcullisError } from '../../core/errors.js';

/** Longer Content-Type headers are refused outright: no legitimate one comes close. */
const MAX_HEADER_LENGTH = 1024;

function refuse(why: string): never {
  throw new PortcullisError('PCL_ERR_CONTENT_TYPE', `Content-Type ${why}`);
}

/** RFC 9110 tchar. */
function isTokenChar(c: number): boolean {
  if ((c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a)) return true;
  // ! # $ % & ' * + - . ^ _ ` | ~
  return c === 0x21 || (c >= 0x23 && c <= 0x27) || c === 0x2a || c === 0x2b || c === 0x2d || c === 0x2e || c === 0x5e || c === 0x5f || c === 0x60 || c === 0x7c || c === 0x7e;
}

function isWhitespace(c: number): boolean {
  return c === 0x20 || c === 0x09;
}

/** A parsed header: the media type in lower case and its parameters (names lower-cased). */
interface MediaType {
  type: string;
  subtype: string;
  params: Map<string, string>;
}

/** Parses `type/subtype *(OWS ";" OWS name=value)`; anything else (a list, stray characters) is refused. */
function parseMediaType(header: string): MediaType {
  const len = header.length;
  let pos = 0;
  const token = (what: string): string => {
    const start = pos;
    while (pos < len && isTokenChar(header.charCodeAt(pos))) pos++;
    if (pos === start) refuse(`has no ${what} at offset ${start}`);
    return header.slice(start, pos).toLowerCase();
  };
  const skipWs = (): void => {
    while (pos < len && isWhitespace(header.charCodeAt(pos))) pos++;
  };

  skipWs();
  const type = token('type');
  if (header.charCodeAt(pos) !== 0x2f /* / */) refuse(`has no "/" after the type at offset ${pos}`);
  pos++;
  const subtype = token('subtype');
  const params = new Map<string, string>();
  for (;;) {
    skipWs();
    if (pos >= len) break;
    const c = header.charCodeAt(pos);
    if (c === 0x2c /* , */) refuse('lists more than one media type');
    if (c !== 0x3b /* ; */) refuse(`has an unexpected character at offset ${pos}`);
    pos++;
    skipWs();
    if (pos >= len) break; // a trailing ";" is allowed by the grammar
    if (header.charCodeAt(pos) === 0x3b) continue; // so is an empty parameter
    const name = token('parameter name');
    if (header.charCodeAt(pos) !== 0x3d /* = */) refuse(`parameter at offset ${pos} has no "="`);
    pos++;
    let value: string;
    if (header.charCodeAt(pos) === 0x22 /* " */) {
      pos++;
      let v = '';
      for (;;) {
        if (pos >= len) refuse('has an unterminated quoted string');
        const q = header.charCodeAt(pos);
        if (q === 0x22) { pos++; break; }
        if (q === 0x5c /* \ */) { pos++; if (pos >= len) refuse('has an unterminated quoted string'); }
        const ch = header.charCodeAt(pos);
        if ((ch < 0x20 && ch !== 0x09) || ch === 0x7f) refuse(`has a control character at offset ${pos}`);
        v += header[pos];
        pos++;
      }
      value = v;
    } else {
      const start = pos;
      while (pos < len && isTokenChar(header.charCodeAt(pos))) pos++;
      if (pos === start) refuse(`parameter at offset ${start} has an empty value`);
      value = header.slice(start, pos);
    }
    // Two charsets (or two of anything) leave the reader to pick one: refuse instead.
    if (params.has(name)) refuse('repeats a parameter');
    params.set(name, value);
  }
  return { type, subtype, params };
}

/** True for application/json and any `+json` structured-syntax suffix (RFC 6839). */
function isJson(type: string, subtype: string): boolean {
  return (type === 'application' && subtype === 'json') || subtype.endsWith('+json');
}

/** Does `pattern` (`type/subtype`, `type/*`, `* /*` or `type/*+suffix`, lower-case) accept the media type? */
function accepts(pattern: string, type: string, subtype: string): boolean {
  const slash = pattern.indexOf('/');
  if (slash <= 0 || slash === pattern.length - 1) {
    throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `accepted content type "${pattern.slice(0, 100)}" is not type/subtype`);
  }
  const pType = pattern.slice(0, slash);
  const pSub = pattern.slice(slash + 1);
  if (pType !== '*' && pType !== type) return false;
  if (pSub === '*') return true;
  if (pSub.startsWith('*+')) {
    // `application/*+json` needs something before the suffix: `application/+json` is not a type.
    const suffix = pSub.slice(1);
    return subtype.length > suffix.length && subtype.endsWith(suffix);
  }
  return pSub === subtype;
}

/**
 * Checks the Content-Type of a request with a body against the media types a route accepts.
 * `accepted` holds media types (`application/json`) or patterns (`application/*+json`,
 * `text/*`); matching ignores case and parameters; an empty list accepts nothing.
 * Returns the media type, lower-case, parameters stripped (e.g. `application/json`).
 * Throws PCL_ERR_CONTENT_TYPE when the header is missing or empty, is not one well-formed media
 * type (a comma-separated list, a repeated parameter, stray characters), is not accepted, or
 * names a charset other than UTF-8 for a JSON type. Throws PCL_ERR_INVALID_ARGUMENT for a
 * malformed `accepted` entry.
 */
export function checkContentType(header: string | undefined, accepted: readonly string[]): string {
  if (header === undefined || header.trim() === '') refuse('is missing for a request with a body');
  if (header.length > MAX_HEADER_LENGTH) refuse(`is longer than ${MAX_HEADER_LENGTH} characters`);
  const { type, subtype, params } = parseMediaType(header);
  const mediaType = `${type}/${subtype}`;
  if (!accepted.some((a) => accepts(a.trim().toLowerCase(), type, subtype))) refuse('media type is not one this route accepts');
  const charset = params.get('charset');
  if (charset !== undefined && isJson(type, subtype) && charset.toLowerCase() !== 'utf-8') refuse('charset must be utf-8 for JSON');
  return mediaType;
}
