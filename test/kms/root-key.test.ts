// The sealed root key: argon2id + AES-256-GCM, a 0600 file that never holds the key in clear,
// never overwritten, bounded KDF parameters on the way back in.
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { initSealedRoot, SEALED_ROOT_KDF, unsealRoot } from '../../src/kms/root-key.js';
import { KeyWrapper } from '../../src/kms/wrap.js';
import { errorText } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'pcl-root-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const passphrase = 'correct horse battery staple';

test('init then unseal gives one 32-byte key; the file is 0600, names its KDF, and holds no key', async () => {
  const file = join(dir, 'root.sealed');
  await initSealedRoot(file, passphrase);
  assert.equal(statSync(file).mode & 0o777, 0o600);
  assert.deepEqual(readdirSync(dir), ['root.sealed'], 'no temporary file left behind');
  const text = readFileSync(file, 'utf8');
  const json = JSON.parse(text) as { kdf: Record<string, unknown>; cipher: string }; // written by initSealedRoot
  assert.deepEqual({ ...json.kdf, salt: undefined }, { algorithm: 'argon2id', version: 0x13, ...SEALED_ROOT_KDF, salt: undefined });
  assert.equal(Buffer.from(String(json.kdf.salt), 'base64url').length, 16);
  assert.equal(json.cipher, 'aes-256-gcm');
  const root = await unsealRoot(file, passphrase);
  assert.equal(root.length, 32);
  assert.deepEqual(await unsealRoot(file, passphrase), root);
  for (const enc of ['hex', 'base64', 'base64url'] as const) assert.ok(!text.includes(root.toString(enc)));
  // It works as the KeyWrapper's root, and zeroing it is all sealing takes.
  const w = new KeyWrapper(root);
  assert.equal(w.unwrap(w.wrap('x', 'a'), 'a').toString(), 'x');
  root.fill(0);
  assert.ok(root.equals(Buffer.alloc(32)));
});

test('a wrong passphrase, an altered file, a refused overwrite, and bad files', async () => {
  const file = join(dir, 'root2.sealed');
  await initSealedRoot(file, passphrase);
  const original = readFileSync(file, 'utf8');
  const wrong = await unsealRoot(file, 'correct horse battery stapler').then(() => undefined, (e: unknown) => e);
  assert.equal((wrong as { code?: string }).code, 'PCL_ERR_KMS_PASSPHRASE'); // checked just below
  assert.ok(!errorText(wrong).includes('stapler'), 'the passphrase is not echoed');
  await assert.rejects(initSealedRoot(file, passphrase), { code: 'PCL_ERR_INVALID_ARGUMENT' }, 'never overwrites');
  assert.equal(readFileSync(file, 'utf8'), original);

  const edit = (f: (j: Record<string, Record<string, unknown>>) => void): void => {
    const j = JSON.parse(original) as Record<string, Record<string, unknown>>; // our own file
    f(j);
    writeFileSync(file, JSON.stringify(j));
  };
  // A changed salt or ciphertext decrypts to nothing: indistinguishable from a wrong passphrase.
  edit((j) => { if (j.kdf) j.kdf.salt = Buffer.alloc(16, 1).toString('base64url'); });
  await assert.rejects(unsealRoot(file, passphrase), { code: 'PCL_ERR_KMS_PASSPHRASE' });
  // Hostile parameters are refused before any work is done.
  for (const [k, v] of [['memoryCost', 4 * 1024 * 1024], ['memoryCost', 1024], ['timeCost', 1000], ['parallelism', 64], ['algorithm', 'argon2i'], ['salt', 'AAAA']] as const) {
    edit((j) => { if (j.kdf) j.kdf[k] = v; });
    const t = Date.now();
    await assert.rejects(unsealRoot(file, passphrase), { code: 'PCL_ERR_MASTER_KEY' }, `${k}=${v}`);
    assert.ok(Date.now() - t < 200, 'refused without running the KDF');
  }
  writeFileSync(file, 'not json');
  await assert.rejects(unsealRoot(file, passphrase), { code: 'PCL_ERR_MASTER_KEY' });
  writeFileSync(file, 'x'.repeat(100_000));
  await assert.rejects(unsealRoot(file, passphrase), { code: 'PCL_ERR_MASTER_KEY' });
  await assert.rejects(unsealRoot(join(dir, 'missing'), passphrase), { code: 'PCL_ERR_MASTER_KEY' });
  await assert.rejects(initSealedRoot(join(dir, 'short'), 'short'), { code: 'PCL_ERR_INVALID_ARGUMENT' });
  await assert.rejects(initSealedRoot(join(dir, 'no-such-dir', 'f'), passphrase), { code: 'PCL_ERR_MASTER_KEY' });
});
