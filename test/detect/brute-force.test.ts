// Brute force and credential stuffing on the login form (oauth.login failures).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { AdminEvent } from '../../src/core/events.js';
import { Harness, login, T0, times } from './helpers.js';

const rule = { id: 'login-brute-force', kind: 'brute-force', severity: 'high' } as const;

test('password guessing on one account: one alert at the 5th failure, none more in the window', async () => {
  const h = new Harness([rule]);
  await h.feed(times(4, () => login({ username: 'alice', ok: false, address: '192.0.2.66' })), 3000);
  assert.equal(h.alerts.length, 0);
  await h.feed(times(26, () => login({ username: 'alice', ok: false, address: '192.0.2.66' })), 3000);
  assert.equal(h.alerts.length, 1);
  const [a] = h.alerts;
  assert.ok(a);
  assert.equal(a.kind, 'brute-force');
  assert.equal(a.rule, 'login-brute-force');
  assert.equal(a.severity, 'high');
  assert.deepEqual(a.subject, { principal: 'alice', address: '192.0.2.66' });
  assert.equal(a.count, 5);
  assert.equal(a.evidence.requestIds.length, 5);
  assert.ok(Date.parse(a.time) - T0 < 300_000, 'raised within the window of the first failure');
  assert.ok(!a.summary.includes('wrong password'));
});

test('the alert comes again only after the window has passed', async () => {
  const h = new Harness([rule]);
  // One guess every 10 s for 12 minutes.
  await h.feed(times(72, () => login({ username: 'bob', ok: false })), 10_000);
  assert.equal(h.alerts.length, 3);
  const [a, b] = h.alerts.map((x) => Date.parse(x.time));
  assert.ok(a !== undefined && b !== undefined && b - a >= 300_000);
});

test('credential stuffing: one failure on each of many accounts from one address is one alert', async () => {
  const h = new Harness([rule]);
  await h.feed(times(40, (i) => login({ username: `user${i}@example.com`, ok: false, address: '2001:db8:66::1' })), 500);
  assert.equal(h.alerts.length, 1);
  assert.deepEqual(h.alerts[0]?.subject, { address: '2001:db8:66::1' });
  assert.equal(h.alerts[0]?.count, 5);
});

test('normal sign-ins, one or two typos each, raise nothing', async () => {
  const h = new Harness([rule]);
  const people = [['alice', '198.51.100.20'], ['bob', '198.51.100.21'], ['mallory', '198.51.100.22'], ['mia', '10.0.0.5'], ['ada', '10.0.0.6']] as const;
  for (let day = 0; day < 3; day++) {
    for (const [name, address] of people) {
      await h.feed([
        login({ username: name, ok: false, address }),
        login({ username: name.toUpperCase(), ok: false, address }), // caps lock
        login({ username: name, ok: true, address }),
      ], 5000);
    }
    // The same office address, several people, a typo each.
    await h.feed(['dana', 'nick', 'olga'].flatMap((n) => [login({ username: n, ok: false, address: '10.1.1.1' }), login({ username: n, ok: true, address: '10.1.1.1' })]), 2000);
    await h.clock.advance(3_600_000);
  }
  assert.equal(h.alerts.length, 0);
});

test('the window expiring resets the count', async () => {
  const h = new Harness([rule]);
  await h.feed(times(4, () => login({ username: 'carol', ok: false })), 1000);
  await h.clock.advance(300_000);
  await h.feed(times(4, () => login({ username: 'carol', ok: false })), 1000);
  assert.equal(h.alerts.length, 0);
  await h.feed([login({ username: 'carol', ok: false })]);
  assert.equal(h.alerts.length, 1);
});

test('the real user signing in between guesses does not hide them', async () => {
  const h = new Harness([rule]);
  const guess = () => login({ username: 'dave', ok: false, address: '192.0.2.66' });
  await h.feed([guess(), guess(), login({ username: 'dave', ok: true, address: '198.51.100.8' }), guess(), guess(), login({ username: 'dave', ok: true, address: '198.51.100.8' }), guess()]);
  assert.equal(h.alerts.length, 1);
});

test('client secret guessing at the token endpoint counts per address', async () => {
  const h = new Harness([rule]);
  const failure = (): AdminEvent => ({
    type: 'admin', time: new Date().toISOString(), component: 'tokens', action: 'oauth.token', outcome: 'failure',
    who: { sourceAddress: '192.0.2.9' }, detail: { grant_type: 'client_credentials', error: 'invalid_client', reason: 'bad secret' },
  });
  await h.feed(times(6, failure));
  assert.equal(h.alerts.length, 1);
  assert.deepEqual(h.alerts[0]?.subject, { address: '192.0.2.9' });
});
