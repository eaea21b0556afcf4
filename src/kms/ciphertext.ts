// The KMS wire format `pcl:<keyring>:v<N>:<base64url payload>` and the associated data that binds
// a payload to its keyring, version and context. Parsing is strict: exactly one spelling of each
// ciphertext is accepted (no padding, no alternative alphabet, no leading zeros), so a string that
// parses is the string we produced, and anything else gets the same coded refusal.
import { PortcullisError } from '../core/errors.js';
import type { KmsContext } from './types.js';

/** Keyring names: lower-case, URL- and CLI-safe, never containing `:` or `/`. */
export const KEYRING_NAME = /^[a-z0-9][a-z0-9._-]{0,62}$/;
/** Highest version number the format carries (nine digits). */
export const MAX_VERSION = 999_999_999;
/** Largest plaintext `encrypt` accepts; larger payloads use a data key (envelope encryption). */
export const MAX_PLAINTEXT_BYTES = 1024 * 1024;
/** Payload bytes around the plaintext: 96-bit nonce before, 128-bit tag after. */
export const PAYLOAD_OVERHEAD = 12 + 16;
/** Longest ciphertext string parsed: the longest name and version plus an encrypted 1 MiB. */
export const MAX_CIPHERTEXT_LENGTH = 'pcl:'.length + 63 + ':v'.length + 9 + ':'.length + Math.ceil(((MAX_PLAINTEXT_BYTES + PAYLOAD_OVERHEAD) * 4) / 3);

/** Context limits: generous for `tenant=…,field=…` use, small enough to bound the work per call. */
export const MAX_CONTEXT_ENTRIES = 64;
export const MAX_CONTEXT_KEY_BYTES = 256;
export const MAX_CONTEXT_VALUE_BYTES = 4096;

const PREFIX = 'pcl:';
const VERSION = /^v[1-9][0-9]{0,8}$/;
/** Domain separation: these bytes start every KMS associated data and nothing else. */
const AAD_DOMAIN = Buffer.from('portcullis-kms-aad-v1\0', 'ascii');
/** A lone UTF-16 surrogate would be encoded as U+FFFD, making two strings one: refused instead. */
const LONE_SURROGATE = /\p{Cs}/u;

export interface ParsedCiphertext {
  keyring: string;
  version: number;
  /** Decoded payload: nonce ‖ ciphertext ‖ tag for encryption, the MAC or signature otherwise. */
  payload: Buffer;
}

export function isKeyringName(name: unknown): name is string {
  return typeof name === 'string' && KEYRING_NAME.test(name);
}

/** Builds the string form; callers pass a valid name and version (the KeyManager's own). */
export function formatCiphertext(keyring: string, version: number, payload: Buffer): string {
  return `${PREFIX}${keyring}:v${version}:${payload.toString('base64url')}`;
}

/** Parses the string form; anything malformed is PCL_ERR_KMS_CIPHERTEXT_INVALID, with no echo of the input. */
export function parseCiphertext(text: unknown): ParsedCiphertext {
  if (typeof text !== 'string' || text.length > MAX_CIPHERTEXT_LENGTH || !text.startsWith(PREFIX)) throw malformed();
  const nameEnd = text.indexOf(':', PREFIX.length);
  if (nameEnd < 0) throw malformed();
  const versionEnd = text.indexOf(':', nameEnd + 1);
  if (versionEnd < 0) throw malformed();
  const keyring = text.slice(PREFIX.length, nameEnd);
  const versionText = text.slice(nameEnd + 1, versionEnd);
  const encoded = text.slice(versionEnd + 1);
  if (!KEYRING_NAME.test(keyring) || !VERSION.test(versionText)) throw malformed();
  const payload = decodeCanonical(encoded);
  if (!payload) throw malformed();
  return { keyring, version: Number(versionText.slice(1)), payload };
}

const B64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

/**
 * Strict base64url: Node's decoder skips foreign characters, stops at `=`, accepts the `+` `/`
 * alphabet and ignores set trailing bits. Each of those is caught here without a second pass
 * over the data: a skipped or cut character makes the output shorter than the length predicts
 * (⌊3n/4⌋ grows with every character once n mod 4 = 1 is excluded), the other alphabet is looked
 * for, and the last character's unused bits must be zero. One spelling per payload.
 */
export function decodeCanonical(text: string): Buffer | undefined {
  const n = text.length;
  if (n % 4 === 1 || text.includes('+') || text.includes('/')) return undefined;
  const out = Buffer.from(text, 'base64url');
  if (out.length !== Math.floor((n * 3) / 4)) return undefined;
  if (n % 4 !== 0) {
    const last = B64URL.indexOf(text.charAt(n - 1));
    if (last < 0 || (last & (n % 4 === 2 ? 0x0f : 0x03)) !== 0) return undefined;
  }
  return out;
}

const malformed = (): PortcullisError => new PortcullisError('PCL_ERR_KMS_CIPHERTEXT_INVALID', 'ciphertext is malformed');

/**
 * The canonical bytes of a context: entry count, then each entry as length-prefixed key and value
 * (UTF-8, 32-bit big-endian lengths), keys sorted by their UTF-8 bytes. Length prefixes make
 * `{ a: 'b=c' }` and `{ 'a=b': 'c' }` different; `undefined` and `{}` are the same (no context).
 * Throws PCL_ERR_INVALID_ARGUMENT for a context that is not an object of strings within the limits.
 */
export function canonicalContext(context?: KmsContext): Buffer {
  if (context === undefined) return Buffer.alloc(4);
  if (typeof context !== 'object' || context === null || Array.isArray(context)) throw badContext('must be an object of strings');
  const keys = Object.keys(context);
  if (keys.length > MAX_CONTEXT_ENTRIES) throw badContext(`at most ${MAX_CONTEXT_ENTRIES} entries`);
  let size = 4;
  for (const key of keys) {
    const value: unknown = context[key];
    if (typeof value !== 'string') throw badContext('values must be strings');
    if (key.length === 0) throw badContext('keys must not be empty');
    const k = utf8Length(key);
    const v = utf8Length(value);
    if (k < 0 || v < 0) throw badContext('keys and values must be well-formed Unicode');
    if (k > MAX_CONTEXT_KEY_BYTES) throw badContext(`keys are at most ${MAX_CONTEXT_KEY_BYTES} bytes`);
    if (v > MAX_CONTEXT_VALUE_BYTES) throw badContext(`values are at most ${MAX_CONTEXT_VALUE_BYTES} bytes`);
    size += 8 + k + v;
  }
  keys.sort(byUtf8);
  const out = Buffer.allocUnsafe(size);
  let at = out.writeUInt32BE(keys.length, 0);
  for (const key of keys) {
    at = writeString(out, at, key);
    at = writeString(out, at, context[key] ?? ''); // present: the keys are the context's own
  }
  return out;
}

/** UTF-8 length, or -1 for a string with a lone surrogate. ASCII (the usual context) costs one loop. */
function utf8Length(s: string): number {
  for (let i = 0; i < s.length; i++) {
    if (s.charCodeAt(i) > 0x7f) return LONE_SURROGATE.test(s) ? -1 : Buffer.byteLength(s, 'utf8');
  }
  return s.length;
}

function writeString(out: Buffer, at: number, s: string): number {
  let i = 0;
  // Short ASCII strings are copied by hand: cheaper than a call into the encoder per string.
  for (; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c > 0x7f) break;
    out[at + 4 + i] = c;
  }
  const n = i === s.length ? i : out.write(s, at + 4, 'utf8');
  out.writeUInt32BE(n, at);
  return at + 4 + n;
}

/**
 * UTF-8 byte order without encoding: UTF-16 code unit order differs from it only where a
 * surrogate (a character above U+FFFF) meets U+E000..U+FFFF, so those two ranges swap places.
 */
function byUtf8(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x !== y) return utf8Rank(x) - utf8Rank(y);
  }
  return a.length - b.length;
}

const utf8Rank = (c: number): number => (c >= 0xd800 && c <= 0xdfff ? c + 0x2000 : c >= 0xe000 ? c - 0x800 : c);

const badContext = (why: string): PortcullisError => new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `invalid context: ${why}`);

/** The part of the associated data fixed per keyring version (the KeyManager caches it). */
export function aadHeader(keyring: string, version: number): Buffer {
  const name = Buffer.from(keyring, 'ascii');
  const out = Buffer.allocUnsafe(AAD_DOMAIN.length + 4 + name.length + 4);
  let at = AAD_DOMAIN.copy(out, 0);
  at = out.writeUInt32BE(name.length, at);
  at += name.copy(out, at);
  out.writeUInt32BE(version, at);
  return out;
}

/**
 * Associated data of a KMS ciphertext: domain ‖ len ‖ keyring ‖ version ‖ canonicalContext. A
 * payload moved under another keyring or version prefix, or given another context, fails.
 */
export function associatedData(keyring: string, version: number, context?: KmsContext): Buffer {
  return Buffer.concat([aadHeader(keyring, version), canonicalContext(context)]);
}
