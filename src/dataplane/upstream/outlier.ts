// Passive outlier ejection: an endpoint that fails `consecutiveFailures` tries in a row is taken
// out of rotation for `ejectMs`, doubled on every re-ejection up to 5 minutes. Never more than
// `maxEjectedPercent` of the endpoints are out at once, and never the last one.
import type { Endpoint } from './endpoint.js';

/** Longest ejection, whatever the doubling says. */
export const MAX_EJECT_MS = 5 * 60_000;

export interface OutlierOptions {
  /** Consecutive failed tries that eject an endpoint. Default 5. */
  consecutiveFailures: number;
  /** First ejection length; each re-ejection doubles it, capped at 5 minutes. Default 30 000 ms. */
  ejectMs: number;
  /** Most endpoints ejected at once, in percent (rounded down, and always at least one left). Default 50. */
  maxEjectedPercent: number;
}

export class OutlierDetector {
  private readonly maxEjected: number;

  constructor(private readonly endpoints: readonly Endpoint[], private readonly o: OutlierOptions) {
    const n = endpoints.length;
    this.maxEjected = Math.max(0, Math.min(n - 1, Math.floor((n * o.maxEjectedPercent) / 100)));
  }

  onSuccess(e: Endpoint): void {
    e.consecutiveFailures = 0;
  }

  /** Counts a failed try; ejects the endpoint when it reaches the threshold and the cap allows. */
  onFailure(e: Endpoint, now: number): void {
    e.consecutiveFailures++;
    if (e.consecutiveFailures < this.o.consecutiveFailures || e.ejectedUntil > now) return;
    let ejected = 0;
    for (const x of this.endpoints) if (x.ejectedUntil > now) ejected++;
    if (ejected >= this.maxEjected) return; // over the cap: it keeps serving, and is retried for ejection on its next failure
    // The doubling forgets an endpoint that stayed in rotation longer than the longest ejection.
    if (e.ejections > 0 && now - e.ejectedUntil > MAX_EJECT_MS) e.ejections = 0;
    e.ejectedUntil = now + Math.min(this.o.ejectMs * 2 ** e.ejections, MAX_EJECT_MS);
    e.ejections++;
    e.consecutiveFailures = 0;
  }
}
