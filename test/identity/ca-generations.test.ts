// The CA's roots over time, step by step with a fake clock: successor at half-life, published at
// once, signing after the publish lead, the old root dropped after its last certificate expired;
// replicas agree on one successor; manual rotation; the scheduler; tampered records fail closed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { FakeClock } from '../../src/core/clock.js';
import { PortcullisError } from '../../src/core/errors.js';
import { subscribeAudit, type AdminEvent } from '../../src/core/events.js';
import { MemoryStore } from '../../src/store/memory.js';
import { NS } from '../../src/store/store.js';
import { KeyWrapper } from '../../src/kms/wrap.js';
import { CertificateAuthority, CLOCK_SKEW_MS } from '../../src/identity/ca.js';
import { CaRotationScheduler } from '../../src/identity/ca-rotation.js';
import { createWorkloadKeyAndCsr } from '../../src/identity/workload-key.js';

const TD = 'gen.test';
const ID = `spiffe://${TD}/api`;
const MIN = 60_000;
const HOUR = 60 * MIN;
const START = Math.floor(Date.now() / 1000) * 1000;
const code = (c: string) => (err: unknown): boolean => err instanceof PortcullisError && err.code === c;
const wrapper = new KeyWrapper(randomBytes(32));
const roots = (bundle: string): number => bundle.split('-----BEGIN CERTIFICATE-----').length - 1;

async function fresh(o: { publishLeadMs?: number } = {}): Promise<{ store: MemoryStore; clock: FakeClock; ca: CertificateAuthority; open: () => Promise<CertificateAuthority> }> {
  const store = new MemoryStore();
  const clock = new FakeClock(START);
  const open = (): Promise<CertificateAuthority> => CertificateAuthority.loadOrCreate({ store, wrapper, trustDomain: TD, clock, caTtlMs: 8 * HOUR, maxCertTtlMs: HOUR, ...o });
  return { store, clock, ca: await open(), open };
}

async function issueGen(ca: CertificateAuthority): Promise<number> {
  const { csrPem } = await createWorkloadKeyAndCsr(ID);
  return (await ca.issue({ csrPem, spiffeId: ID })).generation;
}

test('timeline: successor at half-life in the bundle at once, signing after the publish lead, old root dropped after its last certificate', async () => {
  const { store, clock, ca, open } = await fresh();
  const g0 = ca.generations()[0];
  assert.ok(g0);
  assert.equal(g0.state, 'signing');
  // Half of [START - 60 s, START + 8 h].
  assert.equal(ca.successorDueAt(), START - CLOCK_SKEW_MS + Math.floor((8 * HOUR + CLOCK_SKEW_MS) / 2));

  await clock.advance(ca.successorDueAt() - START - 1000);
  assert.equal(await ca.maintain(), undefined, 'not yet due');
  assert.equal(roots(ca.trustBundlePem()), 1);

  await clock.advance(1000);
  const r = await ca.maintain();
  assert.ok(r?.created);
  const created = clock.now();
  assert.equal(r.successor.generation, 1);
  assert.equal(r.successor.state, 'published');
  assert.equal(Date.parse(r.successor.activateAt), Math.floor((created + 2 * HOUR) / 1000) * 1000);
  assert.equal(roots(ca.trustBundlePem()), 2, 'published at once');
  assert.equal(await issueGen(ca), 0, 'the old root signs during the publish lead');
  assert.notEqual(ca.generations()[1]?.subject, g0.subject, 'no two roots share a subject');

  await clock.advance(Date.parse(r.successor.activateAt) - clock.now() - 1000);
  assert.equal(await issueGen(ca), 0);
  await clock.advance(1000);
  assert.equal(await issueGen(ca), 1, 'the successor signs from activateAt');
  assert.deepEqual(ca.generations().map((g) => g.state), ['retiring', 'signing']);
  assert.equal(ca.rootPem, ca.trustBundlePem().slice(ca.trustBundlePem().indexOf('-----BEGIN', 10)));

  // Dropped once the old root's last possible certificate (1 h, plus replica lag and skew) has expired.
  const dropAt = Date.parse(ca.generations()[0]?.dropAt ?? '');
  assert.equal(dropAt, Date.parse(r.successor.activateAt) + ca.replicaLagMs + HOUR + CLOCK_SKEW_MS);
  await clock.advance(dropAt - clock.now() - 1000);
  assert.equal(roots(ca.trustBundlePem()), 2);
  assert.deepEqual(await ca.prune(), [], 'nothing deleted while still in the bundle');
  await clock.advance(1000);
  assert.equal(roots(ca.trustBundlePem()), 1);
  assert.deepEqual(ca.generations().map((g) => g.state), ['dropped', 'signing']);
  assert.deepEqual(await ca.prune(), [0]);
  assert.deepEqual((await store.list(NS.ca)).map((x) => x.key), ['gen:1']);
  // A restart finds the successor, and does not mistake the missing first root for a new store.
  const again = await open();
  assert.equal(again.rootPem, ca.rootPem);
  assert.equal(await issueGen(again), 1);
});

test('replicas agree: concurrent successors, one wins; the other replica learns it on reload', async () => {
  const { clock, ca, open } = await fresh();
  const other = await open();
  await clock.advance(4 * HOUR);
  const [a, b] = await Promise.all([ca.maintain(), other.maintain()]);
  assert.ok(a && b);
  assert.equal([a.created, b.created].filter(Boolean).length, 1);
  assert.equal(a.successor.serial, b.successor.serial);
  assert.equal(ca.trustBundlePem(), other.trustBundlePem());
  const third = await open();
  assert.equal(third.trustBundlePem(), ca.trustBundlePem());
});

test('manual rotation: ahead of schedule, idempotent while a successor is pending', async () => {
  const { clock, ca } = await fresh();
  await clock.advance(HOUR);
  const first = await ca.rotate();
  assert.equal(first.created, true);
  const again = await ca.rotate();
  assert.equal(again.created, false);
  assert.equal(again.successor.generation, 1);
  await clock.advance(2 * HOUR);
  const next = await ca.rotate();
  assert.equal(next.created, true);
  assert.equal(next.successor.generation, 2);
});

test('an expired root with no successor: nothing is issued until the scheduler runs, then the successor signs at once', async () => {
  const { clock, ca } = await fresh();
  await clock.advance(8 * HOUR);
  await assert.rejects(issueGen(ca), code('PCL_ERR_INTERNAL'));
  const r = await ca.maintain();
  assert.ok(r?.created);
  assert.equal(await issueGen(ca), 1);
  assert.equal(roots(ca.trustBundlePem()), 1, 'the expired root is not published');
});

test('certificates: longer than maxCertTtlMs refused; never past the issuer', async () => {
  const { ca } = await fresh();
  const { csrPem } = await createWorkloadKeyAndCsr(ID);
  await assert.rejects(ca.issue({ csrPem, spiffeId: ID, ttlMs: HOUR + 1 }), code('PCL_ERR_INVALID_ARGUMENT'));
  assert.equal((await ca.issue({ csrPem, spiffeId: ID, ttlMs: HOUR })).notAfter.getTime(), START + HOUR);
});

test('a successor record with an edited activation time, or a missing generation in the middle, fails closed', async () => {
  const { store, clock, ca, open } = await fresh();
  await clock.advance(HOUR);
  await ca.rotate();
  const rec = await store.get<Record<string, unknown>>(NS.ca, 'gen:1');
  assert.ok(rec);
  // Someone with write access to the store tries to make the successor sign before data planes have it.
  await store.put(NS.ca, 'gen:1', { ...rec, activateAt: new Date(clock.now()).toISOString() });
  await assert.rejects(open(), code('PCL_ERR_KEY_UNWRAP'));
  // Or moves it to another generation.
  await store.put(NS.ca, 'gen:1', rec);
  await store.put(NS.ca, 'gen:2', rec);
  await assert.rejects(open(), code('PCL_ERR_KEY_UNWRAP'));
  await store.delete(NS.ca, 'gen:2');
  await clock.advance(2 * HOUR);
  await ca.rotate();
  await store.delete(NS.ca, 'gen:1');
  await assert.rejects(open(), code('PCL_ERR_STORE'));
});

test('scheduler: creates the successor when due, audits it, reports each bundle change, drops and prunes', async () => {
  const { store, clock, ca } = await fresh();
  const bundles: number[] = [];
  const events: AdminEvent[] = [];
  const unsubscribe = subscribeAudit((e) => { if (e.type === 'admin' && e.action === 'ca.rotate') events.push(e); });
  const s = new CaRotationScheduler({ ca, clock, onBundleChange: (pem) => bundles.push(roots(pem)) });
  assert.throws(() => new CaRotationScheduler({ ca, clock, reloadMs: ca.replicaLagMs + 1 }), code('PCL_ERR_INVALID_ARGUMENT'));
  s.start();
  try {
    for (let t = 0; t < 7.5 * HOUR; t += 10_000) {
      await clock.advance(10_000);
      await s.settled();
    }
  } finally {
    s.stop();
    unsubscribe();
  }
  assert.deepEqual(bundles, [1, 2, 1]);
  assert.equal(events.length, 1);
  assert.equal(events[0]?.detail.generation, 1);
  assert.deepEqual((await store.list(NS.ca)).map((x) => x.key), ['gen:1'], 'the dropped root was pruned');
});
