import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { IncomingHttpHeaders } from 'node:http';
import { canonicalAddress, clientAddress, compileTrustedProxies, type TrustedProxies } from '../../src/dataplane/client-address.js';
import { PortcullisError } from '../../src/core/errors.js';

const xff: TrustedProxies = { cidrs: ['10.0.0.0/8', '127.0.0.1/32', '::1/128'], header: 'x-forwarded-for' };
const fwd: TrustedProxies = { cidrs: ['10.0.0.0/8', '2001:db8::/32'], header: 'forwarded' };
const headerInvalid = (e: unknown): boolean => e instanceof PortcullisError && e.code === 'PCL_ERR_HEADER_INVALID';

/** Headers as Node would parse them from these raw pairs (repeated values joined with ", "). */
function req(...raw: string[]): { headers: IncomingHttpHeaders; raw: string[] } {
  const headers: Record<string, string> = {};
  for (let i = 0; i < raw.length; i += 2) {
    const name = (raw[i] ?? '').toLowerCase();
    headers[name] = headers[name] === undefined ? raw[i + 1] ?? '' : `${headers[name]}, ${raw[i + 1] ?? ''}`;
  }
  return { headers, raw };
}

test('without trusted proxies: the socket address, IPv4-mapped IPv6 written as IPv4', () => {
  const r = req('X-Forwarded-For', '1.2.3.4');
  assert.equal(clientAddress('203.0.113.9', r.headers, r.raw), '203.0.113.9');
  assert.equal(clientAddress('::ffff:203.0.113.9', r.headers, r.raw), '203.0.113.9');
  assert.equal(clientAddress('2001:DB8::1', r.headers, r.raw), '2001:db8::1');
  assert.equal(canonicalAddress('::ffff:999.1.1.1'), '::ffff:999.1.1.1');
});

test('a client rotating X-Forwarded-For over an untrusted connection gets its socket address every time', () => {
  for (const spoof of ['1.1.1.1', '2.2.2.2, 10.0.0.1', 'garbage', '127.0.0.1', '']) {
    const r = req('X-Forwarded-For', spoof, 'X-Forwarded-For', '3.3.3.3');
    assert.equal(clientAddress('198.51.100.7', r.headers, r.raw, xff), '198.51.100.7', spoof);
    assert.equal(clientAddress('::ffff:198.51.100.7', r.headers, r.raw, xff), '198.51.100.7', spoof);
  }
});

test('from a trusted proxy: walk from the right, skip trusted hops, take the first untrusted', () => {
  const one = req('X-Forwarded-For', '198.51.100.7');
  assert.equal(clientAddress('10.1.1.1', one.headers, one.raw, xff), '198.51.100.7');
  assert.equal(clientAddress('::ffff:10.1.1.1', one.headers, one.raw, xff), '198.51.100.7', 'mapped proxy address is trusted too');
  const chain = req('X-Forwarded-For', '6.6.6.6, 198.51.100.7, 10.0.0.2 , 127.0.0.1');
  assert.equal(clientAddress('::1', chain.headers, chain.raw, xff), '198.51.100.7', 'the client\'s own claim (6.6.6.6) is never read');
  const v6 = req('X-Forwarded-For', '[2001:db8::7]');
  assert.equal(clientAddress('10.0.0.1', v6.headers, v6.raw, xff), '2001:db8::7');
  const allTrusted = req('X-Forwarded-For', '10.0.0.3, 10.0.0.2');
  assert.equal(clientAddress('10.0.0.1', allTrusted.headers, allTrusted.raw, xff), '10.0.0.3', 'every hop trusted: the leftmost');
  const none = req();
  assert.equal(clientAddress('10.0.0.1', none.headers, none.raw, xff), '10.0.0.1', 'no header: the proxy itself');
  const leftGarbage = req('X-Forwarded-For', 'not-an-ip, 198.51.100.7');
  assert.equal(clientAddress('10.0.0.1', leftGarbage.headers, leftGarbage.raw, xff), '198.51.100.7', 'entries left of the answer are not read');
});

test('from a trusted proxy: a malformed entry that must be read, or two header lines, are refused', () => {
  for (const v of ['198.51.100.7:443', 'unknown', '198.51.100.7, ', 'fe80::1%eth0', '1.2.3', '198.51.100.7 10.0.0.2']) {
    const r = req('X-Forwarded-For', v);
    assert.throws(() => clientAddress('10.0.0.1', r.headers, r.raw, xff), headerInvalid, v);
  }
  const two = req('X-Forwarded-For', '6.6.6.6', 'x-forwarded-for', '198.51.100.7');
  assert.throws(() => clientAddress('10.0.0.1', two.headers, two.raw, xff), headerInvalid);
});

test('RFC 7239 Forwarded: for= values, quoted IPv6 and ports, from the right', () => {
  const r = req('Forwarded', 'for=6.6.6.6, for=198.51.100.7;proto=https;by=10.0.0.9, For="[2001:db8:cafe::17]:4711"');
  assert.equal(clientAddress('10.0.0.1', r.headers, r.raw, fwd), '198.51.100.7');
  const v6 = req('Forwarded', 'for="[2001:db9::1]:80";proto=https');
  assert.equal(clientAddress('10.0.0.1', v6.headers, v6.raw, fwd), '2001:db9::1');
  const port = req('Forwarded', 'for="198.51.100.8:1234"');
  assert.equal(clientAddress('10.0.0.1', port.headers, port.raw, fwd), '198.51.100.8');
  const xffIgnored = req('X-Forwarded-For', '6.6.6.6');
  assert.equal(clientAddress('10.0.0.1', xffIgnored.headers, xffIgnored.raw, fwd), '10.0.0.1', 'only the configured header is read');
  for (const v of ['for=unknown', 'for=_hidden', 'proto=https', 'for=1.2.3.4;for=5.6.7.8', 'for="[2001:db8::1"', 'for=[2001:db9::1]x', 'for="1.2.3.4', 'by']) {
    const bad = req('Forwarded', v);
    assert.throws(() => clientAddress('10.0.0.1', bad.headers, bad.raw, fwd), headerInvalid, v);
  }
});

test('trusted proxy CIDRs are validated', () => {
  const invalidArg = (e: unknown): boolean => e instanceof PortcullisError && e.code === 'PCL_ERR_INVALID_ARGUMENT';
  for (const c of ['10.0.0.0/33', '10.0.0/8', 'example.com', '::1/129', '10.0.0.0/', '10.0.0.0/x']) {
    assert.throws(() => compileTrustedProxies({ cidrs: [c], header: 'x-forwarded-for' }), invalidArg, c);
  }
  const single: TrustedProxies = { cidrs: ['192.0.2.1'], header: 'x-forwarded-for' };
  const r = req('X-Forwarded-For', '198.51.100.7');
  assert.equal(clientAddress('192.0.2.1', r.headers, r.raw, single), '198.51.100.7', 'a bare address is a /32');
  assert.equal(clientAddress('192.0.2.2', r.headers, r.raw, single), '192.0.2.2');
});
