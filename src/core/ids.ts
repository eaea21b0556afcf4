import { randomBytes, randomUUID } from 'node:crypto';

/** A request id: unique, unguessable, safe in logs and headers. */
export function newRequestId(): string {
  return randomUUID();
}

/** A high-entropy secret as base64url (join tokens, admin tokens, codes). */
export function newSecret(bytes = 32): string {
  return randomBytes(bytes).toString('base64url');
}
