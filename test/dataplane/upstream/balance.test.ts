// Load balancing over real upstreams: round-robin spreads evenly, least-request avoids the busy one.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { UpstreamCluster } from '../../../src/dataplane/upstream/cluster.js';
import { call } from '../../helpers/net.js';
import { deadOrigin, gate, startFront, startUpstream } from './harness.js';

test('round-robin spreads requests evenly over 3 endpoints', async () => {
  const ups = await Promise.all(['a', 'b', 'c'].map((n) => startUpstream(n)));
  const cluster = new UpstreamCluster({ origins: ups.map((u) => u.origin), tls: undefined, timeoutMs: 5000, balance: 'round-robin' });
  const front = await startFront(cluster);
  try {
    const answers: string[] = [];
    for (let i = 0; i < 9; i++) {
      const r = await call(`${front.url}/x`);
      assert.equal(r.status, 200);
      answers.push(r.text);
    }
    assert.deepEqual(answers, ['a', 'b', 'c', 'a', 'b', 'c', 'a', 'b', 'c']);
    assert.deepEqual(ups.map((u) => u.hits), [3, 3, 3]);
  } finally {
    await front.close();
    await cluster.close();
    await Promise.all(ups.map((u) => u.close()));
  }
});

test('least-request sends new requests to idle endpoints, not the one with a request in flight', async () => {
  const held = gate();
  // Every endpoint holds /slow until released; anything else is answered at once.
  const ups = await Promise.all(['a', 'b', 'c'].map((n) => startUpstream(n, (req, res) => {
    if (req.url === '/slow') void held.wait.then(() => res.end(n));
    else res.end(n);
  })));
  const cluster = new UpstreamCluster({ origins: ups.map((u) => u.origin), tls: undefined, timeoutMs: 5000 });
  const front = await startFront(cluster);
  try {
    const slow = call(`${front.url}/slow`);
    await Promise.race(ups.map((u) => u.reached(1)));
    const busy = ups.findIndex((u) => u.hits === 1);
    assert.equal(cluster.state().endpoints[busy]?.inFlight, 1);
    assert.equal(cluster.state().inFlight, 1);

    const answers = new Set<string>();
    for (let i = 0; i < 20; i++) answers.add((await call(`${front.url}/fast`)).text);
    assert.equal(ups[busy]?.hits, 1, 'the busy endpoint got nothing more');
    assert.equal(answers.size, 2, 'both idle endpoints were used');

    held.open();
    assert.equal((await slow).status, 200);
    assert.equal(cluster.state().inFlight, 0);
  } finally {
    held.open();
    await front.close();
    await cluster.close();
    await Promise.all(ups.map((u) => u.close()));
  }
});

test('WebSocket tunnels are balanced like requests, skip a dead endpoint, and are refused while the breaker is open', async () => {
  const ups = await Promise.all(['a', 'b'].map((n) => startUpstream(n)));
  const dead = await deadOrigin();
  const cluster = new UpstreamCluster({
    origins: [...ups.map((u) => u.origin), dead], tls: undefined, timeoutMs: 5000, balance: 'round-robin',
    outlier: { consecutiveFailures: 1, ejectMs: 60_000, maxEjectedPercent: 50 }, breaker: { failureThreshold: 100, openMs: 60_000 },
  });
  const front = await startFront(cluster);
  try {
    assert.deepEqual([cluster.tunnelOrigin(), cluster.tunnelOrigin(), cluster.tunnelOrigin()], [ups[0]?.origin, ups[1]?.origin, dead]);
    // One failed request ejects the dead endpoint (retries are on by default for GET): tunnels avoid it from then on.
    for (let i = 0; i < 3; i++) await call(`${front.url}/x`);
    const picked = new Set(Array.from({ length: 6 }, () => cluster.tunnelOrigin()));
    assert.deepEqual([...picked].sort(), ups.map((u) => u.origin).sort());
  } finally {
    await front.close();
    await cluster.close();
  }
  const broken = new UpstreamCluster({ origins: [dead], tls: undefined, timeoutMs: 5000, breaker: { failureThreshold: 1, openMs: 60_000 }, retries: { attempts: 1, backoffMs: 0 } });
  const front2 = await startFront(broken);
  try {
    await call(`${front2.url}/x`);
    assert.equal(broken.state().breaker, 'open');
    assert.throws(() => broken.tunnelOrigin(), (e: unknown) => (e as { code?: string }).code === 'PCL_ERR_CIRCUIT_OPEN');
  } finally {
    await front2.close();
    await broken.close();
    await Promise.all(ups.map((u) => u.close()));
  }
});
