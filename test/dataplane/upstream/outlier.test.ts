// Outlier ejection over real upstreams: failing endpoints leave the rotation for a while, doubling
// on repeat, and never more of them than the cap allows.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeClock } from '../../../src/core/clock.js';
import { UpstreamCluster } from '../../../src/dataplane/upstream/cluster.js';
import { call } from '../../helpers/net.js';
import { startFront, startUpstream, type TestUpstream } from './harness.js';

const failing = (name: string): Promise<TestUpstream> => startUpstream(name, (_req, res) => { res.statusCode = 503; res.end(name); });

async function rig(ups: TestUpstream[], maxEjectedPercent: number): Promise<{ clock: FakeClock; cluster: UpstreamCluster; send: () => Promise<number>; close: () => Promise<void> }> {
  const clock = new FakeClock(1_000_000);
  const cluster = new UpstreamCluster({
    origins: ups.map((u) => u.origin), tls: undefined, timeoutMs: 5000, balance: 'round-robin', clock,
    retries: { attempts: 0 }, breaker: { failureThreshold: 1000, openMs: 1000 },
    outlier: { consecutiveFailures: 2, ejectMs: 30_000, maxEjectedPercent },
  });
  const front = await startFront(cluster);
  return {
    clock, cluster,
    send: async () => (await call(`${front.url}/x`)).status,
    close: async () => { await front.close(); await cluster.close(); await Promise.all(ups.map((u) => u.close())); },
  };
}

test('an endpoint failing N times in a row is ejected for ejectMs, then comes back; re-ejection doubles', async () => {
  const bad = await failing('bad');
  const good = await startUpstream('good');
  const r = await rig([bad, good], 50);
  try {
    for (let i = 0; i < 4; i++) await r.send(); // bad, good, bad (ejected), good
    assert.equal(bad.hits, 2);
    assert.equal(r.cluster.state().endpoints[0]?.ejectedUntil, r.clock.now() + 30_000);
    for (let i = 0; i < 6; i++) assert.equal(await r.send(), 200);
    assert.equal(bad.hits, 2, 'no traffic while ejected');

    await r.clock.advance(30_000);
    assert.equal(r.cluster.state().endpoints[0]?.ejectedUntil, undefined, 'back in rotation');
    while (bad.hits < 4) await r.send();
    assert.equal(r.cluster.state().endpoints[0]?.ejectedUntil, r.clock.now() + 60_000, 'second ejection twice as long');

    await r.clock.advance(60_000);
    while (bad.hits < 6) await r.send();
    assert.equal(r.cluster.state().endpoints[0]?.ejectedUntil, r.clock.now() + 120_000);
  } finally {
    await r.close();
  }
});

test('no more than maxEjectedPercent of the endpoints are ejected at once', async () => {
  const a = await failing('a');
  const b = await failing('b');
  const c = await startUpstream('c');
  const r = await rig([a, b, c], 50); // 3 endpoints at 50 %: one at most
  try {
    for (let i = 0; i < 12; i++) await r.send();
    const ejected = r.cluster.state().endpoints.filter((e) => e.ejectedUntil !== undefined);
    assert.equal(ejected.length, 1);
    assert.equal(ejected[0]?.origin, a.origin);
    assert.ok(b.hits >= 5, 'the second failing endpoint keeps its share: the cap held');
  } finally {
    await r.close();
  }
});

test('even at 100 % one endpoint is always left in rotation', async () => {
  const a = await failing('a');
  const b = await failing('b');
  const r = await rig([a, b], 100);
  try {
    for (let i = 0; i < 8; i++) assert.equal(await r.send(), 503);
    assert.equal(r.cluster.state().endpoints.filter((e) => e.ejectedUntil !== undefined).length, 1);
    assert.equal(a.hits + b.hits, 8, 'every request still reached an endpoint');
  } finally {
    await r.close();
  }
});
