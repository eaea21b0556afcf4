// Envelope for keys at rest: AES-256-GCM under the master key, random 96-bit nonce, and
// associated data naming what the blob is (so a wrapped CA key cannot be swapped for another).
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { PortcullisError } from '../core/errors.js';

const PREFIX = 'pcl:v1:';

export class KeyWrapper {
  constructor(private readonly masterKey: Buffer) {
    if (masterKey.length !== 32) throw new PortcullisError('PCL_ERR_MASTER_KEY', 'master key must be 32 bytes');
  }

  wrap(plaintext: Buffer | string, aad: string): string {
    const iv = randomBytes(12);
    const c = createCipheriv('aes-256-gcm', this.masterKey, iv);
    c.setAAD(Buffer.from(aad, 'utf8'));
    const body = Buffer.concat([c.update(typeof plaintext === 'string' ? Buffer.from(plaintext, 'utf8') : plaintext), c.final()]);
    return PREFIX + Buffer.concat([iv, c.getAuthTag(), body]).toString('base64url');
  }

  unwrap(wrapped: string, aad: string): Buffer {
    try {
      if (!wrapped.startsWith(PREFIX)) throw new Error('unknown envelope version');
      const raw = Buffer.from(wrapped.slice(PREFIX.length), 'base64url');
      if (raw.length < 12 + 16) throw new Error('truncated envelope');
      const d = createDecipheriv('aes-256-gcm', this.masterKey, raw.subarray(0, 12));
      d.setAAD(Buffer.from(aad, 'utf8'));
      d.setAuthTag(raw.subarray(12, 28));
      return Buffer.concat([d.update(raw.subarray(28)), d.final()]);
    } catch (err) {
      // Says which record failed, never anything about the key or plaintext.
      throw new PortcullisError('PCL_ERR_KEY_UNWRAP', `stored key "${aad}" cannot be decrypted (wrong master key or tampered record)`, { cause: err });
    }
  }
}
