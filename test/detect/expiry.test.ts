// Certificates and keys close to expiry: one alert per item (and expiry date), from tick().
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connectDetector } from '../../src/detect/detector.js';
import { Harness, T0 } from './helpers.js';

const DAY = 86_400_000;
const rule = { id: 'expiry', kind: 'expiry', severity: 'medium', days: 14 } as const;

test('items within 14 days alert once each; an expired one too; later ones when their time comes', async () => {
  const items = [
    { name: 'workload spiffe://demo/shop/orders', notAfter: new Date(T0 + 10 * DAY) },
    { name: 'kms key audit-signing v3', notAfter: new Date(T0 + 30 * DAY) },
    { name: 'ca intermediate', notAfter: new Date(T0 - DAY) },
    { name: 'gateway tls', notAfter: new Date(T0 + 200 * DAY) },
  ];
  const h = new Harness([rule], { expiring: () => items });
  h.detector.tick();
  assert.deepEqual(h.alerts.map((a) => [a.subject.workload, a.count]), [['workload spiffe://demo/shop/orders', 10], ['ca intermediate', 0]]);
  assert.match(h.alerts[0]?.summary ?? '', /expires in 10 days/);
  assert.match(h.alerts[1]?.summary ?? '', /expired at/);
  h.detector.tick();
  assert.equal(h.alerts.length, 2);
  await h.clock.advance(16 * DAY + 1);
  h.detector.tick();
  assert.equal(h.alerts.length, 3);
  assert.equal(h.alerts[2]?.subject.workload, 'kms key audit-signing v3');
});

test('a renewed item (new notAfter) alerts again only when it nears its new end', async () => {
  const items = [{ name: 'orders cert', notAfter: new Date(T0 + 5 * DAY) }];
  const h = new Harness([rule], { expiring: () => items });
  h.detector.tick();
  items[0] = { name: 'orders cert', notAfter: new Date(T0 + 90 * DAY) };
  h.detector.tick();
  assert.equal(h.alerts.length, 1);
  await h.clock.advance(80 * DAY);
  h.detector.tick();
  assert.equal(h.alerts.length, 2);
});

test('connectDetector ticks on the clock; a failing provider is counted, never thrown', async () => {
  let calls = 0;
  const h = new Harness([rule], { expiring: () => { calls++; if (calls === 2) throw new Error('store down'); return [{ name: 'x', notAfter: new Date(T0 + DAY) }]; } });
  const stop = connectDetector(h.detector, h.clock, 60);
  assert.equal(h.alerts.length, 1);
  await h.clock.advance(60_000);
  assert.equal(h.detector.stats().ruleErrors, 1);
  await h.clock.advance(60_000);
  assert.equal(calls, 3);
  stop();
  await h.clock.advance(600_000);
  assert.equal(calls, 3);
  assert.equal(h.clock.pendingTimers(), 0);
});
