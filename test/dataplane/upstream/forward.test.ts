// The single-origin Upstream the cluster builds on (and the sidecar uses directly): forward() still
// streams both ways, request() classifies failures, check() is a health probe.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Upstream, UpstreamFailure, type FailureKind } from '../../../src/dataplane/forward.js';
import { asPortcullisError } from '../../../src/core/errors.js';
import { sendError } from '../../../src/dataplane/respond.js';
import { call } from '../../helpers/net.js';
import { deadOrigin, startUpstream } from './harness.js';

test('forward() streams the request body up and the response down, with our request id', async () => {
  const up = await startUpstream('svc', (_req, res, body) => { res.setHeader('x-echo', 'yes'); res.end(`got ${body}`); });
  const upstream = new Upstream(up.origin, undefined, 5000);
  const front = createServer((req, res) => {
    upstream.forward(req, res, { method: req.method ?? 'GET', pathAndQuery: req.url ?? '/', headers: { 'content-type': 'application/json' } }, 'rid-1')
      .catch((e: unknown) => sendError(res, asPortcullisError(e), 'rid-1'));
  });
  await new Promise<void>((r) => front.listen(0, '127.0.0.1', () => r()));
  try {
    const r = await call(`http://127.0.0.1:${(front.address() as AddressInfo).port}/x`, { method: 'POST', body: { a: 1 } }); // a TCP listener's address is an AddressInfo
    assert.equal(r.status, 200);
    assert.equal(r.text, 'got {"a":1}');
    assert.equal(r.headers['x-echo'], 'yes');
    assert.equal(r.headers['x-request-id'], 'rid-1');
  } finally {
    front.closeAllConnections();
    await new Promise((r) => front.close(r));
    await upstream.close();
    await up.close();
  }
});

/** A request() with no client body (an IncomingMessage without length headers stands in). */
async function failureOf(u: Upstream, method = 'GET'): Promise<{ code: string; kind: FailureKind }> {
  const noBody = { headers: {} } as IncomingMessage; // request() only reads the length headers of a body-less request
  try {
    await u.request(noBody, { method, pathAndQuery: '/', headers: {} });
  } catch (e) {
    assert.ok(e instanceof UpstreamFailure);
    return { code: e.code, kind: e.kind };
  }
  throw new Error('expected a failure');
}

test('request() classifies failures: refused = connect, hang-up = reset, no answer = timeout', async () => {
  const refused = new Upstream(await deadOrigin(), undefined, 5000);
  const hangUp = await startUpstream('x', (req) => req.socket.destroy());
  const reset = new Upstream(hangUp.origin, undefined, 5000);
  const silent = await startUpstream('y', () => undefined);
  const slow = new Upstream(silent.origin, undefined, 100);
  try {
    assert.deepEqual(await failureOf(refused), { code: 'PCL_ERR_UPSTREAM_UNAVAILABLE', kind: 'connect' });
    assert.deepEqual(await failureOf(reset), { code: 'PCL_ERR_UPSTREAM_UNAVAILABLE', kind: 'reset' });
    assert.deepEqual(await failureOf(slow), { code: 'PCL_ERR_UPSTREAM_TIMEOUT', kind: 'timeout' });
  } finally {
    await Promise.all([refused.close(), reset.close(), slow.close()]);
    await hangUp.close();
    await silent.close();
  }
});

test('check() passes on 2xx only, and never throws', async () => {
  const up = await startUpstream('svc', undefined, (_req, res) => { res.statusCode = 204; res.end(); });
  const ok = new Upstream(up.origin, undefined, 5000);
  const refused = new Upstream(await deadOrigin(), undefined, 5000);
  const failing = await startUpstream('f', undefined, (_req, res) => { res.statusCode = 503; res.end(); });
  const bad = new Upstream(failing.origin, undefined, 5000);
  try {
    assert.equal(await ok.check('/healthz', 1000), true);
    assert.equal(await bad.check('/healthz', 1000), false);
    assert.equal(await refused.check('/healthz', 1000), false);
    const aborted = new AbortController();
    aborted.abort();
    assert.equal(await ok.check('/healthz', 1000, aborted.signal), false);
  } finally {
    await Promise.all([ok.close(), refused.close(), bad.close()]);
    await up.close();
    await failing.close();
  }
});
