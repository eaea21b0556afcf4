// A new edge in the call graph: a workload calling an operation never seen while learning.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { GATEWAY, Harness, sidecar, times } from './helpers.js';

const rule = { id: 'new-call-edge', kind: 'new-call-edge', severity: 'medium', learningSeconds: 3600, windowSeconds: 600 } as const;
const EXAM = 'spiffe://demo/school/exam';
const ORDERS = 'spiffe://demo/shop/orders';

/** One allowed call as both sidecars record it. */
function call(caller: string, from: string, to: string, method: string, path: string, system = 'school') {
  const requestId = randomUUID();
  return [
    sidecar({ svc: from, direction: 'outbound', target: to, method, path, requestId, system }),
    sidecar({ svc: to, direction: 'inbound', peer: caller, method, path, requestId, system }),
  ];
}

const usual = () => [
  ...call(EXAM, 'exam', 'grades', 'GET', `/grades/c${Math.floor(Math.random() * 9)}`),
  ...call(ORDERS, 'orders', 'payments', 'POST', '/payments/charge', 'shop'),
  sidecar({ svc: 'orders', direction: 'inbound', peer: GATEWAY, path: `/shop/orders/o-${randomUUID().slice(0, 4)}`, system: 'shop' }),
];

async function learned(): Promise<Harness> {
  const h = new Harness([rule]);
  await h.feed(times(60, usual).flat(), 20_000);
  await h.clock.advance(3_600_000);
  return h;
}

test('after learning, exam writing a grade is one alert (seen at both sidecars, repeated)', async () => {
  const h = await learned();
  await h.feed(times(10, usual).flat());
  assert.equal(h.alerts.length, 0);
  await h.feed(times(3, () => call(EXAM, 'exam', 'grades', 'POST', '/grades/c1/sam')).flat());
  assert.equal(h.alerts.length, 1);
  assert.deepEqual(h.alerts[0]?.subject, { workload: EXAM, route: 'grades POST /grades/{}/sam' });
  assert.match(h.alerts[0]?.summary ?? '', /never made before/);
});

test('nothing alerts while learning, and ids in paths do not make new edges', async () => {
  const h = new Harness([rule]);
  await h.feed([...call(EXAM, 'exam', 'grades', 'DELETE', '/grades/c1'), ...times(30, usual).flat()]);
  await h.clock.advance(3_600_000);
  await h.feed([...call(EXAM, 'exam', 'grades', 'DELETE', '/grades/c77'), ...times(30, usual).flat()]);
  assert.equal(h.alerts.length, 0);
});

test("the gateway's calls are users' traffic: a new route is not a new edge", async () => {
  const h = await learned();
  await h.feed([sidecar({ svc: 'orders', direction: 'inbound', peer: GATEWAY, method: 'POST', path: '/shop/orders/o-1/refund', system: 'shop' })]);
  assert.equal(h.alerts.length, 0);
});

test('one alert per workload per window; edges new meanwhile alert after it', async () => {
  const h = await learned();
  await h.feed([...call(EXAM, 'exam', 'grades', 'POST', '/grades/c1/sam'), ...call(EXAM, 'exam', 'grades', 'DELETE', '/grades/c1')]);
  assert.equal(h.alerts.length, 1);
  await h.clock.advance(600_000);
  await h.feed([...call(EXAM, 'exam', 'grades', 'POST', '/grades/c1/sam'), ...call(EXAM, 'exam', 'grades', 'DELETE', '/grades/c1')]);
  assert.equal(h.alerts.length, 2);
  assert.equal(h.alerts[1]?.subject.route, 'grades DELETE /grades/{}');
});

test('memory stays bounded under a flood of distinct edges', async () => {
  const h = new Harness([rule], { maxKeysPerRule: 500 });
  h.detector.observe(sidecar({ svc: 'exam', direction: 'outbound', target: 'grades', path: '/grades/c1' }));
  for (let i = 0; i < 5000; i++) h.detector.observe(sidecar({ svc: 'exam', direction: 'outbound', target: `svc${i}`, path: '/x' }));
  assert.ok((h.detector.stats().rules['new-call-edge']?.keys ?? Infinity) <= 1000);
});
