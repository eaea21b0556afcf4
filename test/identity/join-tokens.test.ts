import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { PortcullisError } from '../../src/core/errors.js';
import { FakeClock } from '../../src/core/clock.js';
import { NS } from '../../src/store/store.js';
import { PgliteStore } from '../../src/store/pglite.js';
import { JoinTokens } from '../../src/identity/join-tokens.js';

const ID = 'spiffe://example.test/ns/prod/sa/web';
const MIN = 60_000;

let store: PgliteStore;
let clock: FakeClock;
let tokens: JoinTokens;

before(async () => {
  store = await PgliteStore.open();
  clock = new FakeClock(Date.UTC(2030, 0, 1));
  tokens = new JoinTokens(store, clock);
});
after(async () => {
  await store.close();
});

/** Expects PCL_ERR_JOIN_TOKEN_INVALID, with a message that does not repeat the token. */
async function refused(token: string): Promise<void> {
  await assert.rejects(tokens.consume(token), (err: unknown) => {
    assert.ok(err instanceof PortcullisError);
    assert.equal(err.code, 'PCL_ERR_JOIN_TOKEN_INVALID');
    if (token.length > 4) assert.ok(!err.message.includes(token.slice(4)), 'message never contains the token');
    return true;
  });
}

test('a token is pjt_ + 32 random bytes (base64url) and redeems to its SPIFFE ID once', async () => {
  const token = await tokens.create(ID);
  assert.match(token, /^pjt_[A-Za-z0-9_-]{43}$/);
  assert.deepEqual(await tokens.consume(token), { spiffeId: ID });
  await refused(token);
});

test('only the SHA-256 of the token is stored', async () => {
  const token = await tokens.create(ID);
  const rows = await store.list<unknown>(NS.joinTokens);
  const hash = createHash('sha256').update(token).digest('hex');
  assert.ok(rows.some((r) => r.key === hash));
  assert.ok(!JSON.stringify(rows).includes(token.slice(4)));
  await tokens.consume(token);
});

test('two concurrent redemptions: exactly one wins', async () => {
  const token = await tokens.create(ID);
  const results = await Promise.allSettled([tokens.consume(token), tokens.consume(token), tokens.consume(token)]);
  assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1);
});

test('a token expires after 10 minutes by default', async () => {
  const fresh = await tokens.create(ID);
  const stale = await tokens.create(ID);
  await clock.advance(10 * MIN - 1);
  assert.deepEqual(await tokens.consume(fresh), { spiffeId: ID });
  await clock.advance(1);
  await refused(stale);
});

test('a custom TTL is honoured', async () => {
  const token = await tokens.create(ID, 30_000);
  await clock.advance(30_000);
  await refused(token);
});

test('unknown, malformed and empty tokens fail the same way', async () => {
  const unknown = `pjt_${'A'.repeat(43)}`;
  for (const t of [unknown, '', 'pjt_', 'pjt_short', `PJT_${'A'.repeat(43)}`, `pjt_${'A'.repeat(44)}`, `pjt_${'A'.repeat(42)}=`, `${unknown}\n`]) {
    await refused(t);
  }
});

test('create validates the SPIFFE ID and the TTL', async () => {
  await assert.rejects(tokens.create('spiffe://Example.test/x'), (e: unknown) => e instanceof PortcullisError && e.code === 'PCL_ERR_SPIFFE_ID_INVALID');
  for (const ttl of [0, -1, Number.NaN, Number.POSITIVE_INFINITY]) {
    await assert.rejects(tokens.create(ID, ttl), (e: unknown) => e instanceof PortcullisError && e.code === 'PCL_ERR_INVALID_ARGUMENT');
  }
});

test('purgeExpired removes expired, never-redeemed tokens only', async () => {
  for (const { key } of await store.list(NS.joinTokens)) await store.delete(NS.joinTokens, key);
  await tokens.create(ID, MIN);
  await tokens.create(ID, MIN);
  const keeper = await tokens.create(ID, 5 * MIN);
  await clock.advance(MIN);
  assert.equal(await tokens.purgeExpired(), 2);
  assert.equal((await store.list(NS.joinTokens)).length, 1);
  assert.deepEqual(await tokens.consume(keeper), { spiffeId: ID });
});
