// When a failed try may be tried again, and how long to wait first. Only what cannot do harm twice:
// an idempotent method, a body we still hold (none, or buffered), nothing written to the client yet.
import type { FailureKind } from '../forward.js';

/** RFC 9110 §9.2.2 idempotent methods we forward (TRACE is never routed). */
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE']);

export interface RetryOptions {
  /** Extra tries after the first. Default 1. */
  attempts: number;
  /** Base wait before a retry, doubled per retry and jittered to 50–100 % of that. Default 25 ms. */
  backoffMs: number;
}

/** Tries allowed in total for this request: 1 unless it can be replayed safely. */
export function maxTries(method: string, replayableBody: boolean, o: RetryOptions): number {
  return replayableBody && IDEMPOTENT.has(method) ? 1 + Math.max(0, o.attempts) : 1;
}

/**
 * Whether a failed try (no response) may be retried: connect failures and resets before the
 * response headers, for any idempotent method; a timeout only for GET (a PUT or DELETE that timed
 * out may still be running); never a failure caused by the request itself.
 */
export function retryableFailure(kind: FailureKind, method: string): boolean {
  if (kind === 'request') return false;
  if (kind === 'timeout') return method === 'GET';
  return true;
}

/** Whether an upstream answer may be retried: 502/503/504, for GET and HEAD only. */
export function retryableStatus(status: number, method: string): boolean {
  return (status === 502 || status === 503 || status === 504) && (method === 'GET' || method === 'HEAD');
}

/** Wait before retry number `retry` (1-based): backoffMs·2^(retry-1), jittered to 50–100 %, capped at 10·backoffMs. */
export function backoffDelay(retry: number, backoffMs: number, random: () => number = Math.random): number {
  const full = Math.min(backoffMs * 2 ** (retry - 1), backoffMs * 10);
  return full / 2 + random() * (full / 2);
}
