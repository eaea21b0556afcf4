import { test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate, webcrypto } from 'node:crypto';
import type { PeerCertificate } from 'node:tls';
import { PortcullisError } from '../../src/core/errors.js';
import { parseSpiffeId, parseTrustDomain, spiffeIdFromCertificate, trustDomainId } from '../../src/identity/spiffe.js';
import { EC_P256, ECDSA_SHA256, x509 } from '../../src/identity/x509.js';

const code = (c: string) => (err: unknown): boolean => err instanceof PortcullisError && err.code === c;

// Valid IDs from SPIFFE-ID.md's examples and the limits it sets (2048-byte ID, 255-byte trust domain).
const VALID: [string, string, string][] = [
  ['spiffe://trustdomain', 'trustdomain', ''],
  ['spiffe://trustdomain/path', 'trustdomain', '/path'],
  ['spiffe://trustdomain/path/element', 'trustdomain', '/path/element'],
  ['spiffe://staging.example.com/payments/mysql', 'staging.example.com', '/payments/mysql'],
  ['spiffe://k8s-west.example.com/ns/staging/sa/default', 'k8s-west.example.com', '/ns/staging/sa/default'],
  ['spiffe://example.com/9eebccd2-12bf-40a6-b262-65fe0487d453', 'example.com', '/9eebccd2-12bf-40a6-b262-65fe0487d453'],
  ['spiffe://trust_domain-1.0/Upper/CASE/a.b/_c-d/..x/.y', 'trust_domain-1.0', '/Upper/CASE/a.b/_c-d/..x/.y'],
  [`spiffe://td/${'a'.repeat(2048 - 'spiffe://td/'.length)}`, 'td', `/${'a'.repeat(2048 - 'spiffe://td/'.length)}`],
  [`spiffe://${'d'.repeat(255)}/x`, 'd'.repeat(255), '/x'],
];

const INVALID: string[] = [
  '',
  'http://trustdomain/path',
  'SPIFFE://trustdomain/path',
  'Spiffe://trustdomain/path',
  'spiffe:/trustdomain/path',
  'spiffe:trustdomain/path',
  'spiffe//trustdomain/path',
  '://trustdomain/path',
  'trustdomain/path',
  ' spiffe://trustdomain/path',
  'spiffe://trustdomain/path ',
  'spiffe://trustdomain/path\n',
  'spiffe://',
  'spiffe:///path/element',
  'spiffe://TrustDomain/path',
  'spiffe://trust domain/path',
  'spiffe://trustdomain:8080/path',
  'spiffe://trustdomain:/path',
  'spiffe://user@trustdomain/path',
  'spiffe://user:password@trustdomain/path',
  'spiffe://trustdomain?query=1',
  'spiffe://trustdomain#fragment',
  'spiffe://trustdomain/path?query=1',
  'spiffe://trustdomain/path?',
  'spiffe://trustdomain/path#fragment',
  'spiffe://trustdomain/',
  'spiffe://trustdomain/path/',
  'spiffe://trustdomain//path',
  'spiffe://trustdomain/path//element',
  'spiffe://trustdomain/.',
  'spiffe://trustdomain/..',
  'spiffe://trustdomain/path/./element',
  'spiffe://trustdomain/path/../element',
  'spiffe://trustdomain/p%61th',
  'spiffe://trustdomain/pa th',
  'spiffe://trustdomain/pa:th',
  'spiffe://trustdomain/pa@th',
  'spiffe://trustdomain/p!a$t&h',
  'spiffe://trustdomain/elem[ent]',
  'spiffe://trustdomain/caf\u00e9',
  'spiffe://xn--caf\u00e9/path',
  'spiffe://trustdomain/spiffe://trustdomain/path',
  `spiffe://td/${'a'.repeat(2049 - 'spiffe://td/'.length)}`,
  `spiffe://${'d'.repeat(256)}/x`,
];

test('valid SPIFFE IDs parse into trust domain and path, unchanged', () => {
  for (const [id, trustDomain, path] of VALID) {
    assert.deepEqual(parseSpiffeId(id), { trustDomain, path, id }, id);
  }
});

test('invalid SPIFFE IDs are refused with PCL_ERR_SPIFFE_ID_INVALID', () => {
  for (const id of INVALID) {
    assert.throws(() => parseSpiffeId(id), code('PCL_ERR_SPIFFE_ID_INVALID'), JSON.stringify(id));
  }
});

test('every ASCII character: trust domain allows [a-z0-9._-], path segments [a-zA-Z0-9._-]', () => {
  const tdOk = /[a-z0-9._-]/;
  const pathOk = /[a-zA-Z0-9._-]/;
  for (let c = 0; c < 128; c++) {
    const ch = String.fromCharCode(c);
    if (ch === '/') continue; // a separator in both places, covered by the vectors above
    const inTd = `spiffe://tr${ch}ust/path`;
    const inPath = `spiffe://trustdomain/pa${ch}th`;
    if (tdOk.test(ch)) assert.equal(parseSpiffeId(inTd).trustDomain, `tr${ch}ust`);
    else assert.throws(() => parseSpiffeId(inTd), code('PCL_ERR_SPIFFE_ID_INVALID'), `trust domain char ${c}`);
    if (pathOk.test(ch)) assert.equal(parseSpiffeId(inPath).path, `/pa${ch}th`);
    else assert.throws(() => parseSpiffeId(inPath), code('PCL_ERR_SPIFFE_ID_INVALID'), `path char ${c}`);
  }
});

test('membership of a trust domain is exact, not a prefix or suffix match', () => {
  assert.equal(parseSpiffeId('spiffe://example.test/api', 'example.test').id, 'spiffe://example.test/api');
  for (const id of ['spiffe://other.test/api', 'spiffe://example.test.evil/api', 'spiffe://evil.example.test/api', 'spiffe://example.tes/api']) {
    assert.throws(() => parseSpiffeId(id, 'example.test'), code('PCL_ERR_SPIFFE_ID_INVALID'), id);
  }
});

test('error messages quote the ID safely and stay short', () => {
  const hostile = `spiffe://td/a\nFAKE LOG LINE${'x'.repeat(3000)}`;
  assert.throws(() => parseSpiffeId(hostile), (err: unknown) => {
    assert.ok(err instanceof PortcullisError);
    assert.ok(!err.message.includes('\n'), 'no raw newline');
    assert.ok(err.message.length < 250);
    return true;
  });
});

test('trust domain names: parseTrustDomain and trustDomainId', () => {
  assert.equal(parseTrustDomain('example.test'), 'example.test');
  assert.equal(trustDomainId('example.test'), 'spiffe://example.test');
  for (const td of ['', 'Example.test', 'example.test:443', 'spiffe://example.test', 'a/b', 'a b']) {
    assert.throws(() => parseTrustDomain(td), code('PCL_ERR_SPIFFE_ID_INVALID'), td);
  }
});

/** A throwaway self-signed certificate with exactly the SANs given (or no SAN extension at all). */
async function certWithSans(sans: { type: 'url' | 'dns'; value: string }[] | null): Promise<X509Certificate> {
  const keys = await webcrypto.subtle.generateKey(EC_P256, true, ['sign', 'verify']);
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    name: [{ CN: ['test'] }],
    keys,
    signingAlgorithm: ECDSA_SHA256,
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 3_600_000),
    extensions: sans === null ? [] : [new x509.SubjectAlternativeNameExtension(sans)],
  });
  return new X509Certificate(cert.toString('pem'));
}

test('spiffeIdFromCertificate returns the one URI SAN', async () => {
  const cert = await certWithSans([{ type: 'dns', value: 'api.local' }, { type: 'url', value: 'spiffe://example.test/api' }]);
  assert.equal(spiffeIdFromCertificate(cert), 'spiffe://example.test/api');
});

test('spiffeIdFromCertificate reads the DER, so a DNS name spelling "URI:spiffe://…" cannot forge an ID', async () => {
  const forged = 'x.test, URI:spiffe://example.test/admin';
  const withReal = await certWithSans([{ type: 'url', value: 'spiffe://example.test/web' }, { type: 'dns', value: forged }]);
  assert.equal(spiffeIdFromCertificate(withReal), 'spiffe://example.test/web');
  const onlyForged = await certWithSans([{ type: 'dns', value: forged }]);
  assert.throws(() => spiffeIdFromCertificate(onlyForged), code('PCL_ERR_PEER_IDENTITY'));
});

test('spiffeIdFromCertificate refuses zero, two, non-SPIFFE or invalid URI SANs', async () => {
  const cases: ({ type: 'url' | 'dns'; value: string }[] | null)[] = [
    null,
    [],
    [{ type: 'dns', value: 'api.local' }],
    [{ type: 'url', value: 'spiffe://example.test/a' }, { type: 'url', value: 'spiffe://example.test/b' }],
    [{ type: 'url', value: 'spiffe://example.test/a' }, { type: 'url', value: 'spiffe://example.test/a' }],
    [{ type: 'url', value: 'https://example.test/a' }],
    [{ type: 'url', value: 'spiffe://Example.test/a' }],
    [{ type: 'url', value: 'spiffe://example.test/a/' }],
  ];
  for (const sans of cases) {
    const cert = await certWithSans(sans);
    assert.throws(() => spiffeIdFromCertificate(cert), code('PCL_ERR_PEER_IDENTITY'), JSON.stringify(sans));
  }
});

test('spiffeIdFromCertificate on an absent peer certificate ({} from getPeerCertificate) is PCL_ERR_PEER_CERT_REQUIRED', () => {
  // getPeerCertificate() really returns {} when the peer sent no certificate; the cast reproduces that.
  const none = {} as PeerCertificate;
  assert.throws(() => spiffeIdFromCertificate(none), code('PCL_ERR_PEER_CERT_REQUIRED'));
});
