// How the control plane keeps its own private keys (CA, token signing): sealed under a key the
// hierarchy protects. KeyWrapper (the root key directly) satisfies it for tools and tests;
// KmsKeySealer puts them one level down, under the `control` keyring of the KMS, so they follow
// its rotation and retirement like any other data key (issue 6).
import { PortcullisError } from '../core/errors.js';
import type { Kms } from './types.js';

export interface KeySealer {
  /** `label` names what is sealed and binds the result to it (associated data). */
  wrap(plaintext: Buffer | string, label: string): Promise<string> | string;
  unwrap(sealed: string, label: string): Promise<Buffer> | Buffer;
}

export const CONTROL_KEYRING = 'control';

export class KmsKeySealer implements KeySealer {
  constructor(private readonly kms: Kms) {}

  wrap(plaintext: Buffer | string, label: string): Promise<string> {
    return this.kms.encrypt(CONTROL_KEYRING, typeof plaintext === 'string' ? Buffer.from(plaintext, 'utf8') : plaintext, { key: label });
  }

  async unwrap(sealed: string, label: string): Promise<Buffer> {
    try {
      return await this.kms.decrypt(sealed, { key: label }, CONTROL_KEYRING);
    } catch (err) {
      throw new PortcullisError('PCL_ERR_KEY_UNWRAP', `stored key "${label}" cannot be decrypted (wrong root key, retired version or tampered record)`, { cause: err });
    }
  }
}
