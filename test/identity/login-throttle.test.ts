// Login throttling on a FakeClock, on every store adapter (MemoryStore, embedded PGlite, the real
// PostgreSQL): growing delays per (account, network), per source address, the cross-source lock
// that spares known networks, counting at the start of an attempt (parallel bursts, one replica or
// two), and the state surviving a restart because it lives in the store.
import assert from 'node:assert/strict';
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { after, before, beforeEach, describe, test } from 'node:test';
import { FakeClock } from '../../src/core/clock.js';
import { LoginThrottle, sourceAddressKey, sourceNetwork, type LoginAttempt, type LoginThrottleOptions } from '../../src/identity/login-throttle.js';
import { MemoryStore } from '../../src/store/memory.js';
import { PgliteStore } from '../../src/store/pglite.js';
import { NS, type Store } from '../../src/store/store.js';
import { openPg } from '../store/pg-fixture.js';

const T0 = Date.UTC(2030, 0, 1);

function refusedFor(a: LoginAttempt): number {
  assert.equal(a.allowed, false, 'expected a refusal');
  return a.allowed ? 0 : a.retryAfterSeconds;
}

const stageOf = (a: LoginAttempt): string => (a.allowed ? 'allowed' : a.stage);

test('networks: IPv4 /24, IPv6 /64, IPv4-mapped as IPv4; sources: IPv4 address, IPv6 /64', () => {
  assert.equal(sourceNetwork('203.0.113.7'), '203.0.113.0/24');
  assert.equal(sourceNetwork('::ffff:203.0.113.7'), '203.0.113.0/24');
  assert.equal(sourceNetwork('2001:db8:1:2:3:4:5:6'), '2001:db8:1:2::/64');
  assert.equal(sourceNetwork('2001:DB8:1:2::9%eth0'), '2001:db8:1:2::/64');
  assert.equal(sourceNetwork('2001:db8::1'), '2001:db8:0:0::/64');
  assert.equal(sourceNetwork(undefined), 'unknown');
  assert.equal(sourceNetwork('not an address'), 'unknown');
  assert.equal(sourceAddressKey('203.0.113.7'), '203.0.113.7');
  assert.equal(sourceAddressKey('2001:db8:1:2:ffff::1'), '2001:db8:1:2::/64');
});

test('options must be positive integers', () => {
  const store = new MemoryStore();
  assert.throws(() => new LoginThrottle({ store, freeFailures: 0 }), { code: 'PCL_ERR_INVALID_ARGUMENT' });
  assert.throws(() => new LoginThrottle({ store, maxDelayMs: 1.5 }), { code: 'PCL_ERR_INVALID_ARGUMENT' });
});

test('account names reach the store only through the given keyed hash, and forgetting one uses the same hash', async () => {
  const store = new MemoryStore();
  const key = randomBytes(32);
  const hashAccount = (name: string): Promise<string> => Promise.resolve(`hmac:${createHmac('sha256', key).update(name).digest('hex').slice(0, 32)}`);
  const t = new LoginThrottle({ store, clock: new FakeClock(T0), hashAccount });
  const typed = 'Correct-Horse-Battery'; // a password typed into the name field
  await t.attempt(typed, '203.0.113.7');
  const keys = (await store.list(NS.loginThrottle)).map((r) => r.key);
  const expected = (await hashAccount(`login-throttle\0${typed.toLowerCase()}`)).replace(/[^A-Za-z0-9_-]/g, '');
  assert.ok(keys.includes(`a:${expected}`), keys.join(' '));
  const unkeyed = createHash('sha256').update(`login-throttle\0${typed.toLowerCase()}`).digest('base64url');
  assert.ok(keys.every((k) => !k.includes(unkeyed) && !k.toLowerCase().includes(typed.toLowerCase())), 'neither the name nor its plain hash is stored');
  await t.forgetAccount(typed);
  assert.deepEqual((await store.list(NS.loginThrottle)).map((r) => r.key).filter((k) => k.includes(expected)), []);
});

const ADAPTERS: { name: string; open(): Promise<Store> }[] = [
  { name: 'MemoryStore', open: async () => new MemoryStore() },
  { name: 'PgliteStore', open: () => PgliteStore.open() },
  { name: 'PostgresStore', open: () => openPg() },
];

for (const adapter of ADAPTERS) {
  describe(`login throttle on ${adapter.name}`, () => {
    let store: Store;
    let clock: FakeClock;
    const throttle = (o: Partial<LoginThrottleOptions> = {}): LoginThrottle => new LoginThrottle({ store, clock, ...o });

    before(async () => { store = await adapter.open(); });
    after(() => store.close());
    beforeEach(async () => {
      clock = new FakeClock(T0);
      await store.deleteWhere(NS.loginThrottle, {});
    });

    test('after 5 failures from one network the waits grow 2, 4, 8 s … and a refusal is not counted', async () => {
      const t = throttle();
      for (let i = 0; i < 5; i++) assert.equal((await t.attempt('alice', '203.0.113.7')).allowed, true, `free attempt ${i + 1}`);
      assert.equal(refusedFor(await t.attempt('alice', '203.0.113.7')), 2);
      // The same /24 is the same network; case does not make another account.
      assert.equal(refusedFor(await t.attempt('ALICE', '203.0.113.99')), 2);
      await clock.advance(1999);
      assert.equal((await t.attempt('alice', '203.0.113.7')).allowed, false);
      await clock.advance(1);
      assert.equal((await t.attempt('alice', '203.0.113.7')).allowed, true);
      assert.equal(refusedFor(await t.attempt('alice', '203.0.113.7')), 4);
      await clock.advance(4000);
      assert.equal((await t.attempt('alice', '203.0.113.7')).allowed, true);
      assert.equal(refusedFor(await t.attempt('alice', '203.0.113.7')), 8);
      // Refusals in between did not make the wait longer.
      for (let i = 0; i < 10; i++) await t.attempt('alice', '203.0.113.7');
      await clock.advance(8000);
      assert.equal((await t.attempt('alice', '203.0.113.7')).allowed, true);
    });

    test('the delay is capped at 15 minutes', async () => {
      const t = throttle();
      const waits: number[] = [];
      for (let i = 0; i < 40; i++) {
        const a = await t.attempt('bob', '198.51.100.1');
        if (a.allowed) continue;
        waits.push(a.retryAfterSeconds);
        await clock.advance(a.retryAfterSeconds * 1000);
      }
      assert.deepEqual(waits.slice(0, 11), [2, 4, 8, 16, 32, 64, 128, 256, 512, 900, 900]);
    });

    test('an attacker elsewhere does not slow the real user down; success resets the pair counter', async () => {
      const t = throttle();
      for (let i = 0; i < 6; i++) await t.attempt('carol', '192.0.2.10');
      assert.equal((await t.attempt('carol', '192.0.2.10')).allowed, false);
      assert.equal((await t.attempt('carol', '198.51.100.20')).allowed, true);
      // The real user's own typos then success: counter back to zero.
      for (let i = 0; i < 3; i++) await t.attempt('carol', '198.51.100.20');
      const ok = await t.attempt('carol', '198.51.100.20');
      assert.ok(ok.allowed);
      await ok.succeeded();
      for (let i = 0; i < 5; i++) assert.equal((await t.attempt('carol', '198.51.100.20')).allowed, true, `after success, free attempt ${i + 1}`);
      assert.equal((await t.attempt('carol', '198.51.100.20')).allowed, false);
    });

    test('parallel attempts are counted when they start: no burst slips past the limit', async () => {
      const t = throttle();
      const started = await Promise.all(Array.from({ length: 50 }, () => t.attempt('dave', '203.0.113.1')));
      assert.equal(started.filter((a) => a.allowed).length, 5);
      assert.ok(started.filter((a) => !a.allowed).every((a) => stageOf(a) === 'account-source'));
    });

    test('two replicas on one store count together: a burst split between them, a sign-in seen by both', async () => {
      const one = throttle();
      const two = throttle();
      const started = await Promise.all(Array.from({ length: 40 }, (_, i) => (i % 2 === 0 ? one : two).attempt('dora', '203.0.113.1')));
      assert.equal(started.filter((a) => a.allowed).length, 5, 'five in all, not five per replica');
      // Spraying from one address over both replicas: stage 2 holds at 20 in all.
      const spray = await Promise.all(Array.from({ length: 40 }, (_, i) => (i % 2 === 0 ? one : two).attempt(`spray${i}`, '198.51.100.9')));
      assert.equal(spray.filter((a) => a.allowed).length, 20);
      // A sign-in through one replica makes the network known at the other.
      const home = await one.attempt('dora', '192.0.2.77');
      assert.ok(home.allowed);
      await home.succeeded();
      for (let n = 0; n < 10; n++) for (let i = 0; i < 5; i++) await two.attempt('dora', `10.${n}.0.1`);
      assert.equal(stageOf(await two.attempt('dora', '172.16.0.1')), 'account');
      assert.equal((await two.attempt('dora', '192.0.2.77')).allowed, true, 'known through the other replica');
    });

    test('a restart keeps the delays and the known networks: the state is in the store', async () => {
      const before = throttle();
      for (let i = 0; i < 5; i++) await before.attempt('erik', '203.0.113.1');
      assert.equal(refusedFor(await before.attempt('erik', '203.0.113.1')), 2);
      const known = await before.attempt('erik', '198.51.100.7');
      assert.ok(known.allowed);
      await known.succeeded();
      const after = throttle();
      assert.equal(refusedFor(await after.attempt('erik', '203.0.113.1')), 2, 'the delay still runs after the restart');
      await clock.advance(2000);
      assert.equal((await after.attempt('erik', '203.0.113.1')).allowed, true);
      assert.equal(refusedFor(await after.attempt('erik', '203.0.113.1')), 4, 'and goes on growing where it was');
      for (let n = 0; n < 10; n++) for (let i = 0; i < 5; i++) await after.attempt('erik', `10.${n}.0.1`);
      assert.equal((await after.attempt('erik', '198.51.100.7')).allowed, true, 'still known after the restart');
    });

    test('release() takes an attempt back (a right password awaiting its code)', async () => {
      const t = throttle();
      for (let i = 0; i < 20; i++) {
        const a = await t.attempt('erin', '203.0.113.1');
        assert.ok(a.allowed, `attempt ${i + 1}`);
        await a.release();
        await a.release(); // settling twice counts once
      }
    });

    test('release() does not restart the delay: it runs from the last real failure', async () => {
      const t = throttle();
      for (let i = 0; i < 5; i++) await t.attempt('lena', '203.0.113.1');
      await clock.advance(2000);
      const right = await t.attempt('lena', '203.0.113.1');
      assert.ok(right.allowed);
      await right.release();
      assert.equal((await t.attempt('lena', '203.0.113.1')).allowed, true);
    });

    test('per source: spraying many accounts from one address slows down after 20 failures', async () => {
      const t = throttle();
      for (let i = 0; i < 20; i++) assert.equal((await t.attempt(`user${i}`, '203.0.113.50')).allowed, true);
      assert.equal(stageOf(await t.attempt('someone-new', '203.0.113.50')), 'source');
      // Another address of the same /24 is another source.
      assert.equal((await t.attempt('someone-new', '203.0.113.51')).allowed, true);
      // IPv6: the whole /64 is one source.
      for (let i = 0; i < 20; i++) await t.attempt(`v6user${i}`, `2001:db8:0:1::${(i + 1).toString(16)}`);
      assert.equal((await t.attempt('other', '2001:db8:0:1:aaaa::1')).allowed, false);
      assert.equal((await t.attempt('other', '2001:db8:0:2::1')).allowed, true);
    });

    test('cross-source lock: 50 failures from 3+ networks in 15 min lock unknown networks, never a known one', async () => {
      const t = throttle();
      // The real user signed in before from their home network.
      const home = await t.attempt('frank', '198.51.100.7');
      assert.ok(home.allowed);
      await home.succeeded();
      // A botnet: 5 free failures from each of 10 networks = 50.
      for (let n = 0; n < 10; n++) {
        for (let i = 0; i < 5; i++) assert.equal((await t.attempt('frank', `10.${n}.0.1`)).allowed, true);
      }
      const fresh = await t.attempt('frank', '172.16.5.5');
      assert.equal(stageOf(fresh), 'account', 'an unknown network is locked out');
      assert.ok((fresh.allowed ? 0 : fresh.retryAfterSeconds) <= 900);
      // The real user, from home: allowed, and signing in works.
      const again = await t.attempt('frank', '198.51.100.7');
      assert.ok(again.allowed, 'a known network is never locked by others');
      await again.succeeded();
      // The lock ends when the failures leave the window.
      await clock.advance(15 * 60_000);
      assert.equal((await t.attempt('frank', '172.16.5.5')).allowed, true);
    });

    test('cross-source lock needs 3 networks: one or two networks only ever slow themselves', async () => {
      const t = throttle({ freeFailures: 100, sourceFreeFailures: 1000 });
      for (let i = 0; i < 60; i++) await t.attempt('gina', i % 2 === 0 ? '10.0.0.1' : '10.1.0.1');
      assert.equal((await t.attempt('gina', '172.16.0.1')).allowed, true);
    });

    test('a known network expires after 30 days', async () => {
      const t = throttle({ globalThreshold: 6, freeFailures: 2 });
      const ok = await t.attempt('hank', '198.51.100.7');
      assert.ok(ok.allowed);
      await ok.succeeded();
      await clock.advance(30 * 86_400_000);
      for (let n = 0; n < 3; n++) for (let i = 0; i < 2; i++) await t.attempt('hank', `10.${n}.0.1`);
      assert.equal((await t.attempt('hank', '198.51.100.7')).allowed, false);
    });

    test('counters are forgotten after 24 h without failures; forgetAccount clears an account', async () => {
      const t = throttle();
      for (let i = 0; i < 6; i++) await t.attempt('ivy', '203.0.113.1');
      assert.equal((await t.attempt('ivy', '203.0.113.1')).allowed, false);
      await clock.advance(24 * 3_600_000);
      assert.equal((await t.attempt('ivy', '203.0.113.1')).allowed, true);
      for (let i = 0; i < 6; i++) await t.attempt('jack', '203.0.113.2');
      assert.equal((await t.attempt('jack', '203.0.113.2')).allowed, false);
      await t.forgetAccount('JACK');
      assert.equal((await t.attempt('jack', '203.0.113.2')).allowed, true);
      assert.equal((await t.attempt('ivy', '203.0.113.1')).allowed, true, 'another account is not forgotten with it');
    });

    test('bounded: expired records are purged; the names as typed are never stored', async () => {
      const t = throttle();
      const typed = 'Correct-Horse-Battery-Staple';
      for (let i = 0; i < 3; i++) await t.attempt(typed, '203.0.113.1');
      const ok = await t.attempt('kim', '198.51.100.1');
      assert.ok(ok.allowed);
      await ok.succeeded();
      const stored = JSON.stringify(await store.list(NS.loginThrottle));
      assert.ok(!stored.toLowerCase().includes(typed.toLowerCase()) && !stored.includes('kim'), 'accounts are hashed');
      assert.equal(await t.purge(), 0, 'nothing expired yet');
      await clock.advance(24 * 3_600_000 + 1);
      assert.equal(await t.purge(), 5, 'the counters and the failures of the window, 24 h on');
      assert.deepEqual((await store.list(NS.loginThrottle)).map((r) => r.key.slice(0, 2)), ['p:'], 'the known network stays');
      await clock.advance(30 * 86_400_000);
      // The purge also runs on its own from attempt(), at most every 10 minutes.
      await t.attempt('someone', '192.0.2.1');
      assert.equal((await store.list(NS.loginThrottle)).length, 3, 'only the new attempt\'s records are left');
    });
  });
}
