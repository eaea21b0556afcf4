// Metrics are fed only by the event channels: these tests publish events as the pipeline does and
// read the exposition text back, checking counts and that label values stay bounded.
import { afterEach, beforeEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { loadConfig } from '../../src/core/config/load.js';
import { auditChannel, publishAudit, publishRequest, publishTlsFailure, requestChannel, tlsFailureChannel, type DecisionEvent, type RequestEvent } from '../../src/core/events.js';
import { OTHER, statusClass } from '../../src/core/metrics/labels.js';
import { PortcullisMetrics } from '../../src/core/metrics/metrics.js';
import { fixture, repoRoot } from '../helpers/paths.js';
import { labelValues, parseExposition, valueOf, type Sample } from '../helpers/prometheus.js';

const config = loadConfig(join(repoRoot, 'examples', 'shop', 'portcullis.yaml'));
let metrics: PortcullisMetrics;

beforeEach(() => { metrics = new PortcullisMetrics({ config, defaultMetrics: false }); });
afterEach(() => metrics.close());

const scrape = async (): Promise<Sample[]> => parseExposition(await metrics.render());

function decision(over: Partial<DecisionEvent> & { route?: string; service?: string; path?: string }): DecisionEvent {
  return {
    type: 'decision', time: new Date().toISOString(), requestId: 'r', component: 'gateway', decision: 'deny', status: 403,
    who: { sub: 'alice' }, what: { method: 'GET', path: over.path ?? '/shop/orders', ...(over.route ? { route: over.route } : {}), ...(over.service ? { service: over.service } : {}) },
    reasons: [], why: '', ...over,
  };
}

function request(over: Partial<RequestEvent>): RequestEvent {
  return { component: 'gateway', requestId: 'r', method: 'GET', status: 200, startTime: Date.now(), durationSeconds: 0.004, ...over };
}

test('decisions are counted by component, decision, code and route id', async () => {
  publishAudit(decision({ decision: 'allow', status: 200, route: 'shop.orders.list', service: 'orders' }));
  publishAudit(decision({ decision: 'allow', status: 200, route: 'shop.orders.list', service: 'orders' }));
  publishAudit(decision({ code: 'PCL_ERR_FORBIDDEN', route: 'shop.orders.refund', service: 'orders' }));
  publishAudit(decision({ code: 'PCL_ERR_ROUTE_NOT_FOUND', status: 404 }));
  publishAudit(decision({ component: 'sidecar:payments:inbound', code: 'PCL_ERR_FORBIDDEN', service: 'payments' }));
  const s = await scrape();
  const name = 'portcullis_decisions_total';
  assert.equal(valueOf(s, name, { component: 'gateway', decision: 'allow', code: '', route: 'shop.orders.list' }), 2);
  assert.equal(valueOf(s, name, { component: 'gateway', decision: 'deny', code: 'PCL_ERR_FORBIDDEN', route: 'shop.orders.refund' }), 1);
  assert.equal(valueOf(s, name, { component: 'gateway', decision: 'deny', code: 'PCL_ERR_ROUTE_NOT_FOUND', route: '' }), 1);
  assert.equal(valueOf(s, name, { component: 'sidecar:payments:inbound', decision: 'deny', route: 'payments' }), 1, 'a sidecar labels by the service called');
});

test('label values are bounded: unknown routes, codes, components and actions read as "other"', async () => {
  for (let i = 0; i < 50; i++) {
    publishAudit(decision({ route: `/shop/orders/o-${i}`, code: `PCL_ERR_MADE_UP_${i}`, component: `sidecar:x${i}:inbound`, who: { sub: `user-${i}` } }));
    publishRequest(request({ route: `/raw/${i}`, component: `evil-${i}` }));
    publishAudit({ type: 'admin', time: '', component: 'control', action: `not an action ${i}!`, outcome: 'success', who: {}, detail: {} });
  }
  const s = await scrape();
  assert.deepEqual(labelValues(s, 'portcullis_decisions_total', 'route'), new Set([OTHER]));
  assert.deepEqual(labelValues(s, 'portcullis_decisions_total', 'code'), new Set([OTHER]));
  assert.deepEqual(labelValues(s, 'portcullis_decisions_total', 'component'), new Set([OTHER]));
  assert.deepEqual(labelValues(s, 'portcullis_request_duration_seconds_count', 'route'), new Set([OTHER]));
  assert.deepEqual(labelValues(s, 'portcullis_admin_events_total', 'action'), new Set([OTHER]));
  assert.equal(valueOf(s, 'portcullis_decisions_total', { route: OTHER }), 50);
  const text = await metrics.render();
  assert.ok(!text.includes('/shop/orders/o-') && !text.includes('user-'), 'no raw path or user id reaches a label');
});

test('request durations are a histogram by component, route and status class', async () => {
  publishRequest(request({ route: 'shop.orders.get', status: 200, durationSeconds: 0.003 }));
  publishRequest(request({ route: 'shop.orders.get', status: 404, durationSeconds: 0.0002 }));
  publishRequest(request({ component: 'sidecar:orders:outbound', service: 'payments', status: 502, durationSeconds: 2, code: 'PCL_ERR_UPSTREAM_UNAVAILABLE', upstreamError: true }));
  publishRequest(request({ status: 0, durationSeconds: 0.1 }));
  const s = await scrape();
  const h = 'portcullis_request_duration_seconds';
  assert.equal(valueOf(s, `${h}_count`, { component: 'gateway', route: 'shop.orders.get', status_class: '2xx' }), 1);
  assert.equal(valueOf(s, `${h}_bucket`, { component: 'gateway', route: 'shop.orders.get', status_class: '2xx', le: '0.0025' }), 0);
  assert.equal(valueOf(s, `${h}_bucket`, { component: 'gateway', route: 'shop.orders.get', status_class: '2xx', le: '0.005' }), 1);
  assert.equal(valueOf(s, `${h}_count`, { component: 'gateway', route: 'shop.orders.get', status_class: '4xx' }), 1);
  assert.equal(valueOf(s, `${h}_count`, { component: 'sidecar:orders:outbound', route: 'payments', status_class: '5xx' }), 1);
  assert.equal(valueOf(s, `${h}_count`, { component: 'gateway', route: '', status_class: 'none' }), 1, 'no response sent');
  assert.equal(valueOf(s, 'portcullis_upstream_errors_total', { component: 'sidecar:orders:outbound', code: 'PCL_ERR_UPSTREAM_UNAVAILABLE' }), 1);
  assert.equal(valueOf(s, 'portcullis_upstream_errors_total', { component: 'gateway' }), 0, 'a refusal is not an upstream error');
});

test('TLS handshake failures, admin events and the certificate expiry', async () => {
  publishTlsFailure({ component: 'gateway', code: 'ERR_SSL_WRONG_VERSION_NUMBER' });
  publishTlsFailure({ component: 'sidecar:users:inbound', code: 'ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE' });
  publishTlsFailure({ component: 'sidecar:users:inbound', code: 'ECONNRESET' });
  publishAudit({ type: 'admin', time: '', component: 'control', action: 'workload.attest', outcome: 'success', who: {}, detail: {} });
  publishAudit({ type: 'admin', time: '', component: 'tokens', action: 'oauth.login', outcome: 'failure', who: {}, detail: {} });
  const notAfter = Date.UTC(2030, 0, 1, 12, 0, 0, 500);
  metrics.setCertificateExpiry('spiffe://demo/gateway', notAfter);
  metrics.setCertificateExpiry('spiffe://demo/gateway', notAfter + 3_600_000); // rotated
  const s = await scrape();
  assert.equal(valueOf(s, 'portcullis_tls_handshake_failures_total', { component: 'gateway' }), 1);
  assert.equal(valueOf(s, 'portcullis_tls_handshake_failures_total', { component: 'sidecar:users:inbound' }), 2);
  assert.equal(valueOf(s, 'portcullis_admin_events_total', { action: 'workload.attest', outcome: 'success' }), 1);
  assert.equal(valueOf(s, 'portcullis_admin_events_total', { action: 'oauth.login', outcome: 'failure' }), 1);
  assert.equal(valueOf(s, 'portcullis_workload_certificate_expiry_timestamp_seconds', { spiffe_id: 'spiffe://demo/gateway' }), Math.floor(notAfter / 1000) + 3600);
});

test('span export counts are read at scrape time', async () => {
  const stats = { exported: 0, dropped: 0, failedExports: 0 };
  let s = await scrape();
  assert.equal(valueOf(s, 'portcullis_trace_spans_dropped_total'), 0, 'zero before an exporter is watched');
  metrics.watchSpanExport(() => stats);
  Object.assign(stats, { exported: 10, dropped: 3, failedExports: 1 });
  s = await scrape();
  assert.equal(valueOf(s, 'portcullis_trace_spans_exported_total'), 10);
  assert.equal(valueOf(s, 'portcullis_trace_spans_dropped_total'), 3);
  assert.equal(valueOf(s, 'portcullis_trace_export_failures_total'), 1);
  stats.dropped = 7;
  assert.equal(valueOf(await scrape(), 'portcullis_trace_spans_dropped_total'), 7);
});

test('close() unsubscribes: later events change nothing, and the channels have no subscriber left', async () => {
  metrics.close();
  publishAudit(decision({ route: 'shop.orders.list' }));
  publishTlsFailure({ component: 'gateway', code: 'x' });
  const s = await scrape();
  assert.equal(valueOf(s, 'portcullis_decisions_total', { route: 'shop.orders.list' }), 0);
  assert.equal(valueOf(s, 'portcullis_tls_handshake_failures_total', { component: 'gateway' }), 0);
  assert.equal(requestChannel.hasSubscribers, false, 'publishers skip the work when nobody listens');
  assert.equal(tlsFailureChannel.hasSubscribers, false);
  assert.equal(auditChannel.hasSubscribers, false);
});

test('the default process metrics are there, and the exposition is text format 0.0.4', async () => {
  const m = new PortcullisMetrics({ config });
  try {
    const s = parseExposition(await m.render());
    assert.ok(valueOf(s, 'process_cpu_user_seconds_total') >= 0);
    assert.ok(s.some((x) => x.name === 'nodejs_heap_size_total_bytes'));
    assert.match(m.contentType, /^text\/plain; version=0\.0\.4/);
  } finally {
    m.close();
  }
});

test('statusClass', () => {
  assert.deepEqual([200, 204, 301, 404, 503, 0, 99, 600].map(statusClass), ['2xx', '2xx', '3xx', '4xx', '5xx', 'none', 'none', 'none']);
});

test('metricsListen keys load from the config', () => {
  const full = loadConfig(fixture('config', 'good', 'full.yaml'));
  assert.equal(full.control.metricsListen, '127.0.0.1:9090');
  assert.equal(full.gateway.metricsListen, '[::1]:9091');
  assert.equal(full.services[0]?.sidecar.metricsListen, '127.0.0.1:9092');
  assert.equal(full.services[1]?.sidecar.metricsListen, undefined, 'absent: no metrics listener');
  assert.equal(loadConfig(fixture('config', 'good', 'minimal.yaml')).gateway.metricsListen, undefined, 'no default');
});
