// W3C Trace Context vectors: the examples of the specification, and the malformed headers its
// test suite sends (https://github.com/w3c/trace-context/tree/main/test), each with the answer
// the spec requires.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  continueTrace, formatTraceparent, newSpanId, newTraceId, parseTraceparent, parseTracestate, setTraceHeaders, TRACESTATE_MAX_LENGTH,
} from '../../src/dataplane/traceparent.js';

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const PARENT = '00f067aa0ba902b7';
const VALID = `00-${TRACE}-${PARENT}-01`;

test('the specification example parses, sampled or not', () => {
  assert.deepEqual(parseTraceparent(VALID), { traceId: TRACE, parentId: PARENT, sampled: true });
  assert.deepEqual(parseTraceparent(`00-${TRACE}-${PARENT}-00`), { traceId: TRACE, parentId: PARENT, sampled: false });
  // Only bit 0 is the sampled flag; other bits are ignored, not an error.
  assert.deepEqual(parseTraceparent(`00-${TRACE}-${PARENT}-09`), { traceId: TRACE, parentId: PARENT, sampled: true });
});

test('malformed traceparent headers are refused', () => {
  const bad: [string, string | string[] | undefined][] = [
    ['absent', undefined],
    ['empty', ''],
    ['sent twice (Node joins them)', `${VALID}, 00-${TRACE}-b7ad6b7169203331-01`],
    ['as a list', [VALID, VALID]],
    ['uppercase trace id', `00-${TRACE.toUpperCase()}-${PARENT}-01`],
    ['uppercase parent id', `00-${TRACE}-${PARENT.toUpperCase()}-01`],
    ['uppercase flags', `00-${TRACE}-${PARENT}-0A`],
    ['all-zero trace id', `00-${'0'.repeat(32)}-${PARENT}-01`],
    ['all-zero parent id', `00-${TRACE}-${'0'.repeat(16)}-01`],
    ['version ff', `ff-${TRACE}-${PARENT}-01`],
    ['version 00 with an extra field', `${VALID}-what-the-future-will-be-like`],
    ['short trace id', `00-${TRACE.slice(1)}-${PARENT}-01`],
    ['long parent id', `00-${TRACE}-${PARENT}0-01`],
    ['short flags', `00-${TRACE}-${PARENT}-1`],
    ['non-hex', `00-${TRACE.slice(0, 31)}g-${PARENT}-01`],
    ['wrong delimiter', `00_${TRACE}-${PARENT}-01`],
    ['no version', `${TRACE}-${PARENT}-01`],
    ['surrounding junk', ` ${VALID}x`],
    ['future version with junk glued on', `cc-${TRACE}-${PARENT}-01x`],
  ];
  for (const [why, value] of bad) assert.equal(parseTraceparent(value), undefined, why);
});

test('a future version is read as version 00 when its first fields fit', () => {
  assert.deepEqual(parseTraceparent(`cc-${TRACE}-${PARENT}-01`), { traceId: TRACE, parentId: PARENT, sampled: true });
  assert.deepEqual(parseTraceparent(`01-${TRACE}-${PARENT}-00-what-the-future-will-be-like`), { traceId: TRACE, parentId: PARENT, sampled: false });
});

test('the header this hop sends is always version 00 with the sampled flag only', () => {
  assert.equal(formatTraceparent(TRACE, PARENT, true), VALID);
  assert.equal(formatTraceparent(TRACE, PARENT, false), `00-${TRACE}-${PARENT}-00`);
});

test('new ids are lowercase hex of the right length, never all zeros, and do not repeat', () => {
  const traces = new Set<string>();
  const spans = new Set<string>();
  for (let i = 0; i < 2000; i++) {
    const t = newTraceId();
    const s = newSpanId();
    assert.match(t, /^[0-9a-f]{32}$/);
    assert.match(s, /^[0-9a-f]{16}$/);
    traces.add(t);
    spans.add(s);
  }
  assert.equal(traces.size, 2000);
  assert.equal(spans.size, 2000);
});

test('tracestate: valid lists pass, whitespace and empty members tidied', () => {
  assert.equal(parseTracestate('rojo=00f067aa0ba902b7,congo=t61rcWkgMzE'), 'rojo=00f067aa0ba902b7,congo=t61rcWkgMzE');
  assert.equal(parseTracestate(' rojo=1 ,, congo=2\t'), 'rojo=1,congo=2');
  assert.equal(parseTracestate(['rojo=1', 'congo=2']), 'rojo=1,congo=2', 'several headers are one list');
  assert.equal(parseTracestate('fw529a3039@dt=00f067aa0ba902b7'), 'fw529a3039@dt=00f067aa0ba902b7', 'multi-tenant key');
  assert.equal(parseTracestate('a_b-c*d/e=x y'), 'a_b-c*d/e=x y', 'inner space in a value is allowed');
});

test('tracestate: anything malformed discards the whole header', () => {
  const bad = [
    'Rojo=1', // uppercase key
    'rojo', // no value
    'rojo=', // empty value
    'rojo=1=2', // "=" in a value
    'rojo=1,rojo=2', // repeated key
    '1abc=1', // simple keys start with a letter
    'a@B=1', // system part must be lowercase
    'rojo=caf\u00e9', // non-ASCII
    `k=${'v'.repeat(257)}`, // value over 256
    Array.from({ length: 33 }, (_, i) => `k${i}=v`).join(','), // over 32 members
    ',,', // nothing at all
  ];
  for (const value of bad) assert.equal(parseTracestate(value), undefined, value);
  assert.equal(parseTracestate(undefined), undefined);
});

test('tracestate over 512 characters: long members go first, then members from the end', () => {
  const long = `big=${'x'.repeat(200)}`;
  const smalls = Array.from({ length: 14 }, (_, i) => `k${i}=${'y'.repeat(40)}`); // 14 × 43 > 512 even without the long one
  const capped = parseTracestate([...smalls.slice(0, 3), long, ...smalls.slice(3)].join(','));
  assert.ok(capped !== undefined && capped.length <= TRACESTATE_MAX_LENGTH, capped);
  assert.ok(!capped.includes('big='), 'the long member went first');
  assert.ok(capped.startsWith('k0='), 'the newest (leftmost) members stay');
  assert.ok(!capped.includes('k13='), 'members are dropped from the end');
  assert.equal(capped, smalls.slice(0, capped.split(',').length).join(','));
});

test('a valid traceparent is continued: same trace, the caller as parent, a fresh span id', () => {
  const t = continueTrace({ traceparent: VALID, tracestate: 'rojo=1' }, 'server');
  assert.equal(t.traceId, TRACE);
  assert.equal(t.parentSpanId, PARENT);
  assert.notEqual(t.spanId, PARENT);
  assert.equal(t.sampled, true);
  assert.equal(t.tracestate, 'rojo=1');
  assert.equal(continueTrace({ traceparent: `00-${TRACE}-${PARENT}-00` }, 'client').sampled, false, 'the caller\'s sampling decision is kept');
});

test('a malformed traceparent starts a new sampled trace, and its tracestate is dropped with it', () => {
  for (const traceparent of [undefined, 'garbage', `00-${'0'.repeat(32)}-${PARENT}-01`, `${VALID}, ${VALID}`]) {
    const t = continueTrace({ ...(traceparent ? { traceparent } : {}), tracestate: 'rojo=1' }, 'server');
    assert.notEqual(t.traceId, TRACE);
    assert.match(t.traceId, /^[0-9a-f]{32}$/);
    assert.equal(t.parentSpanId, undefined);
    assert.equal(t.sampled, true);
    assert.equal(t.tracestate, undefined, 'tracestate only travels beside a valid traceparent');
  }
});

test('forwarded headers carry this hop\'s traceparent, never the client\'s', () => {
  const headers: Record<string, string | string[]> = { traceparent: 'garbage', tracestate: 'evil=1', accept: '*/*' };
  const t = continueTrace(headers, 'server');
  setTraceHeaders(headers, t);
  assert.equal(headers.traceparent, `00-${t.traceId}-${t.spanId}-01`);
  assert.equal(headers.tracestate, undefined);
  assert.equal(headers.accept, '*/*');

  const kept: Record<string, string | string[]> = { traceparent: VALID, tracestate: 'rojo=1,  congo=2' };
  const t2 = continueTrace(kept, 'server');
  setTraceHeaders(kept, t2);
  assert.equal(kept.traceparent, `00-${TRACE}-${t2.spanId}-01`);
  assert.equal(kept.tracestate, 'rojo=1,congo=2');
});
