// Time as a dependency, so expiry and rotation are tested with a fake clock, never with sleeps.
import { rememberLast } from './remember-last.js';

export interface Timer {
  cancel(): void;
}

export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
  /** Runs `fn` once after `ms` milliseconds of this clock's time. */
  setTimer(ms: number, fn: () => void): Timer;
}

/**
 * `new Date(ms).toISOString()`, remembered for the last millisecond asked: the data plane stamps
 * every request, and a busy one handles several in the same millisecond.
 */
export const isoTime: (ms: number) => string = rememberLast((ms: number) => new Date(ms).toISOString());

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimer(ms, fn) {
    // Node caps timers at 2^31-1 ms; longer waits re-arm themselves.
    const MAX = 2 ** 31 - 1;
    let handle: NodeJS.Timeout;
    let cancelled = false;
    const arm = (left: number): void => {
      handle = setTimeout(() => {
        if (cancelled) return;
        if (left > MAX) arm(left - MAX);
        else fn();
      }, Math.min(left, MAX));
      handle.unref();
    };
    arm(Math.max(0, ms));
    return { cancel: () => { cancelled = true; clearTimeout(handle); } };
  },
};

/** A clock that moves only when told to; timers fire in due order during `advance`. */
export class FakeClock implements Clock {
  private current: number;
  private timers: { at: number; seq: number; fn: () => void; live: boolean }[] = [];
  private seq = 0;

  constructor(start = Date.now()) {
    this.current = start;
  }

  now(): number {
    return this.current;
  }

  setTimer(ms: number, fn: () => void): Timer {
    const t = { at: this.current + Math.max(0, ms), seq: this.seq++, fn, live: true };
    this.timers.push(t);
    return { cancel: () => { t.live = false; } };
  }

  /** Moves time forward, firing due timers in order (each sees `now()` at its own due time). */
  async advance(ms: number): Promise<void> {
    const target = this.current + ms;
    for (;;) {
      const due = this.timers
        .filter((t) => t.live && t.at <= target)
        .sort((a, b) => a.at - b.at || a.seq - b.seq)[0];
      if (!due) break;
      due.live = false;
      this.current = Math.max(this.current, due.at);
      due.fn();
      // Let promise chains started by the timer run before the next one fires.
      await new Promise((r) => setImmediate(r));
    }
    this.timers = this.timers.filter((t) => t.live);
    this.current = target;
  }

  pendingTimers(): number {
    return this.timers.filter((t) => t.live).length;
  }
}
