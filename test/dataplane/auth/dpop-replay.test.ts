// The DPoP replay cache shared through the real Redis: a proof id used at one gateway replica is a
// replay at another; the key lives only as long as the proof's window; a down Redis either refuses
// (deny) or falls back to the replica's own memory (local).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { RedisReplayCache } from '../../../src/dataplane/auth/dpop-replay.js';
import { FakeClock } from '../../../src/core/clock.js';
import { freePorts } from '../../helpers/net.js';
import { REDIS_URL, cleanUp, inspector, testPrefix } from '../limit/redis-helpers.js';

const prefix = testPrefix();
const opened: RedisReplayCache[] = [];
const replica = (o: Partial<ConstructorParameters<typeof RedisReplayCache>[0]> = {}): RedisReplayCache => {
  const c = new RedisReplayCache({ url: REDIS_URL, keyPrefix: prefix, onDown: 'deny', ...o });
  opened.push(c);
  return c;
};

after(async () => {
  for (const c of opened) c.close();
  const r = await inspector();
  await cleanUp(r, prefix);
  r.disconnect();
});

test('a proof id claimed at one replica is a replay at every other', async () => {
  const clock = new FakeClock(Date.now());
  const [a, b] = [replica({ clock }), replica({ clock })];
  assert.equal(await a.claim('jkt\njti-1', clock.now() + 60_000), true);
  assert.equal(await b.claim('jkt\njti-1', clock.now() + 60_000), false, 'replayed at the second replica');
  assert.equal(await a.claim('jkt\njti-1', clock.now() + 60_000), false, 'and at the first');
  assert.equal(await b.claim('jkt\njti-2', clock.now() + 60_000), true, 'another id is fine');
  // Kept exactly as long as the proof could still be accepted.
  const r = await inspector();
  const ttl = await r.pttl(`${prefix}jkt\njti-1`);
  r.disconnect();
  assert.ok(ttl > 55_000 && ttl <= 60_000, `ttl ${ttl}`);
});

test('Redis down: deny refuses the proof (fail closed); local checks it in this replica\'s memory', async () => {
  const [port] = await freePorts(1);
  const dead = `redis://127.0.0.1:${port}`;
  const fallbacks: string[] = [];
  const closed = replica({ url: dead, onDown: 'deny', onFallback: (e) => fallbacks.push(e.message) });
  await assert.rejects(closed.claim('k', Date.now() + 60_000), (e: unknown) => (e as { code?: string }).code === 'PCL_ERR_DPOP_INVALID');
  const local = replica({ url: dead, onDown: 'local', onFallback: (e) => fallbacks.push(e.message) });
  assert.equal(await local.claim('k', Date.now() + 60_000), true);
  assert.equal(await local.claim('k', Date.now() + 60_000), false, 'still a replay within this replica');
  assert.equal(fallbacks.length, 2, 'reported once per cache and outage');
});
