// The single-origin Upstream the cluster builds on (and the sidecar uses directly): forward() still
// streams both ways, request() classifies failures, check() is a health probe.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createServer, get, type IncomingMessage, type ServerResponse } from 'node:http';
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

/** A front server that forwards every request to `upstream`, recording how each forward() ended. */
async function frontFor(upstream: Upstream, onResponse?: (res: ServerResponse) => void): Promise<{ url: string; settled: Promise<number>[]; close(): Promise<void> }> {
  const settled: Promise<number>[] = [];
  const front = createServer((req, res) => {
    onResponse?.(res);
    const p = upstream.forward(req, res, { method: 'GET', pathAndQuery: req.url ?? '/', headers: {} }, 'rid');
    settled.push(p);
    p.catch((e: unknown) => sendError(res, asPortcullisError(e), 'rid'));
  });
  await new Promise<void>((r) => front.listen(0, '127.0.0.1', () => r()));
  return {
    url: `http://127.0.0.1:${(front.address() as AddressInfo).port}/big`, // a TCP listener's address is an AddressInfo
    settled,
    close: async () => { front.closeAllConnections(); await new Promise((r) => front.close(r)); },
  };
}

test('a large answer to a slow client holds the upstream back (backpressure) instead of buffering, and arrives whole', async () => {
  const total = 32 * 1024 * 1024;
  const chunk = randomBytes(64 * 1024);
  const up = await startUpstream('big', (_req, res) => {
    res.setHeader('content-length', total);
    let written = 0;
    const pump = (): void => {
      while (written < total) {
        written += chunk.length;
        if (!res.write(chunk)) { res.once('drain', pump); return; }
      }
      res.end();
    };
    pump();
  });
  const upstream = new Upstream(up.origin, undefined, 10_000);
  let clientRes: ServerResponse | undefined;
  const front = await frontFor(upstream, (res) => { clientRes = res; });
  try {
    const answer = await new Promise<IncomingMessage>((resolve, reject) => get(front.url, resolve).on('error', reject));
    const digest = createHash('sha256');
    let received = 0;
    let mostQueued = 0;
    answer.on('data', (c: Buffer) => {
      received += c.length;
      digest.update(c);
      mostQueued = Math.max(mostQueued, clientRes?.writableLength ?? 0);
      answer.pause(); // a client slower than the upstream: one chunk per turn of the event loop
      setImmediate(() => answer.resume());
    });
    await once(answer, 'end');
    assert.equal(received, total);
    const expected = createHash('sha256');
    for (let n = 0; n < total; n += chunk.length) expected.update(chunk);
    assert.equal(digest.digest('hex'), expected.digest('hex'));
    assert.ok(mostQueued < 1024 * 1024, `at most ${mostQueued} bytes waited in the gateway for the client`);
    assert.equal(await front.settled[0], 200);
  } finally {
    await front.close();
    await upstream.close();
    await up.close();
  }
});

test('an upstream that breaks off mid-body cuts the client off too: no complete-looking answer, and forward() settles', async () => {
  const up = await startUpstream('broken', (_req, res) => {
    res.setHeader('content-length', 1000);
    res.write('x'.repeat(100));
    setImmediate(() => res.socket?.destroy());
  });
  const upstream = new Upstream(up.origin, undefined, 5000);
  const front = await frontFor(upstream);
  try {
    const answer = await new Promise<IncomingMessage>((resolve, reject) => get(front.url, resolve).on('error', reject));
    assert.equal(answer.statusCode, 200);
    let received = 0;
    answer.on('data', (c: Buffer) => { received += c.length; });
    const [outcome] = await Promise.race([once(answer, 'end').then(() => ['end']), once(answer, 'aborted').then(() => ['aborted']), once(answer, 'error').then(() => ['error'])]);
    assert.notEqual(outcome, 'end', 'the client must not see a complete answer');
    assert.ok(received < 1000);
    assert.equal(await front.settled[0], 200); // relayed, then cut: the status stands, nothing hangs
  } finally {
    await front.close();
    await upstream.close();
    await up.close();
  }
});
