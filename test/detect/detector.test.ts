// The detector as a whole: config checks, errors contained, blocks only where configured, rate
// of alerts bounded, memory bounded under floods, wired to the audit channel without loops.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { publishAudit, subscribeAudit, type AuditEvent, type DecisionEvent } from '../../src/core/events.js';
import { BoundedMap, MAX_KEYS } from '../../src/detect/bounded.js';
import { defaultDetectionConfig, resolveDetectionConfig } from '../../src/detect/config.js';
import { connectDetector } from '../../src/detect/detector.js';
import { AuditAlertSink, type AlertSink } from '../../src/detect/sinks.js';
import type { RuleConfig } from '../../src/detect/types.js';
import { GATEWAY, gw, Harness, login, service, sidecar, times } from './helpers.js';

test('config: defaults filled in, bad rules refused with PCL_ERR_CONFIG_INVALID', () => {
  const [r] = resolveDetectionConfig({ rules: [{ id: 'bf', kind: 'brute-force', severity: 'low' }] });
  assert.deepEqual(r, { id: 'bf', kind: 'brute-force', severity: 'low', threshold: 5, windowSeconds: 300, learningSeconds: 0, days: 0 });
  assert.ok(Object.isFrozen(r));
  assert.equal(resolveDetectionConfig(defaultDetectionConfig()).length, 8);
  const bad: unknown[] = [
    [{ id: 'a', kind: 'brute-force', severity: 'low' }, { id: 'a', kind: 'enumeration', severity: 'low' }],
    [{ id: 'a', kind: 'port-scan', severity: 'low' }],
    [{ id: 'a', kind: 'brute-force', severity: 'urgent' }],
    [{ id: 'a', kind: 'brute-force', severity: 'low', threshold: 0 }],
    [{ id: 'a', kind: 'brute-force', severity: 'low', threshold: 5000 }],
    [{ id: 'a', kind: 'brute-force', severity: 'low', windowSeconds: 1.5 }],
    [{ id: 'a', kind: 'brute-force', severity: 'low', treshold: 3 }],
    [{ id: 'a', kind: 'brute-force', severity: 'low', block: {} }],
    [{ id: 'a', kind: 'expiry', severity: 'low', block: { seconds: 60 } }],
    [{ id: 'a b', kind: 'brute-force', severity: 'low' }],
  ];
  for (const rules of bad) {
    assert.throws(() => resolveDetectionConfig({ rules: rules as RuleConfig[] }), { code: 'PCL_ERR_CONFIG_INVALID' }, JSON.stringify(rules)); // wrong on purpose
  }
});

test('a rule that throws is counted and skipped; the others still see the event; observe never throws', async () => {
  const h = new Harness([
    { id: 'sig', kind: 'attack-signature', severity: 'high', threshold: 1 },
    { id: 'spike', kind: 'refusal-spike', severity: 'low', threshold: 1 },
  ]);
  const poisoned = gw({ sub: 'x', path: '/a', deny: true });
  Object.defineProperty(poisoned.what, 'path', { get: () => { throw new Error('boom'); } });
  assert.doesNotThrow(() => h.detector.observe(poisoned));
  const s = h.detector.stats();
  assert.equal(s.rules.sig?.errors, 1);
  assert.equal(s.rules.spike?.alerts, 1);
  assert.doesNotThrow(() => h.detector.observe(null as unknown as AuditEvent)); // wrong on purpose
  assert.equal(h.detector.stats().ruleErrors, 2);
});

test('a sink that throws or rejects is counted; the other sinks still get the alert', async () => {
  const got: string[] = [];
  const sinks: AlertSink[] = [
    { name: 'throws', send: () => { throw new Error('down'); } },
    { name: 'rejects', send: () => Promise.reject(new Error('down')) },
    { name: 'ok', send: (a) => { got.push(a.id); } },
  ];
  const h = new Harness([{ id: 'bf', kind: 'brute-force', severity: 'high', threshold: 1 }], { sinks });
  h.detector.observe(login({ username: 'alice', ok: false }));
  await new Promise((r) => setImmediate(r));
  // One failure with threshold 1: the account and the address both cross it.
  assert.equal(got.length, 2);
  assert.equal(h.detector.stats().sinkErrors, 4);
});

test('block requests only for rules with `block`, naming the subject the kind prefers', async () => {
  const h = new Harness([
    { id: 'bf', kind: 'brute-force', severity: 'high', block: { seconds: 900 } },
    { id: 'enum', kind: 'enumeration', severity: 'high' },
    { id: 'edge-refused', kind: 'workload-refused', severity: 'high', block: { seconds: 60 } },
  ]);
  await h.feed(times(5, () => login({ username: 'alice', ok: false, address: '192.0.2.66' })));
  await h.feed(times(10, (i) => gw({ sub: 'mallory', path: `/shop/orders/o-${i}`, deny: true })));
  await h.feed([sidecar({ svc: 'grades', direction: 'inbound', peer: 'spiffe://demo/school/exam', method: 'POST', path: '/grades', deny: true })]);
  assert.deepEqual(h.alerts.map((a) => a.rule), ['bf', 'enum', 'edge-refused']);
  assert.deepEqual(h.blocks, [
    { kind: 'address', value: '192.0.2.66', seconds: 900, rule: 'bf', alertId: h.alerts[0]?.id },
    { kind: 'workload', value: 'spiffe://demo/school/exam', seconds: 60, rule: 'edge-refused', alertId: h.alerts[2]?.id },
  ]);
});

test('without the gateway identity no workload is blocked: it could be the gateway', async () => {
  const h = new Harness([{ id: 'edge-refused', kind: 'workload-refused', severity: 'high', block: { seconds: 60 } }], { gatewaySpiffeId: undefined });
  await h.feed([sidecar({ svc: 'grades', direction: 'inbound', peer: GATEWAY, method: 'POST', path: '/grades', deny: true })]);
  assert.equal(h.alerts.length, 1);
  assert.equal(h.blocks.length, 0);
});

test('alerts per rule per minute are capped: a distributed scan cannot flood the sinks', async () => {
  const h = new Harness([{ id: 'sig', kind: 'attack-signature', severity: 'high', threshold: 1, block: { seconds: 60 } }], { maxAlertsPerMinute: 5 });
  await h.feed(times(20, (i) => gw({ path: '/../etc/passwd', deny: true, status: 400, address: `192.0.2.${i}` })), 10);
  assert.equal(h.alerts.length, 5);
  assert.equal(h.blocks.length, 5);
  assert.equal(h.detector.stats().rateLimited, 15);
  await h.clock.advance(60_000);
  await h.feed([gw({ path: '/../etc/passwd', deny: true, status: 400, address: '198.51.100.1' })]);
  assert.equal(h.alerts.length, 6);
});

test('memory stays bounded under a flood of distinct keys, for every rule', () => {
  const bound = 2000;
  const h = new Harness(defaultDetectionConfig().rules, { maxAlertsPerMinute: 1, maxKeysPerRule: bound });
  const N = 3 * bound;
  for (let i = 0; i < N; i++) {
    const address = `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
    h.detector.observe(login({ username: `u${i}`, ok: false, address }));
    h.detector.observe(gw({ sub: `p${i}`, clientId: `c${i}`, address, path: `/x/${i}/../y`, route: `r${i}`, deny: true }));
    h.detector.observe(sidecar({ svc: `s${i}`, direction: 'outbound', target: `t${i}`, path: `/z${i}`, deny: i % 2 === 0 }));
  }
  const s = h.detector.stats();
  assert.equal(s.events, 3 * N);
  assert.equal(s.ruleErrors, 0);
  // Rules with two maps (per account and per address, per actor and per route) hold two bounds.
  for (const [id, r] of Object.entries(s.rules)) assert.ok(r.keys <= 2 * bound, `${id} holds ${r.keys} keys`);
  assert.ok((s.rules['object-enumeration']?.keys ?? 0) === bound);
});

test('the LRU map holds its default bound and forgets the least recently used key', () => {
  const m = new BoundedMap<number>(MAX_KEYS);
  for (let i = 0; i < MAX_KEYS; i++) m.touch(`k${i}`, i, () => i);
  m.touch('k0', MAX_KEYS, () => -1); // k0 used again: k1 is now the oldest
  for (let i = 0; i < 2.5 * MAX_KEYS; i++) m.touch(`flood${i}`, MAX_KEYS + 1, () => i);
  assert.equal(m.size, MAX_KEYS);
  assert.equal(m.evicted, 2.5 * MAX_KEYS);
  const n = new BoundedMap<number>(3);
  for (const k of ['a', 'b', 'c']) n.touch(k, 0, () => 0);
  n.touch('a', 1, () => 0);
  n.touch('d', 2, () => 0);
  assert.deepEqual([n.has('a'), n.has('b'), n.has('c'), n.has('d')], [true, false, true, true]);
  n.prune(3, 2); // idle for 2 ms or more: c (touched at 0) and a (1)
  assert.deepEqual([...n.keys()], ['d']);
});

test('attribution never changes the event other subscribers hold', () => {
  const h = new Harness([{ id: 'enum', kind: 'enumeration', severity: 'high', threshold: 1 }]);
  const ev = gw({ sub: 'mallory', path: '/shop/orders/o-1', route: 'shop-orders-get', service: 'orders' });
  const svc: DecisionEvent = service({ svc: 'orders', path: '/shop/orders/o-1', resource: 'Order::"o-1"', action: 'read', deny: true, requestId: ev.requestId });
  const before = structuredClone(svc);
  h.detector.observe(ev);
  h.detector.observe(svc);
  assert.deepEqual(svc, before);
  assert.equal(h.alerts[0]?.subject.principal, 'mallory');
});

test('connected to the audit channel; its own audit alerts do not feed back', async () => {
  const h = new Harness([{ id: 'bf', kind: 'brute-force', severity: 'high', threshold: 2 }], { sinks: [new AuditAlertSink()] });
  const seen: AuditEvent[] = [];
  const unsub = subscribeAudit((e) => seen.push(e));
  const stop = connectDetector(h.detector, h.clock);
  try {
    for (let i = 0; i < 3; i++) publishAudit(login({ username: 'alice', ok: false }));
  } finally {
    stop();
    unsub();
  }
  const alerts = seen.filter((e) => e.type === 'admin' && e.action === 'detect.alert');
  assert.equal(alerts.length, 1);
  assert.equal(h.detector.stats().events, 3);
  publishAudit(login({ username: 'alice', ok: false }));
  assert.equal(h.detector.stats().events, 3, 'stopped');
});

test('normal traffic across the four systems raises nothing with the default rules (past learning)', async () => {
  const h = new Harness(defaultDetectionConfig().rules.map((r) => (r.kind === 'new-call-edge' ? { ...r, learningSeconds: 600 } : r)));
  // About a minute of traffic; alice signs in (with a typo) every ten minutes.
  const minute = (i: number) => [
    ...(i % 10 === 0 ? [login({ username: 'alice', ok: false, address: '198.51.100.20' }), login({ username: 'alice', ok: true, address: '198.51.100.20' })] : []),
    gw({ sub: 'alice', clientId: 'shop-web', path: '/shop/orders', route: 'shop-orders-list', service: 'orders', address: '198.51.100.20' }),
    gw({ sub: 'alice', clientId: 'shop-web', path: '/shop/orders/o-1', route: 'shop-orders-get', service: 'orders', address: '198.51.100.20' }),
    sidecar({ svc: 'orders', direction: 'outbound', target: 'payments', method: 'POST', path: '/payments/charge', system: 'shop' }),
    sidecar({ svc: 'payments', direction: 'inbound', peer: 'spiffe://demo/shop/orders', method: 'POST', path: '/payments/charge', system: 'shop' }),
    gw({ sub: 'dana', clientId: 'clinic-web', path: '/clinic/patients/p-1/labs', route: 'clinic-labs', service: 'lab', address: '10.8.0.12' }),
    sidecar({ svc: 'diagnosis', direction: 'outbound', target: 'lab', path: '/labs/p-1', system: 'clinic' }),
    gw({ sub: 'nick', clientId: 'clinic-web', path: '/clinic/patients/p-1/labs', route: 'clinic-labs', service: 'lab', address: '10.8.0.13', deny: true }),
    gw({ sub: 'sam', clientId: 'school-web', path: '/school/grades/me', route: 'school-grades-me', service: 'grades', address: '192.0.2.40' }),
    sidecar({ svc: 'exam', direction: 'outbound', target: 'grades', path: '/grades/c1', system: 'school' }),
  ];
  await h.feed(times(20, minute).flat(), 5000);
  await h.clock.advance(600_000);
  await h.feed(times(50, minute).flat(), 5000);
  assert.deepEqual(h.alerts.map((a) => a.summary), []);
});
