// The strict JSON parser: everything JSON.parse accepts silently and a gateway must refuse.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DEFAULT_JSON_LIMITS, decodeUtf8Strict, parseSafeJson } from '../../../src/dataplane/validate/safe-json.js';
import { PortcullisError } from '../../../src/core/errors.js';

const refused = (text: string, limits?: Parameters<typeof parseSafeJson>[1]) =>
  assert.throws(() => parseSafeJson(text, limits), (e: unknown) => e instanceof PortcullisError && e.code === 'PCL_ERR_JSON_INVALID', text.slice(0, 60));

test('parses what JSON.parse parses, to the same value', () => {
  const docs = [
    '{"a":1,"b":[true,false,null],"c":{"d":"e"}}', '[]', '{}', '0', '-0.5e-3', '"x"', 'null', ' \n\t{ "k" : [ 1 , 2 ] } \r\n',
    '"esc \\" \\\\ \\/ \\b \\f \\n \\r \\t \\u00e9 \\ud83d\\ude00"', '{"emoji":"😀","accents":"é"}', '9007199254740991', '-9007199254740991',
    '1.7976931348623157e308', '{"toString":1,"hasOwnProperty":2}', '[[[[1]]]]', '1E2', '123456789012345',
  ];
  for (const d of docs) assert.deepEqual(parseSafeJson(d), JSON.parse(d), d);
  assert.equal(Object.getPrototypeOf(parseSafeJson('{}')), Object.prototype, 'plain objects are returned');
});

test('syntax errors are refused with the character offset, never the text', () => {
  for (const d of ['', '{', '{"a":1,}', '[1,]', '{"a" 1}', "{'a':1}", '{a:1}', '01', '1.', '.5', '+1', '-', '1e', 'tru', 'NaN', 'Infinity',
    '"abc', '"a\\x"', '"\\u12g4"', '"tab\there"', '{"a":1} x', '[1 2]', '\ufeff{}', '/*c*/1', '{"a":1}{"b":2}', '"\\u00"']) refused(d);
  try {
    parseSafeJson('{"secret-value": tru}');
    assert.fail('accepted');
  } catch (e) {
    assert.ok(e instanceof PortcullisError);
    assert.match(e.message, /at offset 17$/);
    assert.doesNotMatch(e.message, /secret-value/);
  }
});

test('prototype keys are refused at any depth', () => {
  for (const key of ['__proto__', 'constructor', 'prototype']) {
    refused(`{"${key}":{}}`);
    refused(`{"a":[{"b":{"${key}":1}}]}`);
  }
  // The escaped spelling is the same key.
  refused('{"\\u005f_proto__":{"polluted":true}}');
  assert.equal(({} as Record<string, unknown>).polluted, undefined);
});

test('duplicate keys are refused, at any depth', () => {
  refused('{"role":"user","role":"admin"}');
  refused('{"a":{"x":1,"y":2,"x":3}}');
  refused('{"a":1,"\\u0061":2}');
  assert.deepEqual(parseSafeJson('{"a":{"x":1},"b":{"x":1}}'), { a: { x: 1 }, b: { x: 1 } }, 'the same key in two objects is fine');
});

test('nesting and key-count limits (defaults 32 and 1000)', () => {
  assert.equal(DEFAULT_JSON_LIMITS.maxDepth, 32);
  assert.equal(DEFAULT_JSON_LIMITS.maxKeys, 1000);
  const nested = (n: number) => '['.repeat(n) + ']'.repeat(n);
  assert.doesNotThrow(() => parseSafeJson(nested(32)));
  refused(nested(33));
  refused('{"a":'.repeat(33) + '1' + '}'.repeat(33));
  refused(nested(100_000)); // no stack overflow: refused at depth 33
  refused(nested(4), { maxDepth: 3 });
  const keys = (n: number) => `{${Array.from({ length: n }, (_, i) => `"k${i}":0`).join(',')}}`;
  assert.doesNotThrow(() => parseSafeJson(keys(1000)));
  refused(keys(1001));
  refused(keys(3), { maxKeys: 2 });
});

test('maxStringBytes counts UTF-8 bytes of keys and values', () => {
  assert.equal(parseSafeJson('"éé"', { maxStringBytes: 4 }), 'éé');
  refused('"ééé"', { maxStringBytes: 4 });
  refused('{"abcdef":1}', { maxStringBytes: 4 });
  refused('"ab\\u00e9cd"', { maxStringBytes: 5 });
});

test('numbers JavaScript cannot represent are refused', () => {
  for (const d of ['9007199254740992', '-9007199254740992', '9007199254740993', '123456789012345678901234567890', '1e400', '-1e400', '[1,2,1e309]']) refused(d);
  assert.equal(parseSafeJson('1e300'), 1e300);
  assert.equal(parseSafeJson('0.1'), 0.1);
});

test('lone surrogates are refused, escaped or raw', () => {
  for (const d of ['"\\ud800"', '"\\udc00"', '"\\ud800x"', '"\\ud800\\u0041"', '"\\ude00\\ud83d"', '"\ud800"', '"a\udc00b"']) refused(d);
  assert.equal(parseSafeJson('"\\ud83d\\ude00"'), '😀');
});

test('limits that make no sense are an argument error', () => {
  for (const limits of [{ maxDepth: 0 }, { maxDepth: 1.5 }, { maxDepth: 100_000 }, { maxKeys: -1 }, { maxStringBytes: -1 }]) {
    assert.throws(() => parseSafeJson('1', limits), (e: unknown) => e instanceof PortcullisError && e.code === 'PCL_ERR_INVALID_ARGUMENT');
  }
});

test('decodeUtf8Strict refuses invalid UTF-8 and strips a BOM', () => {
  assert.equal(decodeUtf8Strict(Buffer.from('{"a":"é"}')), '{"a":"é"}');
  assert.equal(decodeUtf8Strict(Buffer.from([0xef, 0xbb, 0xbf, 0x31])), '1');
  for (const bytes of [[0xc3], [0xff], [0xc0, 0xaf] /* overlong "/" */, [0xed, 0xa0, 0x80] /* encoded surrogate */, [0x22, 0xe2, 0x82, 0x22]]) {
    assert.throws(() => decodeUtf8Strict(Buffer.from(bytes)), (e: unknown) => e instanceof PortcullisError && e.code === 'PCL_ERR_JSON_INVALID');
  }
});

test('a 100 KB document parses to the same value as JSON.parse', () => {
  const items = Array.from({ length: 1000 }, (_, i) => ({ id: i, sku: `ABC-${1000 + i}`, name: `Item "${i}"`, price: 12.5 + i, tags: ['a', 'b'], on: i % 2 === 0, note: null, n: { y: 'ünï ✓' } }));
  const text = JSON.stringify({ items });
  assert.ok(text.length > 100_000);
  assert.deepEqual(parseSafeJson(text, { maxKeys: 1000 }), JSON.parse(text));
});
