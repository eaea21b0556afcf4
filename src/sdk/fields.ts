// Field encryption inside a service: envelope encryption with data keys from the control plane's
// KMS. A data key is fetched once (transit `datakey`), used locally with AES-256-GCM for many
// fields, and travels wrapped inside each field's ciphertext, so any replica can decrypt it by
// asking the KMS to unwrap the data key once (then cached). The per-field cost is AES-GCM itself.
//
//   field = "pclf:v1:" + <wrapped data key "pcl:<keyring>:v<N>:…"> + ":" + base64url(nonce ‖ ct ‖ tag)
//   bytes = 0x01 ‖ u16 length ‖ <wrapped data key> ‖ nonce ‖ ct ‖ tag
//
// The field's context (e.g. { field: 'card', order: 'o-1' }) and the wrapped key are its
// associated data: a ciphertext copied to another record or field does not decrypt.
import { createCipheriv, createDecipheriv, createSecretKey, randomBytes, type KeyObject } from 'node:crypto';
import { systemClock, type Clock } from '../core/clock.js';
import { PortcullisError } from '../core/errors.js';
import { canonicalContext, decodeCanonical } from '../kms/ciphertext.js';
import type { KmsContext } from '../kms/types.js';

/** What the field encryptor needs from the KMS: a transit client, or the KeyManager in-process. */
export interface DataKeySource {
  dataKey(keyring: string, context?: KmsContext): Promise<{ plaintext: Buffer; ciphertext: string }>;
  decrypt(keyring: string, ciphertext: string, context?: KmsContext): Promise<Buffer>;
}

export interface FieldEncryptorOptions {
  kms: DataKeySource;
  keyring: string;
  /** A data key is replaced after this many fields (default 2^20) ... */
  maxUsesPerKey?: number;
  /** ... or after this long, in ms (default 1 h), so keyring rotation reaches new fields. */
  keyTtlMs?: number;
  /** How many unwrapped data keys to keep for decryption (default 1000). */
  cacheSize?: number;
  clock?: Clock;
}

const PREFIX = 'pclf:v1:';
/** First byte of the binary form: [1][u16 length][wrapped key][nonce ‖ ciphertext ‖ tag]. */
const BINARY_VERSION = 1;
/** Context the data keys themselves are wrapped with: they are only ever field keys. */
const DEK_CONTEXT: KmsContext = Object.freeze({ use: 'field-key' });

/** An unwrapped data key with the associated-data prefix of its ciphertexts, computed once. */
interface FieldKey {
  key: KeyObject;
  wrapped: string;
  prefix: Buffer;
}

interface CurrentKey extends FieldKey {
  uses: number;
  expiresAt: number;
}

function fieldKey(raw: Buffer, wrapped: string): FieldKey {
  const key = { key: createSecretKey(raw), wrapped, prefix: Buffer.from(PREFIX + wrapped + '\n', 'utf8') };
  raw.fill(0);
  return key;
}

export class FieldEncryptor {
  private current: CurrentKey | undefined;
  private pending: Promise<CurrentKey> | undefined;
  private readonly unwrapped = new Map<string, Promise<FieldKey>>();
  private readonly clock: Clock;

  constructor(private readonly o: FieldEncryptorOptions) {
    this.clock = o.clock ?? systemClock;
  }

  /** Encrypts to a text field (for JSON and database columns). */
  async encryptField(value: string | Buffer, context: KmsContext = {}): Promise<string> {
    const k = await this.key();
    return PREFIX + k.wrapped + ':' + Buffer.concat(seal(k, toBytes(value), context)).toString('base64url');
  }

  async decryptField(field: string, context: KmsContext = {}): Promise<Buffer> {
    const { wrapped, body } = parseField(field);
    return open(await this.unwrap(wrapped), body, context);
  }

  async decryptFieldToString(field: string, context: KmsContext = {}): Promise<string> {
    return (await this.decryptField(field, context)).toString('utf8');
  }

  /** Encrypts to bytes (for files and blobs): no text encoding on either side. */
  async encryptBytes(value: Buffer, context: KmsContext = {}): Promise<Buffer> {
    const k = await this.key();
    const header = Buffer.from(k.wrapped, 'latin1');
    const out = Buffer.allocUnsafe(3 + header.length);
    out[0] = BINARY_VERSION;
    out.writeUInt16BE(header.length, 1);
    header.copy(out, 3);
    return Buffer.concat([out, ...seal(k, value, context)]); // one copy of the payload
  }

  async decryptBytes(blob: Buffer, context: KmsContext = {}): Promise<Buffer> {
    if (blob.length < 3 || blob[0] !== BINARY_VERSION) throw invalid();
    const len = blob.readUInt16BE(1);
    if (blob.length < 3 + len + 12 + 16) throw invalid();
    const wrapped = blob.toString('latin1', 3, 3 + len);
    return open(await this.unwrap(wrapped), blob.subarray(3 + len), context);
  }

  /** The data key in use, replaced when worn out or old; one fetch at a time. */
  private async key(): Promise<CurrentKey> {
    const k = this.current;
    if (k && k.uses < (this.o.maxUsesPerKey ?? 2 ** 20) && this.clock.now() < k.expiresAt) {
      k.uses++;
      return k;
    }
    this.pending ??= this.o.kms.dataKey(this.o.keyring, DEK_CONTEXT).then((dk) => {
      const next = { ...fieldKey(dk.plaintext, dk.ciphertext), uses: 0, expiresAt: this.clock.now() + (this.o.keyTtlMs ?? 3600_000) };
      this.current = next;
      this.unwrapped.set(next.wrapped, Promise.resolve(next));
      return next;
    }).finally(() => { this.pending = undefined; });
    const next = await this.pending;
    next.uses++;
    return next;
  }

  /** The data key of a ciphertext: from the cache, or unwrapped by the KMS (after a format check). */
  private unwrap(wrapped: string): Promise<FieldKey> {
    let p = this.unwrapped.get(wrapped);
    if (p) {
      // Refresh its place: the map's order is the LRU order.
      this.unwrapped.delete(wrapped);
      this.unwrapped.set(wrapped, p);
      return p;
    }
    checkWrapped(wrapped, this.o.keyring);
    p = this.o.kms.decrypt(this.o.keyring, wrapped, DEK_CONTEXT).then((raw) => fieldKey(raw, wrapped));
    p.catch(() => this.unwrapped.delete(wrapped)); // a failed unwrap is not cached
    this.unwrapped.set(wrapped, p);
    const max = this.o.cacheSize ?? 1000;
    while (this.unwrapped.size > max) {
      const oldest = this.unwrapped.keys().next().value;
      if (oldest === undefined) break;
      this.unwrapped.delete(oldest);
    }
    return p;
  }
}

function toBytes(value: string | Buffer): Buffer {
  return typeof value === 'string' ? Buffer.from(value, 'utf8') : value;
}

/** [nonce, ciphertext, tag] for the caller to join once; associated data: the wrapped key (prefix), then the context. */
function seal(k: FieldKey, plaintext: Buffer, context: KmsContext): Buffer[] {
  const nonce = randomBytes(12);
  const c = createCipheriv('aes-256-gcm', k.key, nonce);
  c.setAAD(k.prefix);
  c.setAAD(canonicalContext(context)); // GCM appends successive AAD: the same as one concatenation
  const body = c.update(plaintext);
  c.final(); // GCM emits nothing more at the end
  return [nonce, body, c.getAuthTag()];
}

function open(k: FieldKey, body: Buffer, context: KmsContext): Buffer {
  if (body.length < 12 + 16) throw invalid();
  try {
    const d = createDecipheriv('aes-256-gcm', k.key, body.subarray(0, 12));
    d.setAAD(k.prefix);
    d.setAAD(canonicalContext(context));
    d.setAuthTag(body.subarray(body.length - 16));
    const plaintext = d.update(body.subarray(12, body.length - 16));
    d.final(); // throws when the tag does not match
    return plaintext;
  } catch {
    throw invalid(); // wrong context, tampered, truncated: one answer
  }
}

const invalid = (): PortcullisError => new PortcullisError('PCL_ERR_KMS_CIPHERTEXT_INVALID', 'field ciphertext cannot be decrypted');

/** The wrapped data key must be a well-formed ciphertext of our keyring. */
function checkWrapped(wrapped: string, keyring: string): void {
  const parts = wrapped.split(':');
  if (parts.length !== 4 || parts[0] !== 'pcl' || parts[1] !== keyring || !/^v[1-9]\d{0,8}$/.test(parts[2] ?? '') || !/^[A-Za-z0-9_-]+$/.test(parts[3] ?? '')) throw invalid();
}

function parseField(field: string): { wrapped: string; body: Buffer } {
  if (typeof field !== 'string' || !field.startsWith(PREFIX) || field.length > 2 * 1024 * 1024) throw invalid();
  const end = field.lastIndexOf(':');
  const body = decodeCanonical(field.slice(end + 1)); // one spelling per ciphertext
  if (!body) throw invalid();
  return { wrapped: field.slice(PREFIX.length, end), body };
}

/** Masks a value for responses and logs, keeping only the last `keep` characters. */
export function mask(value: string, keep = 4): string {
  return value.length <= keep ? '*'.repeat(value.length) : '*'.repeat(Math.min(12, value.length - keep)) + value.slice(-keep);
}
