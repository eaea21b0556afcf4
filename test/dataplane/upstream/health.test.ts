// Active health checks over real upstreams, driven by a fake clock.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeClock } from '../../../src/core/clock.js';
import { UpstreamCluster } from '../../../src/dataplane/upstream/cluster.js';
import { call } from '../../helpers/net.js';
import { gate, startFront, startUpstream, until, type TestUpstream } from './harness.js';

/** An upstream whose /healthz answers `state.status`. */
async function checked(name: string): Promise<{ up: TestUpstream; state: { status: number } }> {
  const state = { status: 200 };
  const up = await startUpstream(name, undefined, (_req, res) => { res.statusCode = state.status; res.end(); });
  return { up, state };
}

test('health checks mark an endpoint down after N failures and up after M passes; unhealthy ones get no traffic', async () => {
  const clock = new FakeClock(1_000_000);
  const a = await checked('a');
  const b = await checked('b');
  const cluster = new UpstreamCluster({ origins: [a.up.origin, b.up.origin], tls: undefined, timeoutMs: 5000, balance: 'round-robin', clock, healthCheck: { path: '/healthz', unhealthyAfter: 2, healthyAfter: 2 } });
  const front = await startFront(cluster);
  try {
    a.state.status = 500;
    await cluster.runHealthChecks();
    assert.equal(cluster.state().endpoints[0]?.healthy, true, 'one failure is not enough');
    await cluster.runHealthChecks();
    assert.equal(cluster.state().endpoints[0]?.healthy, false);
    assert.equal(cluster.state().endpoints[1]?.healthy, true);
    assert.equal(a.up.checks, 2);

    for (let i = 0; i < 4; i++) assert.equal((await call(`${front.url}/x`)).text, 'b');
    assert.equal(a.up.hits, 0);

    a.state.status = 200;
    await cluster.runHealthChecks();
    assert.equal(cluster.state().endpoints[0]?.healthy, false, 'one pass is not enough');
    await cluster.runHealthChecks();
    assert.equal(cluster.state().endpoints[0]?.healthy, true);
    const answers = new Set<string>();
    for (let i = 0; i < 4; i++) answers.add((await call(`${front.url}/x`)).text);
    assert.deepEqual([...answers].sort(), ['a', 'b']);
  } finally {
    await front.close();
    await cluster.close();
    await a.up.close();
    await b.up.close();
  }
});

test('health checks run every intervalMs on the clock, and a refused connection fails a check', async () => {
  const clock = new FakeClock(1_000_000);
  let held = gate();
  const a = await startUpstream('a', undefined, (_req, res) => { void held.wait.then(() => res.end()); });
  const gone = await startUpstream('gone');
  const goneOrigin = gone.origin;
  await gone.close();
  const cluster = new UpstreamCluster({ origins: [a.origin, goneOrigin], tls: undefined, timeoutMs: 5000, clock, healthCheck: { path: '/healthz', intervalMs: 5000, unhealthyAfter: 1 } });
  try {
    await clock.advance(4_999);
    for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
    assert.equal(a.checks, 0, 'nothing before the first interval');
    await clock.advance(1);
    await until(() => a.checks === 1, 'first timed check');
    const round = cluster.runHealthChecks(); // joins the timed round: its check on `a` is held
    held.open();
    await round;
    assert.equal(a.checks, 1, 'joined, not run again');
    assert.equal(cluster.state().endpoints[0]?.healthy, true);
    assert.equal(cluster.state().endpoints[1]?.healthy, false, 'the refusing endpoint is marked down');
    held = gate();
    held.open();
    await clock.advance(5_000);
    await until(() => a.checks === 2, 'second timed check');
  } finally {
    held.open();
    await cluster.close();
    await a.close();
  }
  assert.equal(clock.pendingTimers(), 0, 'close stops the checks');
});

test('when every endpoint is unhealthy, requests are still tried (fail open on health)', async () => {
  const clock = new FakeClock(1_000_000);
  const a = await checked('a');
  const cluster = new UpstreamCluster({ origins: [a.up.origin], tls: undefined, timeoutMs: 5000, clock, healthCheck: { path: '/healthz', unhealthyAfter: 1 } });
  const front = await startFront(cluster);
  try {
    a.state.status = 503;
    await cluster.runHealthChecks();
    assert.equal(cluster.state().endpoints[0]?.healthy, false);
    const r = await call(`${front.url}/x`);
    assert.equal(r.status, 200);
    assert.equal(a.up.hits, 1);
    assert.equal(cluster.state().inFlight, 0, 'health checks are not counted as requests in flight');
  } finally {
    await front.close();
    await cluster.close();
    await a.up.close();
  }
});
