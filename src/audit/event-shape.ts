// Audit events that arrive from the wire (NATS) are untrusted input: each is checked against the
// exact shape of DecisionEvent / AdminEvent, with size caps, before anything stores it. Unknown
// keys are refused too, so nothing can be smuggled into the audit store beside a valid event.
import { hash as digest } from 'node:crypto';
import type { AdminEvent, AuditEvent, DecisionEvent } from '../core/events.js';

/** Largest serialized event accepted from the wire. */
export const MAX_EVENT_BYTES = 16 * 1024;
const MAX_STRING = 2048;
const MAX_LIST = 64;

export type ParseResult = { ok: true; event: AuditEvent } | { ok: false; reason: string };

/**
 * The id of an event in the audit store: a hash of its JSON, so a copy that arrives twice (the
 * control plane's own event recorded locally and again from NATS, or a redelivery) is stored once.
 */
export function auditEventId(json: string): string {
  return digest('sha256', json, 'base64url').slice(0, 32); // one-shot: half the cost of createHash()
}

/** Parses and validates one event as received (JSON bytes); never throws. */
export function parseAuditEvent(data: Uint8Array | string): ParseResult {
  const size = typeof data === 'string' ? Buffer.byteLength(data, 'utf8') : data.byteLength;
  if (size > MAX_EVENT_BYTES) return { ok: false, reason: `event of ${size} bytes is over ${MAX_EVENT_BYTES}` };
  let raw: unknown;
  try {
    raw = JSON.parse(typeof data === 'string' ? data : Buffer.from(data).toString('utf8'));
  } catch {
    return { ok: false, reason: 'not JSON' };
  }
  const reason = checkAuditEvent(raw);
  return reason === undefined ? { ok: true, event: raw as AuditEvent } : { ok: false, reason }; // shape checked just above
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const isStr = (v: unknown, max = MAX_STRING): v is string => typeof v === 'string' && v.length <= max;
const optStr = (o: Obj, k: string, max = MAX_STRING): boolean => o[k] === undefined || isStr(o[k], max);
const strList = (v: unknown): boolean => Array.isArray(v) && v.length <= MAX_LIST && v.every((x) => isStr(x, 256));
const onlyKeys = (o: Obj, keys: readonly string[]): string | undefined => Object.keys(o).find((k) => !keys.includes(k));
const ISO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/;

const DECISION_KEYS: readonly (keyof DecisionEvent)[] = ['type', 'time', 'requestId', 'component', 'decision', 'status', 'code', 'who', 'what', 'reasons', 'why', 'traceId', 'policyVersion', 'errors', 'shadow', 'resourceDecision'];
const ADMIN_KEYS: readonly (keyof AdminEvent)[] = ['type', 'time', 'requestId', 'component', 'action', 'outcome', 'who', 'detail'];
const WHO_KEYS = ['sub', 'roles', 'clientId', 'spiffeId', 'sourceAddress'] as const;
const WHAT_KEYS = ['method', 'path', 'route', 'service', 'signatures'] as const;

/** The first thing wrong with `v` as an AuditEvent, or undefined when it is one. */
export function checkAuditEvent(v: unknown): string | undefined {
  if (!isObj(v)) return 'not an object';
  if (!isStr(v.time, 64) || !ISO_TIME.test(v.time) || Number.isNaN(Date.parse(v.time))) return 'time is not an ISO 8601 timestamp';
  if (!isStr(v.component, 256) || v.component === '') return 'component missing';
  if (!isObj(v.who)) return 'who is not an object';
  const who = v.who;
  const badWho = onlyKeys(who, WHO_KEYS) ?? ['sub', 'clientId', 'spiffeId', 'sourceAddress'].find((k) => !optStr(who, k));
  if (badWho) return `who.${badWho} is not allowed or not a string`;
  if (who.roles !== undefined && !strList(who.roles)) return 'who.roles is not a list of strings';
  if (v.type === 'decision') {
    const extra = onlyKeys(v, DECISION_KEYS);
    if (extra) return `unknown key ${extra}`;
    if (!isStr(v.requestId, 128)) return 'requestId missing';
    if (v.decision !== 'allow' && v.decision !== 'deny') return 'decision is neither allow nor deny';
    if (typeof v.status !== 'number' || !Number.isInteger(v.status) || v.status < 100 || v.status > 599) return 'status is not an HTTP status';
    if (!optStr(v, 'code', 64)) return 'code is not a string';
    if (!isObj(v.what)) return 'what is not an object';
    const what = v.what;
    const badWhat = onlyKeys(what, WHAT_KEYS) ?? (!isStr(what.method, 32) ? 'method' : !isStr(what.path) ? 'path' : undefined) ?? ['route', 'service'].find((k) => !optStr(what, k, 256));
    if (badWhat) return `what.${badWhat} is not allowed or not a string`;
    if (what.signatures !== undefined && !(Array.isArray(what.signatures) && what.signatures.length <= 16 && what.signatures.every((s) => isStr(s, 64)))) return 'what.signatures is not a list of names';
    if (!strList(v.reasons)) return 'reasons is not a list of strings';
    if (!isStr(v.why, 4096)) return 'why missing';
    if (v.traceId !== undefined && !(isStr(v.traceId) && /^[0-9a-f]{32}$/.test(v.traceId))) return 'traceId is not 32 hex digits';
    if (!optStr(v, 'policyVersion', 64)) return 'policyVersion is not a string';
    if (v.errors !== undefined && !(Array.isArray(v.errors) && v.errors.length <= MAX_LIST && v.errors.every((x) => isStr(x, 4096)))) return 'errors is not a list of strings';
    for (const k of ['shadow', 'resourceDecision'] as const) {
      const d = v[k];
      if (d === undefined) continue;
      if (!isObj(d) || (d.decision !== 'allow' && d.decision !== 'deny') || !strList(d.reasons)) return `${k} is not a decision`;
      if (onlyKeys(d, k === 'shadow' ? ['decision', 'reasons'] : ['decision', 'reasons', 'action', 'resource'])) return `${k} has an unknown key`;
      if (k === 'resourceDecision' && !(isStr(d.action, 256) && isStr(d.resource, 512))) return 'resourceDecision.action or .resource missing';
    }
    return undefined;
  }
  if (v.type === 'admin') {
    const extra = onlyKeys(v, ADMIN_KEYS);
    if (extra) return `unknown key ${extra}`;
    if (!optStr(v, 'requestId', 128)) return 'requestId is not a string';
    if (!isStr(v.action, 128) || v.action === '') return 'action missing';
    if (v.outcome !== 'success' && v.outcome !== 'failure') return 'outcome is neither success nor failure';
    if (!isObj(v.detail)) return 'detail is not an object';
    const entries = Object.entries(v.detail);
    if (entries.length > MAX_LIST) return 'detail has too many keys';
    const bad = entries.find(([k, x]) => k.length > 128 || !(isStr(x) || typeof x === 'boolean' || (typeof x === 'number' && Number.isFinite(x))));
    if (bad) return `detail.${bad[0].slice(0, 64)} is not a string, number or boolean`;
    return undefined;
  }
  return 'type is neither decision nor admin';
}
