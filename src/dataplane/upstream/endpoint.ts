// One endpoint of a cluster and the little state the balancer, outlier detector and health checker
// share about it. Plain mutable fields: read on every request, so no maps, no getters.
import type { Upstream } from '../forward.js';

export interface Endpoint {
  readonly origin: string;
  readonly upstream: Upstream;
  /** Requests sent and not finished (body relayed or failed). */
  inFlight: number;
  /** Active health: true until health checks say otherwise (and always true without them). */
  healthy: boolean;
  /** Consecutive failed / passed health checks. */
  checkFailures: number;
  checkPasses: number;
  /** Consecutive failed tries (see the cluster for what counts), for outlier ejection. */
  consecutiveFailures: number;
  /** Clock time until which the endpoint is ejected; 0 when it never was. */
  ejectedUntil: number;
  /** Ejections so far, which doubles the next ejection's length. */
  ejections: number;
}

export function newEndpoint(origin: string, upstream: Upstream): Endpoint {
  return { origin, upstream, inFlight: 0, healthy: true, checkFailures: 0, checkPasses: 0, consecutiveFailures: 0, ejectedUntil: 0, ejections: 0 };
}
