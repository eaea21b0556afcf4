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

test('strict base64url agrees with re-encoding on every short string over a wide alphabet', () => {
  // The decoder's shortcut (length arithmetic instead of re-encoding) checked exhaustively on
  // strings of up to 3 characters, and on random longer ones, against the obvious definition.
  const chars = 'AQgw/+=_-9 .é\u{1F600}'.split('');
  const canonical = (s: string): boolean => Buffer.from(s, 'base64url').toString('base64url') === s;
  const check = (s: string): void => {
    let ours: boolean;
    try {
      parseCiphertext(`pcl:a:v1:${s}`);
      ours = true;
    } catch {
      ours = false;
    }
    assert.equal(ours, canonical(s), JSON.stringify(s));
  };
  const walk = (prefix: string, depth: number): void => {
    check(prefix);
    if (depth > 0) for (const c of chars) walk(prefix + c, depth - 1);
  };
  walk('', 3);
  const base = Buffer.from('0123456789abcdefghij').toString('base64url');
  for (let i = 0; i < base.length; i++) for (const c of chars) check(base.slice(0, i) + c + base.slice(i + 1));
  for (let i = 0; i <= base.length; i++) for (const c of chars) check(base.slice(0, i) + c + base.slice(i));
  for (let i = 0; i < base.length; i++) check(base.slice(0, i) + base.slice(i + 1));
});

test('context keys are ordered exactly as their UTF-8 bytes, whatever the characters', () => {
  const chars = ['a', 'Z', '\u007f', '\u0080', '\u07ff', '\u0800', '\ud7ff', '\ue000', '\uffff', '\u{10000}', '\u{1F600}', '\u{10FFFF}'];
  const keys: string[] = [];
  for (const a of chars) for (const b of chars) keys.push(a + b);
  for (let from = 0; from < keys.length; from += 64) {
    const chunk = keys.slice(from, from + 64).reverse();
    const c = canonicalContext(Object.fromEntries(chunk.map((k) => [k, ''])));
    const got: Buffer[] = [];
    for (let at = 4, n = c.readUInt32BE(0); n > 0; n--) {
      const kl = c.readUInt32BE(at);
      got.push(c.subarray(at + 4, at + 4 + kl));
      at += 4 + kl + 4 + c.readUInt32BE(at + 4 + kl);
    }
    const expected = chunk.map((k) => Buffer.from(k, 'utf8')).sort(Buffer.compare);
    assert.deepEqual(got.map((b) => b.toString('hex')), expected.map((b) => b.toString('hex')));
  }
  // And across chunks, by pairs.
  for (const a of chars) for (const b of chars) {
    const [first] = [a, b].map((k) => Buffer.from(k, 'utf8')).sort(Buffer.compare);
    const c = canonicalContext({ [a]: '', [b]: '' });
    assert.equal(c.subarray(8, 8 + (first?.length ?? 0)).toString('hex'), first?.toString('hex'));
  }
});
