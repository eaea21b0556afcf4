import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate, randomBytes, webcrypto } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PortcullisError } from '../../src/core/errors.js';
import { FakeClock } from '../../src/core/clock.js';
import { NS } from '../../src/store/store.js';
import { PgliteStore } from '../../src/store/pglite.js';
import { KeyWrapper } from '../../src/kms/wrap.js';
import { CertificateAuthority } from '../../src/identity/ca.js';
import { createWorkloadKeyAndCsr } from '../../src/identity/workload-key.js';
import { spiffeIdFromCertificate } from '../../src/identity/spiffe.js';
import { ECDSA_SHA256, x509 } from '../../src/identity/x509.js';
import { MemoryStore } from '../../src/store/memory.js';

const TD = 'example.test';
const HOUR = 3_600_000;
const code = (c: string) => (err: unknown): boolean => err instanceof PortcullisError && err.code === c;
const wrapper = new KeyWrapper(randomBytes(32));
// A whole second, so expected dates need no rounding.
const START = Math.floor(Date.now() / 1000) * 1000;

let store: PgliteStore;
let clock: FakeClock;
let ca: CertificateAuthority;

before(async () => {
  store = await PgliteStore.open();
  clock = new FakeClock(START);
  ca = await CertificateAuthority.loadOrCreate({ store, wrapper, trustDomain: TD, clock });
});
after(async () => {
  await store.close();
});

function ext<T extends x509.Extension>(cert: x509.X509Certificate, type: new (raw: ArrayBuffer) => T): T {
  const found = cert.getExtension(type);
  assert.ok(found, `extension ${type.name} present`);
  return found;
}

test('root: self-signed P-256 CA with the expected subject, constraints and trust-domain SAN', async () => {
  const root = new x509.X509Certificate(ca.rootPem);
  assert.equal(root.subject, `O=Portcullis, CN=Portcullis CA ${TD}`);
  assert.equal(await root.isSelfSigned(), true);
  assert.deepEqual(root.publicKey.algorithm, { name: 'ECDSA', namedCurve: 'P-256' });
  const bc = ext(root, x509.BasicConstraintsExtension);
  assert.equal(bc.ca, true);
  assert.equal(bc.critical, true);
  const ku = ext(root, x509.KeyUsagesExtension);
  assert.equal(ku.critical, true);
  assert.equal(ku.usages, x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign);
  assert.match(ext(root, x509.SubjectKeyIdentifierExtension).keyId, /^[0-9a-f]{40}$/);
  assert.equal(new X509Certificate(ca.rootPem).subjectAltName, `URI:spiffe://${TD}`);
  assert.equal(ca.notAfter.getTime(), START + 365 * 24 * HOUR);
  assert.equal(ca.notBefore.getTime(), START - 60_000);
  assert.equal(ca.trustBundlePem(), ca.rootPem);
});

test('root private key is stored only wrapped', async () => {
  const rows = await store.list<Record<string, unknown>>(NS.ca);
  assert.equal(rows.length, 1);
  const text = JSON.stringify(rows);
  assert.ok(!text.includes('PRIVATE KEY'));
  assert.match(String(rows[0]?.value.wrappedKey), /^pcl:v1:/);
});

test('loadOrCreate on the same store returns the same CA; a different master key fails with PCL_ERR_KEY_UNWRAP', async () => {
  const again = await CertificateAuthority.loadOrCreate({ store, wrapper, trustDomain: TD, clock });
  assert.equal(again.rootPem, ca.rootPem);
  await assert.rejects(
    CertificateAuthority.loadOrCreate({ store, wrapper: new KeyWrapper(randomBytes(32)), trustDomain: TD, clock }),
    code('PCL_ERR_KEY_UNWRAP'),
  );
  // The key that was reloaded signs certificates that chain to the same root.
  const { csrPem } = await createWorkloadKeyAndCsr(`spiffe://${TD}/again`);
  const leaf = new X509Certificate((await again.issue({ csrPem, spiffeId: `spiffe://${TD}/again` })).certPem);
  assert.ok(leaf.verify(new X509Certificate(ca.rootPem).publicKey));
});

test('the CA survives a restart of an on-disk store', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'pcl-ca-'));
  try {
    const s1 = await PgliteStore.open(dir);
    const first = await CertificateAuthority.loadOrCreate({ store: s1, wrapper, trustDomain: TD });
    await s1.close();
    const s2 = await PgliteStore.open(dir);
    try {
      const second = await CertificateAuthority.loadOrCreate({ store: s2, wrapper, trustDomain: TD });
      assert.equal(second.rootPem, first.rootPem);
    } finally {
      await s2.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a stored CA is refused for another trust domain, and when its certificate was swapped', async () => {
  await assert.rejects(CertificateAuthority.loadOrCreate({ store, wrapper, trustDomain: 'other.test', clock }), code('PCL_ERR_INVALID_ARGUMENT'));
  const mem = new MemoryStore();
  await CertificateAuthority.loadOrCreate({ store: mem, wrapper, trustDomain: TD, clock });
  const record = await mem.get<Record<string, unknown>>(NS.ca, 'root');
  assert.ok(record);
  // Someone with write access to the store puts a root of their own next to our wrapped key.
  await mem.put(NS.ca, 'root', { ...record, certPem: ca.rootPem });
  await assert.rejects(CertificateAuthority.loadOrCreate({ store: mem, wrapper, trustDomain: TD, clock }), code('PCL_ERR_KEY_UNWRAP'));
});

test('two CAs starting on one store at once end up with a single root', async () => {
  const mem = new MemoryStore();
  const [a, b] = await Promise.all([
    CertificateAuthority.loadOrCreate({ store: mem, wrapper, trustDomain: TD }),
    CertificateAuthority.loadOrCreate({ store: mem, wrapper, trustDomain: TD }),
  ]);
  assert.equal(a.rootPem, b.rootPem);
});

test('issued leaf: one URI SAN, CA:false, key usages, EKU, AKI/SKI, serial, 1 h lifetime', async () => {
  const spiffeId = `spiffe://${TD}/ns/prod/sa/api`;
  const { keyPem, csrPem } = await createWorkloadKeyAndCsr(spiffeId);
  assert.match(keyPem, /^-----BEGIN PRIVATE KEY-----\n/);
  const issued = await ca.issue({ csrPem, spiffeId, dnsNames: ['api.internal'], ipAddresses: ['127.0.0.1', '::1'] });

  const leaf = new x509.X509Certificate(issued.certPem);
  const root = new x509.X509Certificate(ca.rootPem);
  assert.equal(issued.chainPem, issued.certPem);
  assert.equal(await leaf.verify({ publicKey: root.publicKey, signatureOnly: true }), true);
  assert.equal(leaf.issuer, root.subject);

  const bc = ext(leaf, x509.BasicConstraintsExtension);
  assert.equal(bc.ca, false);
  assert.equal(bc.critical, true);
  const ku = ext(leaf, x509.KeyUsagesExtension);
  assert.equal(ku.critical, true);
  assert.equal(ku.usages, x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyAgreement);
  assert.deepEqual([...ext(leaf, x509.ExtendedKeyUsageExtension).usages], [x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]);
  assert.equal(ext(leaf, x509.AuthorityKeyIdentifierExtension).keyId, ext(root, x509.SubjectKeyIdentifierExtension).keyId);
  assert.equal(ext(leaf, x509.SubjectKeyIdentifierExtension).keyId, Buffer.from(await leaf.publicKey.getKeyIdentifier()).toString('hex'));

  const sans = ext(leaf, x509.SubjectAlternativeNameExtension).names.toJSON();
  assert.deepEqual(sans.filter((n) => n.type === 'url'), [{ type: 'url', value: spiffeId }]);
  assert.deepEqual(sans.filter((n) => n.type === 'dns').map((n) => n.value), ['api.internal']);
  assert.equal(sans.filter((n) => n.type === 'ip').length, 2);

  // Node's own (OpenSSL) view agrees.
  const node = new X509Certificate(issued.certPem);
  assert.equal(node.ca, false);
  assert.ok(node.checkIssued(new X509Certificate(ca.rootPem)));
  assert.equal(spiffeIdFromCertificate(node), spiffeId);

  assert.match(issued.serial, /^[0-7][0-9a-f]{31}$/);
  assert.equal(issued.serial, leaf.serialNumber.toLowerCase());
  assert.equal(issued.notBefore.getTime(), START - 60_000);
  assert.equal(issued.notAfter.getTime(), START + HOUR);
  assert.equal(leaf.notAfter.getTime(), issued.notAfter.getTime());
});

test('serials are unique', async () => {
  const spiffeId = `spiffe://${TD}/serials`;
  const { csrPem } = await createWorkloadKeyAndCsr(spiffeId);
  const serials = new Set<string>();
  for (let i = 0; i < 5; i++) serials.add((await ca.issue({ csrPem, spiffeId })).serial);
  assert.equal(serials.size, 5);
});

test('the identity is the attested one: a CSR asking for another is refused, nothing else taken from it', async () => {
  const { csrPem } = await createWorkloadKeyAndCsr(`spiffe://${TD}/admin`);
  await assert.rejects(ca.issue({ csrPem, spiffeId: `spiffe://${TD}/web` }), code('PCL_ERR_CSR_INVALID'));
  const own = await createWorkloadKeyAndCsr(`spiffe://${TD}/web`);
  const issued = await ca.issue({ csrPem: own.csrPem, spiffeId: `spiffe://${TD}/web` });
  assert.equal(new X509Certificate(issued.certPem).subjectAltName, `URI:spiffe://${TD}/web`);
  assert.equal(issued.generation, 0);
});

test('identities outside the trust domain, or the trust domain itself, are refused', async () => {
  const { csrPem } = await createWorkloadKeyAndCsr('spiffe://other.test/web');
  for (const spiffeId of ['spiffe://other.test/web', `spiffe://${TD}`, `spiffe://${TD}/`, `SPIFFE://${TD}/web`, `spiffe://${TD}.evil/web`]) {
    await assert.rejects(ca.issue({ csrPem, spiffeId }), code('PCL_ERR_SPIFFE_ID_INVALID'), spiffeId);
  }
});

test('bad DNS names, IPs and TTLs are refused', async () => {
  const spiffeId = `spiffe://${TD}/web`;
  const { csrPem } = await createWorkloadKeyAndCsr(spiffeId);
  const bad = [
    { dnsNames: ['*.example.test'] },
    { dnsNames: ['Upper.example.test'] },
    { dnsNames: ['a..b'] },
    { dnsNames: ['-a.test'] },
    { dnsNames: ['x.test, URI:spiffe://example.test/admin'] },
    { ipAddresses: ['300.1.1.1'] },
    { ipAddresses: ['localhost'] },
    { ipAddresses: ['fe80::1%eth0'] },
    { ttlMs: 0 },
    { ttlMs: -1 },
    { ttlMs: Number.NaN },
    { ttlMs: 1.5 },
    { ttlMs: 24 * HOUR + 1 },
  ];
  for (const extra of bad) {
    await assert.rejects(ca.issue({ csrPem, spiffeId, ...extra }), code('PCL_ERR_INVALID_ARGUMENT'), JSON.stringify(extra));
  }
});

test('a CSR with a bad signature, an RSA or P-384 key, or no CSR at all is refused', async () => {
  const spiffeId = `spiffe://${TD}/web`;
  const { csrPem } = await createWorkloadKeyAndCsr(spiffeId);

  // Flip the last byte of the DER: inside the signature's s value, so it still parses.
  const der = Buffer.from(csrPem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
  der[der.length - 1]! ^= 0x01; // der is a non-empty CSR, so the last index exists.
  const tampered = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`;
  await assert.rejects(ca.issue({ csrPem: tampered, spiffeId }), code('PCL_ERR_CSR_INVALID'));
  // Order: proof of possession is checked before anything in the request is looked at.
  await assert.rejects(ca.issue({ csrPem: tampered, spiffeId: 'spiffe://other.test/x', ttlMs: -1 }), code('PCL_ERR_CSR_INVALID'));

  const rsaKeys = await webcrypto.subtle.generateKey(
    { name: 'RSASSA-PKCS1-v1_5', modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: 'SHA-256' },
    true,
    ['sign', 'verify'],
  );
  const rsaCsr = await x509.Pkcs10CertificateRequestGenerator.create({ keys: rsaKeys, signingAlgorithm: { name: 'RSASSA-PKCS1-v1_5' } });
  await assert.rejects(ca.issue({ csrPem: rsaCsr.toString('pem'), spiffeId }), code('PCL_ERR_CSR_INVALID'));

  const p384Keys = await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-384' }, true, ['sign', 'verify']);
  const p384Csr = await x509.Pkcs10CertificateRequestGenerator.create({ keys: p384Keys, signingAlgorithm: ECDSA_SHA256 });
  await assert.rejects(ca.issue({ csrPem: p384Csr.toString('pem'), spiffeId }), code('PCL_ERR_CSR_INVALID'));

  for (const junk of ['', 'hello', ca.rootPem, `-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n`, 'x'.repeat(100_000)]) {
    await assert.rejects(ca.issue({ csrPem: junk, spiffeId }), code('PCL_ERR_CSR_INVALID'));
  }
});

test('a certificate never outlives its CA, and an expired CA issues nothing', async () => {
  const spiffeId = `spiffe://${TD}/late`;
  const { csrPem } = await createWorkloadKeyAndCsr(spiffeId);
  // The same root, seen through a clock 30 minutes before its end.
  const late = new FakeClock(ca.notAfter.getTime() - 30 * 60_000);
  const lateCa = await CertificateAuthority.loadOrCreate({ store, wrapper, trustDomain: TD, clock: late });
  const issued = await lateCa.issue({ csrPem, spiffeId });
  assert.equal(issued.notAfter.getTime(), ca.notAfter.getTime());
  assert.equal(issued.notBefore.getTime(), late.now() - 60_000);

  await late.advance(30 * 60_000);
  await assert.rejects(lateCa.issue({ csrPem, spiffeId }), code('PCL_ERR_INTERNAL'));
});

test('caTtlMs sets the lifetime of a new root', async () => {
  const short = await CertificateAuthority.loadOrCreate({ store: new MemoryStore(), wrapper, trustDomain: TD, clock: new FakeClock(START), caTtlMs: 2 * HOUR });
  assert.equal(short.notAfter.getTime(), START + 2 * HOUR);
  const { csrPem } = await createWorkloadKeyAndCsr(`spiffe://${TD}/a`);
  const issued = await short.issue({ csrPem, spiffeId: `spiffe://${TD}/a`, ttlMs: 24 * HOUR });
  assert.equal(issued.notAfter.getTime(), START + 2 * HOUR);
});
