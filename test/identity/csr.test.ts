// The CA's CSR rules (docs/workload-identity.md, "CSR rules"): every malformed request is refused
// with PCL_ERR_CSR_INVALID before anything is signed, and nothing is stored: neither a certificate
// in the issuance log nor anything in the CA's records.
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync, randomBytes, sign, webcrypto } from 'node:crypto';
import { FakeClock } from '../../src/core/clock.js';
import { PortcullisError } from '../../src/core/errors.js';
import { MemoryStore } from '../../src/store/memory.js';
import { NS } from '../../src/store/store.js';
import { KeyWrapper } from '../../src/kms/wrap.js';
import { CertificateAuthority, MAX_CSR_BYTES } from '../../src/identity/ca.js';
import { WorkloadRevocations } from '../../src/identity/workload-revocations.js';
import { createWorkloadKeyAndCsr } from '../../src/identity/workload-key.js';
import { EC_P256, ECDSA_SHA256, x509 } from '../../src/identity/x509.js';
import * as der from '../../src/identity/cert-der.js';

const TD = 'csr.test';
const ID = `spiffe://${TD}/ns/prod/sa/api`;
const code = (c: string) => (err: unknown): boolean => err instanceof PortcullisError && err.code === c;

let store: MemoryStore;
let ca: CertificateAuthority;
let good: string;

before(async () => {
  store = new MemoryStore();
  const clock = new FakeClock();
  const workloads = await WorkloadRevocations.open({ store, clock, trustDomain: TD });
  ca = await CertificateAuthority.loadOrCreate({ store, wrapper: new KeyWrapper(randomBytes(32)), trustDomain: TD, clock, issuance: workloads });
  good = (await createWorkloadKeyAndCsr(ID)).csrPem;
});

async function storedState(): Promise<string> {
  return JSON.stringify([await store.list(NS.workloadCerts), await store.list(NS.ca), await store.list(NS.workloadRevocations)]);
}

/** Refused with PCL_ERR_CSR_INVALID, and the store is exactly as before. */
async function refused(csrPem: string | Uint8Array, why: string): Promise<void> {
  const before = await storedState();
  await assert.rejects(ca.issue({ csrPem, spiffeId: ID }), code('PCL_ERR_CSR_INVALID'), why);
  assert.equal(await storedState(), before, `nothing stored: ${why}`);
}

async function csrWith(o: { extensions?: x509.Extension[]; attributes?: x509.Attribute[]; keys?: webcrypto.CryptoKeyPair; alg?: webcrypto.Algorithm | webcrypto.EcdsaParams }): Promise<string> {
  const keys = o.keys ?? (await webcrypto.subtle.generateKey(EC_P256, true, ['sign', 'verify']));
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    keys, signingAlgorithm: o.alg ?? ECDSA_SHA256, extensions: o.extensions ?? [], ...(o.attributes ? { attributes: o.attributes } : {}),
  });
  return `${csr.toString('pem')}\n`;
}
const san = (...names: { type: 'url' | 'dns' | 'email' | 'ip'; value: string }[]): x509.SubjectAlternativeNameExtension => new x509.SubjectAlternativeNameExtension(names);
const pemOf = (der: Buffer): string => `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64').replace(/(.{64})/g, '$1\n').replace(/\n$/, '')}\n-----END CERTIFICATE REQUEST-----\n`;
const derOf = (pem: string): Buffer => Buffer.from(pem.replace(/-----[^-]+-----|\s/g, ''), 'base64');

test('a well-formed CSR is accepted and logged; a workload profile (CA:false, usages, EKU, SKI) is accepted too', async () => {
  const before = (await store.list(NS.workloadCerts)).length;
  const issued = await ca.issue({ csrPem: good, spiffeId: ID });
  assert.equal((await store.list(NS.workloadCerts)).length, before + 1);
  assert.ok(await store.get(NS.workloadCerts, issued.serial));
  const keys = await webcrypto.subtle.generateKey(EC_P256, true, ['sign', 'verify']);
  const profile = await csrWith({
    keys,
    extensions: [
      san({ type: 'url', value: ID }),
      new x509.BasicConstraintsExtension(false),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth]),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  await ca.issue({ csrPem: profile, spiffeId: ID });
});

test('key type: RSA, P-384 and Ed25519 keys are refused (only ECDSA P-256)', async () => {
  const rsa = await webcrypto.subtle.generateKey({ name: 'RSASSA-PKCS1-v1_5', modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: 'SHA-256' }, true, ['sign', 'verify']);
  await refused(await csrWith({ keys: rsa, alg: { name: 'RSASSA-PKCS1-v1_5' }, extensions: [san({ type: 'url', value: ID })] }), 'RSA');
  const p384 = await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-384' }, true, ['sign', 'verify']);
  await refused(await csrWith({ keys: p384, extensions: [san({ type: 'url', value: ID })] }), 'P-384');
  // generateKey for Ed25519 is typed as CryptoKey | CryptoKeyPair; a signature algorithm always gives a pair.
  const ed = (await webcrypto.subtle.generateKey({ name: 'Ed25519' }, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  await refused(await csrWith({ keys: ed, alg: { name: 'Ed25519' }, extensions: [san({ type: 'url', value: ID })] }), 'Ed25519');
});

test('SANs: exactly one, the attested SPIFFE ID; extra, other, missing or duplicated SANs are refused', async () => {
  await refused(await csrWith({ extensions: [san({ type: 'url', value: ID }, { type: 'dns', value: 'api.internal' })] }), 'extra DNS SAN');
  await refused(await csrWith({ extensions: [san({ type: 'url', value: ID }, { type: 'url', value: `spiffe://${TD}/admin` })] }), 'two URIs');
  await refused(await csrWith({ extensions: [san({ type: 'url', value: ID }, { type: 'email', value: 'a@b.test' })] }), 'email SAN');
  await refused(await csrWith({ extensions: [san({ type: 'ip', value: '10.0.0.1' })] }), 'IP SAN only');
  await refused(await csrWith({ extensions: [san({ type: 'url', value: `spiffe://${TD}/admin` })] }), 'another identity');
  await refused(await csrWith({ extensions: [san({ type: 'url', value: `${ID}/` })] }), 'a near miss');
  await refused(await csrWith({ extensions: [] }), 'no SAN at all');
  await refused(await csrWith({ extensions: [san({ type: 'url', value: ID }), san({ type: 'url', value: ID })] }), 'SAN extension twice');
});

test('CA rights: basicConstraints CA:true, keyCertSign or cRLSign are refused', async () => {
  const id = san({ type: 'url', value: ID });
  await refused(await csrWith({ extensions: [id, new x509.BasicConstraintsExtension(true)] }), 'CA:true');
  await refused(await csrWith({ extensions: [id, new x509.BasicConstraintsExtension(true, 0, true)] }), 'CA:true, pathlen 0, critical');
  await refused(await csrWith({ extensions: [id, new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign)] }), 'keyCertSign');
  await refused(await csrWith({ extensions: [id, new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.cRLSign)] }), 'cRLSign');
});

test('unknown extensions and attributes are refused, not ignored', async () => {
  const id = san({ type: 'url', value: ID });
  // nameConstraints: a CA extension with no place in a workload request.
  await refused(await csrWith({ extensions: [id, new x509.Extension('2.5.29.30', true, new Uint8Array([0x30, 0x00]))] }), 'nameConstraints');
  await refused(await csrWith({ extensions: [id, new x509.Extension('1.3.6.1.4.1.99999.1', false, new Uint8Array([0x05, 0x00]))] }), 'private extension');
  await refused(await csrWith({ extensions: [id], attributes: [new x509.ChallengePasswordAttribute('secret')] }), 'challengePassword');
});

test(`size: over ${MAX_CSR_BYTES} bytes is refused, as a string or bytes; up to it is accepted`, async () => {
  const padTo = (n: number): string => good + ' '.repeat(n - Buffer.byteLength(good));
  await ca.issue({ csrPem: padTo(MAX_CSR_BYTES), spiffeId: ID });
  await ca.issue({ csrPem: Buffer.from(padTo(MAX_CSR_BYTES)), spiffeId: ID });
  await refused(padTo(MAX_CSR_BYTES + 1), 'one byte over');
  await refused(Buffer.from(padTo(MAX_CSR_BYTES + 1)), 'one byte over, as bytes');
  await refused('x'.repeat(1_000_000), 'a megabyte');
  // Multi-byte characters count as bytes: 3000 of them are 9000 bytes in 3000 characters.
  await refused(good + '\u20ac'.repeat(3000), 'multi-byte padding');
});

test('encoding: invalid UTF-8 bytes, a replacement character or any non-ASCII text is refused', async () => {
  await ca.issue({ csrPem: new Uint8Array(Buffer.from(good)), spiffeId: ID });
  await refused(Buffer.concat([Buffer.from(good), Buffer.from([0xff])]), 'invalid UTF-8 byte');
  await refused(Buffer.concat([Buffer.from(good), Buffer.from([0xc3])]), 'truncated UTF-8 sequence');
  await refused(good + '\ufffd', 'what a lenient decoder makes of a bad byte');
  await refused(good.replace('-----BEGIN', '\u00e9-----BEGIN'), 'non-ASCII letter');
  await refused(good + '\ud800', 'lone surrogate');
  await refused(good + '\u0000', 'NUL');
});

test('PEM: exactly one CERTIFICATE REQUEST block of canonical base64, nothing trailing in the DER', async () => {
  const der = derOf(good);
  await refused('', 'empty');
  await refused('hello', 'not PEM');
  await refused(der.toString('base64'), 'bare base64');
  await refused(good.replace(/CERTIFICATE REQUEST/g, 'CERTIFICATE'), 'wrong label');
  await refused(good.replace('-----BEGIN', 'note: -----BEGIN'), 'text before the block');
  await refused(`${good}junk\n`, 'text after the block');
  await refused(good + good, 'two blocks');
  await refused(good.replace(/\n([A-Za-z0-9+/]{10})/, '\n$1*'), 'a character outside base64');
  await refused(pemOf(Buffer.concat([der, Buffer.from([0x05, 0x00])])), 'trailing DER after the request');
  await refused(pemOf(der.subarray(0, der.length - 5)), 'truncated DER');
  // Non-canonical base64: the same bytes with the unused padding bits of the last character set.
  const b64 = der.toString('base64');
  if (b64.endsWith('=')) {
    const chars = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
    const i = b64.replace(/=+$/, '').length - 1;
    const last = chars.indexOf(b64[i] ?? 'A');
    const tweaked = b64.slice(0, i) + (chars[last ^ 1] ?? 'A') + b64.slice(i + 1);
    assert.deepEqual(Buffer.from(tweaked, 'base64'), der, 'same bytes');
    await refused(`-----BEGIN CERTIFICATE REQUEST-----\n${tweaked}\n-----END CERTIFICATE REQUEST-----\n`, 'non-canonical base64');
  }
});

test('proof of possession: a CSR whose signature does not verify is refused', async () => {
  const der = derOf(good);
  der[der.length - 1]! ^= 0x01; // a CSR's DER is never empty
  await refused(pemOf(der), 'flipped signature bit');
});

// Requests assembled DER by DER (cert-der.ts) and signed by node:crypto, for shapes no generator makes.
const ALG_ES256 = der.sequence(der.oid('1.2.840.10045.4.3.2'));
const EXTENSION_REQUEST = der.oid('1.2.840.113549.1.9.14');
const sanRequest = (uri: string): Buffer => der.extension(der.oid('2.5.29.17'), false, der.generalNames([{ type: 'uri', value: uri }]));
const extensionRequest = (...values: Buffer[]): Buffer => der.sequence(EXTENSION_REQUEST, der.tlv(0x31, ...values));
async function handBuilt(o: { version?: number; spki?: (point: Buffer) => Buffer; attributes?: Buffer[]; alg?: Buffer } = {}): Promise<string> {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const spki = publicKey.export({ format: 'der', type: 'spki' });
  const info = der.sequence(
    der.tlv(0x02, Buffer.from([o.version ?? 0])), der.sequence(), o.spki ? o.spki(spki.subarray(26)) : spki,
    der.tlv(0xa0, ...(o.attributes ?? [extensionRequest(der.sequence(sanRequest(ID)))])),
  );
  return der.pem('CERTIFICATE REQUEST', der.sequence(info, o.alg ?? ALG_ES256, der.bitString(sign('sha256', info, privateKey))));
}

test('hand-built requests: the shapes the CA reads itself are refused as strictly as the rest', async () => {
  await ca.issue({ csrPem: await handBuilt(), spiffeId: ID }); // the helper makes good requests
  await refused(await handBuilt({ version: 1 }), 'version other than v1 (0)');
  await refused(await handBuilt({ alg: der.sequence(der.oid('1.2.840.10045.4.3.3')) }), 'ecdsa-with-SHA384 named for a SHA-256 signature');
  await refused(await handBuilt({ alg: der.sequence(der.oid('1.2.840.10045.4.3.2'), Buffer.from([0x05, 0x00])) }), 'parameters where RFC 5758 has none');
  await refused(await csrWith({ alg: { name: 'ECDSA', hash: 'SHA-384' }, extensions: [san({ type: 'url', value: ID })] }), 'a genuine ecdsa-with-SHA384 request');
  const request = der.sequence(sanRequest(ID));
  await refused(await handBuilt({ attributes: [extensionRequest(request), extensionRequest(request)] }), 'extensionRequest twice');
  await refused(await handBuilt({ attributes: [extensionRequest(request, request)] }), 'extensionRequest with two values');
  await refused(await handBuilt({ attributes: [extensionRequest()] }), 'extensionRequest with no value');
  // The same key, its point compressed (0x02/0x03 and x): a valid P-256 key in a form the CA does not take.
  const compressed = (point: Buffer): Buffer => der.sequence(der.sequence(der.oid('1.2.840.10045.2.1'), der.oid('1.2.840.10045.3.1.7')), der.bitString(Buffer.concat([Buffer.from([2 + ((point[64] ?? 0) & 1)]), point.subarray(1, 33)])));
  await refused(await handBuilt({ spki: compressed }), 'compressed point');
  // A point off the curve: y changed.
  const offCurve = (point: Buffer): Buffer => der.sequence(der.sequence(der.oid('1.2.840.10045.2.1'), der.oid('1.2.840.10045.3.1.7')), der.bitString(Buffer.concat([point.subarray(0, 64), Buffer.from([(point[64] ?? 0) ^ 1])])));
  await refused(await handBuilt({ spki: offCurve }), 'point not on the curve');
  // basicConstraints with BER's TRUE (0x01): still a request to be a CA.
  const berCa = der.extension(der.oid('2.5.29.19'), false, Buffer.from('3003010101', 'hex'));
  await refused(await handBuilt({ attributes: [extensionRequest(der.sequence(sanRequest(ID), berCa))] }), 'CA:true spelled 0x01');
  // critical FALSE written out (DER leaves the default out): tolerated, it asks for nothing.
  const explicitFalse = der.sequence(der.oid('2.5.29.17'), Buffer.from('010100', 'hex'), der.octetString(der.generalNames([{ type: 'uri', value: ID }])));
  await ca.issue({ csrPem: await handBuilt({ attributes: [extensionRequest(der.sequence(explicitFalse))] }), spiffeId: ID });
  const nulSan = der.extension(der.oid('2.5.29.17'), false, der.sequence(der.tlv(0x86, Buffer.from(`${ID}\u0000`, 'latin1'))));
  await refused(await handBuilt({ attributes: [extensionRequest(der.sequence(nulSan))] }), 'a NUL after the SPIFFE ID in the SAN');
});
