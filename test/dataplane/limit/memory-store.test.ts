// MemoryLimitStore: GCRA over a FakeClock, per-key state, and the bound on keys.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeClock } from '../../../src/core/clock.js';
import { MemoryLimitStore } from '../../../src/dataplane/limit/stores.js';

const p = { emissionIntervalMs: 100, burst: 5 };

async function allowedCount(store: MemoryLimitStore, key: string, n: number): Promise<number> {
  let ok = 0;
  for (let i = 0; i < n; i++) if ((await store.take(key, p, 1)).allowed) ok++;
  return ok;
}

test('refills over time: 5 at once, 1 more after 100 ms, 5 again after 1 s', async () => {
  const clock = new FakeClock(1_000_000);
  const store = new MemoryLimitStore({ clock });
  assert.equal(await allowedCount(store, 'k', 6), 5);
  const refused = await store.take('k', p, 1);
  assert.equal(refused.allowed, false);
  assert.equal(refused.retryAfterMs, 100);
  await clock.advance(100);
  assert.equal(await allowedCount(store, 'k', 2), 1);
  await clock.advance(1000);
  assert.equal(await allowedCount(store, 'k', 6), 5);
  await store.close();
});

test('keys are independent', async () => {
  const store = new MemoryLimitStore({ clock: new FakeClock(0) });
  assert.equal(await allowedCount(store, 'a', 6), 5);
  assert.equal(await allowedCount(store, 'b', 6), 5);
});

test('bounded: a flood of distinct keys keeps at most maxKeys (default 100,000)', async () => {
  const store = new MemoryLimitStore({ clock: new FakeClock(0) });
  for (let i = 0; i < 120_000; i++) await store.take(`flood-${i}`, p, 1);
  assert.equal(store.size, 100_000);
});

test('eviction is least-recently-used: a key in use survives, an idle one goes', async () => {
  const one = { emissionIntervalMs: 60_000, burst: 1 };
  const store = new MemoryLimitStore({ clock: new FakeClock(0), maxKeys: 3 });
  assert.equal((await store.take('victim', one, 1)).allowed, true);
  await store.take('b', one, 1);
  await store.take('c', one, 1);
  assert.equal((await store.take('victim', one, 1)).allowed, false); // touched: now most recent
  await store.take('d', one, 1); // evicts b, the least recently used
  assert.equal(store.size, 3);
  assert.equal((await store.take('victim', one, 1)).allowed, false, 'victim still limited');
  assert.equal((await store.take('b', one, 1)).allowed, true, 'b was forgotten');
});

test('entries expire when their TAT is past; a refusal on a new key stores nothing', async () => {
  const clock = new FakeClock(0);
  const store = new MemoryLimitStore({ clock });
  assert.equal((await store.take('big', p, 6)).allowed, false);
  assert.equal(store.size, 0);
  await store.take('x', p, 1);
  assert.equal(store.size, 1);
  await clock.advance(101);
  // Touching an expired key replaces it by a fresh full bucket.
  const r = await store.take('x', p, 1);
  assert.equal(r.remaining, 4);
  assert.equal(store.size, 1);
});

test('invalid maxKeys and parameters are refused', async () => {
  assert.throws(() => new MemoryLimitStore({ maxKeys: 0 }), { code: 'PCL_ERR_INVALID_ARGUMENT' });
  const store = new MemoryLimitStore();
  await assert.rejects(store.take('k', { emissionIntervalMs: 0, burst: 1 }, 1), { code: 'PCL_ERR_INVALID_ARGUMENT' });
});

test('close empties the store', async () => {
  const store = new MemoryLimitStore({ clock: new FakeClock(0) });
  await store.take('k', p, 1);
  await store.close();
  assert.equal(store.size, 0);
});
