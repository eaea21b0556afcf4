// Field encryption inside a service: envelope encryption with data keys from the control plane's
// KMS. A data key is fetched once (transit `datakey`), used locally with AES-256-GCM for many
// fields, and travels wrapped inside each field's ciphertext, so any replica can decrypt it by
// asking the KMS to unwrap the data key once (then cached). The per-field cost is AES-GCM itself.
//
//   field = "pclf:v1:" + <wrapped data key "pcl:<keyring>:v<N>:…"> + ":" + base64url(nonce ‖ ct ‖ tag)
//
// The field's context (e.g. { field: 'card', order: 'o-1' }) and the wrapped key are its
// associated data: a ciphertext copied to another record or field does not decrypt.
import { createCipheriv, createDecipheriv, createSecretKey, randomBytes, type KeyObject } from 'node:crypto';
import { systemClock, type Clock } from '../core/clock.js';
import { PortcullisError } from '../core/errors.js';
import { canonicalContext } from '../kms/ciphertext.js';
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
/** Context the data keys themselves are wrapped with: they are only ever field keys. */
const DEK_CONTEXT: KmsContext = Object.freeze({ use: 'field-key' });

interface CurrentKey {
  key: KeyObject;
  wrapped: string;
  uses: number;
  expiresAt: number;
}

export class FieldEncryptor {
  private current: CurrentKey | undefined;
  private pending: Promise<CurrentKey> | undefined;
  private readonly unwrapped = new Map<string, Promise<KeyObject>>();
  private readonly clock: Clock;

  constructor(private readonly o: FieldEncryptorOptions) {
    this.clock = o.clock ?? systemClock;
  }

  async encryptField(value: string | Buffer, context: KmsContext = {}): Promise<string> {
    const k = await this.key();
    const nonce = randomBytes(12);
    const c = createCipheriv('aes-256-gcm', k.key, nonce);
    c.setAAD(aad(k.wrapped, context));
    const body = Buffer.concat([nonce, c.update(typeof value === 'string' ? Buffer.from(value, 'utf8') : value), c.final(), c.getAuthTag()]);
    return PREFIX + k.wrapped + ':' + body.toString('base64url');
  }

  async decryptField(field: string, context: KmsContext = {}): Promise<Buffer> {
    const { wrapped, body } = parse(field, this.o.keyring);
    const key = await this.unwrap(wrapped);
    try {
      const d = createDecipheriv('aes-256-gcm', key, body.subarray(0, 12));
      d.setAAD(aad(wrapped, context));
      d.setAuthTag(body.subarray(body.length - 16));
      return Buffer.concat([d.update(body.subarray(12, body.length - 16)), d.final()]);
    } catch {
      throw invalid();
    }
  }

  async decryptFieldToString(field: string, context: KmsContext = {}): Promise<string> {
    return (await this.decryptField(field, context)).toString('utf8');
  }

  /** The data key in use, replaced when worn out or old; one fetch at a time. */
  private async key(): Promise<CurrentKey> {
    const k = this.current;
    if (k && k.uses < (this.o.maxUsesPerKey ?? 2 ** 20) && this.clock.now() < k.expiresAt) {
      k.uses++;
      return k;
    }
    this.pending ??= this.o.kms.dataKey(this.o.keyring, DEK_CONTEXT).then((dk) => {
      const next = { key: createSecretKey(dk.plaintext), wrapped: dk.ciphertext, uses: 0, expiresAt: this.clock.now() + (this.o.keyTtlMs ?? 3600_000) };
      dk.plaintext.fill(0);
      this.current = next;
      this.unwrapped.set(next.wrapped, Promise.resolve(next.key));
      return next;
    }).finally(() => { this.pending = undefined; });
    const next = await this.pending;
    next.uses++;
    return next;
  }

  private unwrap(wrapped: string): Promise<KeyObject> {
    let p = this.unwrapped.get(wrapped);
    if (p) {
      // Refresh its place: the map's order is the LRU order.
      this.unwrapped.delete(wrapped);
      this.unwrapped.set(wrapped, p);
      return p;
    }
    p = this.o.kms.decrypt(this.o.keyring, wrapped, DEK_CONTEXT).then((raw) => {
      const key = createSecretKey(raw);
      raw.fill(0);
      return key;
    });
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

function aad(wrapped: string, context: KmsContext): Buffer {
  return Buffer.concat([Buffer.from(PREFIX + wrapped + '\n', 'utf8'), canonicalContext(context)]);
}

const invalid = (): PortcullisError => new PortcullisError('PCL_ERR_KMS_CIPHERTEXT_INVALID', 'field ciphertext cannot be decrypted');

function parse(field: string, keyring: string): { wrapped: string; body: Buffer } {
  if (typeof field !== 'string' || !field.startsWith(PREFIX) || field.length > 2 * 1024 * 1024) throw invalid();
  const parts = field.slice(PREFIX.length).split(':');
  // pcl : keyring : vN : payload : body
  if (parts.length !== 5 || parts[0] !== 'pcl' || parts[1] !== keyring) throw invalid();
  const b = parts[4] ?? '';
  if (!/^[A-Za-z0-9_-]+$/.test(b)) throw invalid();
  const body = Buffer.from(b, 'base64url');
  if (body.length < 12 + 16 || body.toString('base64url') !== b) throw invalid();
  return { wrapped: parts.slice(0, 4).join(':'), body };
}

/** Masks a value for responses and logs, keeping only the last `keep` characters. */
export function mask(value: string, keep = 4): string {
  return value.length <= keep ? '*'.repeat(value.length) : '*'.repeat(Math.min(12, value.length - keep)) + value.slice(-keep);
}
