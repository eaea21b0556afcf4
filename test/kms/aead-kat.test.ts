// Known-answer tests: published AES-256-GCM vectors (GCM specification test cases 13-16, NIST
// CAVP gcmEncryptExtIV256) through the very functions the KeyManager encrypts and decrypts with.
import assert from 'node:assert/strict';
import { createSecretKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { open, seal, sealWithNonce } from '../../src/kms/aead.js';
import { fixture } from '../helpers/paths.js';

interface Vector { source: string; name: string; key: string; iv: string; aad: string; pt: string; ct: string; tag: string }
const file = JSON.parse(readFileSync(fixture('kms', 'aes-256-gcm-kat.json'), 'utf8')) as { sources: Record<string, string>; vectors: Vector[] }; // our own fixture
const hex = (s: string): Buffer => Buffer.from(s, 'hex');

test('the fixture names its sources and holds both published sets', () => {
  assert.deepEqual(Object.keys(file.sources).sort(), ['gcm-spec', 'nist-cavp']);
  for (const v of file.vectors) assert.ok(v.source in file.sources, v.name);
  assert.equal(file.vectors.filter((v) => v.source === 'gcm-spec').length, 4);
  assert.ok(file.vectors.filter((v) => v.source === 'nist-cavp').length >= 5);
});

for (const v of file.vectors) {
  test(`KAT ${v.source} ${v.name}: encrypt gives nonce ‖ ct ‖ tag, decrypt gives the plaintext`, () => {
    const expected = Buffer.concat([hex(v.iv), hex(v.ct), hex(v.tag)]);
    for (const key of [hex(v.key), createSecretKey(hex(v.key))]) {
      assert.equal(sealWithNonce(key, hex(v.iv), hex(v.pt), hex(v.aad)).toString('hex'), expected.toString('hex'));
      assert.equal(open(key, expected, hex(v.aad))?.toString('hex'), v.pt);
    }
  });

  test(`KAT ${v.source} ${v.name}: any one flipped bit (nonce, ciphertext, tag or AAD) is refused`, () => {
    const key = createSecretKey(hex(v.key));
    const payload = Buffer.concat([hex(v.iv), hex(v.ct), hex(v.tag)]);
    for (let i = 0; i < payload.length; i++) {
      const bad = Buffer.from(payload);
      bad[i] = (bad[i] ?? 0) ^ (1 << (i % 8));
      assert.equal(open(key, bad, hex(v.aad)), undefined, `byte ${i}`);
    }
    const aad = Buffer.concat([hex(v.aad), Buffer.from([0])]);
    assert.equal(open(key, payload, aad), undefined, 'AAD with one more byte');
    assert.equal(open(key, payload.subarray(0, payload.length - 1), hex(v.aad)), undefined, 'truncated');
    assert.equal(open(key, Buffer.concat([payload, Buffer.from([0])]), hex(v.aad)), undefined, 'padded');
  });
}

test('seal draws a fresh nonce per message and adds exactly 28 bytes', () => {
  const key = createSecretKey(Buffer.alloc(32, 7));
  const a = seal(key, Buffer.from('same'), Buffer.alloc(0));
  const b = seal(key, Buffer.from('same'), Buffer.alloc(0));
  assert.equal(a.length, 4 + 28);
  assert.notDeepEqual(a.subarray(0, 12), b.subarray(0, 12));
  assert.equal(open(key, a, Buffer.alloc(0))?.toString(), 'same');
  assert.equal(open(key, a.subarray(0, 27), Buffer.alloc(0)), undefined, 'shorter than nonce + tag');
});
