// One-time join tokens: how a new workload proves, once, that an administrator vouched for it,
// and so gets its first certificate. After that it renews with its certificate.
import { createHash } from 'node:crypto';
import { PortcullisError } from '../core/errors.js';
import { systemClock, type Clock } from '../core/clock.js';
import { newSecret } from '../core/ids.js';
import { NS, type Store } from '../store/store.js';
import { parseSpiffeId } from './spiffe.js';

/** Default join token lifetime: long enough to start a workload, short enough to be useless when leaked later. */
export const DEFAULT_JOIN_TOKEN_TTL_MS = 10 * 60 * 1000;
const PREFIX = 'pjt_';
/** `pjt_` + 32 random bytes as base64url (43 characters, no padding). */
const TOKEN_FORMAT = /^pjt_[A-Za-z0-9_-]{43}$/;

interface StoredJoinToken {
  spiffeId: string;
  /** Milliseconds since the epoch, by the injected clock. */
  expiresAt: number;
}

export class JoinTokens {
  constructor(
    private readonly store: Store,
    private readonly clock: Clock = systemClock,
  ) {}

  /** Returns a new token for `spiffeId`; only its hash is stored, so show it to the administrator once. */
  async create(spiffeId: string, ttlMs: number = DEFAULT_JOIN_TOKEN_TTL_MS): Promise<string> {
    const { id } = parseSpiffeId(spiffeId);
    if (!Number.isSafeInteger(ttlMs) || ttlMs <= 0) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', 'ttlMs must be a positive integer');
    const token = PREFIX + newSecret(32);
    const record: StoredJoinToken = { spiffeId: id, expiresAt: this.clock.now() + ttlMs };
    if (!(await this.store.insert(NS.joinTokens, hash(token), record))) {
      // 256 random bits do not collide; if they did, failing beats handing out a shared token.
      throw new PortcullisError('PCL_ERR_INTERNAL', 'join token collision');
    }
    return token;
  }

  /**
   * Redeems a token exactly once. Unknown, used and expired tokens all fail the same way
   * (PCL_ERR_JOIN_TOKEN_INVALID), and no message ever contains the token.
   */
  async consume(token: string): Promise<{ spiffeId: string }> {
    if (typeof token !== 'string' || !TOKEN_FORMAT.test(token)) throw invalidToken();
    // take() deletes and returns atomically: two concurrent redemptions cannot both succeed.
    const record = await this.store.take<StoredJoinToken>(NS.joinTokens, hash(token));
    if (record === undefined || !(this.clock.now() < record.expiresAt)) throw invalidToken();
    return { spiffeId: record.spiffeId };
  }

  /** Deletes expired, never-redeemed tokens; returns how many. For a periodic housekeeping job. */
  async purgeExpired(): Promise<number> {
    const now = this.clock.now();
    let removed = 0;
    for (const { key, value } of await this.store.list<StoredJoinToken>(NS.joinTokens)) {
      if (!(now < value.expiresAt) && (await this.store.delete(NS.joinTokens, key))) removed++;
    }
    return removed;
  }
}

/** A join token carries 256 random bits, so a fast hash is enough: there is nothing to brute-force. */
function hash(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

function invalidToken(): PortcullisError {
  return new PortcullisError('PCL_ERR_JOIN_TOKEN_INVALID', 'join token is invalid, expired or already used');
}
