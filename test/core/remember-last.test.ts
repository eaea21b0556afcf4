// rememberLast: the last answer is reused for the same argument only, and a throw is not remembered.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rememberLast } from '../../src/core/remember-last.js';

test('the answer for the last argument is reused; another argument, or a throw, asks again', () => {
  let calls = 0;
  const half = rememberLast((n: number) => {
    calls++;
    if (n < 0) throw new Error('negative');
    return n / 2;
  });
  assert.equal(half(4), 2);
  assert.equal(half(4), 2);
  assert.equal(calls, 1);
  assert.equal(half(6), 3);
  assert.equal(half(4), 2);
  assert.equal(calls, 3, 'only the last argument is remembered');
  assert.throws(() => half(-1), /negative/);
  assert.throws(() => half(-1), /negative/);
  assert.equal(calls, 5, 'a throw is asked again');
  assert.equal(half(4), 2);
  assert.equal(calls, 5, 'the last answer survives a throw');
});
