// Spikes of refusals per principal (or address) and per route.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { gw, Harness, times } from './helpers.js';

const rule = { id: 'refusal-spike', kind: 'refusal-spike', severity: 'medium' } as const;

test('one principal refused 50 times in half a minute: one alert, about the principal only', async () => {
  const h = new Harness([rule]);
  await h.feed(times(50, () => gw({ sub: 'mallory', method: 'POST', path: '/shop/orders/o-1/refund', route: 'shop-orders-refund', service: 'orders', deny: true })), 600);
  assert.equal(h.alerts.length, 1);
  assert.deepEqual(h.alerts[0]?.subject, { principal: 'mallory', address: '203.0.113.7' });
  assert.equal(h.alerts[0]?.count, 20);
});

test('requests with no credential are counted per source address', async () => {
  const h = new Harness([rule]);
  await h.feed(times(25, () => gw({ path: '/shop/orders', route: 'shop-orders-list', service: 'orders', deny: true, status: 401, code: 'PCL_ERR_TOKEN_MISSING', address: '192.0.2.50' })), 1000);
  assert.equal(h.alerts.length, 1);
  assert.deepEqual(h.alerts[0]?.subject, { address: '192.0.2.50' });
});

test('one route refused to many callers: one alert about the route', async () => {
  const h = new Harness([rule]);
  const callers = times(10, (i) => `user${i}`);
  await h.feed(times(3, () => callers.map((sub, i) => gw({ sub, address: `198.51.100.${i}`, method: 'POST', path: '/shop/orders/o-1/refund', route: 'shop-orders-refund', service: 'orders', deny: true }))).flat(), 1000);
  assert.equal(h.alerts.length, 1);
  assert.deepEqual(h.alerts[0]?.subject, { route: 'shop-orders-refund' });
});

test('normal traffic: a nurse refused now and then, a token expiring once per user', async () => {
  const h = new Harness([rule]);
  for (let minute = 0; minute < 30; minute++) {
    await h.feed([
      gw({ sub: 'nick', roles: ['nurse'], path: '/clinic/patients/p-1/labs', route: 'clinic-labs', service: 'lab', deny: true }),
      gw({ sub: 'dana', roles: ['doctor'], path: '/clinic/patients/p-1/labs', route: 'clinic-labs', service: 'lab' }),
      gw({ path: '/shop/orders', route: 'shop-orders-list', service: 'orders', deny: true, status: 401, code: 'PCL_ERR_TOKEN_EXPIRED', address: `198.51.100.${minute}` }),
      gw({ sub: 'alice', path: '/shop/orders', route: 'shop-orders-list', service: 'orders' }),
    ], 15_000);
  }
  assert.equal(h.alerts.length, 0);
});

test('outages (5xx refusals: audit log down) are not counted', async () => {
  const h = new Harness([rule]);
  await h.feed(times(40, () => gw({ sub: 'alice', path: '/shop/orders', route: 'shop-orders-list', deny: true, status: 503, code: 'PCL_ERR_AUDIT_UNAVAILABLE' })), 100);
  assert.equal(h.alerts.length, 0);
});

test('the window expiring resets the count', async () => {
  const h = new Harness([rule]);
  await h.feed(times(19, () => gw({ sub: 'mallory', path: '/shop/admin', deny: true })), 1000);
  await h.clock.advance(60_000);
  await h.feed(times(19, () => gw({ sub: 'mallory', path: '/shop/admin', deny: true })), 1000);
  assert.equal(h.alerts.length, 0);
});
