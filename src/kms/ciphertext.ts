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
  const payload = Buffer.from(encoded, 'base64url');
  // Node's decoder skips foreign characters and accepts `=`, `+`, `/` and non-zero trailing bits;
  // re-encoding and comparing admits only the one canonical spelling (and is cheaper than a regex).
  if (payload.toString('base64url') !== encoded) throw malformed();
  return { keyring, version: Number(versionText.slice(1)), payload };
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
  const entries: [Buffer, Buffer][] = [];
  let size = 4;
  for (const key of keys) {
    const value: unknown = context[key];
    if (typeof value !== 'string') throw badContext('values must be strings');
    if (key.length === 0) throw badContext('keys must not be empty');
    if (LONE_SURROGATE.test(key) || LONE_SURROGATE.test(value)) throw badContext('keys and values must be well-formed Unicode');
    const k = Buffer.from(key, 'utf8');
    const v = Buffer.from(value, 'utf8');
    if (k.length > MAX_CONTEXT_KEY_BYTES) throw badContext(`keys are at most ${MAX_CONTEXT_KEY_BYTES} bytes`);
    if (v.length > MAX_CONTEXT_VALUE_BYTES) throw badContext(`values are at most ${MAX_CONTEXT_VALUE_BYTES} bytes`);
    entries.push([k, v]);
    size += 8 + k.length + v.length;
  }
  entries.sort((a, b) => Buffer.compare(a[0], b[0]));
  const out = Buffer.allocUnsafe(size);
  let at = out.writeUInt32BE(entries.length, 0);
  for (const [k, v] of entries) {
    at = out.writeUInt32BE(k.length, at);
    at += k.copy(out, at);
    at = out.writeUInt32BE(v.length, at);
    at += v.copy(out, at);
  }
  return out;
}

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
