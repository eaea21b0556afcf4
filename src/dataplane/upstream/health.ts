// Active health checks: every `intervalMs` (a Clock timer), GET `path` on each endpoint over its
// own pool, so over the same (m)TLS as real traffic. `unhealthyAfter` failures in a row mark an
// endpoint unhealthy, `healthyAfter` passes mark it healthy again. Endpoints start healthy, and the
// balancer still uses unhealthy ones when no healthy one is left (fail open on health).
import type { Clock, Timer } from '../../core/clock.js';
import type { Endpoint } from './endpoint.js';

export interface HealthCheckOptions {
  /** Path requested with GET; any 2xx passes. */
  path: string;
  /** Time between the starts of two rounds (a round still running when the next is due is not doubled). Default 5000 ms. */
  intervalMs: number;
  /** Per check, until response headers and body are in. Default 1000 ms. */
  timeoutMs: number;
  /** Consecutive failed checks that mark an endpoint unhealthy. Default 2. */
  unhealthyAfter: number;
  /** Consecutive passed checks that mark an unhealthy endpoint healthy. Default 2. */
  healthyAfter: number;
}

export class HealthChecker {
  private timer: Timer | undefined;
  private round: Promise<void> | undefined;
  private stopped = false;

  constructor(private readonly endpoints: readonly Endpoint[], private readonly o: HealthCheckOptions, private readonly clock: Clock) {}

  /** Arms the periodic checks; the first round runs one interval from now. */
  start(): void {
    this.stopped = false;
    this.arm();
  }

  stop(): void {
    this.stopped = true;
    this.timer?.cancel();
    this.timer = undefined;
  }

  /** One round over every endpoint; joins the round in progress if there is one. */
  run(): Promise<void> {
    this.round ??= this.checkAll().finally(() => { this.round = undefined; });
    return this.round;
  }

  private arm(): void {
    if (this.stopped) return;
    this.timer = this.clock.setTimer(this.o.intervalMs, () => {
      this.arm();
      void this.run();
    });
  }

  private async checkAll(): Promise<void> {
    await Promise.all(this.endpoints.map((e) => this.checkOne(e)));
  }

  private async checkOne(e: Endpoint): Promise<void> {
    // The pool's own headers/body timeouts run on real time; this abort runs on the injected clock.
    const abort = new AbortController();
    const t = this.clock.setTimer(this.o.timeoutMs, () => abort.abort());
    const ok = await e.upstream.check(this.o.path, this.o.timeoutMs, abort.signal);
    t.cancel();
    if (ok) {
      e.checkFailures = 0;
      e.checkPasses++;
      if (!e.healthy && e.checkPasses >= this.o.healthyAfter) e.healthy = true;
    } else {
      e.checkPasses = 0;
      e.checkFailures++;
      if (e.healthy && e.checkFailures >= this.o.unhealthyAfter) e.healthy = false;
    }
  }
}
