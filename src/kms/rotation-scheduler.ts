// Scheduled rotation, apart from the key manager (SPIRE keeps its rotator separate too): one
// timer on the injected clock for the earliest due keyring, re-armed after every change.
import type { Clock } from '../core/clock.js';
import { PassTimer } from '../core/pass-timer.js';

export interface RotationTarget {
  /** Earliest time (ms) a keyring is due, or undefined when none is scheduled. */
  nextDue(): number | undefined;
  /** Rotates every keyring due at `now`; never rejects (failures are audited and retried later). */
  rotateDue(now: number): Promise<void>;
}

export class RotationScheduler {
  private readonly passes: PassTimer;

  constructor(clock: Clock, target: RotationTarget) {
    this.passes = new PassTimer(clock, () => {
      const due = target.nextDue();
      return due === undefined ? undefined : due - clock.now();
    }, () => target.rotateDue(clock.now()));
  }

  start(): void {
    this.passes.start();
  }

  stop(): void {
    this.passes.stop();
  }

  /** The rotation pass in progress, if any (tests and shutdown wait for it). */
  settled(): Promise<void> {
    return this.passes.settled();
  }

  /** Called after anything that may change the earliest due time. */
  arm(): void {
    this.passes.arm();
  }
}
