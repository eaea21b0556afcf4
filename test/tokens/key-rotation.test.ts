// Scheduled signing-key rotation on a fake clock, as it runs in production: two control-plane
// replicas sharing one store, each with its scheduler; two data planes, each refreshing its JWKS
// from one replica every 30 s (as SnapshotSource does) and replacing its verifier's keys when the
// set changed (as the gateway does); tokens issued by both replicas all the time and verified by
// both data planes until they expire. Across several rotations (and a manual one in between) no
// valid token is refused; with a retire window shorter than the token lifetime the same harness
// does refuse tokens, so it would catch a lifecycle that removes keys too early.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FakeClock, type Timer } from '../../src/core/clock.js';
import { asPortcullisError } from '../../src/core/errors.js';
import { subscribeAudit, type AdminEvent } from '../../src/core/events.js';
import { MemoryStore } from '../../src/store/memory.js';
import { NS } from '../../src/store/store.js';
import { issueAccessToken } from '../../src/tokens/issue.js';
import { DEFAULT_ROTATION_PERIOD_MS, KeyRotationScheduler } from '../../src/tokens/key-rotation.js';
import { SigningKeys, type SigningKeysOptions } from '../../src/tokens/signing-keys.js';
import { createAccessTokenVerifier, type AccessTokenVerifier } from '../../src/tokens/verify.js';
import { newWrapper } from './setup.js';

const T0 = Date.UTC(2030, 0, 1);
const SEC = 1000;
const MIN = 60 * SEC;
const HOUR = 60 * MIN;
const TTL_SEC = 900;
const ISS = 'https://control.example';
const AUD = 'https://gateway.example';

/** A data plane's token check: its JWKS comes from one replica every 30 s, the verifier's keys replaced when the set changed. */
class DataPlane {
  readonly verifier: AccessTokenVerifier;
  private last: string;
  private timer: Timer | undefined;
  changes = 0;

  constructor(private readonly clock: FakeClock, private readonly source: SigningKeys) {
    this.last = JSON.stringify(source.jwks());
    this.verifier = createAccessTokenVerifier({ jwks: source.jwks(), issuer: ISS, audience: AUD, clock, clockSkewSec: 30 });
  }

  start(): void {
    this.timer = this.clock.setTimer(30 * SEC, () => {
      this.refresh();
      this.start();
    });
  }

  stop(): void {
    this.timer?.cancel();
  }

  refresh(): void {
    const doc = this.source.jwks();
    const text = JSON.stringify(doc);
    if (text === this.last) return; // same snapshot version: SnapshotSource emits nothing
    this.last = text;
    this.changes++;
    this.verifier.setJwks(doc);
  }
}

interface Issued { token: string; exp: number; by: string; kid: string }

interface TrafficResult {
  issued: number;
  verified: number;
  refused: { code: string; by: string; ageSec: number }[];
  rotations: number;
  kidsUsed: Set<string>;
  /** Tokens B signed with a key A had already rotated out (B had not reloaded yet). */
  staleSigned: number;
  maxPublished: number;
  finalPublished: number;
}

/** Runs the two-replica, two-data-plane traffic for `durationMs` of fake time. */
async function traffic(o: { keys?: Partial<SigningKeysOptions>; periodMs: number; durationMs: number; manualRotationAt?: number }): Promise<TrafficResult> {
  const clock = new FakeClock(T0);
  const base: SigningKeysOptions = {
    store: new MemoryStore(), wrapper: newWrapper(), clock,
    maxTokenLifetimeMs: TTL_SEC * SEC, clockSkewMs: 30 * SEC, replicaLagMs: 10 * SEC, ...o.keys,
  };
  const a = await SigningKeys.loadOrCreate(base);
  const b = await SigningKeys.loadOrCreate(base);
  const sa = new KeyRotationScheduler({ keys: a, clock, periodMs: o.periodMs });
  const sb = new KeyRotationScheduler({ keys: b, clock, periodMs: o.periodMs });
  const dp1 = new DataPlane(clock, a);
  const dp2 = new DataPlane(clock, b);
  sa.start();
  dp1.start();
  // Replica B and its data plane run out of step with A, so B learns of rotations late.
  await clock.advance(5 * SEC);
  sb.start();
  await clock.advance(10 * SEC);
  dp2.start();

  const result: TrafficResult = { issued: 0, verified: 0, refused: [], rotations: 0, kidsUsed: new Set(), staleSigned: 0, maxPublished: 0, finalPublished: 0 };
  const unsubscribe = subscribeAudit((e) => { if (e.type === 'admin' && e.action === 'keys.rotate' && e.outcome === 'success') result.rotations++; });
  const live: Issued[] = [];
  let manualDone = false;
  try {
    for (let step = 0; clock.now() < T0 + o.durationMs; step++) {
      await clock.advance(10 * SEC);
      await Promise.all([sa.settled(), sb.settled()]);
      // The manual rotation happens on A just before B signs, so B signs with the old key until its next reload.
      if (o.manualRotationAt !== undefined && !manualDone && clock.now() >= T0 + o.manualRotationAt && step % 2 === 1) {
        manualDone = true;
        await a.rotate({ by: 'admin' });
      }
      const replica = step % 2 === 0 ? a : b;
      const by = replica === a ? 'A' : 'B';
      const { token } = await issueAccessToken(replica, { issuer: ISS, audience: AUD, subject: `u${step}`, clientId: 'c', ttlSec: TTL_SEC, clock });
      const kid = replica.current().kid;
      result.kidsUsed.add(kid);
      if (replica === b && kid !== a.current().kid) result.staleSigned++;
      result.issued++;
      live.push({ token, exp: Math.floor(clock.now() / 1000) + TTL_SEC, by, kid });
      // Every token still valid must pass both data planes, however old and whichever key signed it.
      while (live[0] && live[0].exp * 1000 <= clock.now()) live.shift();
      for (const t of live) {
        for (const dp of [dp1, dp2]) {
          try {
            await dp.verifier.verify(t.token);
            result.verified++;
          } catch (err) {
            result.refused.push({ code: asPortcullisError(err).code, by: t.by, ageSec: TTL_SEC - (t.exp - clock.now() / 1000) });
          }
        }
      }
      result.maxPublished = Math.max(result.maxPublished, a.jwks().keys.length, b.jwks().keys.length);
    }
    result.finalPublished = a.jwks().keys.length;
  } finally {
    unsubscribe();
    sa.stop();
    sb.stop();
    dp1.stop();
    dp2.stop();
  }
  return result;
}

test('continuous traffic across three scheduled rotations (40 min period, 15 min tokens) and a manual one, two replicas, two data planes: zero refused valid tokens', async () => {
  const r = await traffic({ periodMs: 40 * MIN, durationMs: 2 * HOUR + 40 * MIN, manualRotationAt: HOUR + 3 * SEC });
  assert.deepEqual(r.refused, []);
  // Scheduled at 0:40; manual at ~1:00; then the schedule follows the last activation: ~1:40, ~2:20.
  assert.equal(r.rotations, 3, 'scheduled rotations (each audited once)');
  assert.equal(r.kidsUsed.size, 5, 'tokens were signed by the first key and the four that followed it');
  assert.ok(r.staleSigned >= 1, 'replica B signed with the rotated-out key before its reload, and those tokens passed too');
  assert.ok(r.verified > 10_000, `${r.verified} verifications`);
  // Retired keys did leave the JWKS again: at most current, next and two retired were ever published.
  assert.ok(r.maxPublished <= 4, `${r.maxPublished} keys published at once`);
  assert.ok(r.finalPublished < r.maxPublished);
});

test('the same traffic with a retire window shorter than the token lifetime refuses valid tokens (the harness catches early removal)', async () => {
  const r = await traffic({ keys: { maxTokenLifetimeMs: MIN, clockSkewMs: 0 }, periodMs: 10 * MIN, durationMs: 15 * MIN });
  assert.ok(r.refused.length > 0);
  assert.ok(r.refused.every((x) => x.code === 'PCL_ERR_TOKEN_SIGNATURE'));
});

test('forced rotation: after the data planes refresh, a token signed by the removed key is refused; tokens of the new key pass', async () => {
  const clock = new FakeClock(T0);
  const opts: SigningKeysOptions = { store: new MemoryStore(), wrapper: newWrapper(), clock };
  const a = await SigningKeys.loadOrCreate(opts);
  const b = await SigningKeys.loadOrCreate(opts);
  const sb = new KeyRotationScheduler({ keys: b, clock });
  sb.start();
  const dp1 = new DataPlane(clock, a);
  const dp2 = new DataPlane(clock, b);
  dp1.start();
  dp2.start();
  try {
    const old = (await issueAccessToken(a, { issuer: ISS, audience: AUD, subject: 'alice', clientId: 'c', ttlSec: TTL_SEC, clock })).token;
    await clock.advance(MIN);
    for (const dp of [dp1, dp2]) assert.equal((await dp.verifier.verify(old)).sub, 'alice');
    const r = await a.rotate({ force: true });
    assert.equal(r.rotated, true);
    // A data plane drops the key at its first refresh after its replica knows: A at once, B at its next reload (10 s).
    await clock.advance(30 * SEC);
    await sb.settled();
    await assert.rejects(dp1.verifier.verify(old), { code: 'PCL_ERR_TOKEN_SIGNATURE' });
    assert.ok(!b.jwks().keys.some((k) => k.kid === r.from), 'replica B learnt of the removal at its reload');
    await clock.advance(30 * SEC);
    await assert.rejects(dp2.verifier.verify(old), { code: 'PCL_ERR_TOKEN_SIGNATURE' });
    const fresh = (await issueAccessToken(b, { issuer: ISS, audience: AUD, subject: 'bob', clientId: 'c', ttlSec: TTL_SEC, clock })).token;
    for (const dp of [dp1, dp2]) assert.equal((await dp.verifier.verify(fresh)).sub, 'bob');
  } finally {
    sb.stop();
    dp1.stop();
    dp2.stop();
  }
});

test('the schedule survives a restart and is the same on every replica: it follows the stored activation of the current key', async () => {
  const clock = new FakeClock(T0);
  const opts: SigningKeysOptions = { store: new MemoryStore(), wrapper: newWrapper(), clock };
  const first = new KeyRotationScheduler({ keys: await SigningKeys.loadOrCreate(opts), clock, periodMs: HOUR });
  assert.equal(first.nextDue(), T0 + HOUR);
  first.start();
  await clock.advance(HOUR);
  await first.settled();
  assert.equal(first.nextDue(), T0 + 2 * HOUR, 'rotated at the due time');
  first.stop();
  // Restarted half an hour later: still due at 2 h, not at 1 h 30 after the restart.
  await clock.advance(30 * MIN);
  const restarted = new KeyRotationScheduler({ keys: await SigningKeys.loadOrCreate(opts), clock, periodMs: HOUR });
  assert.equal(restarted.nextDue(), T0 + 2 * HOUR);
  restarted.start();
  await clock.advance(30 * MIN - 1);
  await restarted.settled();
  assert.equal(restarted.nextDue(), T0 + 2 * HOUR, 'not rotated before it was due');
  await clock.advance(1);
  await restarted.settled();
  assert.equal(restarted.nextDue(), T0 + 3 * HOUR);
  restarted.stop();
  assert.equal(DEFAULT_ROTATION_PERIOD_MS, 30 * 24 * HOUR);
  assert.equal(new KeyRotationScheduler({ keys: await SigningKeys.loadOrCreate(opts), clock }).nextDue(), T0 + 2 * HOUR + DEFAULT_ROTATION_PERIOD_MS);
});

test('replicas due together: one rotation, audited once as keys.rotate by the scheduler', async () => {
  const clock = new FakeClock(T0);
  const opts: SigningKeysOptions = { store: new MemoryStore(), wrapper: newWrapper(), clock };
  const schedulers = [
    new KeyRotationScheduler({ keys: await SigningKeys.loadOrCreate(opts), clock, periodMs: HOUR }),
    new KeyRotationScheduler({ keys: await SigningKeys.loadOrCreate(opts), clock, periodMs: HOUR }),
  ];
  const events: AdminEvent[] = [];
  const unsubscribe = subscribeAudit((e) => { if (e.type === 'admin' && e.action === 'keys.rotate') events.push(e); });
  try {
    for (const s of schedulers) s.start();
    await clock.advance(HOUR);
    await Promise.all(schedulers.map((s) => s.settled()));
    assert.equal(events.length, 1);
    assert.equal(events[0]?.outcome, 'success');
    assert.equal(events[0]?.who.sub, 'scheduler');
    assert.equal(events[0]?.detail.scheduled, true);
    assert.equal((await opts.store.list(NS.signingKeyRotations)).length, 2, 'genesis and one rotation');
  } finally {
    unsubscribe();
    for (const s of schedulers) s.stop();
  }
});

test('a pass that cannot read the store never rejects; the replica signs on with the keys it has and the failure is reported', async () => {
  const clock = new FakeClock(T0);
  const store = new MemoryStore();
  const keys = await SigningKeys.loadOrCreate({ store, wrapper: newWrapper(), clock });
  const kid = keys.current().kid;
  const s = new KeyRotationScheduler({ keys, clock, periodMs: HOUR });
  await store.delete(NS.signingKeyRotations, 'genesis');
  await assert.rejects(keys.reload(), { code: 'PCL_ERR_STORE' });
  await s.tick();
  assert.equal(keys.current().kid, kid);
  // And when a scheduled rotation itself fails, the failure is audited once for that due time.
  await store.insert(NS.signingKeyRotations, 'genesis', { kind: 'genesis', to: kid, next: keys.list()[1]?.kid, at: new Date(T0).toISOString(), retired: [] });
  const events: AdminEvent[] = [];
  const unsubscribe = subscribeAudit((e) => { if (e.type === 'admin' && e.action === 'keys.rotate') events.push(e); });
  try {
    await clock.advance(HOUR);
    const original = store.insert.bind(store);
    store.insert = () => Promise.reject(new Error('store down'));
    await s.tick();
    await s.tick();
    store.insert = original;
    assert.equal(events.length, 1);
    assert.equal(events[0]?.outcome, 'failure');
    assert.equal(keys.current().kid, kid, 'still signing with the key it had');
    await s.tick();
    assert.notEqual(keys.current().kid, kid, 'rotated at the next pass once the store answers');
  } finally {
    unsubscribe();
  }
});

test('scheduler options are checked: a period shorter than the publish lead, a reload slower than the replica lag', async () => {
  const clock = new FakeClock(T0);
  const keys = await SigningKeys.loadOrCreate({ store: new MemoryStore(), wrapper: newWrapper(), clock });
  assert.throws(() => new KeyRotationScheduler({ keys, clock, periodMs: keys.publishLeadMs - 1 }), { code: 'PCL_ERR_INVALID_ARGUMENT' });
  assert.throws(() => new KeyRotationScheduler({ keys, clock, reloadMs: keys.replicaLagMs + 1 }), { code: 'PCL_ERR_INVALID_ARGUMENT' });
  assert.throws(() => new KeyRotationScheduler({ keys, clock, reloadMs: 0 }), { code: 'PCL_ERR_INVALID_ARGUMENT' });
});
