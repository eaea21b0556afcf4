// cert-der.ts against two oracles: @peculiar/x509 (the same inputs give the same TBSCertificate,
// byte for byte) and OpenSSL (node:crypto's X509Certificate, and the openssl command when present),
// plus the strict reader's refusals.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createPrivateKey, KeyObject, randomBytes, sign, verify, webcrypto, X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as der from '../../src/identity/cert-der.js';
import { PortcullisError } from '../../src/core/errors.js';
import { CertificateAuthority } from '../../src/identity/ca.js';
import { createWorkloadKeyAndCsr } from '../../src/identity/workload-key.js';
import { EC_P256, ECDSA_SHA256, x509 } from '../../src/identity/x509.js';
import { KeyWrapper } from '../../src/kms/wrap.js';
import { MemoryStore } from '../../src/store/memory.js';

const hex = (b: Uint8Array | ArrayBuffer): string => Buffer.from(b instanceof ArrayBuffer ? new Uint8Array(b) : b).toString('hex');
const ECDSA_SHA256_ALG = der.sequence(der.oid('1.2.840.10045.4.3.2'));
const newKeys = (): Promise<webcrypto.CryptoKeyPair> => webcrypto.subtle.generateKey(EC_P256, true, ['sign', 'verify']);
const spkiOf = async (k: webcrypto.CryptoKey): Promise<Buffer> => Buffer.from(await webcrypto.subtle.exportKey('spki', k));

/** The TBSCertificate of a DER certificate: its first element, as stored. */
function tbsOf(cert: Uint8Array): Buffer {
  const buf = Buffer.from(cert);
  const first = der.children(buf, der.readElement(buf, 0))[0];
  assert.ok(first);
  return buf.subarray(first.offset, first.end);
}

const hasOpenssl = ((): boolean => {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

test('encoder: lengths, OIDs, integers and times in their DER spelling', () => {
  for (const [n, head] of [[0, '0400'], [127, '047f'], [128, '048180'], [255, '0481ff'], [256, '04820100'], [65535, '0482ffff'], [65536, '0483010000']] as const) {
    assert.equal(hex(der.octetString(Buffer.alloc(n))).slice(0, head.length), head, `length ${n}`);
    assert.equal(der.octetString(Buffer.alloc(n)).length, head.length / 2 + n);
  }
  assert.equal(hex(der.oid('1.2.840.113549.1.9.14')), '06092a864886f70d01090e');
  assert.equal(hex(der.oid('2.5.29.17')), '0603551d11');
  assert.equal(hex(der.oid('2.999.3')), '0603883703');
  for (const bad of ['1', '3.1', '1.40', '1.2.x', '1..2', '01.2']) assert.throws(() => der.oid(bad), PortcullisError, bad);
  assert.equal(hex(der.unsignedInteger(Buffer.from([0x00, 0x00, 0x7f]))), '02017f');
  assert.equal(hex(der.unsignedInteger(Buffer.from([0x80]))), '02020080');
  assert.equal(hex(der.unsignedInteger(Buffer.from([0x00]))), '020100');
  assert.equal(der.time(new Date(Date.UTC(2049, 11, 31, 23, 59, 59))).toString('latin1', 2), '491231235959Z');
  assert.equal(der.time(new Date(Date.UTC(2050, 0, 1))).toString('latin1', 2), '20500101000000Z');
  assert.equal(der.time(new Date(Date.UTC(1950, 0, 1)))[0], 0x17);
  assert.equal(der.time(new Date(Date.UTC(1949, 11, 31)))[0], 0x18);
  assert.throws(() => der.time(new Date(1500)), PortcullisError, 'fractions of a second');
  assert.throws(() => der.time(new Date(NaN)), PortcullisError);
});

test('encoder: every keyUsage combination is encoded as @peculiar/x509 encodes it', () => {
  for (let flags = 1; flags < 1 << 9; flags++) {
    assert.equal(hex(der.keyUsage(flags)), hex(new x509.KeyUsagesExtension(flags).value), `flags ${flags}`);
    assert.equal(der.readKeyUsage(der.keyUsage(flags)), flags, `flags ${flags} read back`);
  }
  assert.equal(hex(der.basicConstraints(false)), hex(new x509.BasicConstraintsExtension(false).value));
  assert.equal(hex(der.basicConstraints(true)), hex(new x509.BasicConstraintsExtension(true).value));
});

test('encoder: IP addresses as 4 or 16 bytes, embedded IPv4 included; zones and non-addresses refused', () => {
  const cases: [string, string][] = [
    ['127.0.0.1', '7f000001'], ['::', '0'.repeat(32)], ['::1', `${'0'.repeat(30)}01`], ['1::', `0001${'0'.repeat(28)}`],
    ['2001:db8::42', '20010db8000000000000000000000042'], ['::ffff:10.0.0.1', '00000000000000000000ffff0a000001'],
    ['FE80:0:0:0:0:0:0:1', 'fe800000000000000000000000000001'], ['1:2:3:4:5:6:7:8', '00010002000300040005000600070008'],
    ['64:ff9b::192.0.2.33', '0064ff9b0000000000000000c0000221'],
  ];
  for (const [ip, bytes] of cases) assert.equal(hex(der.ipAddressBytes(ip)), bytes, ip);
  for (const bad of ['fe80::1%eth0', 'localhost', '1.2.3', '', '::g']) assert.throws(() => der.ipAddressBytes(bad), PortcullisError, bad);
  // The same bytes as @peculiar/x509 where it reads the address right (it garbles embedded IPv4, which it is not used for).
  for (const ip of ['127.0.0.1', '::1', '2001:db8::42', '1::']) {
    assert.equal(hex(der.generalNames([{ type: 'ip', value: ip }])), hex(new x509.SubjectAlternativeNameExtension([{ type: 'ip', value: ip }]).value), ip);
  }
  assert.throws(() => der.generalNames([{ type: 'dns', value: 'a b' }]), PortcullisError, 'a space in a DNS name');
  assert.throws(() => der.generalNames([{ type: 'uri', value: 'spiffe://t/\u00e9' }]), PortcullisError, 'non-ASCII URI');
});

test('a leaf built here has the same TBSCertificate as @peculiar/x509 builds from the same inputs', async () => {
  const caKeys = await newKeys();
  const leafKeys = await newKeys();
  const root = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: '01', name: [{ O: ['Portcullis'] }, { CN: ['Portcullis CA der.test'] }], notBefore: new Date(Date.UTC(2026, 0, 1)), notAfter: new Date(Date.UTC(2061, 0, 1)),
    keys: caKeys, signingAlgorithm: ECDSA_SHA256,
    extensions: [new x509.BasicConstraintsExtension(true, undefined, true), await x509.SubjectKeyIdentifierExtension.create(caKeys.publicKey)],
  });
  const caKeyId = root.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId ?? '';
  const leafSpki = await spkiOf(leafKeys.publicKey);
  const leafKeyId = hex(await webcrypto.subtle.digest('SHA-1', der.p256Point(leafSpki) ?? Buffer.alloc(0)));
  // Both sides of 2050 (UTCTime, GeneralizedTime); a serial with its top bit clear, as the CA makes them.
  for (const [notBefore, notAfter] of [[new Date(Date.UTC(2026, 5, 1, 12, 0, 0)), new Date(Date.UTC(2026, 5, 1, 13, 0, 0))], [new Date(Date.UTC(2049, 11, 31, 23, 0, 0)), new Date(Date.UTC(2050, 0, 1, 0, 0, 1))]] as const) {
    const serial = randomBytes(16);
    serial[0] = 0x35;
    const names: der.GeneralNameInput[] = [
      { type: 'uri', value: 'spiffe://der.test/ns/prod/sa/api' }, { type: 'dns', value: 'api.internal' }, { type: 'ip', value: '127.0.0.1' }, { type: 'ip', value: '2001:db8::1' },
    ];
    const theirs = await x509.X509CertificateGenerator.create({
      serialNumber: serial.toString('hex'), subject: [{ O: ['Portcullis'] }], issuer: root.subjectName, notBefore, notAfter,
      publicKey: await x509.PublicKey.create(leafKeys.publicKey), signingKey: caKeys.privateKey, signingAlgorithm: ECDSA_SHA256,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyAgreement, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
        await x509.SubjectKeyIdentifierExtension.create(leafKeys.publicKey),
        new x509.AuthorityKeyIdentifierExtension(caKeyId),
        new x509.SubjectAlternativeNameExtension(names.map((n) => ({ type: n.type === 'uri' ? 'url' : n.type, value: n.value }))),
      ],
    });
    const tbs = der.tbsCertificate({
      serial, signatureAlgorithm: ECDSA_SHA256_ALG, issuer: der.certificateSubject(Buffer.from(root.rawData)), notBefore, notAfter,
      subject: der.distinguishedName([{ type: '2.5.4.10', value: 'Portcullis' }]), spki: leafSpki,
      extensions: [
        der.extension(der.oid('2.5.29.19'), true, der.basicConstraints(false)),
        der.extension(der.oid('2.5.29.15'), true, der.keyUsage(1 | 16)),
        der.extension(der.oid('2.5.29.37'), false, der.extKeyUsage([der.oid('1.3.6.1.5.5.7.3.1'), der.oid('1.3.6.1.5.5.7.3.2')])),
        der.extension(der.oid('2.5.29.14'), false, der.octetString(Buffer.from(leafKeyId, 'hex'))),
        der.extension(der.oid('2.5.29.35'), false, der.authorityKeyIdentifier(Buffer.from(caKeyId, 'hex'))),
        der.extension(der.oid('2.5.29.17'), false, der.generalNames(names)),
      ],
    });
    assert.equal(hex(tbs), hex(tbsOf(new Uint8Array(theirs.rawData))), `TBS for ${notAfter.toISOString()}`);

    // Signed with node:crypto, the certificate verifies with both libraries and its PEM is spelled as theirs.
    const certDer = der.certificate(tbs, ECDSA_SHA256_ALG, sign('sha256', tbs, KeyObject.from(caKeys.privateKey)));
    const pem = der.pem('CERTIFICATE', certDer);
    const parsed = new x509.X509Certificate(pem);
    assert.equal(`${parsed.toString('pem')}\n`, pem);
    assert.equal(await parsed.verify({ publicKey: root.publicKey, signatureOnly: true }), true);
    assert.equal(parsed.notAfter.getTime(), notAfter.getTime());
    const node = new X509Certificate(pem);
    assert.ok(node.verify(KeyObject.from(caKeys.publicKey)));
    assert.ok(node.checkIssued(new X509Certificate(root.toString('pem'))));
    assert.equal(node.serialNumber.toLowerCase(), serial.toString('hex'));
  }
});

test('certificates from CA.issue(): valid for OpenSSL (x509_strict, both purposes), node:crypto and @peculiar/x509', async () => {
  const ca = await CertificateAuthority.loadOrCreate({ store: new MemoryStore(), wrapper: new KeyWrapper(randomBytes(32)), trustDomain: 'der.test' });
  const spiffeId = 'spiffe://der.test/ns/prod/sa/api';
  const { csrPem, keyPem } = await createWorkloadKeyAndCsr(spiffeId);
  const issued = await ca.issue({ csrPem, spiffeId, dnsNames: ['api.internal'], ipAddresses: ['127.0.0.1', '::ffff:10.0.0.1'] });
  const leaf = new X509Certificate(issued.certPem);
  const root = new X509Certificate(ca.rootPem);
  assert.ok(leaf.checkIssued(root) && leaf.verify(root.publicKey));
  assert.ok(leaf.checkPrivateKey(createPrivateKey(keyPem)));
  assert.equal(leaf.subjectAltName, `URI:${spiffeId}, DNS:api.internal, IP Address:127.0.0.1, IP Address:0:0:0:0:0:FFFF:A00:1`);
  assert.equal(await new x509.X509Certificate(issued.certPem).verify({ publicKey: new x509.X509Certificate(ca.rootPem).publicKey, signatureOnly: true }), true);
  assert.equal(issued.notBefore.getTime(), new Date(leaf.validFrom).getTime());
  assert.equal(issued.notAfter.getTime(), new Date(leaf.validTo).getTime());
  if (!hasOpenssl) return;
  const dir = mkdtempSync(join(tmpdir(), 'pcl-der-'));
  try {
    writeFileSync(join(dir, 'root.pem'), ca.rootPem);
    writeFileSync(join(dir, 'leaf.pem'), issued.certPem);
    for (const purpose of ['sslclient', 'sslserver']) {
      const out = execFileSync('openssl', ['verify', '-x509_strict', '-purpose', purpose, '-CAfile', join(dir, 'root.pem'), join(dir, 'leaf.pem')], { encoding: 'utf8' });
      assert.match(out, /leaf\.pem: OK/);
    }
    const text = execFileSync('openssl', ['x509', '-in', join(dir, 'leaf.pem'), '-noout', '-text'], { encoding: 'utf8' });
    assert.match(text, /Basic Constraints: critical\s+CA:FALSE/);
    assert.match(text, /Key Usage: critical\s+Digital Signature, Key Agreement/);
    assert.match(text, /TLS Web Server Authentication, TLS Web Client Authentication/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('reader: a CSR is taken apart as @peculiar/x509 sees it, and its signature verifies over the info bytes', async () => {
  const keys = await newKeys();
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    keys, signingAlgorithm: ECDSA_SHA256, name: 'CN=api, O=Example',
    extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'url', value: 'spiffe://t/a' }]), new x509.BasicConstraintsExtension(false, 3, true), new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature)],
  });
  const bytes = Buffer.from(csr.rawData);
  const parts = der.parseCsr(bytes);
  assert.equal(hex(parts.spki), hex(csr.publicKey.rawData));
  assert.equal(hex(parts.signatureAlgorithm), hex(ECDSA_SHA256_ALG));
  assert.ok(verify('sha256', parts.info, KeyObject.from(keys.publicKey), parts.signature));
  assert.deepEqual(parts.attributes.map((a) => [a.type, a.values.length]), [['1.2.840.113549.1.9.14', 1]]);
  const exts = der.parseExtensions(parts.attributes[0]?.values[0] ?? Buffer.alloc(0));
  assert.deepEqual(exts.map((e) => [e.id, e.critical]), [['2.5.29.17', false], ['2.5.29.19', true], ['2.5.29.15', false]]);
  assert.deepEqual(der.readGeneralNames(exts[0]?.value ?? Buffer.alloc(0)).map((n) => [n.tag, n.value.toString('latin1')]), [[0x86, 'spiffe://t/a']]);
  assert.equal(der.readBasicConstraintsCa(exts[1]?.value ?? Buffer.alloc(0)), false);
  assert.equal(der.readKeyUsage(exts[2]?.value ?? Buffer.alloc(0)), 1);
  for (const [bc, ca] of [[new x509.BasicConstraintsExtension(true), true], [new x509.BasicConstraintsExtension(true, 0), true], [new x509.BasicConstraintsExtension(false), false]] as const) {
    assert.equal(der.readBasicConstraintsCa(Buffer.from(bc.value)), ca);
  }
  // BER's "any non-zero byte is TRUE" still counts as asking to be a CA.
  assert.equal(der.readBasicConstraintsCa(Buffer.from('3003010101', 'hex')), true);
});

test('reader: indefinite, non-minimal and overlong lengths, high tags, truncation and trailing bytes are refused', async () => {
  const good = Buffer.from((await x509.Pkcs10CertificateRequestGenerator.create({ keys: await newKeys(), signingAlgorithm: ECDSA_SHA256 })).rawData);
  der.parseCsr(good);
  const bad: [string, Buffer][] = [
    ['empty', Buffer.alloc(0)],
    ['one byte', Buffer.from([0x30])],
    ['indefinite length', Buffer.from('308000000000', 'hex')],
    ['non-minimal short length in long form', Buffer.from('30810100', 'hex')],
    ['length with a leading zero byte', Buffer.from('3082000100', 'hex')],
    ['four length bytes', Buffer.from('30840000000100', 'hex')],
    ['high tag number', Buffer.from('1f810100', 'hex')],
    ['truncated', good.subarray(0, good.length - 1)],
    ['trailing byte', Buffer.concat([good, Buffer.from([0])])],
    ['not a SEQUENCE', Buffer.concat([Buffer.from([0x31]), good.subarray(1)])],
    ['a child longer than its parent', Buffer.from('300404050500', 'hex')],
  ];
  for (const [why, bytes] of bad) assert.throws(() => der.parseCsr(bytes), Error, why);
  assert.throws(() => der.readKeyUsage(Buffer.from('030108', 'hex')), Error, 'unused bits with no bytes');
  assert.throws(() => der.parseExtensions(Buffer.from('300b30090603551d110101010400', 'hex')), Error, 'critical spelled 0x01');
  assert.throws(() => der.checkExtKeyUsage(Buffer.from('3000', 'hex')), Error, 'no purposes');
  assert.throws(() => der.readGeneralNames(Buffer.from('30038601', 'hex')), Error, 'truncated name');
});

test('hostile CSRs: any one corrupted byte of a valid request is refused with PCL_ERR_CSR_INVALID, never another error', async () => {
  const ca = await CertificateAuthority.loadOrCreate({ store: new MemoryStore(), wrapper: new KeyWrapper(randomBytes(32)), trustDomain: 'der.test' });
  const spiffeId = 'spiffe://der.test/fuzz';
  const { csrPem } = await createWorkloadKeyAndCsr(spiffeId);
  const good = Buffer.from(csrPem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
  await ca.issue({ csrPem, spiffeId });
  for (let i = 0; i < good.length; i++) {
    for (const mask of [0x01, 0x80, 0xff]) {
      const bytes = Buffer.from(good);
      bytes[i] = (bytes[i] ?? 0) ^ mask;
      const pem = der.pem('CERTIFICATE REQUEST', bytes);
      await assert.rejects(ca.issue({ csrPem: pem, spiffeId }), (err: unknown) => err instanceof PortcullisError && err.code === 'PCL_ERR_CSR_INVALID', `byte ${i} ^ ${mask}`);
    }
  }
});

test('p256Point: only the uncompressed P-256 SubjectPublicKeyInfo', async () => {
  const spki = await spkiOf((await newKeys()).publicKey);
  assert.equal(der.p256Point(spki)?.length, 65);
  const p384 = await spkiOf((await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-384' }, true, ['sign', 'verify'])).publicKey);
  assert.equal(der.p256Point(p384), undefined);
  assert.equal(der.p256Point(Buffer.concat([spki.subarray(0, 26), Buffer.from([0x02]), spki.subarray(27)])), undefined, 'not an uncompressed point');
  assert.equal(der.p256Point(spki.subarray(0, 90)), undefined, 'a byte short');
});
