// Trace export against a local collector stub: spans arrive as OTLP/HTTP JSON; a slow or absent
// collector costs spans (counted), never time on the publishing side.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { PortcullisError } from '../../src/core/errors.js';
import { publishRequest, type RequestEvent } from '../../src/core/events.js';
import { otlpOptionsFromEnv, OTLP_DEFAULTS } from '../../src/core/tracing/otlp-env.js';
import { OtlpTraceExporter, toOtlpSpan, type OtlpExporterOptions } from '../../src/core/tracing/otlp-exporter.js';
import { Collector } from '../helpers/otlp-collector.js';

const collector = new Collector();
before(() => collector.start());
after(() => collector.stop());

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
let n = 0;
function event(over: Partial<RequestEvent> = {}): RequestEvent {
  n++;
  return {
    component: 'gateway', requestId: `req-${n}`, method: 'GET', path: '/shop/orders/o-1', route: 'shop.orders.get', service: 'orders',
    status: 200, startTime: 1_700_000_000_123, durationSeconds: 0.0025,
    trace: { traceId: TRACE, spanId: String(n).padStart(16, '0'), parentSpanId: '00f067aa0ba902b7', sampled: true, kind: 'server' },
    ...over,
  };
}

function exporter(over: Partial<OtlpExporterOptions> = {}): OtlpTraceExporter {
  return new OtlpTraceExporter({ url: `${collector.url}/v1/traces`, serviceName: 'portcullis-test', maxQueueSize: 100, maxBatchSize: 50, scheduleDelayMs: 60_000, timeoutMs: 2000, ...over });
}

test('sampled request events arrive as OTLP/HTTP JSON spans', async () => {
  collector.received = [];
  collector.mode = 'ok';
  const x = exporter({ headers: { 'x-api-key': 'k1' } });
  x.start();
  publishRequest(event());
  publishRequest(event({ trace: { traceId: TRACE, spanId: 'b7ad6b7169203331', sampled: false, kind: 'server' } }));
  publishRequest({ ...event(), trace: undefined });
  publishRequest(event({ component: 'sidecar:orders:outbound', route: undefined, service: 'payments', status: 502, code: 'PCL_ERR_UPSTREAM_UNAVAILABLE', upstreamError: true, trace: { traceId: TRACE, spanId: 'b7ad6b7169203331', parentSpanId: '00f067aa0ba902b7', sampled: true, kind: 'client', tracestate: 'rojo=1' } }));
  await x.flush();
  await x.shutdown();

  assert.equal(collector.received.length, 1, 'one batch');
  const r = collector.received[0];
  assert.equal(r?.url, '/v1/traces');
  assert.equal(r?.headers['content-type'], 'application/json');
  assert.equal(r?.headers['x-api-key'], 'k1');
  assert.deepEqual(r?.body.resourceSpans[0]?.resource.attributes.find((a) => a.key === 'service.name')?.value, { stringValue: 'portcullis-test' });
  const spans = collector.spans();
  assert.equal(spans.length, 2, 'unsampled and untraced requests are not exported');
  const [server, client] = spans;
  assert.equal(server?.traceId, TRACE);
  assert.equal(server?.parentSpanId, '00f067aa0ba902b7');
  assert.equal(server?.kind, 2);
  assert.equal(server?.name, 'GET shop.orders.get');
  assert.equal(server?.startTimeUnixNano, '1700000000123000000');
  assert.equal(server?.endTimeUnixNano, '1700000000125500000');
  assert.deepEqual(server?.status, { code: 0 });
  const attrs = Object.fromEntries((server?.attributes ?? []).map((a) => [a.key, a.value]));
  assert.deepEqual(attrs['http.response.status_code'], { intValue: '200' });
  assert.deepEqual(attrs['portcullis.route'], { stringValue: 'shop.orders.get' });
  assert.equal(client?.kind, 3);
  assert.equal(client?.traceState, 'rojo=1');
  assert.deepEqual(client?.status, { code: 2, message: 'PCL_ERR_UPSTREAM_UNAVAILABLE' });
  assert.deepEqual(x.stats(), { exported: 2, dropped: 0, failedExports: 0 });
});

test('a full batch is sent at once, without waiting for the schedule', async () => {
  collector.received = [];
  collector.mode = 'ok';
  const x = exporter({ maxBatchSize: 3, scheduleDelayMs: 3_600_000 });
  x.start();
  for (let i = 0; i < 3; i++) publishRequest(event());
  for (let i = 0; i < 100 && collector.received.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
  assert.equal(collector.spans().length, 3);
  await x.shutdown();
});

test('the scheduled export sends what is queued', async () => {
  collector.received = [];
  collector.mode = 'ok';
  const x = exporter({ scheduleDelayMs: 20 });
  x.start();
  publishRequest(event());
  for (let i = 0; i < 100 && collector.received.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
  assert.equal(collector.spans().length, 1);
  await x.shutdown();
});

test('a collector that hangs: the queue stays bounded, spans are dropped and counted, publishing never waits', async () => {
  collector.received = [];
  collector.mode = 'hang';
  const x = exporter({ maxQueueSize: 10, maxBatchSize: 5, scheduleDelayMs: 5, timeoutMs: 300 });
  x.start();
  publishRequest(event());
  for (let i = 0; i < 100 && collector.received.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
  assert.equal(collector.received.length, 1, 'one export is in flight, and hangs');
  const t0 = performance.now();
  for (let i = 0; i < 1000; i++) publishRequest(event());
  const elapsed = performance.now() - t0;
  assert.ok(elapsed < 200, `publishing 1000 events took ${elapsed.toFixed(1)} ms`);
  const s = x.stats();
  assert.equal(s.dropped, 1000 - 10, 'all but a queue-full dropped while the export hangs');
  // The hung export times out: its span is dropped too, and the export counted as failed.
  for (let i = 0; i < 100 && x.stats().failedExports === 0; i++) await new Promise((r) => setTimeout(r, 10));
  assert.ok(x.stats().failedExports >= 1);
  const t1 = performance.now();
  await x.shutdown();
  assert.ok(performance.now() - t1 < 3000, 'shutdown is bounded by the export timeout');
  collector.mode = 'ok';
});

test('a collector that refuses or is down: failures counted, nothing thrown', async () => {
  collector.mode = 'error';
  const x = exporter();
  x.start();
  publishRequest(event());
  await x.flush();
  assert.deepEqual(x.stats(), { exported: 0, dropped: 1, failedExports: 1 });
  await x.shutdown();
  collector.mode = 'ok';

  const down = exporter({ url: 'http://127.0.0.1:1/v1/traces' });
  down.start();
  publishRequest(event());
  await down.flush();
  assert.equal(down.stats().failedExports, 1);
  await down.shutdown();
});

test('toOtlpSpan: server 4xx is not an error, no answer is', () => {
  assert.deepEqual(toOtlpSpan(event({ status: 403, code: 'PCL_ERR_FORBIDDEN' }))?.status, { code: 0 });
  assert.deepEqual(toOtlpSpan(event({ status: 0 }))?.status, { code: 2 });
  assert.equal(toOtlpSpan({ ...event(), trace: undefined }), undefined);
});

test('environment: off unless an endpoint is set; /v1/traces appended to the base endpoint only', () => {
  assert.equal(otlpOptionsFromEnv({}, 'portcullis-gateway').options, undefined);
  const base = otlpOptionsFromEnv({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318/' }, 'portcullis-gateway').options;
  assert.equal(base?.url, 'http://collector:4318/v1/traces');
  assert.equal(base?.serviceName, 'portcullis-gateway');
  assert.equal(base?.maxQueueSize, OTLP_DEFAULTS.maxQueueSize);
  assert.equal(base?.scheduleDelayMs, OTLP_DEFAULTS.scheduleDelayMs);
  assert.equal(otlpOptionsFromEnv({ OTEL_EXPORTER_OTLP_ENDPOINT: 'https://c.example/otlp' }, 'x').options?.url, 'https://c.example/otlp/v1/traces');
  assert.equal(otlpOptionsFromEnv({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://a:1', OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://b:2/custom' }, 'x').options?.url, 'http://b:2/custom');
  assert.equal(otlpOptionsFromEnv({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://a:1', OTEL_SDK_DISABLED: 'true' }, 'x').options, undefined);
  assert.equal(otlpOptionsFromEnv({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://a:1', OTEL_TRACES_EXPORTER: 'none' }, 'x').options, undefined);
  const tuned = otlpOptionsFromEnv({
    OTEL_EXPORTER_OTLP_ENDPOINT: 'http://a:1', OTEL_SERVICE_NAME: 'edge', OTEL_BSP_MAX_QUEUE_SIZE: '10', OTEL_BSP_MAX_EXPORT_BATCH_SIZE: '50',
    OTEL_BSP_SCHEDULE_DELAY: '200', OTEL_EXPORTER_OTLP_TIMEOUT: '1500', OTEL_EXPORTER_OTLP_HEADERS: 'Authorization=Bearer%20abc, x-tenant = t1',
  }, 'x').options;
  assert.equal(tuned?.serviceName, 'edge');
  assert.equal(tuned?.maxQueueSize, 10);
  assert.equal(tuned?.maxBatchSize, 10, 'a batch is never larger than the queue');
  assert.equal(tuned?.scheduleDelayMs, 200);
  assert.equal(tuned?.timeoutMs, 1500);
  assert.deepEqual(tuned?.headers, { authorization: 'Bearer abc', 'x-tenant': 't1' });
});

test('environment: bad values stop the process at start, without echoing header values', () => {
  const bad: Record<string, string>[] = [
    { OTEL_EXPORTER_OTLP_ENDPOINT: 'not a url' },
    { OTEL_EXPORTER_OTLP_ENDPOINT: 'ftp://collector' },
    { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://user:pw@collector' },
    { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://a:1', OTEL_BSP_MAX_QUEUE_SIZE: '0' },
    { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://a:1', OTEL_BSP_SCHEDULE_DELAY: '1.5' },
    { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://a:1', OTEL_EXPORTER_OTLP_TIMEOUT: 'soon' },
    { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://a:1', OTEL_EXPORTER_OTLP_HEADERS: 'secret-value-without-name' },
    { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://a:1', OTEL_EXPORTER_OTLP_HEADERS: 'x=%E0%A4%Asecret' },
  ];
  for (const env of bad) {
    assert.throws(() => otlpOptionsFromEnv(env, 'x'), (e: unknown) => e instanceof PortcullisError && e.code === 'PCL_ERR_INVALID_ARGUMENT' && !e.message.includes('secret') && !e.message.includes('pw'), JSON.stringify(env));
  }
  const grpc = otlpOptionsFromEnv({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://a:1', OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' }, 'x');
  assert.ok(grpc.options, 'still exports');
  assert.equal(grpc.warnings.length, 1, 'but says that only http/json is spoken');
});
