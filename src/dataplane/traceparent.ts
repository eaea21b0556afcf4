// W3C Trace Context (https://www.w3.org/TR/trace-context/): each hop continues a valid incoming
// `traceparent` with a span of its own, or starts a new trace. A malformed header is replaced,
// never forwarded; `tracestate` travels only beside a valid traceparent, validated and capped.
import type { IncomingHttpHeaders } from 'node:http';
import { randomFillSync } from 'node:crypto';
import type { RequestTrace } from '../core/events.js';

export const TRACEPARENT_HEADER = 'traceparent';
export const TRACESTATE_HEADER = 'tracestate';

/** The parts of a valid traceparent. */
export interface TraceParent {
  traceId: string;
  /** The caller's span id. */
  parentId: string;
  sampled: boolean;
}

const ZERO_TRACE = '0'.repeat(32);
const ZERO_SPAN = '0'.repeat(16);
// version-traceid-parentid-flags, lowercase hex only (the spec forbids uppercase).
const V00 = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

/**
 * Parses a traceparent header; undefined when absent or malformed (including when sent twice,
 * which Node joins with ", "). Versions above 00 are read as 00 (their first four fields), as the
 * spec asks; version ff is invalid.
 */
export function parseTraceparent(value: string | string[] | undefined): TraceParent | undefined {
  if (typeof value !== 'string') return undefined;
  let head = value;
  if (value.length > 55 && value.slice(0, 2) !== '00') {
    if (value[55] !== '-') return undefined; // a future version may only append "-…" fields
    head = value.slice(0, 55);
  }
  const m = V00.exec(head);
  if (!m) return undefined;
  const [, version, traceId, parentId, flags] = m;
  if (version === undefined || traceId === undefined || parentId === undefined || flags === undefined) return undefined;
  if (version === 'ff' || (version === '00' && value.length !== 55)) return undefined;
  if (traceId === ZERO_TRACE || parentId === ZERO_SPAN) return undefined;
  return { traceId, parentId, sampled: (parseInt(flags, 16) & 1) === 1 };
}

/** The header this hop sends: always version 00, and only the sampled flag (the one level 1 defines). */
export function formatTraceparent(traceId: string, spanId: string, sampled: boolean): string {
  return `00-${traceId}-${spanId}-${sampled ? '01' : '00'}`;
}

/** At most this many characters of tracestate are passed on (the spec's minimum to propagate). */
export const TRACESTATE_MAX_LENGTH = 512;
/** Members longer than this are dropped first when the header is too long (as the spec suggests). */
const TRACESTATE_LONG_MEMBER = 128;
const TRACESTATE_MAX_MEMBERS = 32;
// key: simple (lcalpha …) or multi-tenant (tenant@system); value: printable ASCII without "," and "=", no trailing space.
const MEMBER = /^(?:[a-z][a-z0-9_*/-]{0,255}|[a-z0-9][a-z0-9_*/-]{0,240}@[a-z][a-z0-9_*/-]{0,13})=[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]$/;

/**
 * A tracestate header validated and capped, or undefined. Any malformed member, a repeated key or
 * more than 32 members discards the whole header; over 512 characters, long members go first,
 * then members from the end (the oldest entries), until it fits.
 */
export function parseTracestate(value: string | string[] | undefined): string | undefined {
  if (value === undefined) return undefined;
  // Several tracestate headers are one list (RFC 9110 field combination).
  const joined = Array.isArray(value) ? value.join(',') : value;
  if (joined.length > 8192) return undefined; // far past any honest header; not worth parsing
  const members: string[] = [];
  const keys = new Set<string>();
  for (const raw of joined.split(',')) {
    const member = raw.trim();
    if (member === '') continue;
    if (!MEMBER.test(member)) return undefined;
    const key = member.slice(0, member.indexOf('='));
    if (keys.has(key)) return undefined;
    keys.add(key);
    members.push(member);
  }
  if (members.length === 0 || members.length > TRACESTATE_MAX_MEMBERS) return undefined;
  let kept = members;
  const length = (list: string[]): number => list.reduce((n, m) => n + m.length, 0) + Math.max(0, list.length - 1);
  if (length(kept) > TRACESTATE_MAX_LENGTH) kept = kept.filter((m) => m.length <= TRACESTATE_LONG_MEMBER);
  while (kept.length > 0 && length(kept) > TRACESTATE_MAX_LENGTH) kept = kept.slice(0, -1);
  return kept.length > 0 ? kept.join(',') : undefined;
}

// Ids from a pooled buffer: one randomFillSync per 256 ids instead of one per id, on the hot path.
const POOL = Buffer.alloc(4096);
let poolOffset = POOL.length;

function randomHex(bytes: number, zero: string): string {
  for (;;) {
    if (poolOffset + bytes > POOL.length) {
      randomFillSync(POOL);
      poolOffset = 0;
    }
    const hex = POOL.toString('hex', poolOffset, poolOffset + bytes);
    poolOffset += bytes;
    if (hex !== zero) return hex; // all zeros is invalid; at odds of 2^-64 or less, draw again
  }
}

export const newTraceId = (): string => randomHex(16, ZERO_TRACE);
export const newSpanId = (): string => randomHex(8, ZERO_SPAN);

/**
 * This hop's span: a child of the incoming traceparent when it is valid (its tracestate kept),
 * otherwise the root of a new, sampled trace (and any tracestate dropped with the bad parent).
 */
export function continueTrace(headers: IncomingHttpHeaders, kind: RequestTrace['kind']): RequestTrace {
  const parent = parseTraceparent(headers[TRACEPARENT_HEADER]);
  if (!parent) return { traceId: newTraceId(), spanId: newSpanId(), sampled: true, kind };
  const tracestate = parseTracestate(headers[TRACESTATE_HEADER]);
  return { traceId: parent.traceId, spanId: newSpanId(), parentSpanId: parent.parentId, sampled: parent.sampled, kind, ...(tracestate ? { tracestate } : {}) };
}

/** Replaces whatever trace headers a forwarded request carried with this hop's. */
export function setTraceHeaders(headers: Record<string, string | string[]>, trace: RequestTrace): void {
  delete headers[TRACESTATE_HEADER];
  headers[TRACEPARENT_HEADER] = formatTraceparent(trace.traceId, trace.spanId, trace.sampled);
  if (trace.tracestate) headers[TRACESTATE_HEADER] = trace.tracestate;
}
