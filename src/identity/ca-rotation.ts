// Scheduled succession of the CA's roots (docs/workload-identity.md). Every `reloadMs` a pass
// re-reads the roots from the store (so a replica learns of another's successor within that time),
// creates the newest root's successor once it is at half its life, deletes the wrapped keys of roots
// that left the bundle, and reports a changed trust bundle (a successor published, an old root
// dropped) to `onBundleChange`, e.g. to rewrite the ca.pem the CLI trusts. The due time comes from
// the stored root itself, so restarts do not reset it and every replica computes the same one.
import { systemClock, type Clock } from '../core/clock.js';
import { PassTimer } from '../core/pass-timer.js';
import { asPortcullisError, PortcullisError } from '../core/errors.js';
import { publishAudit } from '../core/events.js';
import { silentLogger, type Logger } from '../core/log.js';
import type { CaRotationResult, CertificateAuthority } from './ca.js';

export interface CaRotationSchedulerOptions {
  ca: CertificateAuthority;
  /** Default: the system clock. */
  clock?: Clock;
  /** How often the roots are re-read. Default and maximum: the CA's replicaLagMs (10 s), which the bundle timeline counts on. */
  reloadMs?: number;
  /** Called with the new bundle whenever it differs from the last pass's (and once at the first pass). */
  onBundleChange?: (trustBundlePem: string) => void;
  logger?: Logger;
}

export class CaRotationScheduler {
  private readonly ca: CertificateAuthority;
  private readonly clock: Clock;
  private readonly logger: Logger;
  /** Reload interval in ms. */
  readonly reloadMs: number;
  private readonly passes: PassTimer;
  private lastBundle: string | undefined;

  constructor(private readonly o: CaRotationSchedulerOptions) {
    this.ca = o.ca;
    this.clock = o.clock ?? systemClock;
    this.logger = o.logger ?? silentLogger;
    this.reloadMs = o.reloadMs ?? Math.max(1, o.ca.replicaLagMs);
    if (!Number.isSafeInteger(this.reloadMs) || this.reloadMs < 1 || this.reloadMs > Math.max(1, o.ca.replicaLagMs)) {
      throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `reloadMs must be 1..${Math.max(1, o.ca.replicaLagMs)} ms (the CA's replicaLagMs)`);
    }
    // Wake at the due time when it comes before the next reload; once past due, retry at the reload pace.
    this.passes = new PassTimer(this.clock, () => {
      const now = this.clock.now();
      const due = this.ca.successorDueAt();
      return due > now ? Math.min(this.reloadMs, due - now) : this.reloadMs;
    }, () => this.tick());
  }

  start(): void {
    this.passes.start();
  }

  stop(): void {
    this.passes.stop();
  }

  /** The pass in progress, if any (tests and shutdown wait for it). */
  settled(): Promise<void> {
    return this.passes.settled();
  }

  /** One pass: reload, create a successor when due, prune, report a changed bundle. Never rejects: failures are logged and retried at the next pass. */
  async tick(): Promise<void> {
    try {
      const r = await this.ca.maintain();
      if (r) this.report(r, 'scheduler');
      const pruned = await this.ca.prune();
      if (pruned.length > 0) this.logger.info({ generations: pruned }, 'dropped CA roots deleted');
    } catch (err) {
      const e = asPortcullisError(err);
      this.logger.error({ code: e.code, err: e.message }, 'CA rotation pass failed; retrying at the next pass');
    }
    this.checkBundle();
  }

  /** Logs and audits a successor's creation (also used by the admin API for a manual rotation). */
  report(r: CaRotationResult, by: string, requestId?: string): void {
    const s = r.successor;
    this.logger.info({ generation: s.generation, activateAt: s.activateAt, created: r.created }, r.created ? 'CA successor published' : 'CA successor already published');
    if (!r.created) return;
    publishAudit({
      type: 'admin', time: new Date(this.clock.now()).toISOString(), ...(requestId ? { requestId } : {}), component: 'control', action: 'ca.rotate', outcome: 'success',
      who: { sub: by }, detail: { generation: s.generation, serial: s.serial, activateAt: s.activateAt, notAfter: s.notAfter },
    });
    this.checkBundle();
  }

  private checkBundle(): void {
    const bundle = this.ca.trustBundlePem();
    if (bundle === this.lastBundle) return;
    this.lastBundle = bundle;
    try {
      this.o.onBundleChange?.(bundle);
    } catch (err) {
      this.logger.error({ err: asPortcullisError(err).message }, 'trust bundle change handler failed');
      this.lastBundle = undefined; // try again at the next pass
    }
  }


}
