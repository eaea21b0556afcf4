// The wire format and the associated data: one spelling per ciphertext, one encoding per context.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  aadHeader, associatedData, canonicalContext, formatCiphertext, MAX_CIPHERTEXT_LENGTH, MAX_CONTEXT_ENTRIES, parseCiphertext,
} from '../../src/kms/ciphertext.js';
import type { KmsContext } from '../../src/kms/types.js';

const payload = Buffer.from('000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e', 'hex'); // 31 bytes: base64url ends mid-group
const good = formatCiphertext('billing.cards-v2', 17, payload);

test('format and parse round-trip', () => {
  assert.match(good, /^pcl:billing\.cards-v2:v17:[A-Za-z0-9_-]+$/);
  const p = parseCiphertext(good);
  assert.equal(p.keyring, 'billing.cards-v2');
  assert.equal(p.version, 17);
  assert.deepEqual(p.payload, payload);
  assert.deepEqual(parseCiphertext('pcl:a:v1:').payload, Buffer.alloc(0));
});

test('anything malformed is PCL_ERR_KMS_CIPHERTEXT_INVALID', () => {
  const b64 = payload.toString('base64url');
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
  // Same bytes, a set bit among the last character's unused ones: Node decodes it to the same
  // payload, we refuse it (31 bytes leave 4 unused bits).
  const otherBits = b64.slice(0, -1) + alphabet[alphabet.indexOf(b64.at(-1) ?? '') | 1];
  const bad: unknown[] = [
    undefined, null, 42, {}, '', 'pcl', 'pcl:', 'pcl:a', 'pcl:a:v1', 'PCL:a:v1:AAAA', 'pcx:a:v1:AAAA', ' pcl:a:v1:AAAA',
    'pcl:A:v1:AAAA', 'pcl:-a:v1:AAAA', 'pcl:.a:v1:AAAA', 'pcl:a/b:v1:AAAA', 'pcl:a b:v1:AAAA', 'pcl:é:v1:AAAA', `pcl:${'a'.repeat(64)}:v1:AAAA`, 'pcl::v1:AAAA',
    'pcl:a:v0:AAAA', 'pcl:a:v01:AAAA', 'pcl:a:V1:AAAA', 'pcl:a:1:AAAA', 'pcl:a:v:AAAA', 'pcl:a:v-1:AAAA', 'pcl:a:v1.0:AAAA', 'pcl:a:v1000000000:AAAA', 'pcl:a:v1e3:AAAA',
    `pcl:a:v1:${b64}=`, `pcl:a:v1:${b64}==`, 'pcl:a:v1:AA+A', 'pcl:a:v1:AA/A', 'pcl:a:v1:AA A', 'pcl:a:v1:AAAA\n', 'pcl:a:v1:AA!A', 'pcl:a:v1:A',
    `pcl:a:v1:${otherBits}`, `pcl:a:v1:${b64}:x`, 'pcl:a:v1:AAAA:', `pcl:a:v1:${'A'.repeat(MAX_CIPHERTEXT_LENGTH)}`,
  ];
  for (const text of bad) {
    assert.throws(() => parseCiphertext(text), { code: 'PCL_ERR_KMS_CIPHERTEXT_INVALID' }, JSON.stringify(text)?.slice(0, 60));
  }
  assert.equal(Buffer.from(otherBits, 'base64url').equals(payload), true, 'the non-canonical spelling really decodes to the same bytes');
});

test('the refusal never echoes the input', () => {
  const secretish = 'pcl:a:v1:' + Buffer.from('4111111111111111').toString('base64url') + '=';
  try {
    parseCiphertext(secretish);
    assert.fail('should throw');
  } catch (err) {
    assert.ok(err instanceof Error);
    assert.ok(!err.message.includes('NDEx'), err.message);
  }
});

test('the longest legal ciphertext parses; one character more does not', () => {
  const max = Buffer.alloc(1024 * 1024 + 28);
  const text = formatCiphertext('a'.repeat(63), 999_999_999, max);
  assert.equal(text.length, MAX_CIPHERTEXT_LENGTH);
  assert.equal(parseCiphertext(text).payload.length, max.length);
  assert.throws(() => parseCiphertext(text + 'A'), { code: 'PCL_ERR_KMS_CIPHERTEXT_INVALID' });
});

test('canonical context: pinned bytes, sorted keys, length prefixes', () => {
  assert.equal(canonicalContext({ b: '2', a: '1' }).toString('hex'), '00000002' + '00000001' + '61' + '00000001' + '31' + '00000001' + '62' + '00000001' + '32');
  assert.deepEqual(canonicalContext({ tenant: 't1', field: 'card' }), canonicalContext({ field: 'card', tenant: 't1' }));
  assert.notDeepEqual(canonicalContext({ a: 'b=c' }), canonicalContext({ 'a=b': 'c' }));
  assert.notDeepEqual(canonicalContext({ a: 'b', c: 'd' }), canonicalContext({ a: 'b\u0000c\u0000d' }));
  assert.notDeepEqual(canonicalContext({ a: '' }), canonicalContext({}));
  assert.deepEqual(canonicalContext(undefined), canonicalContext({}));
  // Sorted by UTF-8 bytes, so astral characters sort after every BMP one (UTF-16 order would not).
  const keys = (c: Buffer): string[] => {
    const out: string[] = [];
    for (let at = 4, n = c.readUInt32BE(0); n > 0; n--) {
      const kl = c.readUInt32BE(at);
      out.push(c.subarray(at + 4, at + 4 + kl).toString('utf8'));
      at += 4 + kl;
      at += 4 + c.readUInt32BE(at);
    }
    return out;
  };
  assert.deepEqual(keys(canonicalContext({ '\u{1F600}': 'x', '\uFF01': 'y', a: 'z' })), ['a', '\uFF01', '\u{1F600}']);
});

test('bad contexts are PCL_ERR_INVALID_ARGUMENT', () => {
  const many: Record<string, string> = {};
  for (let i = 0; i <= MAX_CONTEXT_ENTRIES; i++) many[`k${i}`] = 'v';
  const bad: unknown[] = [null, 'tenant=a', ['a'], { a: 1 }, { a: undefined }, { a: { b: 'c' } }, { '': 'x' }, { a: '\uD800' }, { '\uDC00': 'x' }, many, { ['k'.repeat(257)]: 'v' }, { k: 'v'.repeat(4097) }];
  for (const ctx of bad) assert.throws(() => canonicalContext(ctx as KmsContext), { code: 'PCL_ERR_INVALID_ARGUMENT' }); // deliberately ill-typed input
  assert.doesNotThrow(() => canonicalContext({ ['k'.repeat(256)]: 'v'.repeat(4096), emoji: '\u{1F600}' }));
});

test('associated data binds keyring, version and context', () => {
  const all = [
    associatedData('a', 1), associatedData('b', 1), associatedData('a', 2), associatedData('a', 1, { x: 'y' }),
    associatedData('ab', 1), associatedData('a', 256),
  ].map((b) => b.toString('hex'));
  assert.equal(new Set(all).size, all.length);
  assert.deepEqual(associatedData('a', 1, {}), associatedData('a', 1));
  assert.deepEqual(associatedData('k', 3, { t: '1' }), Buffer.concat([aadHeader('k', 3), canonicalContext({ t: '1' })]));
  assert.ok(aadHeader('k', 3).toString('latin1').startsWith('portcullis-kms-aad-v1\0'));
});
