// What the limiter does when its shared store is down: deny, allow or local, answered fast
// (a Redis on a closed port), once-per-outage reporting, and recovery.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeClock } from '../../../src/core/clock.js';
import { PortcullisError } from '../../../src/core/errors.js';
import type { GcraParams, GcraResult } from '../../../src/dataplane/limit/gcra.js';
import { MemoryLimitStore, RedisLimitStore, type LimitStore } from '../../../src/dataplane/limit/stores.js';
import { RateLimiter, type LimitRule } from '../../../src/dataplane/limit/limiter.js';

const rules: LimitRule[] = [{ id: 'per-ip', key: 'address', rate: 2, per: 'minute' }];
const ctx = { routeId: 'r', address: '198.51.100.1' };
const opened: RedisLimitStore[] = [];

function deadRedis(): RedisLimitStore {
  const s = new RedisLimitStore({ url: 'redis://127.0.0.1:1', keyPrefix: 'pcl-test:down:' });
  opened.push(s);
  return s;
}

after(async () => {
  await Promise.all(opened.map((s) => s.close()));
});

async function timed<T>(fn: () => Promise<T>): Promise<{ ms: number; value: T | undefined; error: unknown }> {
  const start = performance.now();
  try {
    const value = await fn();
    return { ms: performance.now() - start, value, error: undefined };
  } catch (error) {
    return { ms: performance.now() - start, value: undefined, error };
  }
}

test('a RedisLimitStore on a closed port fails fast with PCL_ERR_RATE_LIMIT_UNAVAILABLE', async () => {
  const s = deadRedis();
  for (let i = 0; i < 3; i++) {
    const r = await timed(() => s.take('k', { emissionIntervalMs: 1000, burst: 1 }, 1));
    assert.ok(r.error instanceof PortcullisError);
    assert.equal(r.error.code, 'PCL_ERR_RATE_LIMIT_UNAVAILABLE');
    assert.ok(r.ms < 1000, `took ${r.ms} ms`);
  }
  await assert.rejects(s.waitReady(200), { code: 'PCL_ERR_RATE_LIMIT_UNAVAILABLE' });
});

test("onStoreDown 'deny': 503 PCL_ERR_RATE_LIMIT_UNAVAILABLE within 1 s, reported once", async () => {
  const reported: Error[] = [];
  const lim = new RateLimiter({ rules, store: deadRedis(), onStoreDown: 'deny', onDegraded: (e) => reported.push(e) });
  for (let i = 0; i < 3; i++) {
    const r = await timed(() => lim.check(ctx));
    assert.ok(r.error instanceof PortcullisError, 'refused');
    assert.equal(r.error.code, 'PCL_ERR_RATE_LIMIT_UNAVAILABLE');
    assert.equal(r.error.status, 503);
    assert.ok(r.ms < 1000, `took ${r.ms} ms`);
  }
  assert.equal(reported.length, 1);
});

test("onStoreDown 'allow': served unlimited, marked degraded", async () => {
  const lim = new RateLimiter({ rules, store: deadRedis(), onStoreDown: 'allow' });
  for (let i = 0; i < 5; i++) {
    const r = await timed(() => lim.check(ctx));
    assert.equal(r.error, undefined);
    assert.equal(r.value?.allowed, true);
    assert.equal(r.value?.degraded, 'allow');
    assert.ok(r.ms < 1000, `took ${r.ms} ms`);
  }
});

test("onStoreDown 'local' (the default): limits per replica in memory", async () => {
  const clock = new FakeClock(0);
  const lim = new RateLimiter({ rules, store: deadRedis(), clock });
  const ds = [];
  for (let i = 0; i < 3; i++) {
    const r = await timed(() => lim.check(ctx));
    assert.ok(r.ms < 1000, `took ${r.ms} ms`);
    ds.push(r.value);
  }
  assert.deepEqual(ds.map((d) => d?.allowed), [true, true, false]);
  assert.deepEqual(ds.map((d) => d?.degraded), ['local', 'local', 'local']);
  assert.equal(ds[2]?.rule, 'per-ip');
  assert.equal(ds[2]?.retryAfterMs, 30_000);
});

/** A store that fails while `down` is set, and counts its calls. */
class FlakyStore implements LimitStore {
  down = true;
  calls = 0;
  private readonly inner: MemoryLimitStore;
  constructor(clock: FakeClock) {
    this.inner = new MemoryLimitStore({ clock });
  }
  take(key: string, p: GcraParams, cost: number): Promise<GcraResult> {
    this.calls++;
    return this.down ? Promise.reject(new Error('connection refused')) : this.inner.take(key, p, cost);
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

test('while degraded the store is retried only every storeRetryMs; recovery ends degraded mode', async () => {
  const clock = new FakeClock(0);
  const store = new FlakyStore(clock);
  const reported: Error[] = [];
  const lim = new RateLimiter({ rules, store, clock, storeRetryMs: 1000, onDegraded: (e) => reported.push(e) });
  assert.equal((await lim.check(ctx))?.degraded, 'local');
  assert.equal((await lim.check(ctx))?.degraded, 'local');
  assert.equal(store.calls, 1, 'no second attempt within storeRetryMs');
  store.down = false;
  await clock.advance(999);
  assert.equal((await lim.check(ctx))?.degraded, 'local');
  assert.equal(store.calls, 1);
  await clock.advance(1);
  const back = await lim.check(ctx);
  assert.equal(store.calls, 2);
  assert.equal(back?.degraded, undefined);
  assert.equal(back?.allowed, true);
  assert.equal(reported.length, 1);
  // a second outage is reported again
  store.down = true;
  assert.equal((await lim.check(ctx))?.degraded, 'local');
  assert.equal(reported.length, 2);
  await lim.close();
});

test('an observer that throws does not change the decision', async () => {
  const clock = new FakeClock(0);
  const lim = new RateLimiter({ rules, store: new FlakyStore(clock), clock, onDegraded: () => { throw new Error('boom'); } });
  assert.equal((await lim.check(ctx))?.allowed, true);
});
