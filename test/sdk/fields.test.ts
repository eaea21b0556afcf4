import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { FakeClock } from '../../src/core/clock.js';
import { PortcullisError } from '../../src/core/errors.js';
import { KeyManager } from '../../src/kms/key-manager.js';
import { KeyWrapper } from '../../src/kms/wrap.js';
import { MemoryStore } from '../../src/store/memory.js';
import { FieldEncryptor, type DataKeySource } from '../../src/sdk/fields.js';
import { mask, maskCardNumber } from '../../src/sdk/index.js';

async function setup(): Promise<{ kms: KeyManager; source: DataKeySource; calls: { dataKey: number; decrypt: number } }> {
  const kms = await KeyManager.open({ store: new MemoryStore(), wrapper: new KeyWrapper(randomBytes(32)) });
  await kms.ensureKeyring('cards');
  await kms.ensureKeyring('other');
  const calls = { dataKey: 0, decrypt: 0 };
  const source: DataKeySource = {
    dataKey: (k, c) => { calls.dataKey++; return kms.generateDataKey(k, c); },
    decrypt: (k, ct, c) => { calls.decrypt++; return kms.decrypt(ct, c, k); },
  };
  return { kms, source, calls };
}

const refused = (e: unknown): boolean => e instanceof PortcullisError && e.code === 'PCL_ERR_KMS_CIPHERTEXT_INVALID';

test('text fields and byte blobs round-trip; one data key serves many fields', async () => {
  const { source, calls } = await setup();
  const f = new FieldEncryptor({ kms: source, keyring: 'cards' });
  const ctx = { field: 'card', charge: 'ch-1' };
  for (const value of ['4111111111111111', '', 'ü'.repeat(1000)]) {
    const field = await f.encryptField(value, ctx);
    assert.match(field, /^pclf:v1:pcl:cards:v1:[A-Za-z0-9_-]+:[A-Za-z0-9_-]+$/);
    assert.ok(!field.includes(value) || value === '');
    assert.equal(await f.decryptFieldToString(field, ctx), value);
  }
  const blob = randomBytes(70_000);
  assert.deepEqual(await f.decryptBytes(await f.encryptBytes(blob, ctx), ctx), blob);
  assert.equal(calls.dataKey, 1, 'one data key for all of them');
  assert.equal(calls.decrypt, 0, 'the encrypting instance never asks the KMS to unwrap its own key');
});

test('another replica decrypts, asking the KMS once per data key', async () => {
  const { source, calls } = await setup();
  const a = new FieldEncryptor({ kms: source, keyring: 'cards' });
  const b = new FieldEncryptor({ kms: source, keyring: 'cards' });
  const fields = await Promise.all(Array.from({ length: 20 }, (_, i) => a.encryptField(`v${i}`, { i: String(i) })));
  const out = await Promise.all(fields.map((f, i) => b.decryptFieldToString(f, { i: String(i) })));
  assert.deepEqual(out, fields.map((_, i) => `v${i}`));
  assert.equal(calls.decrypt, 1);
});

test('wrong context, tampering, truncation, padding and another keyring are one refusal', async () => {
  const { source } = await setup();
  const f = new FieldEncryptor({ kms: source, keyring: 'cards' });
  const field = await f.encryptField('4111111111111111', { field: 'card', charge: 'ch-1' });
  const ctx = { field: 'card', charge: 'ch-1' };
  await assert.rejects(f.decryptField(field, { field: 'card', charge: 'ch-2' }), refused);
  await assert.rejects(f.decryptField(field, {}), refused);
  const last = field.at(-1) === 'A' ? 'B' : 'A';
  await assert.rejects(f.decryptField(field.slice(0, -1) + last, ctx), refused);
  await assert.rejects(f.decryptField(field.slice(0, -8), ctx), refused);
  await assert.rejects(f.decryptField(field + '==', ctx), refused);
  await assert.rejects(f.decryptField(field + 'A', ctx), refused);
  await assert.rejects(f.decryptField('pclf:v1:junk', ctx), refused);
  const other = new FieldEncryptor({ kms: source, keyring: 'other' });
  await assert.rejects(other.decryptField(field, ctx), refused);
  const blob = await f.encryptBytes(Buffer.from('x'), ctx);
  blob.writeUInt8((blob.at(-1) ?? 0) ^ 1, blob.length - 1);
  await assert.rejects(f.decryptBytes(blob, ctx), refused);
  await assert.rejects(f.decryptField(field, { field: 'card', charge: 'ch-2' }), (e: unknown) => e instanceof Error && !e.message.includes('4111'));
});

test('data keys are replaced when worn out or old, and keyring rotation reaches new fields', async () => {
  const { kms, source, calls } = await setup();
  const clock = new FakeClock();
  const f = new FieldEncryptor({ kms: source, keyring: 'cards', maxUsesPerKey: 3, keyTtlMs: 60_000, clock });
  const old = await f.encryptField('a');
  await f.encryptField('b');
  await f.encryptField('c');
  assert.equal(calls.dataKey, 1);
  await f.encryptField('d');
  assert.equal(calls.dataKey, 2, 'a new key after maxUsesPerKey fields');
  await kms.rotate('cards');
  await clock.advance(61_000);
  const fresh = await f.encryptField('e');
  assert.equal(calls.dataKey, 3, 'a new key after keyTtlMs');
  assert.match(fresh, /^pclf:v1:pcl:cards:v2:/, 'new fields use the rotated keyring version');
  assert.equal(await f.decryptFieldToString(old), 'a', 'old fields still decrypt');
});

test('masking keeps only the last characters', () => {
  assert.equal(maskCardNumber('4111 1111 1111 1234'), '**** **** **** 1234');
  assert.equal(mask('secret-value'), '********alue');
  assert.equal(mask('abc'), '***');
});
