// Retries happen only when safe: idempotent method, replayable body, nothing sent to the client.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeClock } from '../../../src/core/clock.js';
import { UpstreamCluster, type ClusterOptions } from '../../../src/dataplane/upstream/cluster.js';
import { backoffDelay } from '../../../src/dataplane/upstream/retry.js';
import { call, codeOf, type CallOptions, type Reply } from '../../helpers/net.js';
import { deadOrigin, startFront, startUpstream, until, type Handler, type TestUpstream } from './harness.js';

/** Runs `fn` against a round-robin cluster of [first, second] (first is tried first), then cleans up. */
async function withPair(first: TestUpstream | string, second: TestUpstream, fn: (send: (path: string, o?: CallOptions) => Promise<Reply>, cluster: UpstreamCluster) => Promise<void>, extra: Partial<ClusterOptions> & { buffer?: boolean } = {}): Promise<void> {
  const { buffer, ...opts } = extra;
  const cluster = new UpstreamCluster({ origins: [typeof first === 'string' ? first : first.origin, second.origin], tls: undefined, timeoutMs: 5000, balance: 'round-robin', retries: { attempts: 1, backoffMs: 0 }, ...opts });
  const front = await startFront(cluster, { buffer: buffer ?? false });
  try {
    await fn((path, o) => call(`${front.url}${path}`, o), cluster);
  } finally {
    await front.close();
    await cluster.close();
    if (typeof first !== 'string') await first.close();
    await second.close();
  }
}

const hangUp: Handler = (req) => req.socket.destroy();

test('a GET is retried on a second endpoint when the first refuses connections', async () => {
  const ok = await startUpstream('b');
  await withPair(await deadOrigin(), ok, async (send) => {
    const r = await send('/items');
    assert.equal(r.status, 200);
    assert.equal(r.text, 'b');
    assert.equal(ok.hits, 1);
  });
});

test('without retries the refused GET fails with PCL_ERR_UPSTREAM_UNAVAILABLE', async () => {
  const ok = await startUpstream('b');
  await withPair(await deadOrigin(), ok, async (send) => {
    const r = await send('/items');
    assert.equal(r.status, 502);
    assert.equal(codeOf(r), 'PCL_ERR_UPSTREAM_UNAVAILABLE');
    assert.equal(ok.hits, 0);
  }, { retries: { attempts: 0 } });
});

test('a GET reset before response headers is retried elsewhere', async () => {
  const first = await startUpstream('a', hangUp);
  const ok = await startUpstream('b');
  await withPair(first, ok, async (send) => {
    const r = await send('/items');
    assert.equal(r.status, 200);
    assert.equal([first.hits, ok.hits].join(), '1,1');
  });
});

test('a POST is never retried: the upstream sees it once and the client gets 502', async () => {
  const first = await startUpstream('a', hangUp);
  const ok = await startUpstream('b');
  await withPair(first, ok, async (send) => {
    const r = await send('/orders', { method: 'POST', body: { n: 1 } });
    assert.equal(r.status, 502);
    assert.equal(codeOf(r), 'PCL_ERR_UPSTREAM_UNAVAILABLE');
    assert.equal([first.hits, ok.hits].join(), '1,0');
  }, { buffer: true });
});

test('a POST to a refusing endpoint is not retried either, even with a buffered body', async () => {
  const ok = await startUpstream('b');
  await withPair(await deadOrigin(), ok, async (send) => {
    const r = await send('/orders', { method: 'POST', body: { n: 1 } });
    assert.equal(r.status, 502);
    assert.equal(ok.hits, 0);
  }, { buffer: true });
});

test('a PUT with a streamed body is not retried', async () => {
  const ok = await startUpstream('b');
  await withPair(await deadOrigin(), ok, async (send) => {
    // undici destroys the streamed request body on failure, which may take the client connection
    // with it: the client gets a 502 or a reset, never an answer from the second endpoint.
    const r = await send('/items/1', { method: 'PUT', body: { v: 1 } }).catch(() => undefined);
    assert.ok(r === undefined || r.status === 502, `got ${r?.status}`);
    assert.equal(ok.hits, 0);
  });
});

test('a PUT with a buffered body is retried, body intact', async () => {
  const ok = await startUpstream('b');
  await withPair(await deadOrigin(), ok, async (send) => {
    const r = await send('/items/1', { method: 'PUT', body: { v: 1 } });
    assert.equal(r.status, 200);
    assert.deepEqual(ok.bodies, ['{"v":1}']);
  }, { buffer: true });
});

test('a 503 answer to a GET is retried; to a POST it is relayed as is', async () => {
  const first = await startUpstream('a', (_req, res) => { res.statusCode = 503; res.end('busy'); });
  const ok = await startUpstream('b');
  await withPair(first, ok, async (send) => {
    const r = await send('/items');
    assert.equal(r.status, 200);
    assert.equal(r.text, 'b');
    const p = await send('/orders', { method: 'POST', body: {} }); // round-robin: back to the first
    assert.equal(p.status, 503);
    assert.equal(p.text, 'busy');
    assert.equal([first.hits, ok.hits].join(), '2,1');
  }, { buffer: true });
});

test('a retried 503 with a large body: read and dropped up to 128 KiB, then its connection closed; the next answer is relayed whole', async () => {
  // 64 MiB in 64 KiB writes, more than the socket buffers of both ends hold (Linux lets a receive
  // buffer grow to 32 MiB): the upstream can send it all only if the gateway reads it all.
  const total = 64 * 1024 * 1024;
  const chunk = Buffer.alloc(64 * 1024, 0x61);
  let outcome = '';
  const first = await startUpstream('a', (_req, res) => {
    res.on('finish', () => { outcome ||= 'sent whole'; });
    res.on('close', () => { outcome ||= 'cut off'; });
    res.statusCode = 503;
    res.setHeader('content-length', total);
    let written = 0;
    const pump = (): void => {
      while (written < total && !res.destroyed) {
        written += chunk.length;
        if (!res.write(chunk)) { res.once('drain', pump); return; }
      }
      if (written >= total) res.end();
    };
    pump();
  });
  const ok = await startUpstream('b');
  await withPair(first, ok, async (send) => {
    const r = await send('/items');
    assert.equal(r.status, 200);
    assert.equal(r.text, 'b', 'not a byte of the dropped answer reaches the client');
    await until(() => outcome !== '', 'the discarded answer ended');
    assert.equal(outcome, 'cut off', 'the gateway gave the connection up instead of reading 64 MiB');
  });
});

test('a retried 503 with a short body is read to its end: its keep-alive connection serves the next request', async () => {
  const sockets = new Set<unknown>();
  const body = Buffer.alloc(100 * 1024, 0x62); // over what is held before the answer is looked at, under what a discard reads
  const first = await startUpstream('a', (req, res) => { sockets.add(req.socket); res.statusCode = 503; res.end(body); });
  const ok = await startUpstream('b');
  await withPair(first, ok, async (send) => {
    assert.equal((await send('/items')).text, 'b');
    const p = await send('/orders', { method: 'POST', body: {} }); // round-robin: the first again
    assert.equal(p.status, 503);
    assert.equal(p.text.length, body.length);
    assert.equal(sockets.size, 1, 'one connection for both');
  }, { buffer: true });
});

test('a 500 answer is the service speaking: relayed, never retried', async () => {
  const first = await startUpstream('a', (_req, res) => { res.statusCode = 500; res.end('bug'); });
  const ok = await startUpstream('b');
  await withPair(first, ok, async (send) => {
    const r = await send('/items');
    assert.equal(r.status, 500);
    assert.equal(ok.hits, 0);
  });
});

test('the number of tries is bounded by attempts', async () => {
  const ups = await Promise.all(['a', 'b', 'c', 'd'].map((n) => startUpstream(n, (_req, res) => { res.statusCode = 503; res.end(n); })));
  const cluster = new UpstreamCluster({ origins: ups.map((u) => u.origin), tls: undefined, timeoutMs: 5000, balance: 'round-robin', retries: { attempts: 2, backoffMs: 0 } });
  const front = await startFront(cluster);
  try {
    const r = await call(`${front.url}/items`);
    assert.equal(r.status, 503, 'the last answer is relayed');
    assert.deepEqual(ups.map((u) => u.hits), [1, 1, 1, 0], 'three tries, each on a different endpoint');
  } finally {
    await front.close();
    await cluster.close();
    await Promise.all(ups.map((u) => u.close()));
  }
});

test('a timed-out PUT is not retried; a timed-out GET is', async () => {
  // The first endpoint never answers; timeouts are undici's (real time), so keep them short.
  const first = await startUpstream('a', () => undefined);
  const ok = await startUpstream('b');
  await withPair(first, ok, async (send) => {
    const put = await send('/items/1', { method: 'PUT', body: { v: 1 } });
    assert.equal(put.status, 504);
    assert.equal(codeOf(put), 'PCL_ERR_UPSTREAM_TIMEOUT');
    assert.equal(ok.hits, 0);
    await send('/warm'); // round-robin: this one goes to the second endpoint
    const get = await send('/items/1');
    assert.equal(get.status, 200);
    assert.equal([first.hits, ok.hits].join(), '2,2');
  }, { buffer: true, timeoutMs: 150 });
});

test('the retry waits its jittered backoff on the clock', async () => {
  const clock = new FakeClock(1_000_000);
  const ok = await startUpstream('b');
  await withPair(await deadOrigin(), ok, async (send) => {
    const pending = send('/items');
    await until(() => clock.pendingTimers() === 1, 'backoff timer armed');
    await clock.advance(49);
    for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
    assert.equal(ok.hits, 0, 'no retry before half the backoff');
    await clock.advance(51);
    assert.equal((await pending).status, 200);
    assert.equal(ok.hits, 1);
  }, { clock, retries: { attempts: 1, backoffMs: 100 } });
});

test('backoff doubles per retry, stays within 50–100 % and is capped at ten times the base', () => {
  assert.equal(backoffDelay(1, 100, () => 0), 50);
  assert.equal(backoffDelay(1, 100, () => 1), 100);
  assert.equal(backoffDelay(3, 100, () => 1), 400);
  assert.equal(backoffDelay(10, 100, () => 1), 1000);
});
