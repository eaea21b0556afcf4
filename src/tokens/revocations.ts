// Revoked access tokens (RFC 7009): the `jti` of each, kept until the token's own `exp` plus a grace
// period — after that every verifier refuses the token anyway (even one allowing clock skew), so the
// list stays as short as the token lifetime. And revoked grants: every token of a user (disabled,
// deleted, new password) or of a client (removed) issued up to a time, kept for one token lifetime:
// self-contained JWTs would otherwise stay good at every gateway until they expire.
// The control plane keeps the list (store + memory); data planes get it in the snapshot and check
// it in the access-token verifier's `isRevoked` (RevokedJtis below).
import type { Clock } from '../core/clock.js';
import { PortcullisError } from '../core/errors.js';
import { NS, type Store } from '../store/store.js';

/** One revoked access token, as stored and as sent in the data-plane snapshot. */
export interface RevokedToken {
  jti: string;
  /** The token's `exp`, in epoch seconds: the entry is dropped after it. */
  exp: number;
}

/** Every access token of one user or one client issued at or before `before`. */
export interface RevokedGrant {
  /** `user:<sub>` or `client:<client_id>`. */
  subject: string;
  /** Epoch seconds: a token whose `iat` is not later is refused. */
  before: number;
  /** Epoch seconds after which no token it covers can be valid: the entry is dropped then. */
  exp: number;
}

/** The claims a revocation check reads. */
export interface RevocableClaims {
  jti: string;
  sub: string;
  client_id?: string;
  iat: number;
}

/** Whose tokens a grant revocation covers. */
export type GrantHolder = 'user' | 'client';

/**
 * Far above what a token service issuing ≤ 1-day tokens revokes in a day; a list this long would
 * make every snapshot heavy, so beyond it a revocation fails (server_error) rather than silently
 * not happening.
 */
export const MAX_REVOKED_TOKENS = 100_000;
/** Kept this long past `exp`: verifiers accept up to their clock skew (default 30 s) after it. */
export const REVOCATION_GRACE_SEC = 300;
/** Our jtis are 22 base64url characters; anything much longer is not one of ours. */
const JTI = /^[A-Za-z0-9_-]{1,128}$/;

/**
 * The control plane's list: persisted in the store (NS.revokedTokens: key = jti, or `user:<sub>` /
 * `client:<id>` for a grant; a jti never holds a colon), served from memory.
 */
export class RevocationList {
  private readonly entries = new Map<string, number>();
  private readonly grants = new Map<string, { before: number; exp: number }>();
  private loading: Promise<void> | undefined;
  private loaded = false;

  constructor(private readonly o: { store: Store; clock: Clock }) {}

  /** A list loaded from the store, ready for isRevoked() and list(). */
  static async open(o: { store: Store; clock: Clock }): Promise<RevocationList> {
    const r = new RevocationList(o);
    await r.ready();
    return r;
  }

  /** Loads the stored entries once; later calls wait for the same load. */
  ready(): Promise<void> {
    this.loading ??= this.reload().catch((err: unknown) => {
      this.loading = undefined; // a failed load is retried by the next caller
      throw err;
    });
    return this.loading;
  }

  /** Re-reads the store (another control-plane replica may have revoked tokens since). */
  async reload(): Promise<void> {
    const rows = await this.o.store.list<{ exp: number; before?: number }>(NS.revokedTokens);
    this.entries.clear();
    this.grants.clear();
    const now = this.nowSec();
    for (const { key, value } of rows) {
      if (!(value.exp + REVOCATION_GRACE_SEC > now)) continue;
      if (value.before !== undefined) this.grants.set(key, { before: value.before, exp: value.exp });
      else this.entries.set(key, value.exp);
    }
    this.loaded = true;
  }

  /** Revokes the token with this jti until `exp` (epoch seconds); an already expired token needs nothing. */
  async revoke(jti: string, exp: number): Promise<void> {
    if (!JTI.test(jti)) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', 'jti must be 1-128 base64url characters');
    if (!Number.isSafeInteger(exp)) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', 'exp must be whole epoch seconds');
    await this.ready();
    if (exp + REVOCATION_GRACE_SEC <= this.nowSec()) return;
    const known = this.entries.get(jti);
    if (known !== undefined && known >= exp) return;
    if (known === undefined) await this.makeRoom();
    // Store first: a revocation that is not durable must not look done.
    await this.o.store.put(NS.revokedTokens, jti, { exp });
    this.entries.set(jti, exp);
  }

  /**
   * Revokes every access token of `holder` `id` issued until now, for `lifetimeSec` (the longest
   * an access token lives): a disabled user's or a removed client's tokens stop working at every
   * data plane with the next snapshot, instead of when each expires. Tokens issued later (the
   * account enabled again, a client of the same id registered again) are not affected.
   */
  async revokeIssuedBefore(holder: GrantHolder, id: string, lifetimeSec: number): Promise<void> {
    if (!Number.isSafeInteger(lifetimeSec) || lifetimeSec <= 0) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', 'lifetimeSec must be a positive whole number');
    await this.ready();
    const subject = `${holder}:${id}`;
    const before = this.nowSec();
    if (!this.grants.has(subject)) await this.makeRoom();
    const entry = { before, exp: before + lifetimeSec };
    await this.o.store.put(NS.revokedTokens, subject, entry);
    this.grants.set(subject, entry);
  }

  /** Whether the jti is revoked now. Fails closed (throws) when the list was never loaded. */
  isRevoked(jti: string): boolean {
    if (!this.loaded) throw new PortcullisError('PCL_ERR_INTERNAL', 'revocation list used before it was loaded');
    const exp = this.entries.get(jti);
    return exp !== undefined && exp + REVOCATION_GRACE_SEC > this.nowSec();
  }

  /** Whether a token is revoked now, by its jti or by a grant revocation of its user or client. */
  isRevokedToken(claims: RevocableClaims): boolean {
    if (this.isRevoked(claims.jti)) return true;
    const now = this.nowSec();
    return revokedBy(this.grants.get(`user:${claims.sub}`), claims.iat, now)
      || (claims.client_id !== undefined && revokedBy(this.grants.get(`client:${claims.client_id}`), claims.iat, now));
  }

  /** Entries still in force, for the data-plane snapshot (sorted by jti, so equal lists hash equally). */
  list(): RevokedToken[] {
    if (!this.loaded) throw new PortcullisError('PCL_ERR_INTERNAL', 'revocation list used before it was loaded');
    const now = this.nowSec();
    return [...this.entries]
      .filter(([, exp]) => exp + REVOCATION_GRACE_SEC > now)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([jti, exp]) => ({ jti, exp }));
  }

  /** Grant revocations still in force, for the data-plane snapshot (sorted by subject). */
  grantList(): RevokedGrant[] {
    if (!this.loaded) throw new PortcullisError('PCL_ERR_INTERNAL', 'revocation list used before it was loaded');
    const now = this.nowSec();
    return [...this.grants]
      .filter(([, g]) => g.exp + REVOCATION_GRACE_SEC > now)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([subject, g]) => ({ subject, before: g.before, exp: g.exp }));
  }

  /** Deletes entries whose token has expired; returns how many. */
  async purgeExpired(): Promise<number> {
    const now = this.nowSec();
    let n = 0;
    for (const { key, value } of await this.o.store.list<{ exp: number }>(NS.revokedTokens)) {
      if (value.exp + REVOCATION_GRACE_SEC > now) continue;
      await this.o.store.delete(NS.revokedTokens, key);
      this.entries.delete(key);
      this.grants.delete(key);
      n++;
    }
    return n;
  }

  /** Before a new entry: purges expired ones when the list is full, and refuses when it still is. */
  private async makeRoom(): Promise<void> {
    if (this.entries.size + this.grants.size < MAX_REVOKED_TOKENS) return;
    await this.purgeExpired();
    if (this.entries.size + this.grants.size >= MAX_REVOKED_TOKENS) throw new PortcullisError('PCL_ERR_STORE', `revocation list full (${MAX_REVOKED_TOKENS} live entries)`);
  }

  private nowSec(): number {
    return Math.floor(this.o.clock.now() / 1000);
  }
}

/** A grant revocation in force that covers a token issued at `iat`. */
function revokedBy(g: { before: number; exp: number } | undefined, iat: number, nowSec: number): boolean {
  return g !== undefined && iat <= g.before && g.exp + REVOCATION_GRACE_SEC > nowSec;
}

/**
 * The data plane's side: the snapshot's lists, checked on every verified token. Pass `isRevoked`
 * to createAccessTokenVerifier and call `load(doc.revokedTokens, doc.revokedGrants)` on every
 * snapshot update.
 */
export class RevokedJtis {
  private jtis = new Set<string>();
  private grants = new Map<string, number>();

  /** Replaces the lists (a new snapshot); an absent list (older control plane) means none. */
  load(list: readonly RevokedToken[] | undefined, grants?: readonly RevokedGrant[]): void {
    // Entries are not aged out here: the control plane drops them once no verifier can accept the token.
    this.jtis = new Set((list ?? []).map((r) => r.jti));
    this.grants = new Map((grants ?? []).map((g) => [g.subject, g.before]));
  }

  /** For AccessTokenVerifierOptions.isRevoked: true refuses the token. */
  readonly isRevoked = (claims: RevocableClaims): boolean => {
    if (this.jtis.has(claims.jti)) return true;
    if (this.grants.size === 0) return false;
    const byUser = this.grants.get(`user:${claims.sub}`);
    if (byUser !== undefined && claims.iat <= byUser) return true;
    const byClient = claims.client_id === undefined ? undefined : this.grants.get(`client:${claims.client_id}`);
    return byClient !== undefined && claims.iat <= byClient;
  };
}
