// The store contract: every adapter behaves the same (STYLE.md habit 9).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MemoryStore } from '../../src/store/memory.js';
import { PgliteStore } from '../../src/store/pglite.js';
import type { Store } from '../../src/store/store.js';

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
