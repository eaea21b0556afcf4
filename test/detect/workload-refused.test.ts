// A refused call between workloads: the exam service trying to write a grade.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { GATEWAY, Harness, sidecar, T0, times } from './helpers.js';

const rule = { id: 'workload-refused', kind: 'workload-refused', severity: 'critical', block: { seconds: 600 } } as const;
const EXAM = 'spiffe://demo/school/exam';

test('exam writing a grade, refused at its own sidecar and at grades: one alert, the workload blocked', async () => {
  const h = new Harness([rule]);
  const requestId = randomUUID();
  await h.feed([
    sidecar({ svc: 'exam', direction: 'outbound', target: 'grades', method: 'GET', path: '/grades/c1' }),
    sidecar({ svc: 'grades', direction: 'inbound', peer: EXAM, method: 'GET', path: '/grades/c1' }),
    // The write, refused where it leaves exam, then tried straight at grades' sidecar.
    sidecar({ svc: 'exam', direction: 'outbound', target: 'grades', method: 'POST', path: '/grades/c1/sam', deny: true, requestId }),
    sidecar({ svc: 'grades', direction: 'inbound', peer: EXAM, method: 'POST', path: '/grades/c1/sam', deny: true }),
    ...times(5, () => sidecar({ svc: 'grades', direction: 'inbound', peer: EXAM, method: 'PUT', path: '/grades/c1/sue', deny: true })),
  ]);
  assert.equal(h.alerts.length, 1);
  const a = h.alerts[0];
  assert.ok(a);
  assert.deepEqual(a.subject, { workload: EXAM, route: 'grades POST /grades/{}/sam' });
  assert.deepEqual(a.evidence.requestIds, [requestId]);
  assert.ok(Date.parse(a.time) - T0 < 300_000);
  assert.deepEqual(h.blocks, [{ kind: 'workload', value: EXAM, seconds: 600, rule: 'workload-refused', alertId: a.id }]);
});

test('normal traffic: allowed calls, and users refused at a sidecar behind the gateway, raise nothing', async () => {
  const h = new Harness([rule]);
  await h.feed(times(20, (i) => [
    sidecar({ svc: 'exam', direction: 'outbound', target: 'grades', path: `/grades/c${i}` }),
    sidecar({ svc: 'grades', direction: 'inbound', peer: EXAM, path: `/grades/c${i}` }),
    sidecar({ svc: 'lab', direction: 'inbound', peer: 'spiffe://demo/clinic/diagnosis', path: '/labs/p-1', system: 'clinic' }),
    sidecar({ svc: 'grades', direction: 'inbound', peer: GATEWAY, method: 'POST', path: '/school/grades', deny: true }),
  ]).flat());
  assert.equal(h.alerts.length, 0);
  assert.equal(h.blocks.length, 0);
});

test('after the window, the same refused call alerts again', async () => {
  const h = new Harness([rule]);
  const refused = () => sidecar({ svc: 'diagnosis', direction: 'inbound', peer: 'spiffe://demo/clinic/lab', method: 'GET', path: '/diagnosis/p-1', deny: true, system: 'clinic' });
  await h.feed(times(10, refused), 20_000);
  assert.equal(h.alerts.length, 1);
  await h.clock.advance(300_000);
  await h.feed([refused()]);
  assert.equal(h.alerts.length, 2);
});
