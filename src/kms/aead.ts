// AES-256-GCM as the KMS uses it: payload = nonce(12) ‖ ciphertext ‖ tag(16), a fresh random
// 96-bit nonce per message (NIST SP 800-38D §8.2.2), full 128-bit tags. The known-answer tests run
// through these same functions, so what they prove is what the KeyManager does.
import { createCipheriv, createDecipheriv, randomBytes, type KeyObject } from 'node:crypto';

export const KEY_BYTES = 32;
export const NONCE_BYTES = 12;
export const TAG_BYTES = 16;

/** Encrypts under a fresh random nonce. */
export function seal(key: KeyObject | Buffer, plaintext: Uint8Array, aad: Uint8Array): Buffer {
  return sealWithNonce(key, randomBytes(NONCE_BYTES), plaintext, aad);
}

/**
 * Encrypts under the given nonce. Only `seal` and the known-answer tests call this: a nonce must
 * never repeat under one key, which only a random one per message (and the usage limit) ensures.
 */
export function sealWithNonce(key: KeyObject | Buffer, nonce: Buffer, plaintext: Uint8Array, aad: Uint8Array): Buffer {
  const c = createCipheriv('aes-256-gcm', key, nonce, { authTagLength: TAG_BYTES });
  c.setAAD(aad);
  const body = c.update(plaintext);
  const last = c.final(); // always empty for GCM, kept for correctness
  return Buffer.concat([nonce, body, last, c.getAuthTag()], NONCE_BYTES + body.length + last.length + TAG_BYTES);
}

/** Decrypts and authenticates; undefined when the payload is too short or does not authenticate. */
export function open(key: KeyObject | Buffer, payload: Buffer, aad: Uint8Array): Buffer | undefined {
  if (payload.length < NONCE_BYTES + TAG_BYTES) return undefined;
  const d = createDecipheriv('aes-256-gcm', key, payload.subarray(0, NONCE_BYTES), { authTagLength: TAG_BYTES });
  d.setAAD(aad);
  d.setAuthTag(payload.subarray(payload.length - TAG_BYTES));
  const body = d.update(payload.subarray(NONCE_BYTES, payload.length - TAG_BYTES));
  try {
    d.final();
  } catch {
    body.fill(0); // unauthenticated output never leaves
    return undefined;
  }
  return body;
}
