// Events from the wire are untrusted: only the exact DecisionEvent / AdminEvent shapes are
// accepted, under a size cap; everything else is refused with a reason, never thrown.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { auditEventId, MAX_EVENT_BYTES, parseAuditEvent } from '../../src/audit/event-shape.js';
import type { AdminEvent, DecisionEvent } from '../../src/core/events.js';
import { parseAuditQuery } from '../../src/control/audit-api.js';
import { PortcullisError } from '../../src/core/errors.js';
import { parseTimeArg } from '../../src/cli/audit.js';

const decision: DecisionEvent = {
  type: 'decision', time: '2026-01-01T00:00:00.000Z', requestId: 'r1', component: 'gateway', decision: 'deny', status: 403, code: 'PCL_ERR_FORBIDDEN',
  who: { sub: 'mallory', roles: ['customer'], sourceAddress: '127.0.0.1' }, what: { method: 'GET', path: '/shop/orders/2', route: 'get-order', service: 'orders' },
  reasons: [], why: 'no rule allows', traceId: '0af7651916cd43dd8448eb211c80319c',
};
const admin: AdminEvent = {
  type: 'admin', time: '2026-01-01T00:00:00Z', component: 'control', action: 'user.add', outcome: 'success', who: { sub: 'admin' }, detail: { username: 'x', n: 1, ok: true },
};

test('valid decision and admin events are accepted as they are', () => {
  for (const e of [decision, admin]) {
    const r = parseAuditEvent(JSON.stringify(e));
    assert.ok(r.ok, r.ok ? '' : r.reason);
    assert.deepEqual(r.event, e);
  }
  assert.ok(parseAuditEvent(new TextEncoder().encode(JSON.stringify(decision))).ok, 'bytes as from NATS');
});

test('malformed events are refused with a reason', () => {
  const cases: [string, unknown][] = [
    ['not an object', [decision]],
    ['type', { ...decision, type: 'other' }],
    ['time', { ...decision, time: 'yesterday' }],
    ['decision', { ...decision, decision: 'maybe' }],
    ['status', { ...decision, status: 42 }],
    ['unknown key', { ...decision, extra: 1 }],
    ['who.password', { ...decision, who: { password: 'x' } }],
    ['who.roles', { ...decision, who: { roles: 'admin' } }],
    ['what.path', { ...decision, what: { method: 'GET' } }],
    ['reasons', { ...decision, reasons: [1] }],
    ['traceId', { ...decision, traceId: 'zz' }],
    ['component', { ...decision, component: '' }],
    ['outcome', { ...admin, outcome: 'maybe' }],
    ['detail.nested', { ...admin, detail: { nested: { a: 1 } } }],
    ['action', { ...admin, action: 7 }],
  ];
  for (const [want, e] of cases) {
    const r = parseAuditEvent(JSON.stringify(e));
    assert.equal(r.ok, false, want);
    if (!r.ok) assert.match(r.reason, new RegExp(want.split('.').pop() ?? want), want);
  }
  assert.deepEqual(parseAuditEvent('{not json'), { ok: false, reason: 'not JSON' });
  const big = parseAuditEvent(JSON.stringify({ ...decision, why: 'x'.repeat(MAX_EVENT_BYTES) }));
  assert.equal(big.ok, false);
  assert.match(big.ok ? '' : big.reason, /over/);
});

test('event ids are content hashes: the same JSON, the same id', () => {
  const json = JSON.stringify(decision);
  assert.equal(auditEventId(json), auditEventId(JSON.stringify(JSON.parse(json))));
  assert.notEqual(auditEventId(json), auditEventId(JSON.stringify({ ...decision, requestId: 'r2' })));
});

test('the search API checks every parameter', () => {
  const q = parseAuditQuery(new URLSearchParams('principal=alice&decision=deny&since=2026-01-01T00:00:00Z&limit=1000'));
  assert.deepEqual(q, { principal: 'alice', decision: 'deny', since: '2026-01-01T00:00:00.000Z', limit: 1000 });
  assert.equal(parseAuditQuery(new URLSearchParams('')).limit, 100, 'default limit');
  for (const bad of ['limit=1001', 'limit=0', 'limit=abc', 'decision=maybe', 'since=yesterday', 'who=alice', 'route=a&route=b', 'principal=']) {
    assert.throws(() => parseAuditQuery(new URLSearchParams(bad)), (e: unknown) => e instanceof PortcullisError && e.code === 'PCL_ERR_INVALID_ARGUMENT', bad);
  }
});

test('the CLI takes ISO or relative times', () => {
  const now = Date.parse('2026-01-01T01:00:00Z');
  assert.equal(parseTimeArg('-15m', now), '2026-01-01T00:45:00.000Z');
  assert.equal(parseTimeArg('2h', now), '2025-12-31T23:00:00.000Z');
  assert.equal(parseTimeArg('2026-01-01T00:00:00Z', now), '2026-01-01T00:00:00.000Z');
  assert.throws(() => parseTimeArg('soon', now), PortcullisError);
});
