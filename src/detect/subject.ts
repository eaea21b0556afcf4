// Who and what an event is about, reduced to the keys rules count on: the principal, the network
// of an address, the calling workload, and the shape of an operation (ids erased).
import { isIPv4, isIPv6 } from 'node:net';
import type { AuditEvent, DecisionEvent } from '../core/events.js';

/** Longest value a rule keys on; longer input is cut so keys stay small. */
const MAX_KEY = 256;

/** The end user or client of an event (user name, else client id), if any. */
export function principalOf(e: AuditEvent): string | undefined {
  const p = e.who.sub ?? e.who.clientId;
  return p === undefined || p === '' ? undefined : p.slice(0, MAX_KEY);
}

/** The source address, without an IPv4-mapped IPv6 prefix or zone. */
export function addressOf(e: AuditEvent): string | undefined {
  const a = e.who.sourceAddress;
  if (!a) return undefined;
  return a.replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/i, '').replace(/%.*$/, '').slice(0, 64);
}

/** The /24 of an IPv4 address or the /48 of an IPv6 one; undefined for anything else. */
export function networkOf(address: string): string | undefined {
  if (isIPv4(address)) return `${address.slice(0, address.lastIndexOf('.'))}.0/24`;
  if (!isIPv6(address)) return undefined;
  const groups = expandIPv6(address);
  return groups ? `${groups.slice(0, 3).map((g) => parseInt(g, 16).toString(16)).join(':')}::/48` : undefined;
}

/** Eight 16-bit groups of an IPv6 address (an embedded IPv4 tail becomes two groups). */
function expandIPv6(address: string): string[] | undefined {
  let a = address.toLowerCase();
  const v4 = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(a);
  if (v4) {
    const [b1, b2, b3, b4] = v4.slice(1).map(Number) as [number, number, number, number];
    a = a.slice(0, v4.index) + `${((b1 << 8) | b2).toString(16)}:${((b3 << 8) | b4).toString(16)}`;
  }
  const [head = '', tail] = a.split('::');
  const h = head === '' ? [] : head.split(':');
  const t = tail === undefined || tail === '' ? [] : tail.split(':');
  const fill = tail === undefined ? 0 : 8 - h.length - t.length;
  const groups = [...h, ...Array<string>(Math.max(0, fill)).fill('0'), ...t];
  return groups.length === 8 ? groups : undefined;
}

/** The workload whose call a data-plane event records: the caller's SPIFFE ID at a sidecar. */
export function callerWorkloadOf(e: DecisionEvent): string | undefined {
  if (!e.component.startsWith('sidecar:')) return undefined;
  return e.who.spiffeId ? e.who.spiffeId.slice(0, MAX_KEY) : undefined;
}

/**
 * A path with its id-like segments erased ("/shop/orders/o-2" → "/shop/orders/{}"), so calls to
 * one operation share one key. A segment is id-like when it has a digit, is long, or is not a
 * plain word; at most 12 segments are kept.
 */
export function pathShape(path: string): string {
  const q = path.indexOf('?');
  const segs = (q === -1 ? path : path.slice(0, q)).split('/').slice(1, 13);
  return '/' + segs.map((s) => (/\d/.test(s) || s.length > 24 || !/^[A-Za-z_.-]*$/.test(s) ? '{}' : s)).join('/');
}

/** The operation of a decision: the route id at the gateway, else service, method and path shape. */
export function operationOf(e: DecisionEvent): string {
  if (e.what.route) return e.what.route.slice(0, MAX_KEY);
  return `${e.what.service ?? '?'} ${e.what.method} ${pathShape(e.what.path)}`.slice(0, MAX_KEY);
}

/** A refusal by policy or for a bad request (4xx), not an outage (5xx: audit down, upstream). */
export function isRefusal(e: AuditEvent): e is DecisionEvent {
  return e.type === 'decision' && e.decision === 'deny' && e.status < 500;
}

/** A value safe to print in one line of a summary: no control characters, bounded length. */
export function printable(v: string, max = 64): string {
  // eslint-disable-next-line no-control-regex -- removing control characters is the point
  const clean = v.replace(/[\u0000-\u001f\u007f-\u009f]/g, '?');
  return clean.length > max ? `${clean.slice(0, max)}…` : clean;
}
