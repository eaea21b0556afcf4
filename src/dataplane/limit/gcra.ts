// The Generic Cell Rate Algorithm (GCRA) as a pure function: one number per key (the theoretical
// arrival time, "TAT") is all the state a limit needs, so in-process and Redis stores share it.
// The Redis store's Lua script (stores.ts) is a line-by-line port of this function: change both.
import { PortcullisError } from '../../core/errors.js';

/** Shape of one limit. */
export interface GcraParams {
  /** Milliseconds between two requests at the sustained rate (e.g. 100 for 10 per second). */
  emissionIntervalMs: number;
  /** >= 1: how many requests may arrive at once on an idle key. */
  burst: number;
}

/** Outcome of one GCRA step. */
export interface GcraResult {
  /** Whether the request fits. */
  allowed: boolean;
  /** New theoretical arrival time to store (only when allowed; when refused, the unchanged TAT). */
  tat: number;
  /** Requests of cost 1 that would still be allowed right now. */
  remaining: number;
  /** ms until one more request would be allowed (0 when allowed; Infinity when cost > burst). */
  retryAfterMs: number;
  /** ms until the bucket is full again */
  resetMs: number;
}

/**
 * Tolerance for floating-point noise, in ms. Epoch milliseconds (~1.7e12) have a resolution of
 * ~0.25 µs as doubles, and the Redis store keeps TATs to the microsecond; 1 µs absorbs both.
 */
export const GCRA_EPSILON_MS = 0.001;

/** Throws PCL_ERR_INVALID_ARGUMENT unless `p` and `cost` describe a usable limit. */
export function validateGcraParams(p: GcraParams, cost = 1): void {
  if (!Number.isFinite(p.emissionIntervalMs) || p.emissionIntervalMs <= 0) {
    throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', 'GCRA emissionIntervalMs must be a positive finite number');
  }
  if (!Number.isFinite(p.burst) || p.burst < 1) {
    throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', 'GCRA burst must be a finite number >= 1');
  }
  if (!Number.isFinite(cost) || cost <= 0) {
    throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', 'GCRA cost must be a positive finite number');
  }
}

/**
 * Applies one request of `cost` (default 1) at `nowMs` to a key whose stored TAT is `storedTat`
 * (undefined for a key never seen or expired). A TAT in the past counts as "now": an idle key is
 * a full bucket. A request costing more than `burst` can never fit and is always refused.
 */
export function gcra(storedTat: number | undefined, nowMs: number, p: GcraParams, cost = 1): GcraResult {
  validateGcraParams(p, cost);
  if (!Number.isFinite(nowMs)) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', 'GCRA nowMs must be finite');
  const interval = p.emissionIntervalMs;
  const tolerance = interval * p.burst;
  const tat = storedTat !== undefined && Number.isFinite(storedTat) && storedTat > nowMs ? storedTat : nowMs;
  const increment = interval * cost;
  const newTat = tat + increment;
  const allowAt = newTat - tolerance;
  const diff = nowMs - allowAt;

  if (diff >= -GCRA_EPSILON_MS) {
    return {
      allowed: true,
      tat: newTat,
      remaining: Math.max(0, Math.floor((diff + GCRA_EPSILON_MS) / interval)),
      retryAfterMs: 0,
      resetMs: newTat - nowMs,
    };
  }
  let remaining = Math.max(0, Math.floor((nowMs - (tat - tolerance) + GCRA_EPSILON_MS) / interval));
  // Refused means fewer than `cost` units fit; keep the epsilon from claiming otherwise.
  if (increment <= tolerance) remaining = Math.min(remaining, Math.max(0, Math.ceil(cost) - 1));
  return {
    allowed: false,
    tat,
    remaining,
    retryAfterMs: increment > tolerance ? Number.POSITIVE_INFINITY : allowAt - nowMs,
    resetMs: Math.max(0, tat - nowMs),
  };
}
