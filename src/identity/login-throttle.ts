// Login throttling ("smart lockout"): growing delays that slow password guessing down without
// letting anyone lock a person out of their own account from somewhere else. Three stages, each
// checked BEFORE the password is (a refused attempt costs no argon2 and reveals nothing):
//   1. (account, source network): after `freeFailures` failures each further attempt waits
//      2^k seconds (2, 4, 8 … capped at `maxDelayMs`). Only attempts from the same /24 (IPv4) or
//      /64 (IPv6) network slow down, so an attacker elsewhere cannot slow the real user down.
//   2. source address, across accounts (password spraying): the same delay after
//      `sourceFreeFailures` failures.
//   3. account, across sources: `globalThreshold` failures within `globalWindowMs` from at least
//      `globalMinSources` networks lock the account, except from networks that signed in to it
//      successfully within `knownSourceTtlMs` (the real user's "known sources"), which also skip
//      stage 2.
// Attempts are counted when they start (so parallel requests cannot all slip through before the
// first failure is recorded) and taken back on success.
//
// The state is in the store (NS.loginThrottle), so a restart keeps it and control-plane replicas
// share it. An attempt is judged on three small records: `p:` the (account, network) counter and
// since when the network is known, `s:` the source's counter, `a:` the account's recent failures.
// An allowed attempt writes all three in one compare-and-set (Store.replace: one transaction, one
// commit) from the values it was judged on; when another attempt changed one of them first, they
// are read and judged again, so of parallel attempts exactly as many pass as the limits allow, on
// one replica or many. A refused attempt only reads. Accounts are keyed by a SHA-256 of the name as
// typed (which may be a password typed into the wrong field), and every record carries its
// `expiresAt`, past which purge() deletes it. docs/people.md explains the limits.
import { createHash, randomBytes } from 'node:crypto';
import { isIPv4, isIPv6 } from 'node:net';
import { systemClock, type Clock } from '../core/clock.js';
import { PortcullisError } from '../core/errors.js';
import { NS, type Store } from '../store/store.js';

export interface LoginThrottleOptions {
  /** Where the counters live; every replica of the control plane passes the same store. */
  store: Store;
  /**
   * How an account name becomes a store key: a keyed hash (the control plane passes its KMS HMAC of
   * audit identifiers), so that someone who reads the store cannot test guesses against it — the
   * name as typed may be a mistyped password. Default: an unkeyed SHA-256, for tests and tools.
   */
  hashAccount?: (name: string) => Promise<string>;
  /** Default: the system clock. */
  clock?: Clock;
  /** Failures of one account from one network before delays start. Default 5. */
  freeFailures?: number;
  /** Failures from one source address (any accounts) before delays start. Default 20. */
  sourceFreeFailures?: number;
  /** Longest delay, in ms. Default 15 min. */
  maxDelayMs?: number;
  /** A counter without a new failure this long starts over, in ms. Default 24 h. */
  forgetAfterMs?: number;
  /** Failures of one account, from any networks, that lock it for unknown networks. Default 50. */
  globalThreshold?: number;
  /** The window of `globalThreshold`, in ms. Default 15 min. */
  globalWindowMs?: number;
  /** Distinct networks among those failures needed for the lock. Default 3. */
  globalMinSources?: number;
  /** How long a successful sign-in makes its network "known" for the account, in ms. Default 30 days. */
  knownSourceTtlMs?: number;
}

/** Why an attempt was refused: which stage. */
export type ThrottleStage = 'account-source' | 'source' | 'account';

/** The outcome of `attempt`. An allowed attempt counts as a failure until told otherwise. */
export type LoginAttempt =
  | {
      allowed: true;
      /** The sign-in completed: resets the (account, network) counter and makes the network known. */
      succeeded(): Promise<void>;
      /** Neither a failure nor a sign-in (a right password awaiting its second factor): not counted. */
      release(): Promise<void>;
    }
  | { allowed: false; stage: ThrottleStage; retryAfterSeconds: number };

/** Stage 1 (`p:`): the (account, network) counter, and since when the network is known for the account. */
interface PairRecord { failures: number; lastAt: number; knownAt?: number; expiresAt: number }
/** Stage 2 (`s:`). */
interface SourceRecord { failures: number; lastAt: number; expiresAt: number }
/** Stage 3 (`a:`): the newest failures of the account, at most `globalThreshold`, none older than the window. */
interface AccountRecord { hits: Hit[]; expiresAt: number }
interface Hit { at: number; network: string; id: string }

/** The three records an attempt is judged on, as read (undefined: none yet). */
interface Records { pair: PairRecord | undefined; source: SourceRecord | undefined; account: AccountRecord | undefined }
type Keys = { [K in keyof Records]: string };

const DEFAULTS = {
  freeFailures: 5,
  sourceFreeFailures: 20,
  maxDelayMs: 15 * 60_000,
  forgetAfterMs: 24 * 3_600_000,
  globalThreshold: 50,
  globalWindowMs: 15 * 60_000,
  globalMinSources: 3,
  knownSourceTtlMs: 30 * 86_400_000,
} as const;

/** Longest account name kept as a key: bounds the work whatever is typed. */
const MAX_ACCOUNT_KEY = 128;
/**
 * Compare-and-set rounds before giving up. Every lost round means another attempt was counted,
 * so a burst on one key ends in refusals long before this; reaching it refuses (fail closed).
 */
const MAX_ROUNDS = 64;
/** At most this often an attempt first deletes the expired records. */
const PURGE_INTERVAL_MS = 600_000;

export class LoginThrottle {
  private readonly store: Store;
  private readonly clock: Clock;
  private readonly hashAccount: (name: string) => Promise<string>;
  private readonly o: Required<Omit<LoginThrottleOptions, 'clock' | 'store' | 'hashAccount'>>;
  private lastPurge: number;

  constructor(options: LoginThrottleOptions) {
    const { clock, store, hashAccount, ...rest } = options;
    this.store = store;
    this.hashAccount = hashAccount ?? ((name) => Promise.resolve(sha256(name)));
    this.clock = clock ?? systemClock;
    const o = { ...DEFAULTS, ...rest };
    for (const [k, v] of Object.entries(o)) {
      if (!Number.isSafeInteger(v) || v < 1) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `login throttle ${k} must be a positive integer`);
    }
    this.o = o;
    this.lastPurge = this.clock.now();
  }

  /**
   * Asks to try a password (or a one-time code) for `account` from `address`. Refused attempts
   * must be answered without checking anything; allowed ones are counted as failures at once.
   * Throws PCL_ERR_STORE when the store cannot be reached (the caller refuses: fail closed).
   */
  async attempt(account: string, address: string | undefined): Promise<LoginAttempt> {
    const now = this.clock.now();
    if (now - this.lastPurge >= PURGE_INTERVAL_MS) {
      this.lastPurge = now;
      await this.purge();
    }
    const keys = keysOf(await this.accountId(account), address);
    const network = sourceNetwork(address);
    const id = randomBytes(9).toString('base64url');
    for (let round = 0; round < MAX_ROUNDS; round++) {
      const { pair, source, account: acct } = await this.read(keys);
      const known = this.isKnown(pair, now);
      const pairWait = this.waitFor(pair, this.o.freeFailures, now);
      if (pairWait > 0) return refused('account-source', pairWait);
      if (!known) {
        const sourceWait = this.waitFor(source, this.o.sourceFreeFailures, now);
        if (sourceWait > 0) return refused('source', sourceWait);
        const lockWait = this.lockedFor(acct, now);
        if (lockWait > 0) return refused('account', lockWait);
      }
      // Counted on all three records at once, only if none changed since they were judged.
      const livePair = this.live(pair, now);
      // Only the newest `globalThreshold` hits inside the window can ever decide the lock.
      const hits = [...this.recentHits(acct, now), { at: now, network, id }].slice(-this.o.globalThreshold);
      const counted = await this.store.replace(NS.loginThrottle, [
        { key: keys.pair, expected: pair, next: this.pairRecord((livePair?.failures ?? 0) + 1, now, pair?.knownAt) },
        { key: keys.source, expected: source, next: { failures: (this.live(source, now)?.failures ?? 0) + 1, lastAt: now, expiresAt: now + this.o.forgetAfterMs } },
        { key: keys.account, expected: acct, next: { hits, expiresAt: now + this.o.globalWindowMs } },
      ]);
      if (counted) return this.allowed(keys, id, now, livePair ? livePair.lastAt : now);
      // Another attempt changed one of them first: judge again on what it left.
    }
    return refused('account-source', 1000);
  }

  /** Forgets everything about an account (it was deleted; a new one of that name starts clean). */
  async forgetAccount(account: string): Promise<void> {
    const acct = await this.accountId(account);
    await Promise.all([
      this.store.deleteWhere(NS.loginThrottle, { keyPrefix: `p:${acct}:` }),
      this.store.delete(NS.loginThrottle, `a:${acct}`),
    ]);
  }

  /** The account in the store's keys: its hash, in base64url characters only (the keys are split on ':'). */
  private async accountId(account: string): Promise<string> {
    return (await this.hashAccount(`login-throttle\0${accountKey(account)}`)).replace(/[^A-Za-z0-9_-]/g, '');
  }

  /** Deletes the records past their expiry (forgotten counters, expired known networks); returns how many. */
  async purge(): Promise<number> {
    return this.store.deleteWhere(NS.loginThrottle, { below: { field: 'expiresAt', value: this.clock.now() } });
  }

  /** An allowed attempt: counted as a failure until it is settled, once. */
  private allowed(keys: Keys, id: string, countedAt: number, previousLastAt: number): LoginAttempt {
    let settled = false;
    const settle = async (signedIn: boolean): Promise<void> => {
      if (settled) return;
      settled = true;
      await this.change(keys, ({ pair, source, account }) => {
        const at = this.clock.now();
        return {
          // A sign-in resets the pair and makes its network known; a release takes the count back,
          // and the delay runs from the last real failure again.
          pair: signedIn ? this.pairRecord(0, at, at)
            : pair && pair.failures > 0 ? this.pairRecord(pair.failures - 1, pair.lastAt === countedAt ? previousLastAt : pair.lastAt, pair.knownAt) : undefined,
          source: source && source.failures > 0 ? { ...source, failures: source.failures - 1 } : undefined,
          account: account?.hits.some((h) => h.id === id) ? { ...account, hits: account.hits.filter((h) => h.id !== id) } : undefined,
        };
      });
    };
    return { allowed: true, succeeded: () => settle(true), release: () => settle(false) };
  }

  /**
   * Read, change, compare-and-set, again while another writer gets there first. `change` returns
   * the new records (undefined: keep). Out of rounds the change is dropped: the failure stays
   * counted, which only errs on the side of a longer delay.
   */
  private async change(keys: Keys, change: (r: Records) => { [K in keyof Records]: Records[K] | undefined }): Promise<void> {
    for (let round = 0; round < MAX_ROUNDS; round++) {
      const cur = await this.read(keys);
      const next = change(cur);
      const changes = (['pair', 'source', 'account'] as const)
        .filter((k) => next[k] !== undefined)
        .map((k) => ({ key: keys[k], expected: cur[k], next: next[k] }));
      if (await this.store.replace(NS.loginThrottle, changes)) return;
    }
  }

  private async read(keys: Keys): Promise<Records> {
    const [pair, source, account] = await Promise.all([
      this.store.get<PairRecord>(NS.loginThrottle, keys.pair),
      this.store.get<SourceRecord>(NS.loginThrottle, keys.source),
      this.store.get<AccountRecord>(NS.loginThrottle, keys.account),
    ]);
    return { pair, source, account };
  }

  private pairRecord(failures: number, lastAt: number, knownAt: number | undefined): PairRecord {
    const forgetAt = failures > 0 ? lastAt + this.o.forgetAfterMs : 0;
    const knownUntil = knownAt === undefined ? 0 : knownAt + this.o.knownSourceTtlMs;
    return { failures, lastAt, ...(knownAt === undefined ? {} : { knownAt }), expiresAt: Math.max(forgetAt, knownUntil, lastAt) };
  }

  /** The counter while it still counts (a failure within `forgetAfterMs`). */
  private live<C extends { failures: number; lastAt: number }>(c: C | undefined, now: number): C | undefined {
    return c && c.failures > 0 && now - c.lastAt < this.o.forgetAfterMs ? c : undefined;
  }

  private isKnown(pair: PairRecord | undefined, now: number): boolean {
    return pair?.knownAt !== undefined && now - pair.knownAt < this.o.knownSourceTtlMs;
  }

  /** Milliseconds until a counter allows the next attempt (0: now). */
  private waitFor(counter: { failures: number; lastAt: number } | undefined, free: number, now: number): number {
    const c = this.live(counter, now);
    if (!c || c.failures < free) return 0;
    const k = c.failures - free + 1;
    const delay = Math.min(2 ** Math.min(k, 30) * 1000, this.o.maxDelayMs);
    return Math.max(0, c.lastAt + delay - now);
  }

  private recentHits(r: AccountRecord | undefined, now: number): Hit[] {
    return (r?.hits ?? []).filter((h) => now - h.at < this.o.globalWindowMs);
  }

  /** Milliseconds the account stays locked for unknown networks (0: not locked). */
  private lockedFor(r: AccountRecord | undefined, now: number): number {
    const n = this.o.globalThreshold;
    const hits = this.recentHits(r, now);
    if (hits.length < n) return 0;
    const window = hits.slice(hits.length - n);
    const oldest = window[0]?.at ?? 0;
    if (new Set(window.map((h) => h.network)).size < this.o.globalMinSources) return 0;
    return oldest + this.o.globalWindowMs - now;
  }
}

function refused(stage: ThrottleStage, waitMs: number): LoginAttempt {
  return { allowed: false, stage, retryAfterSeconds: Math.max(1, Math.ceil(waitMs / 1000)) };
}

/** The account as typed, lower-cased (case does not make a new account), bounded in length. */
export function accountKey(account: string): string {
  return (typeof account === 'string' ? account : '').toLowerCase().slice(0, MAX_ACCOUNT_KEY);
}

/** The records of an attempt, for the account's hash (accountId): never the name as typed (it may be a mistyped password). */
function keysOf(acct: string, address: string | undefined): Keys {
  return { pair: `p:${acct}:${sourceNetwork(address)}`, source: `s:${sourceAddressKey(address)}`, account: `a:${acct}` };
}

/** The unkeyed default of LoginThrottleOptions.hashAccount. */
function sha256(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('base64url');
}

/** The network of an address: IPv4 /24, IPv6 /64; `unknown` for anything else. */
export function sourceNetwork(address: string | undefined): string {
  const a = plainAddress(address);
  if (isIPv4(a)) return `${a.slice(0, a.lastIndexOf('.'))}.0/24`;
  const groups = isIPv6(a) ? expandIPv6(a) : undefined;
  return groups ? `${groups.slice(0, 4).join(':')}::/64` : 'unknown';
}

/** The source as one client: an IPv4 address, or the /64 of an IPv6 one (a host usually holds a whole /64). */
export function sourceAddressKey(address: string | undefined): string {
  const a = plainAddress(address);
  return isIPv4(a) ? a : sourceNetwork(a);
}

/** Without an IPv4-mapped IPv6 prefix or a zone, lower case. */
function plainAddress(address: string | undefined): string {
  return (address ?? '').replace(/%.*$/, '').replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/i, '').toLowerCase();
}

/** Eight 16-bit groups (no leading zeros) of a valid IPv6 address; an embedded IPv4 tail becomes two. */
function expandIPv6(address: string): string[] | undefined {
  let a = address;
  const v4 = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(a);
  if (v4) {
    const [b1, b2, b3, b4] = v4.slice(1).map(Number) as [number, number, number, number]; // four captures
    a = a.slice(0, v4.index) + `${((b1 << 8) | b2).toString(16)}:${((b3 << 8) | b4).toString(16)}`;
  }
  const [head = '', tail] = a.split('::');
  const h = head === '' ? [] : head.split(':');
  const t = tail === undefined || tail === '' ? [] : tail.split(':');
  const fill = tail === undefined ? 0 : 8 - h.length - t.length;
  const groups = [...h, ...Array<string>(Math.max(0, fill)).fill('0'), ...t].map((g) => parseInt(g, 16).toString(16));
  return groups.length === 8 ? groups : undefined;
}
