// The gateway's API-key authentication (issue 5, "API keys (constant-time)"). A key arrives in
// `Authorization: ApiKey pcl_…` or in `X-API-Key: pcl_…`, never both, and never next to another
// credential. The checksum refuses junk before any hashing; the key is then hashed with the
// hashing key from the snapshot, looked up by the first bytes of its HMAC, and the whole HMAC is
// compared in constant time. Revocations reach the gateway through a small feed polled every
// 2 s (ApiKeyRevocationSync), well before the next snapshot (30 s); expiry and the end of a
// rotation's overlap are checked against the clock on every request.
import { timingSafeEqual } from 'node:crypto';
import { systemClock, type Clock, type Timer } from '../core/clock.js';
import { PortcullisError } from '../core/errors.js';
import { silentLogger, type Logger } from '../core/log.js';
import { hashApiKey, lookupKeyOf, parseApiKey, type ApiKeySnapshot, type ApiKeySnapshotEntry } from '../identity/api-keys.js';

export type { ApiKeySnapshot, ApiKeySnapshotEntry };

/** The header that may carry a key instead of Authorization. */
export const API_KEY_HEADER = 'x-api-key';
/** The Authorization scheme of a key (matched case-insensitively, as RFC 9110 says of schemes). */
export const API_KEY_SCHEME = 'ApiKey';

/** The request headers the authenticator reads (IncomingHttpHeaders fits). */
export interface ApiKeyHeaders {
  authorization?: string | string[] | undefined;
  'x-api-key'?: string | string[] | undefined;
}

/** Who a valid key speaks for: the gateway's principal is `{ sub: owner, roles }`. */
export interface ApiKeyPrincipal {
  /** The key's public id (`ak_…`), for audit entries and rate limits. */
  id: string;
  owner: string;
  roles: string[];
  /** Route ids the key is limited to; absent = any route its roles allow. */
  routes?: string[];
}

interface LoadedEntry {
  id: string;
  hash: Buffer;
  owner: string;
  roles: string[];
  routes?: string[];
  /** ms; the earlier of expiry and overlap end (Infinity = none). */
  endsAt: number;
  /** Why it ends then, for the refusal's message. */
  endReason: 'expired' | 'rotated: its overlap period ended';
}

const SCHEME = /^ApiKey +(\S+)$/i;
const refuse = (why: string): PortcullisError => new PortcullisError('PCL_ERR_APIKEY_INVALID', why);

/** Verifies API keys against the snapshot's entries; refusals are PCL_ERR_APIKEY_INVALID (401). */
export class ApiKeyAuthenticator {
  private hashKey: Buffer | undefined;
  private entries = new Map<string, LoadedEntry>();
  /** Ids revoked through the fast path; kept until a snapshot without them arrives. */
  private readonly revoked = new Set<string>();
  /** Newest use of each key since the last drainUsage (ms). */
  private readonly used = new Map<string, number>();
  private fresh = true;

  constructor(private readonly clock: Clock = systemClock) {}

  /**
   * Replaces the keys with a snapshot's (hashing key of 32 bytes or more, else throws
   * PCL_ERR_INVALID_ARGUMENT). Entries of a malformed shape are skipped (never accepted); ids the
   * revocation feed named stay refused. Returns how many entries were accepted and skipped.
   */
  update(hashKey: Buffer, entries: readonly ApiKeySnapshotEntry[]): { accepted: number; skipped: number } {
    if (hashKey.length < 32) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', 'API key hashing key must be at least 32 bytes');
    const next = new Map<string, LoadedEntry>();
    const present = new Set<string>();
    let skipped = 0;
    for (const e of entries) {
      const loaded = loadEntry(e);
      if (!loaded) { skipped++; continue; }
      present.add(loaded.id);
      if (this.revoked.has(loaded.id)) continue; // the snapshot is older than the revocation
      next.set(lookupKeyOf(loaded.hash), loaded);
    }
    // The control plane leaves revoked keys out of snapshots: once one is absent, it has caught up.
    for (const id of this.revoked) if (!present.has(id)) this.revoked.delete(id);
    this.hashKey = Buffer.from(hashKey);
    this.entries = next;
    return { accepted: next.size, skipped };
  }

  /**
   * Applies a snapshot's `apiKeys` member; a snapshot without one (an older control plane)
   * leaves no key valid, and a malformed one throws PCL_ERR_INVALID_ARGUMENT.
   */
  applySnapshot(part: ApiKeySnapshot | undefined): { accepted: number; skipped: number } {
    if (part === undefined) {
      this.entries = new Map();
      return { accepted: 0, skipped: 0 };
    }
    if (typeof part.hashKey !== 'string' || !Array.isArray(part.entries)) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', 'snapshot apiKeys member is malformed');
    return this.update(Buffer.from(part.hashKey, 'base64url'), part.entries);
  }

  /** Stops accepting these key ids now (the revocation feed); idempotent. */
  revoke(ids: Iterable<string>): number {
    const gone = new Set(ids);
    let removed = 0;
    for (const id of gone) this.revoked.add(id);
    for (const [k, e] of this.entries) {
      if (gone.has(e.id)) { this.entries.delete(k); removed++; }
    }
    return removed;
  }

  /**
   * While false, every key is refused with PCL_ERR_SNAPSHOT_UNAVAILABLE (503): the revocation
   * feed is too old to trust (see ApiKeyRevocationSync's maxStalenessMs).
   */
  setFresh(fresh: boolean): void {
    this.fresh = fresh;
  }

  /** Whether the request carries an API key at all (X-API-Key, or Authorization: ApiKey …). */
  static presented(headers: ApiKeyHeaders): boolean {
    const auth = headers.authorization;
    return headers[API_KEY_HEADER] !== undefined || (typeof auth === 'string' && /^ApiKey(\s|$)/i.test(auth)) || Array.isArray(auth);
  }

  /**
   * The principal of the request's API key. Refused with PCL_ERR_APIKEY_INVALID: both headers
   * (or Authorization of another scheme next to X-API-Key), a repeated header, another
   * Authorization scheme, a malformed key or bad checksum, an unknown, revoked or expired key, a
   * rotated key past its overlap. PCL_ERR_TOKEN_MISSING when no key is presented;
   * PCL_ERR_FORBIDDEN when `routeId` is outside the key's routes; PCL_ERR_SNAPSHOT_UNAVAILABLE
   * before the first snapshot or while the revocation feed is stale. No message has any part of the key.
   */
  authenticate(headers: ApiKeyHeaders, opts: { routeId?: string } = {}): ApiKeyPrincipal {
    const text = presentedKey(headers);
    if (!this.hashKey) throw new PortcullisError('PCL_ERR_SNAPSHOT_UNAVAILABLE', 'no API keys loaded yet (no snapshot)');
    if (!this.fresh) throw new PortcullisError('PCL_ERR_SNAPSHOT_UNAVAILABLE', 'API key revocations are stale: the control plane has not answered for too long');
    const key = parseApiKey(text);
    const hash = hashApiKey(this.hashKey, key);
    const entry = this.entries.get(lookupKeyOf(hash));
    // The lookup used half of the HMAC; the whole of it must match, compared in constant time.
    const same = timingSafeEqual(entry?.hash ?? DUMMY, hash);
    if (!entry || !same) throw refuse('API key unknown or revoked');
    const now = this.clock.now();
    if (now >= entry.endsAt) throw refuse(`API key ${entry.id} ${entry.endReason}`);
    if (opts.routeId !== undefined && entry.routes && !entry.routes.includes(opts.routeId)) {
      throw new PortcullisError('PCL_ERR_FORBIDDEN', `API key ${entry.id} is not valid for route ${opts.routeId}`);
    }
    this.used.set(entry.id, now);
    return { id: entry.id, owner: entry.owner, roles: [...entry.roles], ...(entry.routes ? { routes: [...entry.routes] } : {}) };
  }

  /** Uses since the last call (newest per key), for the control plane's lastUsedAt; clears them. */
  drainUsage(): { id: string; at: string }[] {
    const out = [...this.used].map(([id, at]) => ({ id, at: new Date(at).toISOString() }));
    this.used.clear();
    return out;
  }

  /** How many keys are loaded (for readiness and metrics). */
  size(): number {
    return this.entries.size;
  }
}

const DUMMY = Buffer.alloc(32);

/** The key text from exactly one place; anything ambiguous is refused. */
function presentedKey(headers: ApiKeyHeaders): string {
  const auth = headers.authorization;
  const header = headers[API_KEY_HEADER];
  if (Array.isArray(auth) || Array.isArray(header)) throw refuse('API key header repeated');
  if (auth !== undefined && header !== undefined) throw refuse('both Authorization and X-API-Key present: send one credential');
  if (header !== undefined) return header.trim();
  if (auth === undefined) throw new PortcullisError('PCL_ERR_TOKEN_MISSING', 'no API key presented');
  const m = SCHEME.exec(auth.trim());
  if (!m?.[1]) throw refuse(`Authorization header is not the ${API_KEY_SCHEME} scheme`);
  return m[1];
}

const ID = /^ak_[0-9A-Za-z]{12}$/;
const isStringList = (v: unknown): v is string[] => Array.isArray(v) && v.every((x) => typeof x === 'string');

/** A snapshot entry checked and prepared, or undefined when its shape is wrong. */
function loadEntry(e: ApiKeySnapshotEntry): LoadedEntry | undefined {
  if (typeof e !== 'object' || e === null || typeof e.id !== 'string' || !ID.test(e.id) || typeof e.hash !== 'string' || typeof e.owner !== 'string' || !isStringList(e.roles)) return undefined;
  if (e.routes !== undefined && !isStringList(e.routes)) return undefined;
  const hash = Buffer.from(e.hash, 'base64url');
  if (hash.length !== 32) return undefined;
  const expires = e.expiresAt === undefined ? Infinity : Date.parse(e.expiresAt);
  const notAfter = e.notAfter === undefined ? Infinity : Date.parse(e.notAfter);
  // An unreadable time would mean "never ends": fail closed instead.
  if (Number.isNaN(expires) || Number.isNaN(notAfter)) return undefined;
  return {
    id: e.id, hash, owner: e.owner, roles: [...e.roles], ...(e.routes ? { routes: [...e.routes] } : {}),
    endsAt: Math.min(expires, notAfter), endReason: notAfter < expires ? 'rotated: its overlap period ended' : 'expired',
  };
}

/** What the sync needs from the control plane (ControlClient methods bound to this workload's credentials). */
export interface ApiKeyControl {
  /** GET /v1/apikeys/revoked?since=… */
  revokedSince(since: string | undefined): Promise<{ cursor: string; revoked: string[] }>;
  /** POST /v1/apikeys/used */
  reportUsage(used: { id: string; at: string }[]): Promise<unknown>;
}

export interface ApiKeyRevocationSyncOptions {
  authenticator: ApiKeyAuthenticator;
  control: ApiKeyControl;
  /** Revocation poll period (default 2 s). */
  intervalMs?: number;
  /** Usage report period (default 60 s: the control plane writes lastUsedAt once a minute at most). */
  usageIntervalMs?: number;
  /**
   * When set: with no successful poll for this long, every key is refused (503) until one
   * succeeds. Default: unset (keys keep working on the last snapshot and feed during an outage).
   */
  maxStalenessMs?: number;
  clock?: Clock;
  logger?: Logger;
}

/** Polls the revocation feed and reports key usage, in the background, never during a request. */
export class ApiKeyRevocationSync {
  private cursor: string | undefined;
  private timer: Timer | undefined;
  private lastOk: number;
  private lastUsageReport: number;
  private stopped = true;
  private readonly clock: Clock;
  private readonly logger: Logger;

  constructor(private readonly o: ApiKeyRevocationSyncOptions) {
    this.clock = o.clock ?? systemClock;
    this.logger = o.logger ?? silentLogger;
    this.lastOk = this.clock.now();
    this.lastUsageReport = this.clock.now();
  }

  start(): void {
    this.stopped = false;
    const next = (): void => {
      if (this.stopped) return;
      this.timer = this.clock.setTimer(this.o.intervalMs ?? 2000, () => { void this.tick().finally(next); });
    };
    next();
  }

  stop(): void {
    this.stopped = true;
    this.timer?.cancel();
  }

  /** One poll (and a usage report when due); never throws. */
  async tick(): Promise<void> {
    try {
      const page = await this.o.control.revokedSince(this.cursor);
      if (!Array.isArray(page.revoked) || typeof page.cursor !== 'string') throw new Error('malformed revocation page');
      const removed = this.o.authenticator.revoke(page.revoked.filter((x): x is string => typeof x === 'string'));
      if (removed > 0) this.logger.info({ removed }, 'API keys revoked');
      this.cursor = page.cursor;
      this.lastOk = this.clock.now();
      this.o.authenticator.setFresh(true);
    } catch (err) {
      const staleFor = this.clock.now() - this.lastOk;
      const stale = this.o.maxStalenessMs !== undefined && staleFor > this.o.maxStalenessMs;
      if (stale) this.o.authenticator.setFresh(false);
      this.logger.warn({ err: messageOf(err), staleForMs: staleFor, refusingKeys: stale }, 'API key revocation poll failed');
    }
    if (this.clock.now() - this.lastUsageReport >= (this.o.usageIntervalMs ?? 60_000)) await this.reportUsage();
  }

  /** Sends the uses gathered since the last report; on failure they are dropped (lastUsedAt is informative, the next use reports again). */
  async reportUsage(): Promise<void> {
    this.lastUsageReport = this.clock.now();
    const used = this.o.authenticator.drainUsage();
    if (used.length === 0) return;
    try {
      await this.o.control.reportUsage(used);
    } catch (err) {
      this.logger.warn({ err: messageOf(err), keys: used.length }, 'API key usage report failed');
    }
  }
}

const messageOf = (err: unknown): string => (err instanceof Error ? err.message : String(err));
