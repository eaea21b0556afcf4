// Refresh tokens (RFC 6749 §6) with rotation and reuse detection (OAuth 2.0 Security BCP, RFC 9700
// §4.14.2): every use returns a new token and spends the old one; presenting a spent token again
// revokes the whole family (every token descended from the same authorization code) together with
// the access tokens it produced, because either the client or an attacker holds a stolen copy.
//
// Tokens are 32 random bytes handed out once; only their SHA-256 is stored. One namespace
// (NS.refreshTokens) holds three kinds of record:
//   f:<familyId>  the family: client, user, granted scope, absolute expiry, revocation time;
//   t:<sha256>    a token: its family, idle expiry, the access token issued alongside it;
//   u:<sha256>    the token's spent mark, created with store.insert — the one atomic step that lets
//                 exactly one of two concurrent uses of the same token win.
// Records live until the family's absolute expiry (so reuse is still detected), then purgeExpired()
// deletes them.
import { createHash, randomBytes } from 'node:crypto';
import type { Clock } from '../core/clock.js';
import { PortcullisError } from '../core/errors.js';
import { NS, type Store } from '../store/store.js';
import type { GrantHolder } from './revocations.js';

/** Lifetimes of refresh tokens, in seconds. */
export interface RefreshTokenPolicy {
  /** A family ends this long after the login, however often it is used. Default 30 days. */
  absoluteTtlSec: number;
  /** A token unused this long expires (each rotation starts a new period). Default 7 days. */
  idleTtlSec: number;
}

export const DEFAULT_REFRESH_POLICY: Readonly<RefreshTokenPolicy> = Object.freeze({ absoluteTtlSec: 30 * 86_400, idleTtlSec: 7 * 86_400 });

/** The grant a family stands for. */
export interface RefreshFamily {
  id: string;
  clientId: string;
  username: string;
  /** Space-separated scope granted at login (offline_access included). */
  scope: string;
  /** Epoch milliseconds. */
  createdAt: number;
  /** Epoch milliseconds: absolute end of the family. */
  expiresAt: number;
  /** Epoch milliseconds; set once the family is revoked. */
  revokedAt?: number;
}

/** The access token issued together with a refresh token: revoked with the family. */
export interface AccessTokenRef {
  jti: string;
  /** Epoch seconds. */
  exp: number;
}

interface TokenRecord {
  familyId: string;
  clientId: string;
  /** Epoch milliseconds. */
  issuedAt: number;
  /** Epoch milliseconds: min(issuedAt + idle, family expiry). */
  expiresAt: number;
  /** Epoch milliseconds: when purgeExpired may delete this record. */
  familyExpiresAt: number;
  access?: AccessTokenRef;
}

interface SpentMark {
  familyId: string;
  /** Epoch milliseconds. */
  spentAt: number;
  familyExpiresAt: number;
}

/** What a presented refresh token is. Only `active` may be rotated. */
export type RefreshLookup =
  /** Malformed, never issued, or purged long ago. */
  | { state: 'unknown' }
  /** Already rotated: presenting it again is reuse. */
  | { state: 'spent'; familyId: string; clientId: string }
  /** Family revoked or past its absolute lifetime, or the token idle too long. */
  | { state: 'inactive'; clientId: string }
  | { state: 'active'; family: RefreshFamily; clientId: string; expiresAt: number; issuedAt: number; hash: string };

/** Where the access tokens of a revoked family go (the RevocationList). */
export interface AccessTokenRevoker {
  revoke(jti: string, exp: number): Promise<void>;
  /** Every access token of a user or client issued until now (RevocationList); see `accessTokenTtlSec`. */
  revokeIssuedBefore?(holder: GrantHolder, id: string, lifetimeSec: number): Promise<void>;
}

const TOKEN = /^[A-Za-z0-9_-]{43}$/;
/** At most this often purgeExpired runs on its own, from issue(). */
const PURGE_INTERVAL_MS = 3_600_000;

const hashOf = (token: string): string => createHash('sha256').update(token, 'utf8').digest('base64url');

/** True when the string has the shape of one of our refresh tokens (nothing about its validity). */
export function looksLikeRefreshToken(token: string): boolean {
  return TOKEN.test(token);
}

export class RefreshTokens {
  private readonly policy: RefreshTokenPolicy;
  private lastPurge: number;

  /**
   * `accessTokenTtlSec` (the token service's access-token lifetime): ending a user's or a client's
   * sessions then also revokes every access token issued to them so far — those of no session too
   * (client_credentials, token exchange, a login without offline_access) — through the revoker's
   * revokeIssuedBefore. Without it, only the access tokens the sessions produced are revoked.
   */
  constructor(private readonly o: { store: Store; clock: Clock; revoker: AccessTokenRevoker; policy?: Partial<RefreshTokenPolicy>; accessTokenTtlSec?: number }) {
    const p = { ...DEFAULT_REFRESH_POLICY, ...o.policy };
    for (const [k, v] of Object.entries(p)) {
      if (!Number.isSafeInteger(v) || v <= 0) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `refresh token ${k} must be a positive whole number of seconds`);
    }
    if (p.idleTtlSec > p.absoluteTtlSec) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', 'refresh token idleTtlSec must not exceed absoluteTtlSec');
    this.policy = Object.freeze(p);
    this.lastPurge = o.clock.now();
  }

  /** Starts a family (a login) and returns its first token. */
  async issue(f: { clientId: string; username: string; scope: string; access: AccessTokenRef }): Promise<string> {
    const now = this.o.clock.now();
    if (now - this.lastPurge >= PURGE_INTERVAL_MS) {
      this.lastPurge = now;
      await this.purgeExpired();
    }
    const family: RefreshFamily = {
      id: randomBytes(16).toString('base64url'),
      clientId: f.clientId,
      username: f.username,
      scope: f.scope,
      createdAt: now,
      expiresAt: now + this.policy.absoluteTtlSec * 1000,
    };
    if (!(await this.o.store.insert(NS.refreshTokens, `f:${family.id}`, family))) {
      throw new PortcullisError('PCL_ERR_STORE', 'refresh token family id collision'); // 128 random bits: never in practice
    }
    return this.writeToken(family, f.access, now);
  }

  /** Classifies a presented token without changing anything. */
  async lookup(token: string): Promise<RefreshLookup> {
    if (!TOKEN.test(token)) return { state: 'unknown' };
    const hash = hashOf(token);
    const t = await this.o.store.get<TokenRecord>(NS.refreshTokens, `t:${hash}`);
    if (!t) return { state: 'unknown' };
    if (await this.o.store.get<SpentMark>(NS.refreshTokens, `u:${hash}`)) return { state: 'spent', familyId: t.familyId, clientId: t.clientId };
    const family = await this.o.store.get<RefreshFamily>(NS.refreshTokens, `f:${t.familyId}`);
    const now = this.o.clock.now();
    if (!family || family.revokedAt !== undefined || now >= family.expiresAt || now >= t.expiresAt) return { state: 'inactive', clientId: t.clientId };
    return { state: 'active', family, clientId: t.clientId, expiresAt: t.expiresAt, issuedAt: t.issuedAt, hash };
  }

  /**
   * Spends an active token and returns its successor, issued with `access`. When another use of
   * the same token got there first (a race between two holders: reuse), the family is revoked and
   * the result is `undefined`.
   */
  async rotate(active: Extract<RefreshLookup, { state: 'active' }>, access: AccessTokenRef): Promise<string | undefined> {
    const { family } = active;
    const now = this.o.clock.now();
    const mark: SpentMark = { familyId: family.id, spentAt: now, familyExpiresAt: family.expiresAt };
    if (!(await this.o.store.insert(NS.refreshTokens, `u:${active.hash}`, mark))) {
      await this.revokeFamily(family.id);
      return undefined;
    }
    const next = await this.writeToken(family, access, now);
    // A revocation that ran while we rotated may have missed the new token's access token: re-check.
    const current = await this.o.store.get<RefreshFamily>(NS.refreshTokens, `f:${family.id}`);
    if (!current || current.revokedAt !== undefined) {
      await this.o.revoker.revoke(access.jti, access.exp);
      return undefined;
    }
    return next;
  }

  /**
   * Revokes a family: none of its tokens works any more, and every access token it produced that
   * has not expired yet is revoked too. Idempotent.
   */
  async revokeFamily(familyId: string): Promise<void> {
    const key = `f:${familyId}`;
    const family = await this.o.store.get<RefreshFamily>(NS.refreshTokens, key);
    if (!family) return;
    const now = this.o.clock.now();
    if (family.revokedAt === undefined) await this.o.store.put(NS.refreshTokens, key, { ...family, revokedAt: now });
    await this.revokeAccessTokens([familyId], now);
  }

  /**
   * Ends every session of a user (disabled, deleted, new password): all their families not revoked
   * yet are marked in one store operation, then the access tokens those families produced are
   * revoked. Returns how many of the families were still within their lifetime.
   */
  revokeUser(username: string): Promise<number> {
    return this.endSessions('user', username, { username });
  }

  /**
   * Ends every session held through a client (removed through the admin API), as revokeUser does
   * for a user: its families, and the access tokens they produced. Returns how many were still live.
   */
  revokeClient(clientId: string): Promise<number> {
    return this.endSessions('client', clientId, { clientId });
  }

  private async endSessions(holder: GrantHolder, id: string, owner: Pick<RefreshFamily, 'username'> | Pick<RefreshFamily, 'clientId'>): Promise<number> {
    const now = this.o.clock.now();
    // One atomic UPDATE: a family revoked by a concurrent call is counted by that call only.
    const families = await this.o.store.patchWhere<RefreshFamily>(NS.refreshTokens, { keyPrefix: 'f:', equals: owner, absent: 'revokedAt' }, { revokedAt: now });
    await this.revokeAccessTokens(families.map((f) => f.value.id), now);
    await this.revokeIssued(holder, id);
    return families.filter((f) => f.value.expiresAt > now).length;
  }

  /** Every access token issued to the user or client so far, when the revoker and the lifetime allow (see the constructor). */
  private async revokeIssued(holder: GrantHolder, id: string): Promise<void> {
    const ttl = this.o.accessTokenTtlSec;
    if (ttl !== undefined && this.o.revoker.revokeIssuedBefore) await this.o.revoker.revokeIssuedBefore(holder, id, ttl);
  }

  /**
   * Revokes the unexpired access tokens issued alongside the families' refresh tokens. A rotation
   * racing with this writes its token before it re-reads the family (rotate), so either this finds
   * the token or rotate finds the family revoked and revokes the access token itself.
   */
  private async revokeAccessTokens(familyIds: string[], now: number): Promise<void> {
    if (familyIds.length === 0) return;
    const tokens = await this.o.store.listWhere<TokenRecord>(NS.refreshTokens, { keyPrefix: 't:', oneOf: { field: 'familyId', values: familyIds } });
    for (const { value } of tokens) {
      if (value.access && value.access.exp * 1000 > now) await this.o.revoker.revoke(value.access.jti, value.access.exp);
    }
  }

  /** Deletes every record of families past their absolute expiry; returns how many records. */
  async purgeExpired(): Promise<number> {
    const now = this.o.clock.now();
    let n = 0;
    for (const { key, value } of await this.o.store.list<Partial<TokenRecord & SpentMark & RefreshFamily>>(NS.refreshTokens)) {
      const end = key.startsWith('f:') ? value.expiresAt : value.familyExpiresAt;
      if (typeof end === 'number' && end > now) continue;
      await this.o.store.delete(NS.refreshTokens, key);
      n++;
    }
    return n;
  }

  private async writeToken(family: RefreshFamily, access: AccessTokenRef, now: number): Promise<string> {
    const token = randomBytes(32).toString('base64url');
    const record: TokenRecord = {
      familyId: family.id,
      clientId: family.clientId,
      issuedAt: now,
      expiresAt: Math.min(now + this.policy.idleTtlSec * 1000, family.expiresAt),
      familyExpiresAt: family.expiresAt,
      access: { jti: access.jti, exp: access.exp },
    };
    await this.o.store.put(NS.refreshTokens, `t:${hashOf(token)}`, record);
    return token;
  }
}
