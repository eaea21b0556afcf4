// Authorization codes: 32 random bytes, handed to the client once; only their SHA-256 is stored, so
// a read of the store yields nothing redeemable. Redemption uses store.take, so a code works once,
// and a failed redemption burns it too (no second guess at the verifier).
import { createHash, randomBytes } from 'node:crypto';
import type { Clock } from '../../core/clock.js';
import { NS, type Store } from '../../store/store.js';

/** RFC 6749 §4.1.2 recommends at most 10 minutes; a person plus a CLI needs far less. */
export const AUTH_CODE_TTL_MS = 60_000;

export interface AuthCodeRecord {
  clientId: string;
  redirectUri: string;
  codeChallenge: string;
  username: string;
  /** Granted scope values (RFC 6749 §3.3); empty for none. Absent in codes issued before scopes existed. */
  scope?: string[];
  /** Epoch milliseconds. */
  expiresAt: number;
}

const CODE = /^[A-Za-z0-9_-]{43}$/;

const storeKey = (code: string): string => createHash('sha256').update(code, 'utf8').digest('base64url');

export async function issueAuthCode(store: Store, clock: Clock, r: Omit<AuthCodeRecord, 'expiresAt'>): Promise<string> {
  const code = randomBytes(32).toString('base64url');
  const record: AuthCodeRecord = { ...r, expiresAt: clock.now() + AUTH_CODE_TTL_MS };
  await store.put(NS.authCodes, storeKey(code), record);
  return code;
}

/** Takes the code's record (once); undefined when it never existed, was used, or has expired. */
export async function redeemAuthCode(store: Store, clock: Clock, code: string): Promise<AuthCodeRecord | undefined> {
  if (!CODE.test(code)) return undefined;
  const r = await store.take<AuthCodeRecord>(NS.authCodes, storeKey(code));
  if (!r || clock.now() >= r.expiresAt) return undefined;
  return r;
}
