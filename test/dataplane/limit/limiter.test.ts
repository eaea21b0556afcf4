// RateLimiter over an in-process store: several rules, route scoping, missing attributes,
// the most constraining rule, store keys, validation and the RateLimit headers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeClock } from '../../../src/core/clock.js';
import { MemoryLimitStore } from '../../../src/dataplane/limit/stores.js';
import { RateLimiter, rateLimitHeaders, storeKey, type LimitRule } from '../../../src/dataplane/limit/limiter.js';

function limiter(rules: LimitRule[], clock = new FakeClock(1_000_000)) {
  return { clock, lim: new RateLimiter({ rules, store: new MemoryLimitStore({ clock }), clock }) };
}

const perUser: LimitRule = { id: 'per-user', key: 'principal', rate: 2, per: 'second' };
const perIp: LimitRule = { id: 'per-ip', key: 'address', rate: 3, per: 'second' };

test('principal and address rules: either refuses; the decision names the constraining rule', async () => {
  const { lim } = limiter([perUser, perIp]);
  const a1 = await lim.check({ routeId: 'r', principal: 'alice', address: '10.0.0.1' });
  assert.deepEqual(a1, { allowed: true, rule: 'per-user', limit: 2, remaining: 1, resetMs: 500, retryAfterMs: 0 });
  const a2 = await lim.check({ routeId: 'r', principal: 'alice', address: '10.0.0.1' });
  assert.equal(a2?.allowed, true);
  assert.equal(a2?.remaining, 0);
  const a3 = await lim.check({ routeId: 'r', principal: 'alice', address: '10.0.0.1' });
  assert.equal(a3?.allowed, false);
  assert.equal(a3?.rule, 'per-user');
  assert.equal(a3?.retryAfterMs, 500);
  // alice's refused request still counted against the address: 3 of 3 spent
  const b1 = await lim.check({ routeId: 'r', principal: 'bob', address: '10.0.0.1' });
  assert.equal(b1?.allowed, false);
  assert.equal(b1?.rule, 'per-ip');
  const b2 = await lim.check({ routeId: 'r', principal: 'bob', address: '10.0.0.2' });
  assert.equal(b2?.allowed, true);
  // no principal: only the address rule counts
  const anon = await lim.check({ routeId: 'r', address: '10.0.0.3' });
  assert.equal(anon?.rule, 'per-ip');
  assert.equal(anon?.remaining, 2);
});

test('the rule refusing longest is reported when several refuse', async () => {
  const slow: LimitRule = { id: 'slow', key: 'address', rate: 1, per: 'minute' };
  const fast: LimitRule = { id: 'fast', key: 'address', rate: 1, per: 'second' };
  const { lim } = limiter([fast, slow]);
  await lim.check({ routeId: 'r', address: 'a' });
  const d = await lim.check({ routeId: 'r', address: 'a' });
  assert.equal(d?.allowed, false);
  assert.equal(d?.rule, 'slow');
  assert.equal(d?.retryAfterMs, 60_000);
});

test('refill over time with the injected clock', async () => {
  const { lim, clock } = limiter([perUser]);
  const ctx = { routeId: 'r', principal: 'alice', address: 'x' };
  await lim.check(ctx);
  await lim.check(ctx);
  assert.equal((await lim.check(ctx))?.allowed, false);
  await clock.advance(499);
  assert.equal((await lim.check(ctx))?.allowed, false);
  await clock.advance(1);
  assert.equal((await lim.check(ctx))?.allowed, true);
});

test('a rule limited to some routes applies only there; no applicable rule gives null', async () => {
  const orders: LimitRule = { id: 'orders', key: 'route', rate: 1, per: 'minute', routes: ['get-order'] };
  const { lim } = limiter([orders]);
  assert.equal((await lim.check({ routeId: 'get-order', address: 'a' }))?.allowed, true);
  // keyed on the route: a different caller shares the route's counter
  assert.equal((await lim.check({ routeId: 'get-order', address: 'b' }))?.allowed, false);
  assert.equal(await lim.check({ routeId: 'list-orders', address: 'a' }), null);
});

test('a request lacking the keyed attribute is not counted by that rule', async () => {
  const perKey: LimitRule = { id: 'per-key', key: 'apikey', rate: 1, per: 'hour' };
  const perClient: LimitRule = { id: 'per-client', key: 'client', rate: 1, per: 'hour' };
  const { lim } = limiter([perKey, perClient]);
  assert.equal(await lim.check({ routeId: 'r', address: 'a' }), null);
  assert.equal((await lim.check({ routeId: 'r', address: 'a', apiKey: 'k1' }))?.allowed, true);
  assert.equal((await lim.check({ routeId: 'r', address: 'a', apiKey: 'k1' }))?.allowed, false);
  assert.equal((await lim.check({ routeId: 'r', address: 'a', apiKey: 'k2' }))?.allowed, true);
  const c = await lim.check({ routeId: 'r', address: 'a', client: 'app' });
  assert.equal(c?.rule, 'per-client');
  assert.equal(c?.allowed, true);
});

test('burst defaults to rate and can be set lower', async () => {
  const { lim } = limiter([{ id: 'b', key: 'address', rate: 100, per: 'minute', burst: 20 }]);
  let allowed = 0;
  for (let i = 0; i < 25; i++) if ((await lim.check({ routeId: 'r', address: 'a' }))?.allowed) allowed++;
  assert.equal(allowed, 20);
  const { lim: dflt } = limiter([{ id: 'd', key: 'address', rate: 30, per: 'minute' }]);
  allowed = 0;
  for (let i = 0; i < 35; i++) if ((await dflt.check({ routeId: 'r', address: 'a' }))?.allowed) allowed++;
  assert.equal(allowed, 30);
});

test('store keys: <rule>:<kind>:<value>; API keys and long or odd values hashed', () => {
  assert.equal(storeKey('per-ip', 'address', '2001:db8::1'), 'per-ip:address:2001:db8::1');
  assert.equal(storeKey('per-user', 'principal', 'user:alice'), 'per-user:principal:user:alice');
  const hashed = /^~[A-Za-z0-9_-]{22}$/;
  const api = storeKey('k', 'apikey', 'pcl_live_abc');
  assert.match(api.slice('k:apikey:'.length), hashed);
  assert.ok(!api.includes('pcl_live_abc'));
  const long = storeKey('u', 'principal', 'x'.repeat(100_000));
  assert.match(long.slice('u:principal:'.length), hashed);
  assert.match(storeKey('u', 'principal', 'a*b').slice('u:principal:'.length), hashed);
  assert.match(storeKey('u', 'principal', '').slice('u:principal:'.length), hashed);
  // distinct values, distinct keys; a raw value can never look like a hash
  assert.notEqual(storeKey('u', 'principal', 'x'.repeat(65)), storeKey('u', 'principal', 'x'.repeat(66)));
  assert.notEqual(storeKey('u', 'principal', '~abc'), '~abc');
});

test('rules are validated at construction', () => {
  const store = new MemoryLimitStore();
  const bad: LimitRule[][] = [
    [perUser, { ...perIp, id: 'per-user' }],
    [{ ...perUser, rate: 0 }],
    [{ ...perUser, rate: -1 }],
    [{ ...perUser, rate: 1.5 }],
    [{ ...perUser, burst: 0 }],
    [{ ...perUser, id: '' }],
    [{ ...perUser, id: 'a:b' }],
    [{ ...perUser, id: 'a"b' }],
    // Configuration arrives untyped: the limiter re-checks what TypeScript would.
    [{ ...perUser, key: 'header' as LimitRule['key'] }],
    [{ ...perUser, per: 'week' as LimitRule['per'] }],
    [{ ...perUser, routes: [''] }],
  ];
  for (const rules of bad) {
    assert.throws(() => new RateLimiter({ rules, store }), { code: 'PCL_ERR_INVALID_ARGUMENT' }, JSON.stringify(rules));
  }
  assert.throws(() => new RateLimiter({ rules: [perUser], store, onStoreDown: 'open' as 'allow' }), { code: 'PCL_ERR_INVALID_ARGUMENT' });
});

test('headers: RateLimit-Policy and RateLimit (draft -10), Retry-After only on refusal', async () => {
  const rule: LimitRule = { id: 'per-user', key: 'principal', rate: 100, per: 'minute', burst: 20 };
  const { lim } = limiter([rule]);
  const ctx = { routeId: 'r', principal: 'alice', address: 'a' };
  const first = await lim.check(ctx);
  assert.ok(first);
  assert.deepEqual(rateLimitHeaders(first, [rule]), {
    'ratelimit-policy': '"per-user";q=100;w=60',
    'ratelimit': '"per-user";r=19;t=1',
  });
  let last = first;
  for (let i = 0; i < 20; i++) last = (await lim.check(ctx)) ?? last;
  assert.equal(last.allowed, false);
  assert.deepEqual(rateLimitHeaders(last, [rule]), {
    'ratelimit-policy': '"per-user";q=100;w=60',
    'ratelimit': '"per-user";r=0;t=12',
    'retry-after': '1',
  });
  const daily: LimitRule = { id: 'daily', key: 'principal', rate: 2, per: 'day' };
  const h = rateLimitHeaders({ allowed: false, rule: 'daily', limit: 2, remaining: 0, resetMs: 86_400_000, retryAfterMs: 43_200_000.5 }, [daily]);
  assert.equal(h['ratelimit-policy'], '"daily";q=2;w=86400');
  assert.equal(h['retry-after'], '43201');
});
