// A background job that runs in passes on the injected clock: one timer, passes one after another
// (a pass never overlaps the previous one), the next delay asked after each pass. The KMS, the
// signing-key and the CA rotation schedulers all run on it.
import type { Clock, Timer } from './clock.js';

export class PassTimer {
  private timer: Timer | undefined;
  private running = false;
  private pass: Promise<void> = Promise.resolve();

  /**
   * `delay`: ms until the next pass, or undefined for none until `arm()` is called again.
   * `run`: one pass; it must not reject (failures are the job's to log and retry).
   */
  constructor(private readonly clock: Clock, private readonly delay: () => number | undefined, private readonly run: () => Promise<void>) {}

  start(): void {
    this.running = true;
    this.arm();
  }

  stop(): void {
    this.running = false;
    this.timer?.cancel();
    this.timer = undefined;
  }

  /** The pass in progress, if any (tests and shutdown wait for it). */
  settled(): Promise<void> {
    return this.pass;
  }

  /** (Re)computes the next pass; call after anything that changes when it is due. */
  arm(): void {
    if (!this.running) return;
    this.timer?.cancel();
    this.timer = undefined;
    const ms = this.delay();
    if (ms === undefined) return;
    this.timer = this.clock.setTimer(Math.max(0, ms), () => {
      this.timer = undefined;
      // A timer re-armed during a pass waits for it.
      this.pass = this.pass.then(() => this.run()).finally(() => this.arm());
    });
  }
}
