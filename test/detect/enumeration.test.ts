// Object enumeration: mallory sweeping order ids in the shop and collecting refusals.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import type { DecisionEvent } from '../../src/core/events.js';
import { gw, Harness, service, sidecar, T0, times } from './helpers.js';

const rule = { id: 'object-enumeration', kind: 'enumeration', severity: 'high' } as const;

/** One GET /shop/orders/{id} as recorded end to end: gateway, orders' sidecar, the service's own decision. */
function readOrder(sub: string, id: string, allowed: boolean, address = '203.0.113.7'): DecisionEvent[] {
  const requestId = randomUUID();
  const path = `/shop/orders/${id}`;
  return [
    gw({ sub, address, path, route: 'shop-orders-get', service: 'orders', requestId }),
    sidecar({ svc: 'orders', direction: 'inbound', path, requestId, system: 'shop' }),
    service({ svc: 'orders', path, resource: `Order::"${id}"`, action: 'shop.order.read', deny: !allowed, requestId }),
  ];
}

test('mallory sweeping order ids: one alert, attributed to mallory through the gateway record', async () => {
  const h = new Harness([rule]);
  await h.feed(times(40, (i) => readOrder('mallory', `o-${i + 1}`, false)).flat(), 500);
  assert.equal(h.alerts.length, 1);
  const a = h.alerts[0];
  assert.ok(a);
  assert.deepEqual(a.subject, { principal: 'mallory', address: '203.0.113.7' });
  assert.equal(a.count, 10);
  assert.equal(a.evidence.requestIds.length, 10);
  assert.ok(Date.parse(a.time) - T0 < 300_000);
  assert.match(a.summary, /"mallory" was refused 10 distinct resources/);
});

test('the service recording the user itself works the same without the gateway record', async () => {
  const h = new Harness([rule], { gatewaySpiffeId: undefined });
  await h.feed(times(12, (i) => service({ svc: 'orders', path: `/shop/orders/o-${i}`, resource: `Order::"o-${i}"`, action: 'shop.order.read', deny: true, requestId: randomUUID(), sub: 'mallory' })));
  assert.equal(h.alerts.length, 1);
  assert.equal(h.alerts[0]?.subject.principal, 'mallory');
});

test('without a user to attribute them to, service refusals are never pinned on the gateway', async () => {
  const h = new Harness([rule], { gatewaySpiffeId: undefined });
  await h.feed(times(30, (i) => service({ svc: 'orders', path: `/shop/orders/o-${i}`, resource: `Order::"o-${i}"`, action: 'shop.order.read', deny: true, requestId: randomUUID() })));
  assert.equal(h.alerts.length, 0);
});

test('refusals at the gateway count distinct paths', async () => {
  const h = new Harness([rule]);
  await h.feed(times(15, (i) => gw({ sub: 'mallory', method: 'POST', path: `/shop/orders/o-${i}/refund`, route: 'shop-orders-refund', service: 'orders', deny: true })));
  assert.equal(h.alerts.length, 1);
  assert.match(h.alerts[0]?.summary ?? '', /distinct paths/);
});

test('one forbidden resource retried many times is not a sweep', async () => {
  const h = new Harness([rule]);
  await h.feed(times(30, () => readOrder('mallory', 'o-1', false)).flat());
  assert.equal(h.alerts.length, 0);
});

test('normal traffic: alice browsing her orders, doctors reading labs, a nurse refused twice', async () => {
  const h = new Harness([rule]);
  for (let round = 0; round < 5; round++) {
    await h.feed([
      gw({ sub: 'alice', path: '/shop/orders', route: 'shop-orders-list', service: 'orders' }),
      ...readOrder('alice', 'o-1', true), ...readOrder('alice', 'o-2', true),
      ...readOrder('bob', 'o-3', true),
      ...readOrder('ada', `o-${round}`, true), // an admin reads any order
      ...readOrder('alice', 'o-9', false), // a mistyped id now and then
      gw({ sub: 'dana', roles: ['doctor'], path: '/clinic/patients/p-1/labs', route: 'clinic-labs', service: 'lab' }),
      gw({ sub: 'olga', roles: ['doctor'], path: '/clinic/patients/p-7/labs', route: 'clinic-labs', service: 'lab' }),
    ], 2000);
  }
  await h.feed(['p-1', 'p-2'].map((p) => gw({ sub: 'nick', roles: ['nurse'], path: `/clinic/patients/${p}/labs`, route: 'clinic-labs', service: 'lab', deny: true })));
  assert.equal(h.alerts.length, 0);
});

test('the window expiring resets the distinct count', async () => {
  const h = new Harness([rule]);
  await h.feed(times(9, (i) => readOrder('mallory', `o-${i}`, false)).flat());
  await h.clock.advance(300_000);
  await h.feed(times(9, (i) => readOrder('mallory', `o-${100 + i}`, false)).flat());
  assert.equal(h.alerts.length, 0);
});
