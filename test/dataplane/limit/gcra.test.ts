// GCRA test vectors: burst, refill, full reset, cost, and float noise at epoch-sized times.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { gcra, type GcraParams } from '../../../src/dataplane/limit/gcra.js';

const T0 = 1_700_000_000_000; // epoch-sized, as in production
const tenPerSecondBurst5: GcraParams = { emissionIntervalMs: 100, burst: 5 };

/** Runs `n` takes at `now`, threading the TAT. */
function takes(tat: number | undefined, now: number, n: number, p = tenPerSecondBurst5) {
  const out = [];
  for (let i = 0; i < n; i++) {
    const r = gcra(tat, now, p);
    if (r.allowed) tat = r.tat;
    out.push(r);
  }
  return { tat, out };
}

test('rate 10/s burst 5: 5 immediate requests allowed, the 6th refused for 100 ms', () => {
  const { tat, out } = takes(undefined, T0, 6);
  assert.deepEqual(out.map((r) => r.allowed), [true, true, true, true, true, false]);
  assert.deepEqual(out.map((r) => r.remaining), [4, 3, 2, 1, 0, 0]);
  assert.deepEqual(out.slice(0, 5).map((r) => r.retryAfterMs), [0, 0, 0, 0, 0]);
  assert.equal(out[5]?.retryAfterMs, 100);
  assert.equal(out[4]?.resetMs, 500);
  assert.equal(out[5]?.resetMs, 500);
  assert.equal(tat, T0 + 500);
  // A refusal returns the TAT unchanged: refused requests do not push the limit further out.
  assert.equal(out[5]?.tat, T0 + 500);
});

test('after 100 ms exactly one more request is allowed; 99 ms is not enough', () => {
  const { tat } = takes(undefined, T0, 5);
  assert.equal(gcra(tat, T0 + 99, tenPerSecondBurst5).allowed, false);
  assert.equal(gcra(tat, T0 + 99, tenPerSecondBurst5).retryAfterMs, 1);
  const r = gcra(tat, T0 + 100, tenPerSecondBurst5);
  assert.equal(r.allowed, true);
  assert.equal(r.remaining, 0);
  const again = gcra(r.tat, T0 + 100, tenPerSecondBurst5);
  assert.equal(again.allowed, false);
  assert.equal(again.retryAfterMs, 100);
});

test('after 1 s the bucket is full again (5 more at once, not 6)', () => {
  const { tat } = takes(undefined, T0, 6);
  const later = takes(tat, T0 + 1000, 6);
  assert.deepEqual(later.out.map((r) => r.allowed), [true, true, true, true, true, false]);
  assert.equal(later.out[0]?.remaining, 4);
});

test('a request costing more than burst is always refused, even on an idle key', () => {
  const r = gcra(undefined, T0, tenPerSecondBurst5, 6);
  assert.equal(r.allowed, false);
  assert.equal(r.retryAfterMs, Number.POSITIVE_INFINITY);
  assert.equal(r.remaining, 5);
  assert.equal(gcra(undefined, T0 + 3_600_000, tenPerSecondBurst5, 6).allowed, false);
  // cost == burst fits an idle bucket exactly
  const full = gcra(undefined, T0, tenPerSecondBurst5, 5);
  assert.equal(full.allowed, true);
  assert.equal(full.remaining, 0);
});

test('a cost larger than what remains is refused and reports what remains', () => {
  const { tat } = takes(undefined, T0, 3); // 2 left
  const r = gcra(tat, T0, tenPerSecondBurst5, 3);
  assert.equal(r.allowed, false);
  assert.equal(r.remaining, 2);
  assert.equal(r.retryAfterMs, 100);
});

test('a stored TAT in the past is an idle, full bucket', () => {
  const r = gcra(T0 - 10_000, T0, tenPerSecondBurst5);
  assert.equal(r.allowed, true);
  assert.equal(r.remaining, 4);
  assert.equal(r.tat, T0 + 100);
});

test('non-integer intervals at epoch-sized times: exact arrivals allowed, 1 ms early refused', () => {
  const p: GcraParams = { emissionIntervalMs: 1000 / 3, burst: 1 };
  let tat: number | undefined;
  for (let k = 0; k < 3000; k++) {
    const at = T0 + (k * 1000) / 3;
    if (k > 0) assert.equal(gcra(tat, at - 1, p).allowed, false, `request ${k} 1 ms early`);
    const r = gcra(tat, at, p);
    assert.equal(r.allowed, true, `request ${k} on time`);
    tat = r.tat;
  }
});

test('invalid parameters are refused with PCL_ERR_INVALID_ARGUMENT', () => {
  const bad: [GcraParams, number][] = [
    [{ emissionIntervalMs: 0, burst: 1 }, 1],
    [{ emissionIntervalMs: -1, burst: 1 }, 1],
    [{ emissionIntervalMs: Number.NaN, burst: 1 }, 1],
    [{ emissionIntervalMs: 100, burst: 0 }, 1],
    [{ emissionIntervalMs: 100, burst: Number.POSITIVE_INFINITY }, 1],
    [{ emissionIntervalMs: 100, burst: 1 }, 0],
    [{ emissionIntervalMs: 100, burst: 1 }, -1],
  ];
  for (const [p, cost] of bad) {
    assert.throws(() => gcra(undefined, T0, p, cost), { code: 'PCL_ERR_INVALID_ARGUMENT' });
  }
});
