// The store contract: every adapter behaves the same (STYLE.md habit 9).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MemoryStore } from '../../src/store/memory.js';
import { PgliteStore } from '../../src/store/pglite.js';
import type { AuditQuery, Store, StoredAuditEvent } from '../../src/store/store.js';
import type { AuditEvent } from '../../src/core/events.js';

async function contract(store: Store): Promise<void> {
  assert.equal(await store.get('a', 'k'), undefined);
  await store.put('a', 'k', { n: 1, s: 'x' });
  assert.deepEqual(await store.get('a', 'k'), { n: 1, s: 'x' });
  await store.put('a', 'k', { n: 2 });
  assert.deepEqual(await store.get('a', 'k'), { n: 2 });
  assert.equal(await store.insert('a', 'k', { n: 3 }), false, 'insert never overwrites');
  assert.equal(await store.insert('a', 'j', { n: 4 }), true);
  assert.deepEqual((await store.list('a')).map((r) => r.key), ['j', 'k']);
  assert.deepEqual(await store.list('other'), [], 'namespaces are separate');
  assert.deepEqual(await store.take('a', 'j'), { n: 4 });
  assert.equal(await store.take('a', 'j'), undefined, 'take succeeds once');
  assert.equal(await store.delete('a', 'k'), true);
  assert.equal(await store.delete('a', 'k'), false);
}

test('MemoryStore meets the store contract', async () => {
  await contract(new MemoryStore());
});

test('PgliteStore meets the store contract and keeps data across reopen', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'pcl-store-'));
  try {
    const s = await PgliteStore.open(join(dir, 'db'));
    await contract(s);
    await s.put('keep', 'me', { v: true });
    await s.close();
    const again = await PgliteStore.open(join(dir, 'db'));
    assert.deepEqual(await again.get('keep', 'me'), { v: true });
    await again.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('concurrent take of one record succeeds exactly once', async () => {
  const s = await PgliteStore.open();
  await s.put('codes', 'c', { x: 1 });
  const results = await Promise.all([s.take('codes', 'c'), s.take('codes', 'c'), s.take('codes', 'c')]);
  assert.equal(results.filter((r) => r !== undefined).length, 1);
  await s.close();
});

const decision = (time: string, o: { sub?: string; spiffeId?: string; route?: string; decision?: 'allow' | 'deny'; reasons?: string[]; component?: string } = {}): AuditEvent => ({
  type: 'decision', time, requestId: `r-${time}`, component: o.component ?? 'gateway', decision: o.decision ?? 'allow', status: o.decision === 'deny' ? 403 : 200,
  who: { ...(o.sub ? { sub: o.sub } : {}), ...(o.spiffeId ? { spiffeId: o.spiffeId } : {}) },
  what: { method: 'GET', path: '/x', ...(o.route ? { route: o.route } : {}) }, reasons: o.reasons ?? [], why: 'test',
});

/** The audit table: dedup by id, every filter, time range [since, until), newest first, limit. */
async function auditContract(store: Store): Promise<void> {
  const events: StoredAuditEvent[] = [
    { id: 'a', event: decision('2026-01-01T00:00:01.000Z', { sub: 'alice', route: 'orders', reasons: ['p1'] }) },
    { id: 'b', event: decision('2026-01-01T00:00:02.000Z', { sub: 'mallory', route: 'orders', decision: 'deny' }) },
    { id: 'c', event: decision('2026-01-01T00:00:03.000Z', { spiffeId: 'spiffe://demo/orders', component: 'sidecar:payments:inbound', reasons: ['p1', 'p2'] }) },
    { id: 'd', event: { type: 'admin', time: '2026-01-01T00:00:03.000Z', component: 'control', action: 'user.add', outcome: 'success', who: { sub: 'admin' }, detail: { username: 'x' } } },
  ];
  assert.equal(await store.addAuditEvents(events), 4);
  assert.equal(await store.addAuditEvents([events[0] as StoredAuditEvent]), 0, 'an id is stored once'); // index 0 exists
  const twice: StoredAuditEvent = { id: 'e', event: decision('2025-01-01T00:00:00.000Z') };
  assert.equal(await store.addAuditEvents([twice, twice]), 1, 'twice in one batch: stored once');
  const ids = async (q: Omit<AuditQuery, 'limit'>, limit = 100): Promise<string[]> => (await store.queryAuditEvents({ ...q, limit })).map((r) => r.id);
  assert.deepEqual(await ids({}), ['d', 'c', 'b', 'a', 'e'], 'newest first; equal times in insertion order reversed');
  assert.deepEqual(await ids({}, 2), ['d', 'c']);
  assert.deepEqual(await ids({ principal: 'mallory' }), ['b']);
  assert.deepEqual(await ids({ workload: 'spiffe://demo/orders' }), ['c']);
  assert.deepEqual(await ids({ route: 'orders' }), ['b', 'a']);
  assert.deepEqual(await ids({ decision: 'deny' }), ['b']);
  assert.deepEqual(await ids({ decision: 'allow' }), ['c', 'a', 'e'], 'admin events have no decision');
  assert.deepEqual(await ids({ policy: 'p1' }), ['c', 'a']);
  assert.deepEqual(await ids({ component: 'control' }), ['d']);
  assert.deepEqual(await ids({ since: '2026-01-01T00:00:02.000Z', until: '2026-01-01T00:00:03.000Z' }), ['b']);
  assert.deepEqual(await ids({ route: 'orders', decision: 'allow', principal: 'alice' }), ['a']);
  const [first] = await store.queryAuditEvents({ component: 'control', limit: 1 });
  assert.deepEqual(first, events[3], 'the event comes back as stored');
}

test('MemoryStore meets the audit store contract', async () => {
  await auditContract(new MemoryStore());
});

test('PgliteStore meets the audit store contract', async () => {
  const s = await PgliteStore.open();
  try {
    await auditContract(s);
  } finally {
    await s.close();
  }
});
