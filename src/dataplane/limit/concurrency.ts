// Per-upstream cap on in-flight requests (per gateway replica): beyond it the gateway answers
// 503 PCL_ERR_CONCURRENCY_LIMIT at once instead of piling more load on a slow service.
import { PortcullisError } from '../../core/errors.js';

/** Counts in-flight requests to one upstream and refuses beyond `max`. */
export class ConcurrencyLimiter {
  private count = 0;

  /** `max`: in-flight requests allowed at once, an integer >= 1 (PCL_ERR_INVALID_ARGUMENT otherwise). */
  constructor(private readonly max: number) {
    if (!Number.isSafeInteger(max) || max < 1) {
      throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', 'maxConcurrent must be an integer >= 1');
    }
  }

  /** Requests currently holding a slot. */
  get inFlight(): number {
    return this.count;
  }

  /**
   * Takes a slot: returns its release function, or null when `max` are in flight (the caller
   * answers 503). Release is idempotent, so calling it from both 'finish' and 'close' is safe.
   */
  tryAcquire(): (() => void) | null {
    if (this.count >= this.max) return null;
    this.count++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.count--;
    };
  }
}
