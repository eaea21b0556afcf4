// Scheduled rotation, apart from the key manager (SPIRE keeps its rotator separate too): one
// timer on the injected clock for the earliest due keyring, re-armed after every change.
import type { Clock, Timer } from '../core/clock.js';

export interface RotationTarget {
  /** Earliest time (ms) a keyring is due, or undefined when none is scheduled. */
  nextDue(): number | undefined;
  /** Rotates every keyring due at `now`; never rejects (failures are audited and retried later). */
  rotateDue(now: number): Promise<void>;
}

export class RotationScheduler {
  private timer: Timer | undefined;
  private running = false;
  private pass: Promise<void> = Promise.resolve();

  constructor(private readonly clock: Clock, private readonly target: RotationTarget) {}

  start(): void {
    this.running = true;
    this.arm();
  }

  stop(): void {
    this.running = false;
    this.timer?.cancel();
    this.timer = undefined;
  }

  /** The rotation pass in progress, if any (tests and shutdown wait for it). */
  settled(): Promise<void> {
    return this.pass;
  }

  /** Called after anything that may change the earliest due time. */
  arm(): void {
    if (!this.running) return;
    this.timer?.cancel();
    this.timer = undefined;
    const due = this.target.nextDue();
    if (due === undefined) return;
    this.timer = this.clock.setTimer(Math.max(0, due - this.clock.now()), () => {
      this.timer = undefined;
      // Passes run one after another: a timer re-armed during a pass waits for it.
      this.pass = this.pass.then(() => this.target.rotateDue(this.clock.now())).finally(() => this.arm());
    });
  }
}
