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
// first failure is recorded) and taken back on success. State is in memory, bounded (LRU), and
// forgotten after `forgetAfterMs` without failures. docs/people.md explains the limits.
import { isIPv4, isIPv6 } from 'node:net';
import { systemClock, type Clock } from '../core/clock.js';
import { PortcullisError } from '../core/errors.js';
import { BoundedMap } from '../detect/bounded.js';

export interface LoginThrottleOptions {
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
  /** Keys per table (LRU beyond). Default 100 000. */
  maxKeys?: number;
}

/** Why an attempt was refused: which stage. */
export type ThrottleStage = 'account-source' | 'source' | 'account';

/** The outcome of `attempt`. An allowed attempt counts as a failure until told otherwise. */
export type LoginAttempt =
  | {
      allowed: true;
      /** The sign-in completed: resets the (account, network) counter and makes the network known. */
      succeeded(): void;
      /** Neither a failure nor a sign-in (a right password awaiting its second factor): not counted. */
      release(): void;
    }
  | { allowed: false; stage: ThrottleStage; retryAfterSeconds: number };

interface Counter { failures: number; lastAt: number }
interface Hit { at: number; network: string; id: number }

const DEFAULTS = {
  freeFailures: 5,
  sourceFreeFailures: 20,
  maxDelayMs: 15 * 60_000,
  forgetAfterMs: 24 * 3_600_000,
  globalThreshold: 50,
  globalWindowMs: 15 * 60_000,
  globalMinSources: 3,
  knownSourceTtlMs: 30 * 86_400_000,
  maxKeys: 100_000,
} as const;

/** Longest account name kept as a key: bounds memory whatever is typed. */
const MAX_ACCOUNT_KEY = 128;

export class LoginThrottle {
  private readonly clock: Clock;
  private readonly o: Required<Omit<LoginThrottleOptions, 'clock'>>;
  private readonly pairs: BoundedMap<Counter>;
  private readonly sources: BoundedMap<Counter>;
  private readonly accounts: BoundedMap<Hit[]>;
  private readonly known: BoundedMap<number>;
  private nextId = 0;

  constructor(options: LoginThrottleOptions = {}) {
    const { clock, ...rest } = options;
    this.clock = clock ?? systemClock;
    const o = { ...DEFAULTS, ...rest };
    for (const [k, v] of Object.entries(o)) {
      if (!Number.isSafeInteger(v) || v < 1) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `login throttle ${k} must be a positive integer`);
    }
    this.o = o;
    this.pairs = new BoundedMap(o.maxKeys);
    this.sources = new BoundedMap(o.maxKeys);
    this.accounts = new BoundedMap(o.maxKeys);
    this.known = new BoundedMap(o.maxKeys);
  }

  /**
   * Asks to try a password (or a one-time code) for `account` from `address`. Refused attempts
   * must be answered without checking anything; allowed ones are counted as failures at once.
   */
  attempt(account: string, address: string | undefined): LoginAttempt {
    const now = this.clock.now();
    this.prune(now);
    const acct = accountKey(account);
    const network = sourceNetwork(address);
    const source = sourceAddressKey(address);
    const pairKey = `${acct}\n${network}`;
    const knownAt = this.known.get(pairKey);
    const known = knownAt !== undefined && now - knownAt < this.o.knownSourceTtlMs;

    const pairWait = this.waitFor(this.pairs.get(pairKey), this.o.freeFailures, now);
    if (pairWait > 0) return refused('account-source', pairWait);
    if (!known) {
      const sourceWait = this.waitFor(this.sources.get(source), this.o.sourceFreeFailures, now);
      if (sourceWait > 0) return refused('source', sourceWait);
      const lockWait = this.lockedFor(this.accounts.get(acct), now);
      if (lockWait > 0) return refused('account', lockWait);
    }

    const pair = this.pairs.touch(pairKey, now, () => ({ failures: 0, lastAt: now }));
    const previousLastAt = pair.lastAt;
    pair.failures++;
    pair.lastAt = now;
    const src = this.sources.touch(source, now, () => ({ failures: 0, lastAt: now }));
    src.failures++;
    src.lastAt = now;
    const hits = this.accounts.touch(acct, now, () => []);
    const id = this.nextId++;
    hits.push({ at: now, network, id });
    // Only the newest `globalThreshold` hits decide the lock.
    if (hits.length > this.o.globalThreshold) hits.splice(0, hits.length - this.o.globalThreshold);

    let settled = false;
    const undo = (): void => {
      const s = this.sources.get(source);
      if (s) s.failures = Math.max(0, s.failures - 1);
      const h = this.accounts.get(acct);
      const i = h?.findIndex((x) => x.id === id) ?? -1;
      if (h && i >= 0) h.splice(i, 1);
    };
    return {
      allowed: true,
      succeeded: () => {
        if (settled) return;
        settled = true;
        undo();
        this.pairs.delete(pairKey);
        this.known.set(pairKey, this.clock.now(), this.clock.now());
      },
      release: () => {
        if (settled) return;
        settled = true;
        undo();
        const p = this.pairs.get(pairKey);
        if (!p) return;
        p.failures = Math.max(0, p.failures - 1);
        // The delay runs from the last real failure, not from this attempt.
        if (p.lastAt === now) p.lastAt = previousLastAt;
      },
    };
  }

  /** Forgets everything about an account (it was deleted; a new one of that name starts clean). */
  forgetAccount(account: string): void {
    const acct = accountKey(account);
    this.accounts.delete(acct);
    for (const table of [this.pairs, this.known] as const) {
      for (const key of [...table.keys()]) if (key.startsWith(`${acct}\n`)) table.delete(key);
    }
  }

  /** Milliseconds until a counter allows the next attempt (0: now). */
  private waitFor(c: Counter | undefined, free: number, now: number): number {
    if (!c || c.failures < free) return 0;
    const k = c.failures - free + 1;
    const delay = Math.min(2 ** Math.min(k, 30) * 1000, this.o.maxDelayMs);
    return Math.max(0, c.lastAt + delay - now);
  }

  /** Milliseconds the account stays locked for unknown networks (0: not locked). */
  private lockedFor(hits: Hit[] | undefined, now: number): number {
    const n = this.o.globalThreshold;
    if (!hits || hits.length < n) return 0;
    const window = hits.slice(hits.length - n);
    const oldest = window[0]?.at ?? 0;
    if (now - oldest >= this.o.globalWindowMs) return 0;
    if (new Set(window.map((h) => h.network)).size < this.o.globalMinSources) return 0;
    return oldest + this.o.globalWindowMs - now;
  }

  private prune(now: number): void {
    this.pairs.prune(now, this.o.forgetAfterMs);
    this.sources.prune(now, this.o.forgetAfterMs);
    this.accounts.prune(now, Math.max(this.o.globalWindowMs, 1));
    this.known.prune(now, this.o.knownSourceTtlMs);
  }
}

function refused(stage: ThrottleStage, waitMs: number): LoginAttempt {
  return { allowed: false, stage, retryAfterSeconds: Math.max(1, Math.ceil(waitMs / 1000)) };
}

/** The account as typed, lower-cased (case does not make a new account), bounded in length. */
export function accountKey(account: string): string {
  return (typeof account === 'string' ? account : '').toLowerCase().slice(0, MAX_ACCOUNT_KEY);
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
