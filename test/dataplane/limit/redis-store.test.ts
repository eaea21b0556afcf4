// RedisLimitStore against the real Redis: GCRA with the server's clock, a limit shared by two
// stores (two replicas), atomicity under 200 concurrent takes, TTLs, and hashed keys.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Redis } from 'ioredis';
import { RedisLimitStore } from '../../../src/dataplane/limit/stores.js';
import { RateLimiter } from '../../../src/dataplane/limit/limiter.js';
import { REDIS_URL, cleanUp, inspector, keysUnder, testPrefix } from './redis-helpers.js';

const HOUR = 3_600_000;
const prefix = testPrefix();
const opened: RedisLimitStore[] = [];
let redis: Redis | undefined;

/** The inspecting client; the before() hook failing (Redis down) fails every test. */
function inspect(): Redis {
  assert.ok(redis, 'Redis is not reachable');
  return redis;
}

async function store(o: { commandTimeoutMs?: number } = {}): Promise<RedisLimitStore> {
  const s = new RedisLimitStore({ url: REDIS_URL, keyPrefix: prefix, commandTimeoutMs: o.commandTimeoutMs ?? 2000 });
  opened.push(s);
  await s.waitReady();
  return s;
}

before(async () => {
  redis = await inspector();
});

after(async () => {
  await Promise.all(opened.map((s) => s.close()));
  if (!redis) return;
  await cleanUp(redis, prefix);
  assert.deepEqual(await keysUnder(redis, prefix), []);
  await redis.quit();
});

test('rate 1/hour burst 3: 3 allowed, the 4th refused for about an hour; key TTL = reset time', async () => {
  const s = await store();
  const p = { emissionIntervalMs: HOUR, burst: 3 };
  const rs = [];
  for (let i = 0; i < 4; i++) rs.push(await s.take('hourly', p, 1));
  assert.deepEqual(rs.map((r) => r.allowed), [true, true, true, false]);
  assert.deepEqual(rs.map((r) => r.remaining), [2, 1, 0, 0]);
  const refused = rs[3];
  assert.ok(refused);
  assert.ok(refused.retryAfterMs > HOUR - 10_000 && refused.retryAfterMs <= HOUR, `retryAfter ${refused.retryAfterMs}`);
  assert.ok(refused.resetMs > 3 * HOUR - 10_000 && refused.resetMs <= 3 * HOUR, `reset ${refused.resetMs}`);
  const ttl = await inspect().pttl(`${prefix}hourly`);
  assert.ok(ttl > 3 * HOUR - 10_000 && ttl <= 3 * HOUR, `pttl ${ttl}`);
});

test('two stores (two replicas, two connections) share one limit', async () => {
  const [a, b] = [await store(), await store()];
  const p = { emissionIntervalMs: HOUR, burst: 3 };
  assert.equal((await a.take('shared', p, 1)).allowed, true);
  assert.equal((await a.take('shared', p, 1)).allowed, true);
  assert.equal((await b.take('shared', p, 1)).allowed, true);
  assert.equal((await b.take('shared', p, 1)).allowed, false);
  assert.equal((await a.take('shared', p, 1)).allowed, false);
});

test('atomic under 200 concurrent takes: exactly burst allowed', async () => {
  const [a, b] = [await store(), await store()];
  const p = { emissionIntervalMs: HOUR, burst: 50 };
  const results = await Promise.all(Array.from({ length: 200 }, (_, i) => (i % 2 === 0 ? a : b).take('race', p, 1)));
  assert.equal(results.filter((r) => r.allowed).length, 50);
  const remainings = results.filter((r) => r.allowed).map((r) => r.remaining).sort((x, y) => x - y);
  assert.deepEqual(remainings, Array.from({ length: 50 }, (_, i) => i), 'each unit handed out once');
});

test('cost is applied; a cost above burst is refused with an unbounded retry', async () => {
  const s = await store();
  const p = { emissionIntervalMs: HOUR, burst: 3 };
  const big = await s.take('cost', p, 4);
  assert.equal(big.allowed, false);
  assert.equal(big.retryAfterMs, Number.POSITIVE_INFINITY);
  assert.equal((await s.take('cost', p, 2)).remaining, 1);
  assert.equal((await s.take('cost', p, 2)).allowed, false);
});

test('keys are prefixed and hashed: no API key or huge principal lands in Redis in clear', async () => {
  const s = await store();
  const lim = new RateLimiter({
    rules: [
      { id: 'per-key', key: 'apikey', rate: 10, per: 'hour' },
      { id: 'per-user', key: 'principal', rate: 10, per: 'hour' },
      { id: 'per-ip', key: 'address', rate: 10, per: 'hour' },
    ],
    store: s,
  });
  const apiKey = 'pcl_live_7c1d0e4b9a2f4c3e8d6b5a4f3e2d1c0b';
  const principal = `user:${'p'.repeat(50_000)}`;
  const d = await lim.check({ routeId: 'r', apiKey, principal, address: '192.0.2.7' });
  assert.equal(d?.allowed, true);
  assert.equal(d?.degraded, undefined);
  const keys = (await keysUnder(inspect(), prefix)).filter((k) => /:(apikey|principal|address):/.test(k)).sort();
  assert.equal(keys.length, 3);
  for (const k of keys) {
    assert.ok(!k.includes(apiKey) && !k.includes('pcl_live_'), 'API key in clear');
    assert.ok(k.length < prefix.length + 64, `key too long: ${k.length}`);
  }
  assert.match(keys[0] ?? '', /:per-ip:address:192\.0\.2\.7$/);
  assert.match(keys[1] ?? '', /:per-key:apikey:~[A-Za-z0-9_-]{22}$/);
  assert.match(keys[2] ?? '', /:per-user:principal:~[A-Za-z0-9_-]{22}$/);
});

test('a closed store refuses to take', async () => {
  const s = await store();
  await s.close();
  await assert.rejects(s.take('x', { emissionIntervalMs: 1000, burst: 1 }, 1), { code: 'PCL_ERR_RATE_LIMIT_UNAVAILABLE' });
});
