// Which endpoint gets the next try: round-robin, or least-request by the power of two choices
// (two random candidates, the one with fewer requests in flight wins — Envoy's default). Ejected
// endpoints are skipped, unhealthy ones too unless nothing else is left (fail open on health), and
// a retry goes to an endpoint not tried yet whenever there is one.
import type { Endpoint } from './endpoint.js';

export type BalancePolicy = 'round-robin' | 'least-request';

// Relaxed one step at a time until some endpoint qualifies: untried, then healthy, then not ejected.
const LEVELS = [
  { healthy: true, untried: true },
  { healthy: false, untried: true },
  { healthy: true, untried: false },
  { healthy: false, untried: false },
] as const;

export class Balancer {
  private cursor = 0;

  /** `random` is injectable for tests; default Math.random (balancing needs no secrecy). */
  constructor(
    private readonly endpoints: readonly Endpoint[],
    private readonly policy: BalancePolicy,
    private readonly random: () => number = Math.random,
  ) {}

  /** Index of the endpoint for the next try; `tried` lists indexes this request already used. */
  pick(now: number, tried?: readonly number[]): number {
    for (const level of LEVELS) {
      const i = this.pickAt(now, level.healthy, level.untried ? tried : undefined, true);
      if (i >= 0) return i;
    }
    // Every endpoint ejected: cannot happen while the ejection cap leaves one, but never refuse here.
    return this.pickAt(now, false, undefined, false);
  }

  private pickAt(now: number, healthy: boolean, tried: readonly number[] | undefined, notEjected: boolean): number {
    const eps = this.endpoints;
    const n = eps.length;
    const ok = (i: number): boolean => {
      const e = eps[i] as Endpoint; // i < n
      return (!notEjected || e.ejectedUntil <= now) && (!healthy || e.healthy) && (tried === undefined || !tried.includes(i));
    };
    if (this.policy === 'round-robin') {
      for (let k = 0; k < n; k++) {
        const i = (this.cursor + k) % n;
        if (ok(i)) {
          this.cursor = (i + 1) % n;
          return i;
        }
      }
      return -1;
    }
    let count = 0;
    for (let i = 0; i < n; i++) if (ok(i)) count++;
    if (count === 0) return -1;
    const a = Math.floor(this.random() * count);
    if (count === 1) return nth(a);
    let b = Math.floor(this.random() * (count - 1));
    if (b >= a) b++;
    const ia = nth(a);
    const ib = nth(b);
    return (eps[ib] as Endpoint).inFlight < (eps[ia] as Endpoint).inFlight ? ib : ia; // both are valid indexes

    function nth(k: number): number {
      for (let i = 0; i < n; i++) if (ok(i) && k-- === 0) return i;
      return -1;
    }
  }
}
