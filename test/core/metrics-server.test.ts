// The /metrics listener answers GET /metrics and nothing else.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'undici';
import { join } from 'node:path';
import { loadConfig } from '../../src/core/config/load.js';
import { publishAudit } from '../../src/core/events.js';
import { PortcullisMetrics } from '../../src/core/metrics/metrics.js';
import { startMetricsServer, type MetricsServer } from '../../src/core/metrics/server.js';
import { repoRoot } from '../helpers/paths.js';
import { parseExposition, valueOf } from '../helpers/prometheus.js';

let metrics: PortcullisMetrics;
let server: MetricsServer;
let base: string;

before(async () => {
  metrics = new PortcullisMetrics({ config: loadConfig(join(repoRoot, 'examples', 'shop', 'portcullis.yaml')) });
  server = await startMetricsServer('127.0.0.1:0', metrics);
  base = `http://127.0.0.1:${server.port}`;
});

after(async () => {
  await server.close();
  metrics.close();
});

async function get(path: string, method = 'GET'): Promise<{ status: number; type: string | undefined; text: string }> {
  const res = await request(base + path, { method: method as 'GET' }); // any method string is fine for undici
  return { status: res.statusCode, type: res.headers['content-type'] as string | undefined, text: await res.body.text() }; // a single header here
}

test('GET /metrics answers the exposition text, version 0.0.4', async () => {
  publishAudit({
    type: 'decision', time: '', requestId: 'r', component: 'gateway', decision: 'allow', status: 200,
    who: {}, what: { method: 'GET', path: '/shop/orders', route: 'shop.orders.list', service: 'orders' }, reasons: [], why: '',
  });
  const r = await get('/metrics');
  assert.equal(r.status, 200);
  assert.match(r.type ?? '', /^text\/plain; version=0\.0\.4/);
  assert.equal(valueOf(parseExposition(r.text), 'portcullis_decisions_total', { route: 'shop.orders.list', decision: 'allow' }), 1);
  assert.equal((await get('/metrics?name[]=x')).status, 200, 'a query string is ignored');
});

test('anything else is 404, with nothing of the metrics in it', async () => {
  for (const [path, method] of [['/', 'GET'], ['/metrics/', 'GET'], ['/metricsx', 'GET'], ['/Metrics', 'GET'], ['/metrics', 'POST'], ['/metrics', 'DELETE'], ['/metrics', 'HEAD']] as const) {
    const r = await get(path, method);
    assert.equal(r.status, 404, `${method} ${path}`);
    assert.ok(!r.text.includes('portcullis_'), `${method} ${path}`);
  }
});

test('a port already taken is an error at start, not a silent lack of metrics', async () => {
  await assert.rejects(startMetricsServer(`127.0.0.1:${server.port}`, metrics), /EADDRINUSE/);
});
