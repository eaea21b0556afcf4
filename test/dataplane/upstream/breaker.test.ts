// The circuit breaker over a real upstream, driven by a fake clock.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { FakeClock } from '../../../src/core/clock.js';
import { UpstreamCluster } from '../../../src/dataplane/upstream/cluster.js';
import { call, codeOf, type Reply } from '../../helpers/net.js';
import { gate, startFront, startUpstream, until, type TestUpstream } from './harness.js';

interface Rig {
  clock: FakeClock;
  up: TestUpstream;
  cluster: UpstreamCluster;
  send: (path?: string) => Promise<Reply>;
  /** What the upstream answers next; `hold` makes it wait for the gate. */
  mode: { status: number; hold?: Promise<void> };
  close: () => Promise<void>;
}

async function rig(failureThreshold = 3): Promise<Rig> {
  const clock = new FakeClock(1_000_000);
  const mode: Rig['mode'] = { status: 503 };
  const up = await startUpstream('svc', (_req, res) => {
    const status = mode.status;
    void (mode.hold ?? Promise.resolve()).then(() => { res.statusCode = status; res.end(String(status)); });
  });
  // One endpoint (never ejected), no retries: every request is exactly one try.
  const cluster = new UpstreamCluster({ origins: [up.origin], tls: undefined, timeoutMs: 5000, retries: { attempts: 0 }, breaker: { failureThreshold, openMs: 10_000 }, clock });
  const front = await startFront(cluster);
  return {
    clock, up, cluster, mode,
    send: (path = '/x') => call(`${front.url}${path}`),
    close: async () => { await front.close(); await cluster.close(); await up.close(); },
  };
}

test('the breaker opens after N consecutive failures and then refuses without touching the upstream', async () => {
  const r = await rig(3);
  try {
    for (let i = 0; i < 3; i++) assert.equal((await r.send()).status, 503);
    assert.equal(r.cluster.state().breaker, 'open');
    const refused = await r.send();
    assert.equal(refused.status, 503);
    assert.equal(codeOf(refused), 'PCL_ERR_CIRCUIT_OPEN');
    assert.equal(r.up.hits, 3, 'the refused request never reached the upstream');
    await r.clock.advance(9_999);
    assert.equal(codeOf(await r.send()), 'PCL_ERR_CIRCUIT_OPEN');
    assert.equal(r.up.hits, 3);
  } finally {
    await r.close();
  }
});

test('half-open after openMs: exactly one probe goes through, and its success closes the breaker', async () => {
  const r = await rig(3);
  try {
    for (let i = 0; i < 3; i++) await r.send();
    await r.clock.advance(10_000);
    assert.equal(r.cluster.state().breaker, 'half-open');

    const held = gate();
    r.mode.status = 200;
    r.mode.hold = held.wait;
    const probe = r.send();
    await r.up.reached(4);
    const second = await r.send();
    assert.equal(codeOf(second), 'PCL_ERR_CIRCUIT_OPEN', 'only one probe while half-open');
    assert.equal(r.up.hits, 4);
    held.open();
    assert.equal((await probe).status, 200);
    assert.equal(r.cluster.state().breaker, 'closed');
    assert.equal((await r.send()).status, 200);
    assert.equal(r.up.hits, 5);
  } finally {
    await r.close();
  }
});

test('a failed probe re-opens the breaker for another openMs', async () => {
  const r = await rig(3);
  try {
    for (let i = 0; i < 3; i++) await r.send();
    await r.clock.advance(10_000);
    assert.equal((await r.send()).status, 503, 'the probe reached the upstream and failed');
    assert.equal(r.up.hits, 4);
    assert.equal(r.cluster.state().breaker, 'open');
    assert.equal(codeOf(await r.send()), 'PCL_ERR_CIRCUIT_OPEN');
    assert.equal(r.up.hits, 4);
    await r.clock.advance(10_000);
    assert.equal(r.cluster.state().breaker, 'half-open');
  } finally {
    await r.close();
  }
});

test('500 answers do not open the breaker, and a success resets the count', async () => {
  const r = await rig(2);
  try {
    r.mode.status = 500;
    for (let i = 0; i < 5; i++) assert.equal((await r.send()).status, 500);
    assert.equal(r.cluster.state().breaker, 'closed');
    r.mode.status = 503;
    await r.send();
    r.mode.status = 200;
    await r.send();
    r.mode.status = 503;
    await r.send();
    assert.equal(r.cluster.state().breaker, 'closed', 'failures separated by a success are not consecutive');
    await r.send();
    assert.equal(r.cluster.state().breaker, 'open');
  } finally {
    await r.close();
  }
});

test('connection failures count towards the breaker', async () => {
  const clock = new FakeClock(1_000_000);
  const up = await startUpstream('svc');
  const origin = up.origin;
  await up.close(); // now refusing
  const cluster = new UpstreamCluster({ origins: [origin], tls: undefined, timeoutMs: 5000, retries: { attempts: 0 }, breaker: { failureThreshold: 2, openMs: 1000 }, clock });
  const front = await startFront(cluster);
  try {
    assert.equal(codeOf(await call(`${front.url}/x`)), 'PCL_ERR_UPSTREAM_UNAVAILABLE');
    assert.equal(codeOf(await call(`${front.url}/x`)), 'PCL_ERR_UPSTREAM_UNAVAILABLE');
    assert.equal(codeOf(await call(`${front.url}/x`)), 'PCL_ERR_CIRCUIT_OPEN');
  } finally {
    await front.close();
    await cluster.close();
  }
});

test('a client hanging up mid-upload is not an upstream failure: it cannot open the breaker', async () => {
  const clock = new FakeClock(1_000_000);
  let started = 0;
  // An upstream that starts reading the body and never answers on its own.
  const upstream = createServer((req) => { started++; req.resume(); });
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', () => r()));
  const origin = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`; // a TCP listener's address is an AddressInfo
  const cluster = new UpstreamCluster({ origins: [origin], tls: undefined, timeoutMs: 5000, retries: { attempts: 0 }, breaker: { failureThreshold: 1, openMs: 10_000 }, clock });
  const front = await startFront(cluster);
  try {
    const { port } = new URL(front.url);
    for (let i = 1; i <= 2; i++) {
      const sock = connect(Number(port), '127.0.0.1');
      sock.write('POST /upload HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n');
      await until(() => started === i && cluster.state().inFlight === 1, 'upload under way');
      sock.destroy();
      await until(() => cluster.state().inFlight === 0, 'request over');
      assert.equal(cluster.state().breaker, 'closed');
    }
  } finally {
    await front.close();
    await cluster.close();
    upstream.closeAllConnections();
    await new Promise((r) => upstream.close(r));
  }
});
