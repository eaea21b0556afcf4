// Scheduled rotation of the token signing keys. Every `reloadMs` a pass re-reads the keys from the
// store (so a replica learns of another's rotation within that time and signs with the new key),
// rotates when the current key has signed for `periodMs`, and prunes removed keys. The due time
// is derived from the stored log (the current key's activation), so a restart does not reset the
// schedule and every replica computes the same one; when several are due together, the store's
// insert-only log lets exactly one rotation through and the others reload its outcome.
import { systemClock, type Clock } from '../core/clock.js';
import { PassTimer } from '../core/pass-timer.js';
import { asPortcullisError, PortcullisError } from '../core/errors.js';
import { publishAudit } from '../core/events.js';
import { silentLogger, type Logger } from '../core/log.js';
import type { RotationResult, SigningKeys } from './signing-keys.js';

/** Default rotation period: 30 days. */
export const DEFAULT_ROTATION_PERIOD_MS = 30 * 24 * 3_600_000;

export interface KeyRotationSchedulerOptions {
  keys: SigningKeys;
  /** Default: the system clock. */
  clock?: Clock;
  /** How long a key signs before it is rotated out. Default 30 days; at least the keys' publish lead. */
  periodMs?: number;
  /**
   * How often the keys are re-read from the store. Default: the keys' replicaLagMs (10 s), and never
   * more: the retired key's time in the JWKS counts on replicas learning of a rotation that fast.
   */
  reloadMs?: number;
  logger?: Logger;
}

export class KeyRotationScheduler {
  private readonly keys: SigningKeys;
  private readonly clock: Clock;
  private readonly logger: Logger;
  /** Rotation period in ms. */
  readonly periodMs: number;
  /** Reload interval in ms. */
  readonly reloadMs: number;
  private readonly passes: PassTimer;
  /** The due time whose failure was already audited, so a retry every reload is not audited again. */
  private auditedFailure: number | undefined;

  constructor(o: KeyRotationSchedulerOptions) {
    this.keys = o.keys;
    this.clock = o.clock ?? systemClock;
    this.logger = o.logger ?? silentLogger;
    this.periodMs = o.periodMs ?? DEFAULT_ROTATION_PERIOD_MS;
    this.reloadMs = o.reloadMs ?? o.keys.replicaLagMs;
    if (!Number.isSafeInteger(this.periodMs) || this.periodMs < Math.max(1, o.keys.publishLeadMs)) {
      throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `periodMs must be a whole number of milliseconds of at least the publish lead (${o.keys.publishLeadMs} ms)`);
    }
    if (!Number.isSafeInteger(this.reloadMs) || this.reloadMs < 1 || this.reloadMs > o.keys.replicaLagMs) {
      throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `reloadMs must be 1..${o.keys.replicaLagMs} ms (the keys' replicaLagMs)`);
    }
    // Wake at the due time when it comes before the next reload; once past due, retry at the reload pace.
    this.passes = new PassTimer(this.clock, () => {
      const now = this.clock.now();
      const due = this.nextDue();
      return due > now ? Math.min(this.reloadMs, due - now) : this.reloadMs;
    }, () => this.tick());
  }

  /** When the current key is due to be rotated out (ms). */
  nextDue(): number {
    return this.keys.activatedAt() + this.periodMs;
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

  /** One pass: reload, rotate if due, prune. Never rejects: failures are logged (and audited) and retried at the next pass. */
  async tick(): Promise<void> {
    try {
      await this.keys.reload();
      const due = this.nextDue();
      if (this.clock.now() >= due) {
        try {
          const r = await this.keys.rotate({ by: 'scheduler' });
          if (r.rotated) this.audit('success', r);
          this.logger.info({ from: r.from, to: r.to, next: r.next, retireAt: r.retireAt, rotated: r.rotated }, r.rotated ? 'signing key rotated' : 'signing key rotated by another replica');
        } catch (err) {
          const e = asPortcullisError(err);
          this.logger.warn({ code: e.code, err: e.message }, 'scheduled signing-key rotation failed; retrying at the next pass');
          if (this.auditedFailure !== due) {
            this.auditedFailure = due;
            this.audit('failure', undefined, e.code);
          }
        }
      }
      const pruned = await this.keys.prune();
      if (pruned.length > 0) this.logger.info({ kids: pruned }, 'removed signing keys deleted');
    } catch (err) {
      const e = asPortcullisError(err);
      this.logger.error({ code: e.code, err: e.message }, 'signing keys could not be reloaded');
    }
  }



  private audit(outcome: 'success' | 'failure', r?: RotationResult, code?: string): void {
    publishAudit({
      type: 'admin', time: new Date(this.clock.now()).toISOString(), component: 'control', action: 'keys.rotate', outcome,
      who: { sub: 'scheduler' },
      detail: r ? { from: r.from, to: r.to, next: r.next, force: false, scheduled: true, retireAt: r.retireAt } : { scheduled: true, code: code ?? 'PCL_ERR_INTERNAL' },
    });
  }
}
