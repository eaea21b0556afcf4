// Metrics and tracing of the shop as real processes: /metrics on the gateway, a sidecar and the
// control plane; W3C traceparent carried from the client through gateway, sidecars and services;
// spans of every hop reaching an OTLP collector stub.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startSystem, type RunningSystem } from '../../src/cli/system.js';
import { demoUsers } from '../../src/cli/demo.js';
import { CLI_CLIENT_ID } from '../../src/control/server.js';
import { loginWithPkce } from '../../src/tokens/client/pkce-login.js';
import { parseTraceparent } from '../../src/dataplane/traceparent.js';
import { repoRoot } from '../helpers/paths.js';
import { call, codeOf, freePortBlock, freePorts } from '../helpers/net.js';
import { Collector, type OtlpSpan } from '../helpers/otlp-collector.js';
import { labelValues, parseExposition, valueOf, type Sample } from '../helpers/prometheus.js';

let sys: RunningSystem;
let dir: string;
let ca: string;
let gatewayMetrics: string;
let controlMetrics: string;
let ordersMetrics: string;
const collector = new Collector();
const tokens: Record<string, string> = {};

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pcl-obs-'));
  await collector.start();
  const [control, gateway, gwMetrics, cpMetrics] = await freePorts(4);
  const sidecarMetricsBase = await freePortBlock(3);
  sys = await startSystem({
    template: join(repoRoot, 'examples', 'shop', 'portcullis.yaml'),
    dataDir: dir, controlListen: `127.0.0.1:${control}`, gatewayListen: `127.0.0.1:${gateway}`,
    portBase: await freePortBlock(9), users: demoUsers('shop'),
    gatewayMetricsListen: `127.0.0.1:${gwMetrics}`, controlMetricsListen: `127.0.0.1:${cpMetrics}`, sidecarMetricsPortBase: sidecarMetricsBase,
    env: { OTEL_EXPORTER_OTLP_ENDPOINT: collector.url, OTEL_BSP_SCHEDULE_DELAY: '100' },
  });
  ca = readFileSync(sys.caFile, 'utf8');
  gatewayMetrics = `http://127.0.0.1:${gwMetrics}/metrics`;
  controlMetrics = `http://127.0.0.1:${cpMetrics}/metrics`;
  const orders = sys.config.services.findIndex((s) => s.name === 'orders');
  ordersMetrics = `http://127.0.0.1:${sidecarMetricsBase + orders}/metrics`;
  for (const user of ['alice', 'mia']) {
    tokens[user] = (await loginWithPkce({ controlUrl: sys.controlUrl, caPem: ca, clientId: CLI_CLIENT_ID, username: user, password: sys.passwords[user] ?? '' })).accessToken;
  }
});

after(async () => {
  await sys?.stop();
  await collector.stop();
  rmSync(dir, { recursive: true, force: true });
});

const gw = (path: string, o: Parameters<typeof call>[1] = {}) => call(sys.gatewayUrl + path, { ca, ...o });
const as = (user: string, extra: Record<string, string> = {}): Record<string, string> => ({ authorization: `Bearer ${tokens[user]}`, ...extra });
const scrape = async (url: string): Promise<Sample[]> => parseExposition((await call(url)).text);

/** What reached a service, read from its own loopback port (never through Portcullis). */
async function seen(service: string): Promise<{ method: string; path: string; sub?: string; traceparent?: string }[]> {
  const s = sys.config.services.find((x) => x.name === service);
  assert.ok(s, service);
  return (await call(`${s.upstream}/__seen`)).json as { method: string; path: string; sub?: string; traceparent?: string }[]; // the example service's own list
}

/** Polls until `check` passes (the events it needs are published when a response ends, in another process). */
async function eventually<T>(get: () => Promise<T>, check: (v: T) => boolean, what: string, ms = 5000): Promise<T> {
  const until = Date.now() + ms;
  for (;;) {
    const v = await get();
    if (check(v)) return v;
    if (Date.now() > until) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const randomHex = (bytes: number): string => Array.from({ length: bytes }, () => Math.floor(Math.random() * 256).toString(16).padStart(2, '0')).join('');

describe('metrics', () => {
  test('the gateway counts an allowed and a refused call, with bounded labels only', async () => {
    const decisions = 'portcullis_decisions_total';
    const allowed = { component: 'gateway', decision: 'allow', code: '', route: 'shop.orders.list' };
    const refused = { component: 'gateway', decision: 'deny', code: 'PCL_ERR_FORBIDDEN', route: 'shop.orders.refund' };
    const unrouted = { component: 'gateway', decision: 'deny', code: 'PCL_ERR_ROUTE_NOT_FOUND', route: '' };
    const before = await scrape(gatewayMetrics);

    assert.equal((await gw('/shop/orders', { headers: as('alice') })).status, 200);
    const r = await gw('/shop/orders/o-1/refund', { method: 'POST', headers: as('alice') });
    assert.equal(r.status, 403);
    const probe = `/probe-${randomHex(6)}/alice`;
    assert.equal(codeOf(await gw(probe, { headers: as('alice') })), 'PCL_ERR_ROUTE_NOT_FOUND');

    const after = await eventually(() => scrape(gatewayMetrics), (s) => valueOf(s, 'portcullis_request_duration_seconds_count', { component: 'gateway', route: 'shop.orders.refund', status_class: '4xx' }) >= 1, 'request durations');
    assert.equal(valueOf(after, decisions, allowed) - valueOf(before, decisions, allowed), 1);
    assert.equal(valueOf(after, decisions, refused) - valueOf(before, decisions, refused), 1);
    assert.equal(valueOf(after, decisions, unrouted) - valueOf(before, decisions, unrouted), 1);
    assert.ok(valueOf(after, 'portcullis_request_duration_seconds_count', { component: 'gateway', route: 'shop.orders.list', status_class: '2xx' }) >= 1);

    const routes = new Set(['', 'other', ...sys.config.routes.map((x) => x.id), ...sys.config.services.map((x) => x.name)]);
    for (const metric of [decisions, 'portcullis_request_duration_seconds_count']) {
      for (const v of labelValues(after, metric, 'route')) assert.ok(routes.has(v), `${metric} route label "${v}" is not from the config`);
    }
    const text = (await call(gatewayMetrics)).text;
    assert.ok(!text.includes(probe) && !text.includes('alice') && !text.includes('/shop/'), 'no raw path or user id in any label');
    assert.ok(valueOf(after, 'portcullis_workload_certificate_expiry_timestamp_seconds', { spiffe_id: sys.config.gateway.spiffeId }) > Date.now() / 1000);
    assert.ok(valueOf(after, 'process_resident_memory_bytes') > 0, 'default process metrics');
    // Upstream clusters: every breaker closed, one replica each in rotation.
    for (const s of sys.config.services) {
      assert.equal(valueOf(after, 'portcullis_upstream_breaker_open', { service: s.name }), 0, s.name);
      assert.equal(valueOf(after, 'portcullis_upstream_endpoints_available', { service: s.name }), 1, s.name);
    }
  });

  test('a refused TLS handshake at the gateway is counted', async () => {
    const name = 'portcullis_tls_handshake_failures_total';
    const before = valueOf(await scrape(gatewayMetrics), name, { component: 'gateway' });
    const { port, hostname } = new URL(sys.gatewayUrl);
    await new Promise<void>((resolve) => {
      const s = netConnect(Number(port), hostname, () => s.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
      s.on('close', () => resolve());
      s.on('error', () => resolve());
      s.resume();
    });
    await eventually(() => scrape(gatewayMetrics), (s) => valueOf(s, name, { component: 'gateway' }) === before + 1, 'the handshake failure');
  });

  test('a sidecar and the control plane serve their own /metrics', async () => {
    const orders = await eventually(() => scrape(ordersMetrics), (s) => valueOf(s, 'portcullis_decisions_total', { component: 'sidecar:orders:inbound', decision: 'allow', route: 'orders' }) >= 1, 'sidecar decisions');
    const ordersId = sys.config.services.find((s) => s.name === 'orders')?.spiffeId ?? '';
    assert.ok(valueOf(orders, 'portcullis_workload_certificate_expiry_timestamp_seconds', { spiffe_id: ordersId }) > Date.now() / 1000);
    const control = await scrape(controlMetrics);
    assert.ok(valueOf(control, 'portcullis_admin_events_total', { action: 'oauth.login', outcome: 'success' }) >= 2, 'the logins of before()');
    assert.ok(valueOf(control, 'portcullis_admin_events_total', { action: 'workload.attest', outcome: 'success' }) >= 4, 'gateway and three sidecars');
    assert.equal((await call(controlMetrics.replace('/metrics', '/'))).status, 404);
  });
});

describe('trace context', () => {
  test('the service receives the caller\'s trace id, with a parent span of Portcullis\'s own', async () => {
    const traceId = randomHex(16);
    const parentId = randomHex(8);
    const r = await gw('/shop/orders', { headers: as('alice', { traceparent: `00-${traceId}-${parentId}-01`, tracestate: 'rojo=00f067aa0ba902b7' }) });
    assert.equal(r.status, 200);
    const got = (await seen('orders')).filter((s) => s.traceparent?.includes(traceId));
    assert.equal(got.length, 1, 'orders saw the request with our trace id');
    const tp = parseTraceparent(got[0]?.traceparent);
    assert.ok(tp);
    assert.equal(tp.traceId, traceId);
    assert.notEqual(tp.parentId, parentId, 'each hop sends its own span id');
    assert.equal(tp.sampled, true);
  });

  test('a malformed traceparent is replaced by a new trace, never forwarded', async () => {
    const traceId = randomHex(16);
    const malformed = [
      `00-${traceId.toUpperCase()}-${randomHex(8)}-01`,
      `00-${traceId}-${'0'.repeat(16)}-01`,
      `ff-${traceId}-${randomHex(8)}-01`,
      `00-${traceId}-${randomHex(8)}-01-extra`,
      'garbage',
    ];
    for (const bad of malformed) {
      const count = (await seen('orders')).length;
      assert.equal((await gw('/shop/orders', { headers: as('alice', { traceparent: bad, tracestate: 'evil=1' }) })).status, 200, bad);
      const latest = (await seen('orders')).slice(count);
      assert.equal(latest.length, 1, bad);
      const tp = parseTraceparent(latest[0]?.traceparent);
      assert.ok(tp, `a valid traceparent replaced ${bad}`);
      assert.notEqual(tp.traceId, traceId, bad);
      assert.notEqual(latest[0]?.traceparent, bad);
    }
  });

  test('a service-to-service call stays in the trace, and every hop exports its span', async () => {
    const traceId = randomHex(16);
    const parentId = randomHex(8);
    const body = { items: [{ sku: 'tea', qty: 1 }], card: '4111 1111 1111 1111' };
    const r = await gw('/shop/orders', { method: 'POST', body, headers: as('alice', { traceparent: `00-${traceId}-${parentId}-01` }) });
    assert.equal(r.status, 201, r.text);
    const charge = (await seen('payments')).find((s) => s.path === '/payments/charge' && s.traceparent?.includes(traceId));
    assert.ok(charge, 'payments saw the charge in the caller\'s trace');

    // gateway (server) → orders' sidecar inbound (server) → orders → orders' sidecar outbound (client) → payments' sidecar inbound (server)
    const spans = await eventually(async () => collector.spans().filter((s) => s.traceId === traceId), (s) => s.length >= 4, 'four spans');
    const by = (component: string): OtlpSpan & { service: string } => {
      const found = spans.find((s) => s.attributes.some((a) => a.key === 'portcullis.component' && a.value.stringValue === component));
      assert.ok(found, `a span from ${component}`);
      return found;
    };
    const edge = by('gateway');
    const ordersIn = by('sidecar:orders:inbound');
    const ordersOut = by('sidecar:orders:outbound');
    const paymentsIn = by('sidecar:payments:inbound');
    assert.equal(edge.service, 'portcullis-gateway');
    assert.equal(ordersIn.service, 'portcullis-sidecar-orders');
    assert.equal(edge.parentSpanId, parentId, 'the gateway continues the client\'s span');
    assert.equal(ordersIn.parentSpanId, edge.spanId);
    assert.equal(ordersOut.parentSpanId, ordersIn.spanId, 'the service passed its traceparent on');
    assert.equal(paymentsIn.parentSpanId, ordersOut.spanId);
    assert.deepEqual([edge.kind, ordersIn.kind, ordersOut.kind, paymentsIn.kind], [2, 2, 3, 2]);
    assert.equal(edge.name, 'POST shop.orders.create');
    assert.equal(parseTraceparent(charge.traceparent)?.parentId, paymentsIn.spanId, 'the service sees the span of its own sidecar');
  });

  test('the audit record of a decision carries its trace id', async () => {
    const traceId = randomHex(16);
    await gw('/shop/orders/o-1/refund', { method: 'POST', headers: as('alice', { traceparent: `00-${traceId}-${randomHex(8)}-01` }) });
    const files = (d: string): string[] => readdirSync(d).flatMap((f) => (statSync(join(d, f)).isDirectory() ? files(join(d, f)) : [join(d, f)]));
    const audit = join(dir, 'audit');
    await eventually(async () => existsSync(audit) && files(audit).some((f) => readFileSync(f, 'utf8').includes(`"traceId":"${traceId}"`)), Boolean, 'the audit record');
  });
});
