// The cluster's circuit breaker: after `failureThreshold` consecutive failed tries it opens and the
// gateway refuses at once (PCL_ERR_CIRCUIT_OPEN) instead of piling onto a service that is down.
// After `openMs` it is half-open: exactly one probe request goes through; its success closes the
// breaker, its failure re-opens it. State follows the clock lazily, so no timer is needed.
import type { Clock } from '../../core/clock.js';

export type BreakerState = 'closed' | 'open' | 'half-open';

/** What `admit()` decided: refused, let through, or let through as the half-open probe. */
export const REFUSED = 0;
export const ADMITTED = 1;
export const PROBE = 2;
export type Admission = typeof REFUSED | typeof ADMITTED | typeof PROBE;

export interface BreakerOptions {
  /** Consecutive failures across the cluster that open the breaker. Default 5. */
  failureThreshold: number;
  /** How long it stays open before a probe is allowed. Default 10 000 ms. */
  openMs: number;
}

export class CircuitBreaker {
  private failures = 0;
  /** 0 while closed; otherwise the clock time at which it turns half-open. */
  private openUntil = 0;
  private probing = false;

  constructor(private readonly o: BreakerOptions, private readonly clock: Clock) {}

  state(): BreakerState {
    if (this.openUntil === 0) return 'closed';
    return this.clock.now() < this.openUntil ? 'open' : 'half-open';
  }

  /** Called once per request before any try. A PROBE admission must be ended with `endProbe()`. */
  admit(): Admission {
    const s = this.state();
    if (s === 'closed') return ADMITTED;
    if (s === 'open' || this.probing) return REFUSED;
    this.probing = true;
    return PROBE;
  }

  /** The probe request is over (whatever its tries reported): the next request may probe again if still half-open. */
  endProbe(): void {
    this.probing = false;
  }

  /**
   * A try succeeded (the upstream answered, see the cluster for what counts as failure). While open
   * it changes nothing: a request admitted before the breaker opened proves little; only a probe closes it.
   */
  onSuccess(): void {
    if (this.state() === 'open') return;
    this.failures = 0;
    this.openUntil = 0;
  }

  /** A try failed: count it; a failure while half-open re-opens at once. */
  onFailure(): void {
    this.failures++;
    const s = this.state();
    if (s === 'half-open' || (s === 'closed' && this.failures >= this.o.failureThreshold)) {
      this.openUntil = this.clock.now() + this.o.openMs;
    }
  }
}
