// The certificate authority of one trust domain: a self-signed ECDSA P-256 root that issues
// X.509-SVIDs (spiffe/spiffe standards/X509-SVID.md) to workloads. The root key lives in the store
// only wrapped under the master key; in memory it is a non-extractable CryptoKey.
import { createPublicKey, randomBytes, webcrypto } from 'node:crypto';
import { isIP } from 'node:net';
import { PortcullisError } from '../core/errors.js';
import { systemClock, type Clock } from '../core/clock.js';
import { NS, type Store } from '../store/store.js';
import type { KeySealer } from '../kms/key-sealer.js';
import { EC_P256, ECDSA_SHA256, x509 } from './x509.js';
import { parseSpiffeId, parseTrustDomain, trustDomainId } from './spiffe.js';

const DAY_MS = 24 * 60 * 60 * 1000;
/** Default CA lifetime. Rotation is not automatic yet: the CA must be replaced before this runs out. */
export const DEFAULT_CA_TTL_MS = 365 * DAY_MS;
/** Default workload certificate lifetime; data planes renew at half of it. */
export const DEFAULT_CERT_TTL_MS = 60 * 60 * 1000;
/** Certificates start this much in the past, so peers whose clocks run a little behind accept them. */
export const CLOCK_SKEW_MS = 60 * 1000;
/** A PEM CSR for a P-256 key with a few SANs is under 1 KiB; refuse anything absurd before parsing it. */
const MAX_CSR_PEM_CHARS = 16 * 1024;
const MAX_EXTRA_SANS = 32;
const ROOT_RECORD = 'root';
const ROOT_KEY_AAD = 'ca:root';

/** What the store holds. The certificate is public; the key is only ever stored wrapped. */
interface StoredRoot {
  v: 1;
  trustDomain: string;
  certPem: string;
  /** PKCS#8 DER of the root private key, KeySealer envelope with associated data 'ca:root'. */
  wrappedKey: string;
}

export interface CertificateAuthorityOptions {
  store: Store;
  wrapper: KeySealer;
  trustDomain: string;
  /** Time source for validity dates. Default: the system clock. */
  clock?: Clock;
  /** Lifetime of a newly created root. Default: 365 days. Ignored when the root already exists. */
  caTtlMs?: number;
}

export interface IssueRequest {
  /** PKCS#10 PEM from the workload; proves possession of the key, and nothing else is taken from it. */
  csrPem: string;
  /** The identity the control plane decided on; any SAN in the CSR is ignored. */
  spiffeId: string;
  dnsNames?: string[];
  ipAddresses?: string[];
  /** Default 1 hour; the certificate never outlives the CA whatever this says. */
  ttlMs?: number;
}

export interface IssuedCertificate {
  certPem: string;
  /** What the workload presents in TLS: its certificate then any intermediates (none today; the root is not sent). */
  chainPem: string;
  /** Lowercase hex. */
  serial: string;
  notBefore: Date;
  notAfter: Date;
}

export class CertificateAuthority {
  readonly trustDomain: string;
  readonly rootPem: string;
  readonly notBefore: Date;
  readonly notAfter: Date;

  private constructor(
    trustDomain: string,
    private readonly root: x509.X509Certificate,
    private readonly rootKeyId: string,
    private readonly signingKey: webcrypto.CryptoKey,
    private readonly clock: Clock,
  ) {
    this.trustDomain = trustDomain;
    this.rootPem = pem(root);
    this.notBefore = root.notBefore;
    this.notAfter = root.notAfter;
  }

  /** Loads the trust domain's root from the store, creating and storing it on first start. */
  static async loadOrCreate(opts: CertificateAuthorityOptions): Promise<CertificateAuthority> {
    const trustDomain = parseTrustDomain(opts.trustDomain);
    const clock = opts.clock ?? systemClock;
    let record = await opts.store.get<StoredRoot>(NS.ca, ROOT_RECORD);
    if (record === undefined) {
      const created = await createRoot(trustDomain, clock, opts.caTtlMs ?? DEFAULT_CA_TTL_MS, opts.wrapper);
      // insert, not put: when two control planes start together, one root wins and both use it.
      record = (await opts.store.insert(NS.ca, ROOT_RECORD, created))
        ? created
        : await opts.store.get<StoredRoot>(NS.ca, ROOT_RECORD);
      if (record === undefined) throw new PortcullisError('PCL_ERR_STORE', 'CA root record vanished while being created');
    }
    return CertificateAuthority.fromRecord(record, trustDomain, opts.wrapper, clock);
  }

  private static async fromRecord(record: StoredRoot, trustDomain: string, wrapper: KeySealer, clock: Clock): Promise<CertificateAuthority> {
    if (record.v !== 1 || typeof record.certPem !== 'string' || typeof record.wrappedKey !== 'string') {
      throw new PortcullisError('PCL_ERR_STORE', 'CA root record has an unknown format');
    }
    if (record.trustDomain !== trustDomain) {
      throw new PortcullisError(
        'PCL_ERR_INVALID_ARGUMENT',
        `the store holds the CA of trust domain "${record.trustDomain}", but "${trustDomain}" is configured; a trust domain cannot be renamed in place`,
      );
    }
    const pkcs8 = await wrapper.unwrap(record.wrappedKey, ROOT_KEY_AAD);
    let signingKey: webcrypto.CryptoKey;
    try {
      signingKey = await webcrypto.subtle.importKey('pkcs8', pkcs8, EC_P256, false, ['sign']);
    } catch (err) {
      throw new PortcullisError('PCL_ERR_KEY_UNWRAP', 'stored CA key is not a P-256 private key', { cause: err });
    } finally {
      pkcs8.fill(0);
    }
    const root = new x509.X509Certificate(record.certPem);
    // The certificate is stored in clear. Its self-signature (OpenSSL does not check it on a trust
    // anchor) plus the signing probe below tie it to the wrapped key, so an edited record is refused.
    const selfSigned = await root.verify({ signatureOnly: true });
    const probe = randomBytes(32);
    const sig = await webcrypto.subtle.sign(ECDSA_SHA256, signingKey, probe);
    const matches = await webcrypto.subtle.verify(ECDSA_SHA256, await root.publicKey.export(), sig, probe);
    if (!selfSigned || !matches) {
      throw new PortcullisError('PCL_ERR_KEY_UNWRAP', 'stored CA certificate does not match the stored CA key (tampered record)');
    }
    const ski = root.getExtension(x509.SubjectKeyIdentifierExtension);
    if (!ski) throw new PortcullisError('PCL_ERR_STORE', 'stored CA certificate has no subject key identifier');
    return new CertificateAuthority(trustDomain, root, ski.keyId, signingKey, clock);
  }

  /** Every CA certificate data planes must trust (PEM, concatenated). One root today; two during a future rotation. */
  trustBundlePem(): string {
    return this.rootPem;
  }

  /** Issues an X.509-SVID for `req.spiffeId` to the key that signed `req.csrPem`. */
  async issue(req: IssueRequest): Promise<IssuedCertificate> {
    // Proof of possession first: nothing about the request matters until the CSR is shown genuine.
    const publicKey = await verifiedCsrKey(req.csrPem);
    const id = parseSpiffeId(req.spiffeId, this.trustDomain);
    if (id.path === '') {
      throw new PortcullisError('PCL_ERR_SPIFFE_ID_INVALID', `"${id.id}" names the trust domain itself, which only the CA may carry`);
    }
    const extraSans = sanEntries(req.dnsNames ?? [], req.ipAddresses ?? []);
    const ttlMs = req.ttlMs ?? DEFAULT_CERT_TTL_MS;
    if (!Number.isSafeInteger(ttlMs) || ttlMs <= 0) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', 'ttlMs must be a positive integer');

    const now = this.clock.now();
    // X.509 times have whole seconds: round here so the returned dates are exactly the certificate's.
    const notBefore = new Date(Math.max(floorToSecond(now - CLOCK_SKEW_MS), this.notBefore.getTime()));
    const notAfter = new Date(Math.min(floorToSecond(now + ttlMs), this.notAfter.getTime()));
    if (notAfter.getTime() <= now) {
      throw new PortcullisError('PCL_ERR_INTERNAL', `the CA of "${this.trustDomain}" expired at ${this.notAfter.toISOString()}; it must be replaced`);
    }

    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: randomSerial(),
      subject: [{ O: ['Portcullis'] }],
      // The Name object itself, not its string: re-encoding could change string types and break chaining.
      issuer: this.root.subjectName,
      notBefore,
      notAfter,
      publicKey,
      signingKey: this.signingKey,
      signingAlgorithm: ECDSA_SHA256,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyAgreement, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
        await x509.SubjectKeyIdentifierExtension.create(publicKey),
        new x509.AuthorityKeyIdentifierExtension(this.rootKeyId),
        // Exactly one URI SAN (X509-SVID §2): the identity, then the optional DNS/IP names.
        new x509.SubjectAlternativeNameExtension([{ type: 'url', value: id.id }, ...extraSans]),
      ],
    });
    const certPem = pem(cert);
    return { certPem, chainPem: certPem, serial: cert.serialNumber.toLowerCase(), notBefore: cert.notBefore, notAfter: cert.notAfter };
  }
}

async function createRoot(trustDomain: string, clock: Clock, caTtlMs: number, wrapper: KeySealer): Promise<StoredRoot> {
  if (!Number.isSafeInteger(caTtlMs) || caTtlMs <= 0) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', 'caTtlMs must be a positive integer');
  // Extractable only for the one PKCS#8 export that gets wrapped; the in-memory key is re-imported non-extractable.
  const keys = await webcrypto.subtle.generateKey(EC_P256, true, ['sign', 'verify']);
  const now = clock.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerial(),
    name: [{ O: ['Portcullis'] }, { CN: [`Portcullis CA ${trustDomain}`] }],
    notBefore: new Date(floorToSecond(now - CLOCK_SKEW_MS)),
    notAfter: new Date(floorToSecond(now + caTtlMs)),
    keys,
    signingAlgorithm: ECDSA_SHA256,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      // SPIFFE-ID §3.1: the signing authority carries the trust domain's own ID.
      new x509.SubjectAlternativeNameExtension([{ type: 'url', value: trustDomainId(trustDomain) }]),
    ],
  });
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
  const wrappedKey = await wrapper.wrap(pkcs8, ROOT_KEY_AAD);
  pkcs8.fill(0);
  return { v: 1, trustDomain, certPem: pem(cert), wrappedKey };
}

/** Parses the CSR, checks its signature and that its key is ECDSA P-256; returns that key. */
async function verifiedCsrKey(csrPem: string): Promise<x509.PublicKey> {
  if (typeof csrPem !== 'string' || csrPem.length > MAX_CSR_PEM_CHARS || !csrPem.includes('-----BEGIN CERTIFICATE REQUEST-----')) {
    throw new PortcullisError('PCL_ERR_CSR_INVALID', 'CSR must be a PEM certificate request');
  }
  let csr: x509.Pkcs10CertificateRequest;
  let signatureOk: boolean;
  try {
    csr = new x509.Pkcs10CertificateRequest(csrPem);
    signatureOk = await csr.verify();
  } catch (err) {
    throw new PortcullisError('PCL_ERR_CSR_INVALID', 'CSR cannot be parsed or verified', { cause: err });
  }
  if (!signatureOk) throw new PortcullisError('PCL_ERR_CSR_INVALID', 'CSR signature is invalid');
  // Checked by node:crypto from the raw SubjectPublicKeyInfo, independently of the x509 library.
  const key = createPublicKey({ key: Buffer.from(csr.publicKey.rawData), format: 'der', type: 'spki' });
  if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
    throw new PortcullisError('PCL_ERR_CSR_INVALID', `CSR key must be ECDSA P-256, got ${key.asymmetricKeyType ?? 'unknown'}`);
  }
  return csr.publicKey;
}

function sanEntries(dnsNames: string[], ipAddresses: string[]): { type: 'dns' | 'ip'; value: string }[] {
  if (dnsNames.length + ipAddresses.length > MAX_EXTRA_SANS) {
    throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `at most ${MAX_EXTRA_SANS} DNS and IP names per certificate`);
  }
  for (const name of dnsNames) {
    if (!isDnsName(name)) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `${JSON.stringify(name).slice(0, 100)} is not a lowercase DNS name (wildcards are not issued)`);
  }
  for (const ip of ipAddresses) {
    if (isIP(ip) === 0) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `${JSON.stringify(ip).slice(0, 100)} is not an IP address`);
  }
  return [...dnsNames.map((value) => ({ type: 'dns' as const, value })), ...ipAddresses.map((value) => ({ type: 'ip' as const, value }))];
}

const DNS_LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
function isDnsName(name: unknown): boolean {
  return typeof name === 'string' && name.length <= 253 && name.split('.').every((label) => DNS_LABEL.test(label));
}

/** 16 random bytes, first bit clear so the DER INTEGER is positive, first byte non-zero so it stays 16 bytes. */
function randomSerial(): string {
  const b = randomBytes(16);
  b[0] = (b[0]! & 0x7f) || 0x01; // randomBytes(16) always has index 0.
  return b.toString('hex');
}

function floorToSecond(ms: number): number {
  return Math.floor(ms / 1000) * 1000;
}

function pem(cert: x509.X509Certificate): string {
  return `${cert.toString('pem')}\n`;
}
