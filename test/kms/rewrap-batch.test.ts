// rewrapAll: moves records to the latest version, skips those already there, counts failures
// (with their code, never their content) and never stops on one bad record.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { PortcullisError } from '../../src/core/errors.js';
import { parseCiphertext } from '../../src/kms/ciphertext.js';
import { rewrapAll, type RewrapItem } from '../../src/kms/rewrap-batch.js';
import { openKms } from './helpers.js';

async function* fromArray(items: RewrapItem[]): AsyncIterable<RewrapItem> {
  for (const item of items) yield item;
}

test('rewrapAll: rewrapped, skipped and failed, with progress, over mixed and bad records', async () => {
  const { kms } = await openKms();
  await kms.ensureKeyring('k');
  await kms.ensureKeyring('other');
  const db = new Map<string, string>();
  const items: RewrapItem[] = [];
  for (let i = 0; i < 30; i++) {
    const ctx = { row: String(i) };
    const id = `r${i}`;
    db.set(id, await kms.encrypt(i % 3 === 0 ? 'other' : 'k', Buffer.from(`value ${i}`), ctx));
    items.push({ id, ciphertext: db.get(id) ?? '', context: ctx });
  }
  await kms.rotate('k');
  const latest = await kms.encrypt('k', Buffer.from('new'), { row: 'new' });
  items.push({ id: 'new', ciphertext: latest, context: { row: 'new' } });
  items.push({ id: 'garbage', ciphertext: 'not a ciphertext' });
  items.push({ id: 'wrong-context', ciphertext: db.get('r1') ?? '', context: { row: 'r2' } });
  items.push({ id: 'unknown-ring', ciphertext: (db.get('r1') ?? '').replace('pcl:k:', 'pcl:gone:') });
  items.push({ id: 'write-fails', ciphertext: db.get('r2') ?? '', context: { row: '2' } });
  const progress: number[] = [];
  const result = await rewrapAll(kms, fromArray(items), async (id, next) => {
    if (id === 'write-fails') throw new PortcullisError('PCL_ERR_STORE', 'disk full');
    db.set(id, next);
  }, { batchSize: 8, onProgress: (n) => progress.push(n) });
  // 20 records of 'k' at v1 (one of which fails to write), 10 of 'other' at their latest, 1 new.
  assert.equal(result.rewrapped, 20);
  assert.equal(result.skipped, 11);
  assert.deepEqual(result.failed.sort((a, b) => a.id.localeCompare(b.id)), [
    { id: 'garbage', code: 'PCL_ERR_KMS_CIPHERTEXT_INVALID' },
    { id: 'unknown-ring', code: 'PCL_ERR_KMS_KEYRING_NOT_FOUND' },
    { id: 'write-fails', code: 'PCL_ERR_STORE' },
    { id: 'wrong-context', code: 'PCL_ERR_KMS_CIPHERTEXT_INVALID' },
  ]);
  assert.deepEqual(progress, [8, 16, 24, 32, 35]);
  for (let i = 0; i < 30; i++) {
    const ct = db.get(`r${i}`) ?? '';
    assert.equal(parseCiphertext(ct).version, i % 3 === 0 ? 1 : 2);
    assert.equal((await kms.decrypt(ct, { row: String(i) })).toString(), `value ${i}`);
  }
  // A second run finds nothing to do.
  const again = await rewrapAll(kms, [...db].map(([id, ciphertext]) => ({ id, ciphertext, context: { row: id.slice(1) } })), async () => assert.fail('nothing to write'));
  assert.equal(again.rewrapped, 0);
  assert.equal(again.failed.length, 0);
  await assert.rejects(rewrapAll(kms, [], async () => {}, { batchSize: 0 }), { code: 'PCL_ERR_INVALID_ARGUMENT' });
});
