// Step 7 for a service with several endpoints (its replicas' sidecars): pick an endpoint, send, and
// when that fails in a way that is safe to repeat, try another — with a concurrency limit, a
// circuit breaker, passive outlier ejection and optional active health checks around it. Envoy's
// cluster manager is the model. Nothing reaches the client until a try's answer is accepted, which
// is what makes retries possible at all.
//
// What counts as a failed try (breaker and ejection alike): a connect error, a reset before response
// headers, a timeout, or a 503 answer. A 500 is the service's own answer, not unavailability; 502
// and 504 answers are retried for GET/HEAD but count neither way (they speak of something behind
// the endpoint, e.g. the sidecar's service; they neither open the breaker nor reset its count). A
// failure caused by the request itself (client hung up mid-upload, invalid header) never counts, so
// a client cannot open the breaker or eject endpoints on purpose.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ConnectionOptions } from 'node:tls';
import { systemClock, type Clock } from '../../core/clock.js';
import { PortcullisError } from '../../core/errors.js';
import { hasStreamedBody, Upstream, UpstreamFailure, type ForwardRequest, type ResponseShaper, type UpstreamAnswer } from '../forward.js';
import { Balancer, type BalancePolicy } from './balancer.js';
import { CircuitBreaker, PROBE, REFUSED, type BreakerOptions, type BreakerState } from './breaker.js';
import { newEndpoint, type Endpoint } from './endpoint.js';
import { HealthChecker, type HealthCheckOptions } from './health.js';
import { OutlierDetector, type OutlierOptions } from './outlier.js';
import { backoffDelay, maxTries, retryableFailure, retryableStatus, type RetryOptions } from './retry.js';

export type { BalancePolicy } from './balancer.js';
export type { BreakerOptions, BreakerState } from './breaker.js';
export type { HealthCheckOptions } from './health.js';
export type { OutlierOptions } from './outlier.js';
export type { RetryOptions } from './retry.js';

export interface ClusterOptions {
  /** One or more endpoints of the same service (e.g. several replicas' sidecars), as origins: `https://127.0.0.1:9001`. */
  origins: string[];
  /** TLS for every endpoint (`undefined` with `http:` origins = plain HTTP); `setTls` swaps it everywhere. */
  tls: ConnectionOptions | undefined;
  /** Per try: connect, then response headers, then each body chunk. */
  timeoutMs: number;
  /** Default `least-request` (power of two choices over endpoints in rotation). */
  balance?: BalancePolicy;
  /** Default `{ attempts: 1, backoffMs: 25 }`. Only safe requests are retried, see retry.ts. */
  retries?: Partial<RetryOptions>;
  /** Default `{ failureThreshold: 5, openMs: 10_000 }`. */
  breaker?: Partial<BreakerOptions>;
  /** Default `{ consecutiveFailures: 5, ejectMs: 30_000, maxEjectedPercent: 50 }`. */
  outlier?: Partial<OutlierOptions>;
  /** Off when absent; otherwise defaults `{ intervalMs: 5000, timeoutMs: 1000, unhealthyAfter: 2, healthyAfter: 2 }`. */
  healthCheck?: Partial<HealthCheckOptions> & { path: string };
  /** Requests in flight across the cluster; one more is refused at once (PCL_ERR_CONCURRENCY_LIMIT). Default: no limit. */
  maxConcurrent?: number;
  /** Default: the system clock. */
  clock?: Clock;
  /** Last say over response headers (the gateway's security headers); default: as filtered. */
  shapeResponse?: ResponseShaper;
}

export interface ClusterRequest extends ForwardRequest {
  /** A buffered body (replayable); when absent, the IncomingMessage body is streamed (then not replayable). */
  body?: Buffer;
}

/** One endpoint as `/metrics` shows it. */
export interface EndpointState {
  origin: string;
  healthy: boolean;
  /** Present while the endpoint is ejected: clock time it comes back. */
  ejectedUntil?: number;
  inFlight: number;
}

/** The cluster as `/metrics` shows it. */
export interface ClusterState {
  breaker: BreakerState;
  endpoints: EndpointState[];
  inFlight: number;
}

export class UpstreamCluster {
  private readonly endpoints: Endpoint[];
  private readonly clock: Clock;
  private readonly balancer: Balancer;
  private readonly breaker: CircuitBreaker;
  private readonly outlier: OutlierDetector;
  private readonly health: HealthChecker | undefined;
  private readonly retry: RetryOptions;
  private readonly maxConcurrent: number;
  private inFlight = 0;

  /** Throws PCL_ERR_INVALID_ARGUMENT on an empty origin list or a non-positive limit. */
  constructor(o: ClusterOptions) {
    if (o.origins.length === 0) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', 'an upstream cluster needs at least one origin');
    positive('timeoutMs', o.timeoutMs);
    this.clock = o.clock ?? systemClock;
    this.retry = { attempts: o.retries?.attempts ?? 1, backoffMs: o.retries?.backoffMs ?? 25 };
    atLeastZero('retries.attempts', this.retry.attempts);
    atLeastZero('retries.backoffMs', this.retry.backoffMs);
    const breaker = { failureThreshold: o.breaker?.failureThreshold ?? 5, openMs: o.breaker?.openMs ?? 10_000 };
    positive('breaker.failureThreshold', breaker.failureThreshold);
    positive('breaker.openMs', breaker.openMs);
    const outlier = { consecutiveFailures: o.outlier?.consecutiveFailures ?? 5, ejectMs: o.outlier?.ejectMs ?? 30_000, maxEjectedPercent: o.outlier?.maxEjectedPercent ?? 50 };
    positive('outlier.consecutiveFailures', outlier.consecutiveFailures);
    positive('outlier.ejectMs', outlier.ejectMs);
    atLeastZero('outlier.maxEjectedPercent', outlier.maxEjectedPercent);
    this.maxConcurrent = o.maxConcurrent ?? Infinity;
    positive('maxConcurrent', this.maxConcurrent);

    this.endpoints = o.origins.map((origin) => newEndpoint(origin, new Upstream(origin, o.tls, o.timeoutMs, o.shapeResponse)));
    this.balancer = new Balancer(this.endpoints, o.balance ?? 'least-request');
    this.breaker = new CircuitBreaker(breaker, this.clock);
    this.outlier = new OutlierDetector(this.endpoints, outlier);
    if (o.healthCheck) {
      const h = { path: o.healthCheck.path, intervalMs: o.healthCheck.intervalMs ?? 5000, timeoutMs: o.healthCheck.timeoutMs ?? 1000, unhealthyAfter: o.healthCheck.unhealthyAfter ?? 2, healthyAfter: o.healthCheck.healthyAfter ?? 2 };
      if (!h.path.startsWith('/')) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', 'healthCheck.path must start with /');
      positive('healthCheck.intervalMs', h.intervalMs);
      positive('healthCheck.timeoutMs', h.timeoutMs);
      positive('healthCheck.unhealthyAfter', h.unhealthyAfter);
      positive('healthCheck.healthyAfter', h.healthyAfter);
      this.health = new HealthChecker(this.endpoints, h, this.clock);
      this.health.start();
    }
  }

  /**
   * Sends the request to one endpoint, retrying elsewhere when safe, and relays the accepted answer.
   * Resolves with the status relayed. Rejects, with nothing written to the client, with
   * PCL_ERR_CONCURRENCY_LIMIT or PCL_ERR_CIRCUIT_OPEN (no endpoint touched), or with the last try's
   * PCL_ERR_UPSTREAM_UNAVAILABLE / PCL_ERR_UPSTREAM_TIMEOUT.
   */
  async forward(req: IncomingMessage, res: ServerResponse, f: ClusterRequest, requestId: string, onHeaders?: (h: Record<string, string | string[] | undefined>) => void): Promise<number> {
    if (this.inFlight >= this.maxConcurrent) {
      throw new PortcullisError('PCL_ERR_CONCURRENCY_LIMIT', `upstream cluster at its limit of ${this.maxConcurrent} requests in flight`);
    }
    const admission = this.breaker.admit();
    if (admission === REFUSED) throw new PortcullisError('PCL_ERR_CIRCUIT_OPEN', 'upstream circuit breaker is open');
    this.inFlight++;
    try {
      return await this.tries(req, res, f, requestId, onHeaders);
    } finally {
      this.inFlight--;
      if (admission === PROBE) this.breaker.endProbe();
    }
  }

  /**
   * The endpoint for a long-lived tunnel (a WebSocket), chosen like a request's first try: healthy
   * and not ejected first, balanced by the cluster's policy. Refused while the breaker is open.
   * Tunnels are not counted in flight: they would hold least-request's count for hours.
   */
  tunnelOrigin(): string {
    if (this.breaker.state() === 'open') throw new PortcullisError('PCL_ERR_CIRCUIT_OPEN', 'upstream circuit breaker is open');
    return (this.endpoints[this.balancer.pick(this.clock.now())] as Endpoint).origin; // pick() returns a valid index
  }

  /** New TLS material for every endpoint (certificate rotation); in-flight requests finish on the old pools. */
  setTls(tls: ConnectionOptions): void {
    for (const e of this.endpoints) e.upstream.setTls(tls);
  }

  /** For /metrics: per endpoint state and in-flight, breaker state. */
  state(): ClusterState {
    const now = this.clock.now();
    return {
      breaker: this.breaker.state(),
      endpoints: this.endpoints.map((e) => ({ origin: e.origin, healthy: e.healthy, ...(e.ejectedUntil > now ? { ejectedUntil: e.ejectedUntil } : {}), inFlight: e.inFlight })),
      inFlight: this.inFlight,
    };
  }

  /** Runs one round of health checks now (or joins the one in progress); resolves at once without health checks. */
  runHealthChecks(): Promise<void> {
    return this.health ? this.health.run() : Promise.resolve();
  }

  /** Stops health checks and closes every pool once its in-flight requests are done. */
  async close(): Promise<void> {
    this.health?.stop();
    await Promise.all(this.endpoints.map((e) => e.upstream.close()));
  }

  private async tries(req: IncomingMessage, res: ServerResponse, f: ClusterRequest, requestId: string, onHeaders: ((h: Record<string, string | string[] | undefined>) => void) | undefined): Promise<number> {
    const method = f.method;
    const limit = maxTries(method, f.body !== undefined || !hasStreamedBody(req), this.retry);
    let tried: number[] | undefined; // allocated only when a retry happens
    for (let t = 1; ; t++) {
      const i = this.balancer.pick(this.clock.now(), tried);
      const ep = this.endpoints[i] as Endpoint; // pick() returns a valid index: there is at least one endpoint
      ep.inFlight++;
      let answer: UpstreamAnswer;
      try {
        answer = await ep.upstream.request(req, f);
      } catch (err) {
        ep.inFlight--;
        const failure = err instanceof UpstreamFailure ? err : new UpstreamFailure('PCL_ERR_UPSTREAM_UNAVAILABLE', `upstream ${ep.origin} failed`, 'reset', err);
        if (failure.kind !== 'request') this.failed(ep);
        if (t < limit && retryableFailure(failure.kind, method) && this.mayRetry(res)) {
          (tried ??= []).push(i);
          await this.backoff(t);
          continue;
        }
        throw failure;
      }
      const status = answer.statusCode;
      if (status === 503) this.failed(ep);
      else if (status !== 502 && status !== 504) this.succeeded(ep); // 502/504: neither, see the header
      if (t < limit && retryableStatus(status, method) && this.mayRetry(res)) {
        ep.inFlight--;
        answer.discard();
        (tried ??= []).push(i);
        await this.backoff(t);
        continue;
      }
      try {
        return await ep.upstream.relay(res, answer, requestId, onHeaders);
      } finally {
        ep.inFlight--;
      }
    }
  }

  private failed(ep: Endpoint): void {
    this.breaker.onFailure();
    this.outlier.onFailure(ep, this.clock.now());
  }

  private succeeded(ep: Endpoint): void {
    this.breaker.onSuccess();
    this.outlier.onSuccess(ep);
  }

  /** Nothing written to the client, the client still there, and the breaker not (re-)opened by now. */
  private mayRetry(res: ServerResponse): boolean {
    return !res.headersSent && !res.destroyed && this.breaker.state() !== 'open';
  }

  private backoff(retry: number): Promise<void> {
    if (this.retry.backoffMs === 0) return Promise.resolve();
    return new Promise((resolve) => { this.clock.setTimer(backoffDelay(retry, this.retry.backoffMs), resolve); });
  }
}

function positive(name: string, v: number): void {
  if (!(v > 0)) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `upstream cluster option ${name} must be positive`);
}

function atLeastZero(name: string, v: number): void {
  if (!(v >= 0) || !Number.isFinite(v)) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `upstream cluster option ${name} must be zero or more`);
}
