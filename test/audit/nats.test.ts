// Audit shipping through the REAL NATS JetStream on this machine (.ci/run starts it): two data
// planes publish, one control-plane audit store consumes with a durable consumer, and a search
// finds both; a malformed message is refused and counted, never stored. The "NATS down" case
// needs no server: publishing never throws or blocks, the queue is bounded and drops are counted.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { connect as netConnect } from 'node:net';
import { connect, type NatsConnection } from 'nats';
import { NatsAuditPublisher } from '../../src/audit/nats-sink.js';
import { AuditStoreSink } from '../../src/audit/store-sink.js';
import type { DecisionEvent } from '../../src/core/events.js';
import { silentLogger } from '../../src/core/log.js';
import { PgliteStore } from '../../src/store/pglite.js';
import { freePorts } from '../helpers/net.js';

const NATS_URL = process.env.NATS_URL ?? 'nats://127.0.0.1:4222';
const tag = randomBytes(4).toString('hex');
const names = { stream: `PCL_TEST_${tag}`, subjectPrefix: `pcltest${tag}.audit`, durable: `pcl-test-${tag}` };

async function reachable(url: string): Promise<boolean> {
  const u = new URL(url);
  return new Promise((resolve) => {
    const s = netConnect(Number(u.port || 4222), u.hostname);
    s.setTimeout(1000, () => { s.destroy(); resolve(false); });
    s.once('connect', () => { s.end(); resolve(true); });
    s.once('error', () => resolve(false));
  });
}

const event = (component: string, sub: string, n: number): DecisionEvent => ({
  type: 'decision', time: new Date(Date.now() + n).toISOString(), requestId: `${component}-${n}`, component, decision: n % 2 ? 'deny' : 'allow', status: n % 2 ? 403 : 200,
  who: { sub }, what: { method: 'GET', path: `/orders/${n}`, route: 'get-order' }, reasons: [], why: 'test',
});

const up = await reachable(NATS_URL);
let admin: NatsConnection | undefined;

before(async () => {
  if (up) admin = await connect({ servers: NATS_URL });
});

after(async () => {
  if (!admin) return;
  await (await admin.jetstreamManager()).streams.delete(names.stream).catch(() => undefined);
  await admin.close();
});

async function until<T>(what: string, fn: () => Promise<T | undefined>, ms = 10_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

test('two data planes feed one audit store through JetStream; malformed events are refused', { skip: up ? false : `NATS is not reachable at ${NATS_URL} (.ci/run starts it)`, timeout: 20_000 }, async () => {
  const store = await PgliteStore.open();
  const a = new NatsAuditPublisher({ ...names, url: NATS_URL, component: 'gateway-eu', logger: silentLogger });
  const b = new NatsAuditPublisher({ ...names, url: NATS_URL, component: 'sidecar:orders:inbound', logger: silentLogger });
  const sink = new AuditStoreSink({ store, logger: silentLogger, local: false, nats: { ...names, url: NATS_URL } });
  try {
    for (let n = 0; n < 20; n++) a.publish(event('gateway-eu', 'alice', n));
    const fromB = Array.from({ length: 20 }, (_, n) => event('sidecar:orders:inbound', 'mallory', n));
    for (const e of fromB) b.publish(e);
    const [again] = fromB;
    assert.ok(again);
    b.publish(again); // the same event a second time: stored once
    await until('both publishers acked', async () => (a.stats().published === 20 && b.stats().published === 21 ? true : undefined));
    // A hostile or broken publisher on the same subjects: refused, counted, never stored.
    const js = admin?.jetstream();
    assert.ok(js);
    await js.publish(`${names.subjectPrefix}.evil`, new TextEncoder().encode(JSON.stringify({ ...event('evil', 'eve', 1), extra: 'smuggled' })));
    await js.publish(`${names.subjectPrefix}.evil`, new TextEncoder().encode('not json'));

    const all = await until('40 stored events', async () => {
      const r = await store.queryAuditEvents({ limit: 1000 });
      return r.length >= 40 && sink.stats().refused >= 2 ? r : undefined;
    });
    assert.equal(all.length, 40, 'every event once, the duplicate and the malformed ones not stored');
    assert.equal(sink.stats().refused, 2);
    assert.deepEqual(new Set(all.map((e) => e.event.component)), new Set(['gateway-eu', 'sidecar:orders:inbound']));
    const denied = await store.queryAuditEvents({ decision: 'deny', route: 'get-order', limit: 1000 });
    assert.deepEqual(new Set(denied.map((e) => e.event.who.sub)), new Set(['alice', 'mallory']), 'a search finds both data planes');
    assert.equal((await store.queryAuditEvents({ principal: 'eve', limit: 10 })).length, 0);
    assert.equal(a.stats().published, 20);
    assert.equal(a.stats().dropped, 0);
  } finally {
    await a.close();
    await b.close();
    await sink.close();
    await store.close();
  }
});

test('with NATS down, publishing never throws or blocks; the queue is bounded and drops are counted', async () => {
  const [port] = await freePorts(1);
  const p = new NatsAuditPublisher({ ...names, url: `nats://127.0.0.1:${port}`, component: 'gateway', logger: silentLogger, queueLimit: 5 });
  const t0 = performance.now();
  for (let n = 0; n < 8; n++) p.publish(event('gateway', 'alice', n));
  assert.ok(performance.now() - t0 < 50, 'publish returns at once');
  assert.deepEqual(p.stats(), { published: 0, dropped: 3, failures: 0, queued: 5 });
  await p.close(100);
  assert.equal(p.stats().dropped, 8, 'what was never sent is counted at close');
  assert.equal(p.stats().queued, 0);
});
