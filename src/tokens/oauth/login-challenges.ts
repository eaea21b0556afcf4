// Sign-ins waiting for their second factor. After the right password, the form's second step
// carries a challenge (32 random bytes; only its SHA-256 is stored) instead of the password: it
// names the user, is bound to the request it began with (an authorization request, or a device's
// user code: the caller's `binding` string), lasts 5 minutes and allows
// MAX_CODE_ATTEMPTS codes. Each use takes the record (store.take), so two posts of one challenge
// cannot both be checked; a wrong code puts it back with one attempt fewer.
import { createHash, randomBytes } from 'node:crypto';
import type { Clock } from '../../core/clock.js';
import { NS, type Store } from '../../store/store.js';

/** Long enough to find the phone and read a code. */
export const LOGIN_CHALLENGE_TTL_MS = 5 * 60_000;
/** Codes one challenge allows; then the password is asked again (and throttling counts each code). */
export const MAX_CODE_ATTEMPTS = 5;
/** Expired challenges are swept at most this often. */
const PURGE_INTERVAL_MS = 10 * 60_000;

export interface LoginChallengeRecord {
  username: string;
  /** What the sign-in is for, as the caller describes it; the second step must carry the same. */
  binding: string;
  /** Codes tried so far. */
  attempts: number;
  /** Epoch milliseconds. */
  expiresAt: number;
}

const CHALLENGE = /^[A-Za-z0-9_-]{43}$/;
const storeKey = (challenge: string): string => createHash('sha256').update(challenge, 'utf8').digest('base64url');
const lastPurge = new WeakMap<Store, number>();

/** Starts the second step for `username`; returns the challenge the form carries. */
export async function createLoginChallenge(store: Store, clock: Clock, username: string, binding: string): Promise<string> {
  const now = clock.now();
  if (now - (lastPurge.get(store) ?? 0) >= PURGE_INTERVAL_MS) {
    lastPurge.set(store, now);
    for (const { key, value } of await store.list<LoginChallengeRecord>(NS.loginChallenges)) {
      if (value.expiresAt <= now) await store.delete(NS.loginChallenges, key);
    }
  }
  const challenge = randomBytes(32).toString('base64url');
  const record: LoginChallengeRecord = { username, binding, attempts: 0, expiresAt: now + LOGIN_CHALLENGE_TTL_MS };
  await store.put(NS.loginChallenges, storeKey(challenge), record);
  return challenge;
}

/**
 * Takes the challenge's record; undefined when it is unknown, used up, expired, or was issued for
 * another request (binding) than the one the form carries now.
 */
export async function takeLoginChallenge(store: Store, clock: Clock, challenge: string, binding: string): Promise<LoginChallengeRecord | undefined> {
  if (!CHALLENGE.test(challenge)) return undefined;
  const c = await store.take<LoginChallengeRecord>(NS.loginChallenges, storeKey(challenge));
  if (!c || clock.now() >= c.expiresAt) return undefined;
  return c.binding === binding ? c : undefined;
}

/** Puts a taken challenge back after a wrong code; false when its attempts are used up. */
export async function returnLoginChallenge(store: Store, challenge: string, c: LoginChallengeRecord, countAttempt: boolean): Promise<boolean> {
  const attempts = c.attempts + (countAttempt ? 1 : 0);
  if (attempts >= MAX_CODE_ATTEMPTS) return false;
  await store.put(NS.loginChallenges, storeKey(challenge), { ...c, attempts });
  return true;
}
