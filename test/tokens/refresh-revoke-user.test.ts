// RefreshTokens.revokeUser on every store adapter (MemoryStore, embedded PGlite, the real
// PostgreSQL): all of one user's families in one store operation, with the unexpired access tokens
// they produced; nobody else's; each family counted once even when replicas revoke at once.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FakeClock } from '../../src/core/clock.js';
import { MemoryStore } from '../../src/store/memory.js';
import { PgliteStore } from '../../src/store/pglite.js';
import type { Store } from '../../src/store/store.js';
import { RefreshTokens } from '../../src/tokens/refresh-tokens.js';
import { openPg } from '../store/pg-fixture.js';

const ADAPTERS: { name: string; open(): Promise<Store> }[] = [
  { name: 'MemoryStore', open: async () => new MemoryStore() },
  { name: 'PgliteStore', open: () => PgliteStore.open() },
  { name: 'PostgresStore', open: () => openPg() },
];

for (const adapter of ADAPTERS) {
  test(`${adapter.name}: revokeUser ends every family of the user, with its access tokens, and nothing else`, async () => {
    const store = await adapter.open();
    try {
      const clock = new FakeClock(Date.UTC(2030, 0, 1));
      const revoked: string[] = [];
      const tokens = new RefreshTokens({ store, clock, revoker: { revoke: async (jti) => { revoked.push(jti); } } });
      const exp = (): number => Math.floor(clock.now() / 1000) + 900;
      const laptop = await tokens.issue({ clientId: 'cli', username: 'sam', scope: 'offline_access', access: { jti: 'sam-1', exp: exp() } });
      const phone = await tokens.issue({ clientId: 'cli', username: 'sam', scope: 'offline_access', access: { jti: 'sam-2', exp: exp() } });
      await clock.advance(1_000_000); // sam-1 and sam-2 have expired: nothing to revoke for them
      const active = await tokens.lookup(phone);
      assert.equal(active.state, 'active');
      const rotated = active.state === 'active' ? await tokens.rotate(active, { jti: 'sam-3', exp: exp() }) : undefined;
      const other = await tokens.issue({ clientId: 'cli', username: 'samuel', scope: 'offline_access', access: { jti: 'samuel-1', exp: exp() } });

      assert.equal(await tokens.revokeUser('sam'), 2);
      assert.deepEqual(revoked, ['sam-3'], 'the unexpired access token of the families, not the expired ones, not samuel\'s');
      for (const t of [laptop, rotated ?? '']) assert.equal((await tokens.lookup(t)).state, 'inactive');
      assert.equal((await tokens.lookup(other)).state, 'active', 'a name that merely starts the same is someone else');
      assert.equal(await tokens.revokeUser('sam'), 0, 'already revoked: not counted again');
      assert.equal(await tokens.revokeUser('nobody'), 0);

      // Two replicas disabling the same user at once: each family revoked, and counted, once.
      for (let i = 0; i < 6; i++) await tokens.issue({ clientId: 'cli', username: 'pat', scope: 'offline_access', access: { jti: `pat-${i}`, exp: exp() } });
      const replicas = [tokens, new RefreshTokens({ store, clock, revoker: { revoke: async () => {} } })];
      const counts = await Promise.all([...replicas, ...replicas].map((r) => r.revokeUser('pat')));
      assert.equal(counts.reduce((a, b) => a + b, 0), 6);
    } finally {
      await store.close();
    }
  });
}
