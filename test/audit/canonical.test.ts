// Canonical JSON and the entry hash: the vectors of RFC 8785 for key order and numbers, refusal of
// what JSON cannot carry, and the writer's fast hash input equal to the canonical form of the entry.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { CanonicalJsonError, canonicalJson } from '../../src/audit/canonical.js';
import { entryHash, entryLine, parseEntry, type EntryKind } from '../../src/audit/format.js';

test('keys sort by UTF-16 code units (RFC 8785 §3.2.3)', () => {
  const input = { '\u20ac': 'Euro Sign', '\r': 'Carriage Return', '\ufb33': 'Hebrew Letter Dalet With Dagesh', '1': 'One', '\ud83d\ude00': 'Emoji: Grinning Face', '\u0080': 'Control', '\u00f6': 'Latin Small Letter O With Diaeresis' };
  const order = ['\r', '1', '\u0080', '\u00f6', '\u20ac', '\ud83d\ude00', '\ufb33'] as const;
  // Compared as text: Object.keys would list the integer-like key "1" first whatever the order.
  assert.equal(canonicalJson(input), `{${order.map((k) => `${JSON.stringify(k)}:${JSON.stringify(input[k])}`).join(',')}}`);
});

test('numbers and strings as ECMAScript spells them (RFC 8785 §3.2.2)', () => {
  assert.equal(canonicalJson([1e21, 1e-7, 0.000001, -0, 1e9 / 3, 1e23, 9007199254740991]), '[1e+21,1e-7,0.000001,0,333333333.3333333,1e+23,9007199254740991]');
  assert.equal(canonicalJson({ b: [true, null, 'a"\\\n\u0001\u2028'], a: { z: 1, y: {} } }), '{"a":{"y":{},"z":1},"b":[true,null,"a\\"\\\\\\n\\u0001\u2028"]}');
  assert.equal(canonicalJson({ a: undefined, b: 1 }), '{"b":1}');
});

test('values JSON cannot carry are refused', () => {
  let deep: unknown = 1;
  for (let i = 0; i < 40; i++) deep = [deep];
  // The last one: an object whose prototype is not Object.prototype (create() returns any; object is all it is).
  for (const v of [Number.NaN, Infinity, new Date(0), new Map(), [undefined], 10n, () => 1, Symbol('s'), undefined, deep, Object.assign(Object.create({ inherited: 1 }) as object, { a: 1 })]) {
    assert.throws(() => canonicalJson(v), CanonicalJsonError, String(typeof v));
  }
});

test('2,000 generated values: the fast path (sorted copy, one JSON.stringify) spells exactly what a piece-by-piece encoder spells', () => {
  // An independent reference: RFC 8785 order by UTF-16 code units, each piece spelt by JSON.stringify.
  const reference = (v: unknown): string => {
    if (Array.isArray(v)) return `[${v.map(reference).join(',')}]`;
    if (v !== null && typeof v === 'object') {
      const o = v as Record<string, unknown>; // generated below: plain objects only
      return `{${Object.keys(o).filter((k) => o[k] !== undefined).sort().map((k) => `${JSON.stringify(k)}:${reference(o[k])}`).join(',')}}`;
    }
    return JSON.stringify(v);
  };
  let x = 7; // xorshift32: reproducible
  const rnd = (n: number): number => { x ^= x << 13; x ^= x >>> 17; x ^= x << 5; return (x >>> 0) % n; };
  const KEYS = ['a', 'b', 'B', 'z', '\u00e9', '\ud83d\ude00', '\ud800', '__proto__', 'constructor', '-1', '1.5', '', ' x', 'sub', 'who', 'what'];
  const DIGIT_KEYS = ['0', '7', '10', '9x', '01'];
  const gen = (depth: number, digits: boolean): unknown => {
    switch (depth > 3 ? rnd(4) : rnd(7)) {
      case 0: return ['', 'x', 'a"b\\c', '\u2028', '\ud800', 'é'][rnd(6)];
      case 1: return [0, -0, 1.5, -7, 1e21, 1e-7, 2 ** 53][rnd(7)];
      case 2: return rnd(2) === 0;
      case 3: return null;
      case 4: return Array.from({ length: rnd(4) }, () => gen(depth + 1, digits));
      default: {
        const o: Record<string, unknown> = {};
        for (let i = rnd(6); i > 0; i--) {
          const k = digits && rnd(5) === 0 ? DIGIT_KEYS[rnd(DIGIT_KEYS.length)] as string : KEYS[rnd(KEYS.length)] as string;
          const value = rnd(8) === 0 ? undefined : gen(depth + 1, digits);
          Object.defineProperty(o, k, { value, enumerable: true, writable: true, configurable: true }); // __proto__ as an own key, as JSON.parse makes it
        }
        return o;
      }
    }
  };
  for (let i = 0; i < 2000; i++) {
    const v = gen(0, i % 2 === 1); // every other value may hold integer-like keys (the piece-by-piece path)
    assert.equal(canonicalJson(v), reference(v));
  }
});

test('entry hash = SHA-256 of the canonical entry without `hash`; the line is its canonical spelling', () => {
  const bodies: [EntryKind, unknown][] = [
    ['event', { type: 'decision', why: 'ü "quoted"', n: [1, 2] }],
    ['checkpoint', { seq: 4, hash: 'a'.repeat(64), time: '2025-01-01T00:00:00.000Z', signer: { kind: 'kms', id: 'kms:audit', keyring: 'audit' }, signature: 'pcl:audit:v1:AA' }],
    ['gap', { file: 'audit-000001.jsonl', offset: 10, line: 2, bytes: 5, reason: 'torn' }],
  ];
  for (const [kind, body] of bodies) {
    const entry = { seq: 5, time: '2025-01-01T00:00:00.000Z', prev: 'b'.repeat(64), [kind]: body };
    const expected = createHash('sha256').update(canonicalJson(entry)).digest('hex');
    const hash = entryHash(kind, canonicalJson(body), 5, entry.time, entry.prev);
    assert.equal(hash, expected, kind);
    const line = entryLine(kind, canonicalJson(body), 5, entry.time, entry.prev, hash);
    const parsed = parseEntry(Buffer.from(line.slice(0, -1)));
    assert.equal(parsed.ok, true, kind);
  }
});

test('parseEntry refuses lines that are not entries', () => {
  const cases = ['', 'null', '[]', '{"seq":1}', '{"seq":0,"time":"x","prev":"x","hash":"x","event":{}}', 'not json'];
  for (const c of cases) assert.equal(parseEntry(Buffer.from(c)).ok, false, c);
});
