// The client's address, for rate limits, blocks, policy (sourceIp) and audit. The socket peer is
// the truth; a forwarding header is believed only when the socket peer is a configured trusted
// proxy, and only as far back as the chain of trusted proxies goes. A client that talks to the
// gateway directly gets its socket address whatever X-Forwarded-For it sends.
import { BlockList, isIP } from 'node:net';
import type { IncomingHttpHeaders } from 'node:http';
import { PortcullisError } from '../core/errors.js';

/** Proxies in front of the gateway whose forwarding header is believed (`gateway.trustedProxies`). */
export interface TrustedProxies {
  /** CIDR blocks of the proxies, e.g. ['10.0.0.0/8', '127.0.0.1/32', '::1/128']. A bare address means one host. */
  cidrs: string[];
  /** The header those proxies append to: X-Forwarded-For or RFC 7239 Forwarded (its `for=`). */
  header: 'x-forwarded-for' | 'forwarded';
}

const compiled = new WeakMap<TrustedProxies, BlockList>();

function invalidHeader(why: string): never {
  // Which entry, counted from the right, never its content: the header is client data.
  throw new PortcullisError('PCL_ERR_HEADER_INVALID', `forwarding header refused: ${why}`);
}

/** `::ffff:1.2.3.4` → `1.2.3.4`: one spelling per client, so limits and blocks key on one string. */
export function canonicalAddress(address: string): string {
  const m = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(address);
  return m?.[1] !== undefined && isIP(m[1]) === 4 ? m[1] : address.toLowerCase();
}

/**
 * The trusted proxies as a BlockList, built once per configuration object. Throws
 * PCL_ERR_INVALID_ARGUMENT for an entry that is not an address or address/prefix.
 */
export function compileTrustedProxies(trusted: TrustedProxies): BlockList {
  const cached = compiled.get(trusted);
  if (cached) return cached;
  const list = new BlockList();
  for (const cidr of trusted.cidrs) {
    const slash = cidr.indexOf('/');
    const addr = slash === -1 ? cidr : cidr.slice(0, slash);
    const prefixText = slash === -1 ? undefined : cidr.slice(slash + 1);
    const family = isIP(addr);
    const max = family === 4 ? 32 : 128;
    const prefix = prefixText === undefined ? max : /^\d{1,3}$/.test(prefixText) ? Number(prefixText) : NaN;
    if (family === 0 || addr.includes('%') || !(prefix <= max)) {
      throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `trustedProxies.cidrs: ${JSON.stringify(cidr.slice(0, 60))} is not an IPv4 or IPv6 address or CIDR block`);
    }
    list.addSubnet(addr, prefix, family === 4 ? 'ipv4' : 'ipv6');
  }
  compiled.set(trusted, list);
  return list;
}

function isTrusted(list: BlockList, address: string): boolean {
  const family = isIP(address);
  return family !== 0 && list.check(address, family === 4 ? 'ipv4' : 'ipv6');
}

/** One X-Forwarded-For entry as an address: a bare IPv4/IPv6 address, or "[IPv6]". */
function xffAddress(entry: string): string | undefined {
  const e = entry.startsWith('[') && entry.endsWith(']') ? entry.slice(1, -1) : entry;
  return isIP(e) !== 0 && !e.includes('%') ? e : undefined;
}

/** The `for=` node of one Forwarded element as an address: IPv4, IPv4:port, "[IPv6]" or "[IPv6]:port". */
function forwardedAddress(node: string): string | undefined {
  let host = node;
  if (host.startsWith('[')) {
    const close = host.indexOf(']');
    if (close === -1 || (close !== host.length - 1 && !/^:\d{1,5}$/.test(host.slice(close + 1)))) return undefined;
    host = host.slice(1, close);
    return isIP(host) === 6 && !host.includes('%') ? host : undefined;
  }
  const colon = host.indexOf(':');
  if (colon !== -1) {
    if (!/^:\d{1,5}$/.test(host.slice(colon))) return undefined;
    host = host.slice(0, colon);
  }
  // "unknown" and obfuscated identifiers ("_hidden") name no address: nothing to attribute to.
  return isIP(host) === 4 ? host : undefined;
}

/**
 * RFC 7239 Forwarded: elements separated by ",", pairs by ";", values tokens or quoted strings.
 * Returns each element's `for=` value (undefined when an element has none or is malformed).
 */
function forwardedForValues(header: string): (string | undefined)[] {
  const out: (string | undefined)[] = [];
  let forValue: string | undefined;
  let bad = false;
  let pair = '';
  let value = '';
  let quoted = false;
  let inValue = false;
  const endPair = (): void => {
    const key = pair.trim().toLowerCase();
    if (key === '' && value === '' && !inValue) return;
    if (!inValue || !/^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/.test(key)) bad = true;
    else if (key === 'for') {
      if (forValue !== undefined) bad = true; // two for= in one element
      forValue = value.trim();
    }
    pair = ''; value = ''; inValue = false;
  };
  for (let i = 0; i < header.length; i++) {
    const c = header.charAt(i);
    if (quoted) {
      if (c === '\\') { value += header.charAt(++i); continue; }
      if (c === '"') { quoted = false; continue; }
      value += c;
      continue;
    }
    if (c === '"' && inValue && value.trim() === '') { quoted = true; continue; }
    if (c === '=' && !inValue) { inValue = true; continue; }
    if (c === ';') { endPair(); continue; }
    if (c === ',') { endPair(); out.push(bad ? undefined : forValue); forValue = undefined; bad = false; continue; }
    if (inValue) value += c; else pair += c;
  }
  if (quoted) bad = true;
  endPair();
  out.push(bad ? undefined : forValue);
  return out;
}

/**
 * The client's address. Without `trusted` (the default), or when the socket peer is not a trusted
 * proxy: the socket address, IPv4-mapped IPv6 written as IPv4. Otherwise the configured header is
 * walked from the right (the entry the nearest proxy appended), skipping trusted proxies, and the
 * first untrusted address is the client; when every hop is trusted, the leftmost.
 *
 * Throws PCL_ERR_HEADER_INVALID, only for a request from a trusted proxy, when the header arrives
 * more than once (refused rather than joined: a proxy that appends to the first line only would
 * let a client's second line pose as the nearest hop), or when an entry that must be read is not
 * an address (entries left of the answer are never read, so they may be anything).
 */
export function clientAddress(socketAddress: string, headers: IncomingHttpHeaders, rawHeaders: readonly string[], trusted?: TrustedProxies): string {
  const socket = canonicalAddress(socketAddress);
  if (!trusted) return socket;
  const list = compileTrustedProxies(trusted);
  if (!isTrusted(list, socket)) return socket;

  let lines = 0;
  for (let i = 0; i < rawHeaders.length; i += 2) if (rawHeaders[i]?.toLowerCase() === trusted.header) lines++;
  if (lines > 1) invalidHeader(`${trusted.header} appears more than once`);
  const raw = headers[trusted.header];
  const value = Array.isArray(raw) ? raw.join(',') : raw;
  if (value === undefined || value.trim() === '') return socket;

  const entries = trusted.header === 'forwarded' ? forwardedForValues(value) : value.split(',').map((e) => e.trim());
  let leftmost = socket;
  for (let i = entries.length - 1; i >= 0; i--) {
    const entry = entries[i];
    const addr = entry === undefined ? undefined : trusted.header === 'forwarded' ? forwardedAddress(entry) : xffAddress(entry);
    if (addr === undefined) invalidHeader(`entry ${entries.length - i} from the right is not an address`);
    const canonical = canonicalAddress(addr);
    if (!isTrusted(list, canonical)) return canonical;
    leftmost = canonical;
  }
  return leftmost;
}
