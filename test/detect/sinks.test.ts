// The log and audit sinks: one JSON line at warn; one audit entry that passes the audit shape.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { checkAuditEvent } from '../../src/audit/event-shape.js';
import { subscribeAudit, type AuditEvent } from '../../src/core/events.js';
import { AuditAlertSink, LogAlertSink } from '../../src/detect/sinks.js';
import type { Alert } from '../../src/detect/types.js';
import { T0 } from './helpers.js';

const alert: Alert = {
  id: '6d0f7c9e-1111-4c3b-9a51-2f6b3c1d0e01', time: new Date(T0).toISOString(), rule: 'object-enumeration', kind: 'enumeration',
  severity: 'high', summary: '"mallory" was refused 10 distinct resources within 300s', subject: { principal: 'mallory', address: '203.0.113.7' },
  count: 10, window: { seconds: 300, start: new Date(T0 - 300_000).toISOString(), end: new Date(T0).toISOString() }, evidence: { requestIds: ['r1', 'r2'] },
};

test('LogAlertSink writes the alert as one JSON line at warn level', () => {
  const lines: string[] = [];
  const out = new Writable({ write(chunk: Buffer, _enc, cb) { lines.push(chunk.toString('utf8')); cb(); } });
  new LogAlertSink(pino({ level: 'info' }, out)).send(alert);
  assert.equal(lines.length, 1);
  const rec = JSON.parse(lines[0] ?? '') as { level: number; msg: string; alert: Alert };
  assert.equal(rec.level, 40);
  assert.deepEqual(rec.alert, alert);
  assert.match(rec.msg, /^security alert: "mallory" was refused/);
});

test('AuditAlertSink publishes detect.alert with the subject, scalars only, valid as an audit event', () => {
  const seen: AuditEvent[] = [];
  const unsub = subscribeAudit((e) => seen.push(e));
  try {
    new AuditAlertSink().send(alert);
    new AuditAlertSink().send({ ...alert, kind: 'workload-refused', subject: { workload: 'spiffe://demo/school/exam', route: 'grades POST /grades/{}' } });
  } finally {
    unsub();
  }
  assert.equal(seen.length, 2);
  const [first, second] = seen;
  assert.deepEqual(first, {
    type: 'admin', time: alert.time, requestId: alert.id, component: 'detect', action: 'detect.alert', outcome: 'success',
    who: { sub: 'mallory', sourceAddress: '203.0.113.7' },
    detail: { rule: 'object-enumeration', kind: 'enumeration', severity: 'high', count: 10, principal: 'mallory', address: '203.0.113.7' },
  });
  assert.deepEqual(second?.who, { spiffeId: 'spiffe://demo/school/exam' });
  for (const e of seen) assert.equal(checkAuditEvent(e), undefined);
  assert.ok(!JSON.stringify(seen).includes('r1'), 'no evidence or summary in the audit entry');
});
