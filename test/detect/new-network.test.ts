// A token or API key used from a new network, or from two places at once.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { AdminEvent } from '../../src/core/events.js';
import { networkOf } from '../../src/detect/subject.js';
import { gw, Harness, login, times } from './helpers.js';

const rule = { id: 'credential-new-network', kind: 'new-network', severity: 'medium', block: { seconds: 900 } } as const;
const orders = (sub: string, address: string) => gw({ sub, clientId: 'shop-web', address, path: '/shop/orders', route: 'shop-orders-list', service: 'orders' });

test('networks: IPv4 /24, IPv6 /48, IPv4-mapped IPv6 as IPv4', () => {
  assert.equal(networkOf('203.0.113.7'), '203.0.113.0/24');
  assert.equal(networkOf('2001:db8:1:2::7'), '2001:db8:1::/48');
  assert.equal(networkOf('2001:0db8:0001:ffff:0:0:0:1'), '2001:db8:1::/48');
  assert.equal(networkOf('::1'), '0:0:0::/48');
  assert.equal(networkOf('::ffff:192.0.2.1'), '0:0:0::/48'); // addressOf strips the mapping first
  assert.equal(networkOf('not an address'), undefined);
});

test("alice's token used from two networks at once: one alert, a principal block", async () => {
  const h = new Harness([rule]);
  await h.feed(times(10, (i) => orders('alice', i % 2 === 0 ? '203.0.113.7' : '198.51.100.9')), 5000);
  assert.equal(h.alerts.length, 1);
  const a = h.alerts[0];
  assert.ok(a);
  assert.deepEqual(a.subject, { principal: 'alice', address: '198.51.100.9' });
  assert.equal(a.count, 2);
  assert.equal(a.evidence.requestIds.length, 2);
  assert.match(a.summary, /203\.0\.113\.0\/24, 198\.51\.100\.0\/24/);
  assert.deepEqual(h.blocks.map((b) => [b.kind, b.value, b.seconds]), [['principal', 'alice', 900]]);
});

test('IPv6: hosts in one /48 are one network, another /48 alerts', async () => {
  const h = new Harness([rule]);
  await h.feed([orders('bob', '2001:db8:1:1::5'), orders('bob', '2001:db8:1:ff::9'), orders('bob', '2001:db8:1::1')]);
  assert.equal(h.alerts.length, 0);
  await h.feed([orders('bob', '2001:db8:2::1')]);
  assert.equal(h.alerts.length, 1);
});

test('an API key (client credentials) used from a second network alerts on the client', async () => {
  const h = new Harness([rule]);
  const token = (address: string): AdminEvent => ({
    type: 'admin', time: new Date().toISOString(), component: 'tokens', action: 'oauth.token', outcome: 'success',
    who: { clientId: 'reports-job', sourceAddress: address }, detail: { grant_type: 'client_credentials', jti: 'x', expires_in: 300 },
  });
  await h.feed([token('10.20.0.4'), gw({ clientId: 'reports-job', address: '10.20.0.4', path: '/shop/orders', route: 'shop-orders-list' }), token('192.0.2.200')]);
  assert.equal(h.alerts.length, 1);
  assert.equal(h.alerts[0]?.subject.principal, 'reports-job');
});

test('normal traffic: one network per user, a move after lunch, logins elsewhere than token use', async () => {
  const h = new Harness([rule]);
  await h.feed([
    ...times(5, () => orders('alice', '203.0.113.7')),
    orders('alice', '203.0.113.99'), // same /24: a new lease
    ...times(5, () => orders('bob', '198.51.100.4')),
    orders('mallory', '192.0.2.77'),
    orders('alice', '::ffff:203.0.113.7'),
    login({ username: 'alice', ok: true, address: '100.64.0.1' }), // the browser signs in; a server uses the token
  ], 10_000);
  await h.clock.advance(2 * 3_600_000);
  await h.feed(times(5, () => orders('alice', '198.51.100.200')), 10_000);
  assert.equal(h.alerts.length, 0);
});

test('the window expiring resets: a second network an hour later is not two places at once', async () => {
  const h = new Harness([rule]);
  await h.feed([orders('carol', '203.0.113.7')]);
  await h.clock.advance(900_000);
  await h.feed([orders('carol', '198.51.100.1')]);
  assert.equal(h.alerts.length, 0);
});
