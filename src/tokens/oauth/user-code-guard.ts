// Limits guessing of user codes at the device verification page (RFC 8628 §5.1). A user code has
// 34.5 bits, so the limit is what keeps a guess from landing on someone's pending device:
//   - per source (an IPv4 address, an IPv6 /64): `perSource` wrong codes per window;
//   - globally, across all sources: `global` wrong codes per window, against a distributed guesser.
// Each attempt counts as wrong when it starts (parallel requests cannot slip past the limit) and is
// taken back when the code was right. A refused attempt looks nothing up. The global limit trades
// availability for safety: a flood of wrong codes can delay device sign-ins for a window, but never
// lets a guess through. State is in memory, per replica, bounded: past `maxSources` the source
// tracked longest is forgotten first (the global limit still counts its guesses).
import { systemClock, type Clock } from '../../core/clock.js';
import { PortcullisError } from '../../core/errors.js';
import { sourceAddressKey } from '../../identity/login-throttle.js';

export interface UserCodeGuardOptions {
  clock?: Clock;
  /** Wrong codes one source may enter per window. Default 10. */
  perSource?: number;
  /** Wrong codes all sources together may enter per window. Default 500. */
  global?: number;
  /** Window length, ms. Default 15 min. */
  windowMs?: number;
  /** Sources tracked at once. Default 100 000. */
  maxSources?: number;
}

export type UserCodeAttempt =
  | { allowed: true; /** The code was right: the attempt is not counted. */ succeeded(): void }
  | { allowed: false; scope: 'source' | 'global'; retryAfterSeconds: number };

interface Window { start: number; wrong: number }

const DEFAULTS = { perSource: 10, global: 500, windowMs: 15 * 60_000, maxSources: 100_000 } as const;

export class UserCodeGuard {
  private readonly clock: Clock;
  private readonly o: Required<Omit<UserCodeGuardOptions, 'clock'>>;
  /** Per source; a Map keeps insertion order, so the first key is the one tracked longest. */
  private readonly sources = new Map<string, Window>();
  private globalWindow: Window;
  private lastPrune: number;

  constructor(options: UserCodeGuardOptions = {}) {
    const { clock, ...rest } = options;
    this.clock = clock ?? systemClock;
    const o = { ...DEFAULTS, ...rest };
    for (const [k, v] of Object.entries(o)) {
      if (!Number.isSafeInteger(v) || v < 1) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `user code guard ${k} must be a positive integer`);
    }
    this.o = o;
    this.globalWindow = { start: this.clock.now(), wrong: 0 };
    this.lastPrune = this.clock.now();
  }

  /** Asks to look a typed user code up for `address`; an allowed attempt counts as wrong until told otherwise. */
  attempt(address: string | undefined): UserCodeAttempt {
    const now = this.clock.now();
    const windowMs = this.o.windowMs;
    this.prune(now);
    if (now - this.globalWindow.start >= windowMs) this.globalWindow = { start: now, wrong: 0 };
    const key = sourceAddressKey(address);
    let source = this.sources.get(key);
    if (!source) {
      const oldest = this.sources.size >= this.o.maxSources ? this.sources.keys().next() : undefined;
      if (oldest && !oldest.done) this.sources.delete(oldest.value);
      source = { start: now, wrong: 0 };
      this.sources.set(key, source);
    }
    if (now - source.start >= windowMs) { source.start = now; source.wrong = 0; }
    const wait = (w: Window): number => Math.max(1, Math.ceil((w.start + windowMs - now) / 1000));
    if (source.wrong >= this.o.perSource) return { allowed: false, scope: 'source', retryAfterSeconds: wait(source) };
    if (this.globalWindow.wrong >= this.o.global) return { allowed: false, scope: 'global', retryAfterSeconds: wait(this.globalWindow) };
    source.wrong++;
    const g = this.globalWindow;
    g.wrong++;
    let settled = false;
    return {
      allowed: true,
      succeeded: () => {
        if (settled) return;
        settled = true;
        // Only within the windows the attempt was counted in.
        if (source.start <= now) source.wrong = Math.max(0, source.wrong - 1);
        g.wrong = Math.max(0, g.wrong - 1);
      },
    };
  }

  /** Once a window, forgets the sources whose window has ended. */
  private prune(now: number): void {
    if (now - this.lastPrune < this.o.windowMs) return;
    this.lastPrune = now;
    for (const [key, w] of this.sources) if (now - w.start >= this.o.windowMs) this.sources.delete(key);
  }
}
