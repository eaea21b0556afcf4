// ConcurrencyLimiter: a cap on in-flight requests with idempotent release.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConcurrencyLimiter } from '../../../src/dataplane/limit/concurrency.js';

test('refuses beyond max and frees a slot on release', () => {
  const c = new ConcurrencyLimiter(2);
  const r1 = c.tryAcquire();
  const r2 = c.tryAcquire();
  assert.ok(r1 && r2);
  assert.equal(c.inFlight, 2);
  assert.equal(c.tryAcquire(), null);
  r1();
  assert.equal(c.inFlight, 1);
  const r3 = c.tryAcquire();
  assert.ok(r3);
  assert.equal(c.tryAcquire(), null);
});

test('release is idempotent: a double release frees one slot only', () => {
  const c = new ConcurrencyLimiter(1);
  const r = c.tryAcquire();
  assert.ok(r);
  r();
  r();
  assert.equal(c.inFlight, 0);
  assert.ok(c.tryAcquire());
  assert.equal(c.tryAcquire(), null, 'the second release did not create a spare slot');
});

test('max must be an integer >= 1', () => {
  for (const bad of [0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
    assert.throws(() => new ConcurrencyLimiter(bad), { code: 'PCL_ERR_INVALID_ARGUMENT' });
  }
});
