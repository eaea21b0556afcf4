// The store contract: every adapter (MemoryStore, embedded PGlite, PostgreSQL) passes the same
// assertions (STYLE.md habit 9). PostgreSQL-only behaviour is in postgres.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MemoryStore } from '../../src/store/memory.js';
import { PgliteStore } from '../../src/store/pglite.js';
import type { AuditQuery, RecordFilter, Store, StoredAuditEvent } from '../../src/store/store.js';
import type { AuditEvent } from '../../src/core/events.js';
import { openPg } from './pg-fixture.js';

/** Each adapter, opened empty. */
const ADAPTERS: { name: string; open(): Promise<Store> }[] = [
  { name: 'MemoryStore', open: async () => new MemoryStore() },
  { name: 'PgliteStore', open: () => PgliteStore.open() },
  { name: 'PostgresStore', open: () => openPg() },
];

async function withStore(open: () => Promise<Store>, fn: (s: Store) => Promise<void>): Promise<void> {
  const s = await open();
  try {
    await fn(s);
  } finally {
    await s.close();
  }
}

/** Records: get/put/insert/list/take/delete, namespaces, ordering, JSON round trip. */
async function contract(store: Store): Promise<void> {
  assert.equal(await store.get('a', 'k'), undefined);
  await store.put('a', 'k', { n: 1, s: 'x' });
  assert.deepEqual(await store.get('a', 'k'), { n: 1, s: 'x' });
  await store.put('a', 'k', { n: 2 });
  assert.deepEqual(await store.get('a', 'k'), { n: 2 });
  assert.equal(await store.insert('a', 'k', { n: 3 }), false, 'insert never overwrites');
  assert.deepEqual(await store.get('a', 'k'), { n: 2 }, 'the refused insert changed nothing');
  assert.equal(await store.insert('a', 'j', { n: 4 }), true);
  assert.deepEqual((await store.list('a')).map((r) => r.key), ['j', 'k']);
  assert.deepEqual(await store.list('other'), [], 'namespaces are separate');
  assert.equal(await store.get('other', 'k'), undefined, 'namespaces are separate');
  assert.deepEqual(await store.take('a', 'j'), { n: 4 });
  assert.equal(await store.take('a', 'j'), undefined, 'take succeeds once');
  assert.equal(await store.get('a', 'j'), undefined, 'take removes');
  assert.equal(await store.insert('a', 'j', { n: 5 }), true, 'a taken key can be created again');
  assert.equal(await store.delete('a', 'k'), true);
  assert.equal(await store.delete('a', 'k'), false);
  assert.equal(await store.delete('other', 'j'), false, 'delete stays in its namespace');
  assert.deepEqual(await store.get('a', 'j'), { n: 5 });

  // Keys in code-unit order whatever the database's collation: upper case before lower, '-' before '_'.
  const keys = ['b', 'B', 'a_1', 'a-1', 'a', 'A', 'é', 'z9', 'z10'];
  for (const k of keys) await store.put('order', k, k);
  const listed = await store.list<string>('order');
  assert.deepEqual(listed.map((r) => r.key), ['A', 'B', 'a', 'a-1', 'a_1', 'b', 'z10', 'z9', 'é']);
  assert.deepEqual(listed.map((r) => r.value), listed.map((r) => r.key), 'each key with its value');

  // JSON of every kind comes back as put (values are copies, not references).
  const doc = { s: 'ünïcødé ✓ "quoted" \\ back', n: -1.5, big: 2 ** 53 - 1, t: true, f: false, nil: null, arr: [1, 'two', { three: [3] }], empty: {} };
  await store.put('json', 'doc', doc);
  const back = await store.get<typeof doc>('json', 'doc');
  assert.deepEqual(back, doc);
  doc.arr.push(4);
  assert.equal((await store.get<typeof doc>('json', 'doc'))?.arr.length, 3, 'the store kept a copy');
  await store.put('json', 'scalar', 'just a string');
  assert.equal(await store.get('json', 'scalar'), 'just a string');
  await store.put('json', 'list', [1, 2]);
  assert.deepEqual(await store.get('json', 'list'), [1, 2]);
}

/** Compare-and-set, and the filtered operations: the filter runs in the store, the same way in every adapter. */
async function filteredContract(store: Store): Promise<void> {
  // replace: create-only from undefined, then only from the value as stored; several records all or none.
  const one = (key: string, expected: unknown, next: unknown): Promise<boolean> => store.replace('cas', [{ key, expected, next }]);
  assert.equal(await one('k', undefined, { n: 1, a: [1, { b: 2 }] }), true);
  assert.equal(await one('k', undefined, { n: 9 }), false, 'undefined expects the key to be absent');
  assert.equal(await one('k', { n: 0, a: [1, { b: 2 }] }, { n: 9 }), false, 'a stale expected value writes nothing');
  assert.deepEqual(await store.get('cas', 'k'), { n: 1, a: [1, { b: 2 }] });
  const read = await store.get<Record<string, unknown>>('cas', 'k');
  assert.equal(await one('k', { a: [1, { b: 2 }], n: 1, gone: undefined }, { n: 2 }), true, 'JSON equality: member order and undefined members do not matter');
  assert.equal(await one('k', read, { n: 3 }), false, 'the value read before is stale now');
  assert.equal(await one('gone', { n: 1 }, { n: 2 }), false, 'no record: nothing to compare with');
  assert.equal(await store.get('cas', 'gone'), undefined);
  assert.equal(await store.replace('other', [{ key: 'k', expected: { n: 2 }, next: { n: 4 } }]), false, 'replace stays in its namespace');
  assert.equal(await store.replace('cas', []), true, 'nothing to change');
  // Several records: every expectation must hold, else nothing is written.
  assert.equal(await store.replace('cas', [{ key: 'k', expected: { n: 2 }, next: { n: 5 } }, { key: 'new', expected: undefined, next: 'x' }, { key: 'k2', expected: { n: 0 }, next: 1 }]), false);
  assert.deepEqual([await store.get('cas', 'k'), await store.get('cas', 'new')], [{ n: 2 }, undefined], 'one stale record: none written');
  await store.put('cas', 'k2', { n: 0 });
  assert.equal(await store.replace('cas', [{ key: 'k', expected: { n: 2 }, next: { n: 5 } }, { key: 'new', expected: undefined, next: 'x' }, { key: 'k2', expected: { n: 0 }, next: 1 }]), true);
  assert.deepEqual([await store.get('cas', 'k'), await store.get('cas', 'new'), await store.get('cas', 'k2')], [{ n: 5 }, 'x', 1]);
  await assert.rejects(store.replace('cas', [{ key: 'a', expected: undefined, next: 1 }, { key: 'a', expected: undefined, next: 2 }]), { code: 'PCL_ERR_INVALID_ARGUMENT' });

  const rows: [string, unknown][] = [
    ['f:1', { username: 'sam', id: '1', exp: 10 }],
    ['f:2', { username: 'sam', id: '2', exp: 30, revokedAt: 5 }],
    ['f:3', { username: 'samuel', id: '3', exp: 5.5 }],
    ['f:4', { username: ['sam'], id: 4, exp: '1' }],
    ['t:a', { familyId: '1', username: 'sam' }],
    ['t:b', { familyId: '3' }],
    ['t:c', ['familyId', 'revokedAt']],
    ['t:d', 'sam'],
    ['f_x', { username: 'sam', id: 'x' }],
  ];
  for (const [k, v] of rows) await store.put('fam', k, v);
  await store.put('fam2', 'f:9', { username: 'sam' });
  const keys = async (f: RecordFilter): Promise<string[]> => (await store.listWhere('fam', f)).map((r) => r.key);
  assert.deepEqual(await keys({}), ['f:1', 'f:2', 'f:3', 'f:4', 'f_x', 't:a', 't:b', 't:c', 't:d'], 'no condition: the whole namespace, in list order');
  assert.deepEqual(await keys({ keyPrefix: 'f:' }), ['f:1', 'f:2', 'f:3', 'f:4'], 'a prefix is literal (no LIKE wildcards)');
  assert.deepEqual(await keys({ keyPrefix: 'f_' }), ['f_x']);
  assert.deepEqual(await keys({ equals: { username: 'sam' } }), ['f:1', 'f:2', 'f_x', 't:a'], 'equal members only: no prefix match, no array containment');
  assert.deepEqual(await keys({ keyPrefix: 'f:', equals: { username: 'sam' }, absent: 'revokedAt' }), ['f:1']);
  assert.deepEqual(await keys({ equals: { exp: 10 } }), ['f:1'], 'numbers equal numbers');
  assert.deepEqual(await keys({ equals: { exp: '1' } }), ['f:4'], 'a string is not a number');
  assert.deepEqual(await keys({ oneOf: { field: 'familyId', values: ['1', '3', '9'] } }), ['t:a', 't:b']);
  assert.deepEqual(await keys({ oneOf: { field: 'id', values: ['4'] } }), [], 'oneOf matches strings only');
  assert.deepEqual(await keys({ oneOf: { field: 'id', values: [] } }), [], 'an empty list matches nothing');
  assert.deepEqual(await keys({ absent: 'familyId' }), ['f:1', 'f:2', 'f:3', 'f:4', 'f_x'], 'member conditions skip values that are not objects');
  assert.deepEqual(await keys({ below: { field: 'exp', value: 10 } }), ['f:3'], 'below is strict, numbers only');
  assert.deepEqual(await keys({ below: { field: 'exp', value: 10.5 } }), ['f:1', 'f:3']);
  assert.deepEqual(await keys({ equals: { "it's": "a'); DROP TABLE records; --" } }), [], 'names and values are data, not SQL');

  // patchWhere: one atomic merge; the changed records come back as stored.
  const patched = await store.patchWhere<{ revokedAt: number; id: string }>('fam', { keyPrefix: 'f:', equals: { username: 'sam' }, absent: 'revokedAt' }, { revokedAt: 7 });
  assert.deepEqual(patched, [{ key: 'f:1', value: { username: 'sam', id: '1', exp: 10, revokedAt: 7 } }]);
  assert.deepEqual(await store.get('fam', 'f:2'), { username: 'sam', id: '2', exp: 30, revokedAt: 5 }, 'not matched: unchanged');
  assert.deepEqual(await store.get('fam2', 'f:9'), { username: 'sam' }, 'patchWhere stays in its namespace');
  assert.deepEqual(await store.patchWhere('fam', { keyPrefix: 'f:', equals: { username: 'sam' }, absent: 'revokedAt' }, { revokedAt: 8 }), [], 'a second run finds nothing left');
  assert.deepEqual((await store.patchWhere('fam', { keyPrefix: 't:' }, { seen: true })).map((r) => r.key), ['t:a', 't:b'], 'only object values are patched');
  assert.deepEqual(await store.get('fam', 't:c'), ['familyId', 'revokedAt']);
  assert.deepEqual(await store.patchWhere('fam', { keyPrefix: 't:', oneOf: { field: 'familyId', values: ['3'] } }, { x: { deep: [1] }, familyId: '3b' }), [{ key: 't:b', value: { familyId: '3b', seen: true, x: { deep: [1] } } }], 'members are replaced, others kept');

  // deleteWhere.
  assert.equal(await store.deleteWhere('fam', { below: { field: 'exp', value: 11 } }), 2);
  assert.deepEqual(await keys({ keyPrefix: 'f:' }), ['f:2', 'f:4']);
  assert.equal(await store.deleteWhere('fam', { keyPrefix: 't:' }), 4);
  assert.deepEqual(await keys({}), ['f:2', 'f:4', 'f_x']);
  assert.deepEqual(await store.get('fam2', 'f:9'), { username: 'sam' }, 'deleteWhere stays in its namespace');
}

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
  assert.equal(await store.addAuditEvents([]), 0, 'nothing to add');
  assert.equal(await store.addAuditEvents(events), 4);
  assert.equal(await store.addAuditEvents([events[0] as StoredAuditEvent]), 0, 'an id is stored once'); // index 0 exists
  const twice: StoredAuditEvent = { id: 'e', event: decision('2025-01-01T00:00:00.000Z') };
  assert.equal(await store.addAuditEvents([twice, twice]), 1, 'twice in one batch: stored once');
  const ids = async (q: Omit<AuditQuery, 'limit'>, limit = 100): Promise<string[]> => (await store.queryAuditEvents({ ...q, limit })).map((r) => r.id);
  assert.deepEqual(await ids({}), ['d', 'c', 'b', 'a', 'e'], 'newest first; equal times in insertion order reversed');
  assert.deepEqual(await ids({}, 2), ['d', 'c']);
  assert.deepEqual(await ids({}, 1), ['d']);
  assert.deepEqual(await ids({ principal: 'mallory' }), ['b']);
  assert.deepEqual(await ids({ principal: 'nobody' }), []);
  assert.deepEqual(await ids({ workload: 'spiffe://demo/orders' }), ['c']);
  assert.deepEqual(await ids({ route: 'orders' }), ['b', 'a']);
  assert.deepEqual(await ids({ route: 'orders' }, 1), ['b'], 'limit applies after the filter');
  assert.deepEqual(await ids({ decision: 'deny' }), ['b']);
  assert.deepEqual(await ids({ decision: 'allow' }), ['c', 'a', 'e'], 'admin events have no decision');
  assert.deepEqual(await ids({ policy: 'p1' }), ['c', 'a']);
  assert.deepEqual(await ids({ policy: 'p2' }), ['c']);
  assert.deepEqual(await ids({ policy: 'p' }), [], 'a policy id matches whole');
  assert.equal(await store.addAuditEvents([{ id: 'odd', event: decision('2020-01-01T00:00:00.000Z', { reasons: ['a,b', '{c}', 'd"e\\', 'NULL', ''] }) }]), 1);
  for (const p of ['a,b', '{c}', 'd"e\\', 'NULL', '']) assert.deepEqual(await ids({ policy: p }), ['odd'], 'policy ids with array syntax in them');
  assert.deepEqual(await ids({ policy: 'a' }), []);
  assert.deepEqual(await ids({ component: 'control' }), ['d']);
  assert.deepEqual(await ids({ since: '2026-01-01T00:00:02.000Z', until: '2026-01-01T00:00:03.000Z' }), ['b'], 'since inclusive, until exclusive');
  assert.deepEqual(await ids({ since: '2026-01-01T00:00:03.000Z' }), ['d', 'c']);
  assert.deepEqual(await ids({ until: '2026-01-01T00:00:01.000Z' }), ['e', 'odd']);
  assert.deepEqual(await ids({ since: '2026-01-01T01:00:00+01:00', until: '2026-01-01T00:00:02.000Z' }), ['a'], 'offsets are instants');
  assert.deepEqual(await ids({ route: 'orders', decision: 'allow', principal: 'alice' }), ['a']);
  assert.deepEqual(await ids({ route: 'orders', decision: 'deny', principal: 'alice' }), [], 'every filter must match');
  const [first] = await store.queryAuditEvents({ component: 'control', limit: 1 });
  assert.deepEqual(first, events[3], 'the event comes back as stored');

  // A later batch with an earlier time sorts by time, not by arrival.
  assert.equal(await store.addAuditEvents([{ id: 'f', event: decision('2025-06-01T00:00:00.000Z', { sub: 'alice' }) }]), 1);
  assert.deepEqual(await ids({ principal: 'alice' }), ['a', 'f']);
  // More than one INSERT's worth (500 per statement) in one call.
  const many: StoredAuditEvent[] = Array.from({ length: 1001 }, (_, i) => ({ id: `m${i}`, event: decision(new Date(Date.UTC(2024, 0, 1) + i * 1000).toISOString(), { component: 'bulk' }) }));
  assert.equal(await store.addAuditEvents([...many, events[1] as StoredAuditEvent]), 1001, 'new ones counted across chunks, the known one skipped'); // index 1 exists
  assert.deepEqual(await ids({ component: 'bulk' }, 3), ['m1000', 'm999', 'm998']);
}

for (const a of ADAPTERS) {
  test(`${a.name} meets the store contract`, () => withStore(a.open, contract));

  test(`${a.name} meets the audit store contract`, () => withStore(a.open, auditContract));

  test(`${a.name}: compare-and-set and the filtered operations`, () => withStore(a.open, filteredContract));

  test(`${a.name}: 20 concurrent replaces from the same values, exactly one wins`, () => withStore(a.open, async (s) => {
    await s.put('cas', 'c', { n: 0 });
    // Each also creates a record expected absent, and half of them touch a second shared key in the other order.
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => s.replace('cas', [
      { key: 'c', expected: { n: 0 }, next: { n: i + 1 } },
      { key: i % 2 === 0 ? 'a-new' : 'z-new', expected: undefined, next: i },
    ])));
    assert.equal(results.filter(Boolean).length, 1);
    const winner = results.indexOf(true);
    assert.deepEqual(await s.get('cas', 'c'), { n: winner + 1 });
    assert.deepEqual([await s.get('cas', 'a-new'), await s.get('cas', 'z-new')], winner % 2 === 0 ? [winner, undefined] : [undefined, winner], 'the losers wrote nothing');
    // Racing creators of one absent key: one wins, and the loser's other record is rolled back.
    const creators = await Promise.all(Array.from({ length: 10 }, (_, i) => s.replace('cas', [{ key: 'fresh', expected: undefined, next: i }, { key: `side-${i}`, expected: undefined, next: i }])));
    assert.equal(creators.filter(Boolean).length, 1);
    assert.equal((await s.list('cas')).filter((r) => r.key.startsWith('side-')).length, 1);
  }));

  test(`${a.name}: 10 concurrent patchWhere of the same records, each record changed once`, () => withStore(a.open, async (s) => {
    for (let i = 0; i < 5; i++) await s.put('fam', `f:${i}`, { username: 'sam' });
    const runs = await Promise.all(Array.from({ length: 10 }, (_, i) => s.patchWhere('fam', { equals: { username: 'sam' }, absent: 'revokedAt' }, { revokedAt: i })));
    assert.equal(runs.flat().length, 5, 'every record patched by exactly one run');
  }));

  test(`${a.name}: 100 concurrent takes of one record, exactly one wins`, () => withStore(a.open, async (s) => {
    await s.put('codes', 'c', { x: 1 });
    const results = await Promise.all(Array.from({ length: 100 }, () => s.take('codes', 'c')));
    assert.deepEqual(results.filter((r) => r !== undefined), [{ x: 1 }]);
  }));

  test(`${a.name}: 20 concurrent inserts of one key, exactly one creates it`, () => withStore(a.open, async (s) => {
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => s.insert('codes', 'once', { i })));
    assert.equal(results.filter(Boolean).length, 1);
    const winner = results.indexOf(true);
    assert.deepEqual(await s.get('codes', 'once'), { i: winner }, 'the winner\'s value is the one kept');
  }));
}

test('PgliteStore keeps data across reopen', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'pcl-store-'));
  try {
    const s = await PgliteStore.open(join(dir, 'db'));
    await s.put('keep', 'me', { v: true });
    await s.close();
    const again = await PgliteStore.open(join(dir, 'db'));
    assert.deepEqual(await again.get('keep', 'me'), { v: true });
    await again.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
