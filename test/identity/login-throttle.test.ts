// Login throttling on a FakeClock: growing delays per (account, network), per source address,
// the cross-source lock that spares known networks, counting at the start of an attempt, and the
// bounds (forgetting, LRU).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FakeClock } from '../../src/core/clock.js';
import { LoginThrottle, sourceAddressKey, sourceNetwork, type LoginAttempt } from '../../src/identity/login-throttle.js';

const T0 = Date.UTC(2030, 0, 1);

/** One failed attempt (allowed, then left counted); returns the verdict. */
function fail(t: LoginThrottle, account: string, address: string): LoginAttempt {
  return t.attempt(account, address);
}

function refusedFor(a: LoginAttempt): number {
  assert.equal(a.allowed, false, 'expected a refusal');
  return a.allowed ? 0 : a.retryAfterSeconds;
}

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

test('after 5 failures from one network the waits grow 2, 4, 8 s … and a refusal is not counted', async () => {
  const clock = new FakeClock(T0);
  const t = new LoginThrottle({ clock });
  for (let i = 0; i < 5; i++) assert.equal(fail(t, 'alice', '203.0.113.7').allowed, true, `free attempt ${i + 1}`);
  assert.equal(refusedFor(t.attempt('alice', '203.0.113.7')), 2);
  // The same /24 is the same network; case does not make another account.
  assert.equal(refusedFor(t.attempt('ALICE', '203.0.113.99')), 2);
  await clock.advance(1999);
  assert.equal(t.attempt('alice', '203.0.113.7').allowed, false);
  await clock.advance(1);
  assert.equal(fail(t, 'alice', '203.0.113.7').allowed, true);
  assert.equal(refusedFor(t.attempt('alice', '203.0.113.7')), 4);
  await clock.advance(4000);
  assert.equal(fail(t, 'alice', '203.0.113.7').allowed, true);
  assert.equal(refusedFor(t.attempt('alice', '203.0.113.7')), 8);
  // Refusals in between did not make the wait longer.
  for (let i = 0; i < 10; i++) t.attempt('alice', '203.0.113.7');
  await clock.advance(8000);
  assert.equal(t.attempt('alice', '203.0.113.7').allowed, true);
});

test('the delay is capped at 15 minutes', async () => {
  const clock = new FakeClock(T0);
  const t = new LoginThrottle({ clock });
  const waits: number[] = [];
  for (let i = 0; i < 40; i++) {
    const a = t.attempt('bob', '198.51.100.1');
    if (a.allowed) continue;
    waits.push(a.retryAfterSeconds);
    await clock.advance(a.retryAfterSeconds * 1000);
  }
  assert.deepEqual(waits.slice(0, 11), [2, 4, 8, 16, 32, 64, 128, 256, 512, 900, 900]);
});

test('an attacker elsewhere does not slow the real user down; success resets the pair counter', async () => {
  const clock = new FakeClock(T0);
  const t = new LoginThrottle({ clock });
  for (let i = 0; i < 6; i++) t.attempt('carol', '192.0.2.10');
  assert.equal(t.attempt('carol', '192.0.2.10').allowed, false);
  const real = t.attempt('carol', '198.51.100.20');
  assert.equal(real.allowed, true);
  // The real user's own typos then success: counter back to zero.
  for (let i = 0; i < 3; i++) t.attempt('carol', '198.51.100.20');
  const ok = t.attempt('carol', '198.51.100.20');
  assert.ok(ok.allowed);
  ok.succeeded();
  for (let i = 0; i < 5; i++) assert.equal(t.attempt('carol', '198.51.100.20').allowed, true, `after success, free attempt ${i + 1}`);
  assert.equal(t.attempt('carol', '198.51.100.20').allowed, false);
});

test('parallel attempts are counted when they start: no burst slips past the limit', () => {
  const t = new LoginThrottle({ clock: new FakeClock(T0) });
  const started = Array.from({ length: 50 }, () => t.attempt('dave', '203.0.113.1'));
  assert.equal(started.filter((a) => a.allowed).length, 5);
});

test('release() takes an attempt back (a right password awaiting its code)', () => {
  const t = new LoginThrottle({ clock: new FakeClock(T0) });
  for (let i = 0; i < 20; i++) {
    const a = t.attempt('erin', '203.0.113.1');
    assert.ok(a.allowed, `attempt ${i + 1}`);
    a.release();
  }
});

test('per source: spraying many accounts from one address slows down after 20 failures', async () => {
  const clock = new FakeClock(T0);
  const t = new LoginThrottle({ clock });
  for (let i = 0; i < 20; i++) assert.equal(t.attempt(`user${i}`, '203.0.113.50').allowed, true);
  const r = t.attempt('someone-new', '203.0.113.50');
  assert.equal(r.allowed, false);
  assert.equal(r.allowed ? '' : r.stage, 'source');
  // Another address of the same /24 is another source.
  assert.equal(t.attempt('someone-new', '203.0.113.51').allowed, true);
  // IPv6: the whole /64 is one source.
  for (let i = 0; i < 20; i++) t.attempt(`v6user${i}`, `2001:db8:0:1::${(i + 1).toString(16)}`);
  assert.equal(t.attempt('other', '2001:db8:0:1:aaaa::1').allowed, false);
  assert.equal(t.attempt('other', '2001:db8:0:2::1').allowed, true);
});

test('cross-source lock: 50 failures from 3+ networks in 15 min lock unknown networks, never a known one', async () => {
  const clock = new FakeClock(T0);
  const t = new LoginThrottle({ clock });
  // The real user signed in before from their home network.
  const home = t.attempt('frank', '198.51.100.7');
  assert.ok(home.allowed);
  home.succeeded();
  // A botnet: 5 free failures from each of 10 networks = 50.
  for (let n = 0; n < 10; n++) {
    for (let i = 0; i < 5; i++) assert.equal(t.attempt('frank', `10.${n}.0.1`).allowed, true);
  }
  const fresh = t.attempt('frank', '172.16.5.5');
  assert.equal(fresh.allowed, false, 'an unknown network is locked out');
  assert.equal(fresh.allowed ? '' : fresh.stage, 'account');
  assert.ok((fresh.allowed ? 0 : fresh.retryAfterSeconds) <= 900);
  // The real user, from home: allowed, and signing in works.
  const again = t.attempt('frank', '198.51.100.7');
  assert.ok(again.allowed, 'a known network is never locked by others');
  again.succeeded();
  // The lock ends when the failures leave the window.
  await clock.advance(15 * 60_000);
  assert.equal(t.attempt('frank', '172.16.5.5').allowed, true);
});

test('cross-source lock needs 3 networks: one or two networks only ever slow themselves', () => {
  const clock = new FakeClock(T0);
  const t = new LoginThrottle({ clock, freeFailures: 100, sourceFreeFailures: 1000 });
  for (let i = 0; i < 60; i++) t.attempt('gina', i % 2 === 0 ? '10.0.0.1' : '10.1.0.1');
  assert.equal(t.attempt('gina', '172.16.0.1').allowed, true);
});

test('a known network expires after 30 days', async () => {
  const clock = new FakeClock(T0);
  const t = new LoginThrottle({ clock, globalThreshold: 6, freeFailures: 2 });
  const ok = t.attempt('hank', '198.51.100.7');
  assert.ok(ok.allowed);
  ok.succeeded();
  await clock.advance(30 * 86_400_000);
  for (let n = 0; n < 3; n++) for (let i = 0; i < 2; i++) t.attempt('hank', `10.${n}.0.1`);
  assert.equal(t.attempt('hank', '198.51.100.7').allowed, false);
});

test('counters are forgotten after 24 h without failures; forgetAccount clears an account', async () => {
  const clock = new FakeClock(T0);
  const t = new LoginThrottle({ clock });
  for (let i = 0; i < 6; i++) t.attempt('ivy', '203.0.113.1');
  assert.equal(t.attempt('ivy', '203.0.113.1').allowed, false);
  await clock.advance(24 * 3_600_000);
  assert.equal(t.attempt('ivy', '203.0.113.1').allowed, true);
  for (let i = 0; i < 6; i++) t.attempt('jack', '203.0.113.2');
  assert.equal(t.attempt('jack', '203.0.113.2').allowed, false);
  t.forgetAccount('JACK');
  assert.equal(t.attempt('jack', '203.0.113.2').allowed, true);
});

test('bounded: past maxKeys the least recently used counters go', () => {
  const t = new LoginThrottle({ clock: new FakeClock(T0), maxKeys: 3, sourceFreeFailures: 1000 });
  for (let i = 0; i < 6; i++) t.attempt('kim', '203.0.113.1');
  assert.equal(t.attempt('kim', '203.0.113.1').allowed, false);
  for (const name of ['a', 'b', 'c']) t.attempt(name, '203.0.113.1');
  assert.equal(t.attempt('kim', '203.0.113.1').allowed, true, 'evicted (documented limit)');
});

test('options must be positive integers', () => {
  assert.throws(() => new LoginThrottle({ freeFailures: 0 }), { code: 'PCL_ERR_INVALID_ARGUMENT' });
  assert.throws(() => new LoginThrottle({ maxDelayMs: 1.5 }), { code: 'PCL_ERR_INVALID_ARGUMENT' });
});

test('release() does not restart the delay: it runs from the last real failure', async () => {
  const clock = new FakeClock(T0);
  const t = new LoginThrottle({ clock });
  for (let i = 0; i < 5; i++) t.attempt('lena', '203.0.113.1');
  await clock.advance(2000);
  const right = t.attempt('lena', '203.0.113.1');
  assert.ok(right.allowed);
  right.release();
  assert.equal(t.attempt('lena', '203.0.113.1').allowed, true);
});
