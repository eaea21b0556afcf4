// The certificate authority of one trust domain: self-signed ECDSA P-256 roots that issue
// X.509-SVIDs (spiffe/spiffe standards/X509-SVID.md) to workloads, and the roots' succession
// (docs/workload-identity.md). At half its life a root gets a successor, which is published in the
// trust bundle at once and signs only `publishLeadMs` later, when every data plane has it; the old
// root stays in the bundle until the last certificate it signed has expired. Each root ("generation")
// is one insert-only store record, so control-plane replicas racing to create a successor agree on
// one; its key is stored only wrapped under the master key, and in memory is a non-extractable CryptoKey
// (and, for signing certificates, its node:crypto KeyObject; never written anywhere).
import { createHash, createPublicKey, KeyObject, randomBytes, sign, verify, webcrypto } from 'node:crypto';
import { isIP } from 'node:net';
import { PortcullisError } from '../core/errors.js';
import { systemClock, type Clock } from '../core/clock.js';
import { NS, type Store } from '../store/store.js';
import type { KeySealer } from '../kms/key-sealer.js';
import { EC_P256, ECDSA_SHA256, x509 } from './x509.js';
import * as der from './cert-der.js';
import { parseSpiffeId, parseTrustDomain, trustDomainId } from './spiffe.js';

const HOUR_MS = 60 * 60 * 1000;
const DAY_MS = 24 * HOUR_MS;
/** Default lifetime of a root (and of each successor). */
export const DEFAULT_CA_TTL_MS = 365 * DAY_MS;
/** Default workload certificate lifetime; data planes renew at half of it. */
export const DEFAULT_CERT_TTL_MS = HOUR_MS;
/** Default longest certificate lifetime `issue()` accepts; bounds how long a retired root stays in the bundle. */
export const DEFAULT_MAX_CERT_TTL_MS = DAY_MS;
/**
 * Default time between a successor entering the trust bundle and signing: two data-plane snapshot
 * refreshes (2 × 30 s) plus the longest renewal interval (half of a 1 h certificate), with a wide margin.
 */
export const DEFAULT_CA_PUBLISH_LEAD_MS = 2 * HOUR_MS;
/** Default time a replica may take to learn of a new root (the rotation scheduler's reload interval). */
export const DEFAULT_CA_REPLICA_LAG_MS = 10_000;
/** Certificates start this much in the past, so peers whose clocks run a little behind accept them. */
export const CLOCK_SKEW_MS = 60 * 1000;
/** A PEM CSR for a P-256 key and one URI SAN is under 1 KiB; anything over this is refused unread. */
export const MAX_CSR_BYTES = 8 * 1024;
const MAX_EXTRA_SANS = 32;
/** The first root's record key and key AAD, as stored before roots had successors. */
const ROOT_RECORD = 'root';
const ROOT_KEY_AAD = 'ca:root';
const GEN_RECORD = /^gen:([1-9][0-9]{0,8})$/;

// The workload certificate profile (X509-SVID): fixed DER, built once.
const OID = {
  subjectKeyIdentifier: der.oid('2.5.29.14'),
  authorityKeyIdentifier: der.oid('2.5.29.35'),
  subjectAltName: der.oid('2.5.29.17'),
} as const;
/** ecdsa-with-SHA256 (RFC 5758 §3.2: no parameters): the only signature the CA makes or accepts. */
const ECDSA_SHA256_ALGORITHM = der.sequence(der.oid('1.2.840.10045.4.3.2'));
/** Key usage bits as flags (bit i = 1 << i, RFC 5280 §4.2.1.3). */
const KU_DIGITAL_SIGNATURE = 1 << 0;
const KU_KEY_AGREEMENT = 1 << 4;
const KU_KEY_CERT_SIGN = 1 << 5;
const KU_CRL_SIGN = 1 << 6;
const LEAF_SUBJECT = der.distinguishedName([{ type: '2.5.4.10', value: 'Portcullis' }]);
const LEAF_BASIC_CONSTRAINTS = der.extension(der.oid('2.5.29.19'), true, der.basicConstraints(false));
const LEAF_KEY_USAGE = der.extension(der.oid('2.5.29.15'), true, der.keyUsage(KU_DIGITAL_SIGNATURE | KU_KEY_AGREEMENT));
/** serverAuth, clientAuth. */
const LEAF_EXT_KEY_USAGE = der.extension(der.oid('2.5.29.37'), false, der.extKeyUsage([der.oid('1.3.6.1.5.5.7.3.1'), der.oid('1.3.6.1.5.5.7.3.2')]));

/** What the store holds per generation. The certificate is public; the key is only ever stored wrapped. */
interface StoredRoot {
  v: 1;
  trustDomain: string;
  certPem: string;
  /** PKCS#8 DER of the private key, KeySealer envelope; the AAD binds generation and activation time. */
  wrappedKey: string;
  /** Successors only: ISO time the generation starts signing. */
  activateAt?: string;
}

/** Where a generation is in its life at a given time. */
/**
 * `published`: in the bundle, not signing yet; `signing`: signs new certificates; `retiring`: no
 * longer signs, in the bundle until its certificates have expired; `dropped`: out of the bundle.
 */
export type CaGenerationState = 'published' | 'signing' | 'retiring' | 'dropped';

/** What the admin API and the CLI show of a root: never key material. Times are ISO 8601. */
export interface CaGenerationInfo {
  generation: number;
  state: CaGenerationState;
  /** Lowercase hex. */
  serial: string;
  /** Subject key identifier, lowercase hex: what issued certificates name in their AKI. */
  keyId: string;
  subject: string;
  notBefore: string;
  notAfter: string;
  /** When it entered the trust bundle. */
  publishedAt: string;
  /** When it starts (started) signing workload certificates. */
  activateAt: string;
  /** When it leaves the trust bundle: its expiry, or earlier once a successor signs. */
  dropAt: string;
  /** When its successor is due (half its life), if it has none yet. */
  successorDueAt?: string;
}

/** What the CA tells the issuance log about each certificate (see WorkloadRevocations). */
export interface IssuedCertificateRecord {
  spiffeId: string;
  serial: string;
  notBefore: Date;
  notAfter: Date;
  /** The generation of the root that signed it. */
  generation: number;
}

/** Checks and records around issuance, plugged in by the control plane (WorkloadRevocations implements it). */
export interface IssuanceHooks {
  /** Runs after the CSR was verified, before anything is signed; throws to refuse (e.g. a revoked workload). */
  assertIssuable(spiffeId: string): Promise<void>;
  /** Runs with every certificate before it is returned; when it throws, the certificate is withheld. */
  recordIssued(cert: IssuedCertificateRecord): Promise<void>;
}

export interface CertificateAuthorityOptions {
  store: Store;
  wrapper: KeySealer;
  trustDomain: string;
  /** Time source for validity dates and the rotation timeline. Default: the system clock. */
  clock?: Clock;
  /** Lifetime of a newly created root or successor. Default 365 days. Existing roots keep theirs. */
  caTtlMs?: number;
  /** Time from a successor's publication to its first signature. Default 2 h. Must be < caTtlMs / 2. */
  publishLeadMs?: number;
  /** Longest certificate lifetime accepted by issue(). Default 24 h. */
  maxCertTtlMs?: number;
  /** How late a replica may learn of a new root (its reload interval). Default 10 s. */
  replicaLagMs?: number;
  /** Revocation check and issuance log. Default: none (nothing checked, nothing recorded). */
  issuance?: IssuanceHooks;
}

export interface IssueRequest {
  /**
   * PKCS#10 PEM from the workload (at most 8 KiB, ASCII): proves possession of the key and must
   * ask for exactly `spiffeId` as its only SAN, with no CA rights.
   */
  csrPem: string | Uint8Array;
  /** The identity the control plane decided on (join token or current certificate). */
  spiffeId: string;
  /** Extra names the control plane grants (the gateway's edge names); never taken from the CSR. */
  dnsNames?: string[];
  ipAddresses?: string[];
  /** Default 1 hour, at most maxCertTtlMs; the certificate never outlives its issuer whatever this says. */
  ttlMs?: number;
}

export interface IssuedCertificate {
  certPem: string;
  /** What the workload presents in TLS: its certificate then any intermediates (none: roots are not sent). */
  chainPem: string;
  /** Lowercase hex. */
  serial: string;
  notBefore: Date;
  notAfter: Date;
  /** The generation of the root that signed it. */
  generation: number;
}

/** What rotate() and maintain() did. */
export interface CaRotationResult {
  /** False when the newest root already had a pending successor, or another replica created it first. */
  created: boolean;
  /** The newest generation after the call. */
  successor: CaGenerationInfo;
}

/** One root, loaded: timeline in ms. */
interface Generation {
  n: number;
  cert: x509.X509Certificate;
  pem: string;
  keyId: string;
  key: webcrypto.CryptoKey;
  /** The same key as a node:crypto KeyObject: what signs each certificate (one-shot, no WebCrypto job). */
  signingKey: KeyObject;
  /** The root's subject Name, DER exactly as its certificate spells it: the issuer of every leaf it signs. */
  subjectDer: Buffer;
  publishedAt: number;
  activateAt: number;
  notBefore: number;
  notAfter: number;
}

export class CertificateAuthority {
  readonly trustDomain: string;
  /** Lifetime of new roots, ms. */
  readonly caTtlMs: number;
  /** Publish lead of successors, ms. */
  readonly publishLeadMs: number;
  /** Longest certificate lifetime, ms. */
  readonly maxCertTtlMs: number;
  /** Replica lag, ms: the rotation scheduler reloads at least this often. */
  readonly replicaLagMs: number;
  private gens: Generation[] = [];
  /** Loads and successor creations run one at a time so the generations are never swapped mid-decision. */
  private queue: Promise<unknown> = Promise.resolve();
  private readonly store: Store;
  private readonly wrapper: KeySealer;
  private readonly clock: Clock;
  private readonly hooks: IssuanceHooks | undefined;

  private constructor(o: CertificateAuthorityOptions) {
    this.trustDomain = parseTrustDomain(o.trustDomain);
    this.store = o.store;
    this.wrapper = o.wrapper;
    this.clock = o.clock ?? systemClock;
    this.hooks = o.issuance;
    const ms = (name: string, v: number | undefined, dflt: number, min: number): number => {
      const value = v ?? dflt;
      if (!Number.isSafeInteger(value) || value < min) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `${name} must be a whole number of milliseconds ≥ ${min}`);
      return value;
    };
    this.caTtlMs = ms('caTtlMs', o.caTtlMs, DEFAULT_CA_TTL_MS, 1);
    this.publishLeadMs = ms('publishLeadMs', o.publishLeadMs, DEFAULT_CA_PUBLISH_LEAD_MS, 0);
    this.maxCertTtlMs = ms('maxCertTtlMs', o.maxCertTtlMs, DEFAULT_MAX_CERT_TTL_MS, 1);
    this.replicaLagMs = ms('replicaLagMs', o.replicaLagMs, DEFAULT_CA_REPLICA_LAG_MS, 0);
  }

  /** Loads the trust domain's roots from the store, creating and storing the first one on first start. */
  static async loadOrCreate(opts: CertificateAuthorityOptions): Promise<CertificateAuthority> {
    const ca = new CertificateAuthority(opts);
    await ca.serial(async () => {
      if ((await ca.records()).length === 0) {
        const created = await ca.createRoot(0, undefined);
        // insert, not put: when two control planes start together, one root wins and both use it.
        await ca.store.insert(NS.ca, ROOT_RECORD, created);
      }
      await ca.load();
    });
    return ca;
  }

  /** The root that signs now (PEM). */
  get rootPem(): string {
    return this.signer().pem;
  }

  /** Start of validity of the root that signs now. */
  get notBefore(): Date {
    return new Date(this.signer().notBefore);
  }

  /** End of validity of the root that signs now; a successor takes over before it. */
  get notAfter(): Date {
    return new Date(this.signer().notAfter);
  }

  /**
   * Every root data planes must trust now (PEM, concatenated, oldest first): one, or two from a
   * successor's publication until the last certificate of its predecessor has expired.
   */
  trustBundlePem(): string {
    const now = this.clock.now();
    const live = this.gens.filter((g, i) => g.publishedAt <= now && now < this.dropAt(i));
    // Never an empty bundle (which TLS would read as "use the defaults"): an expired CA fails handshakes instead.
    const shown = live.length > 0 ? live : this.gens.slice(-1);
    return shown.map((g) => g.pem).join('');
  }

  /** Every root still held, with its state now, oldest first. */
  generations(): CaGenerationInfo[] {
    const now = this.clock.now();
    const signing = this.signerOrUndefined(now);
    return this.gens.map((g, i) => {
      const dropAt = this.dropAt(i);
      const state: CaGenerationState = now >= dropAt ? 'dropped' : g === signing ? 'signing' : g.activateAt > now ? 'published' : 'retiring';
      const info: CaGenerationInfo = {
        generation: g.n, state, serial: g.cert.serialNumber.toLowerCase(), keyId: g.keyId, subject: g.cert.subject,
        notBefore: iso(g.notBefore), notAfter: iso(g.notAfter), publishedAt: iso(g.publishedAt), activateAt: iso(g.activateAt), dropAt: iso(dropAt),
      };
      if (i === this.gens.length - 1) info.successorDueAt = iso(this.successorDue(g));
      return info;
    });
  }

  /** When the newest root is due for a successor (half its life), ms. */
  successorDueAt(): number {
    return this.successorDue(this.newest());
  }

  /** Re-reads the roots from the store (another replica's successor). */
  reload(): Promise<void> {
    return this.serial(() => this.load());
  }

  /**
   * The scheduler's pass: reloads, and creates the newest root's successor once it is at half its
   * life (or expired). Replicas doing this together agree: one successor record wins.
   */
  maintain(): Promise<CaRotationResult | undefined> {
    return this.serial(async () => {
      await this.load();
      const newest = this.newest();
      if (this.clock.now() < this.successorDue(newest)) return undefined;
      return this.createSuccessor(newest);
    });
  }

  /**
   * Starts a rotation now, ahead of the schedule: the newest root gets its successor, published at
   * once and signing after publishLeadMs. When the newest root is itself a successor not yet
   * signing, nothing is created (`created: false`): a rotation is already under way.
   */
  rotate(): Promise<CaRotationResult> {
    return this.serial(async () => {
      await this.load();
      const newest = this.newest();
      if (newest.activateAt > this.clock.now()) return { created: false, successor: this.info(newest) };
      return this.createSuccessor(newest);
    });
  }

  /** Deletes the records (wrapped keys) of roots that left the trust bundle; returns their generations. */
  prune(): Promise<number[]> {
    return this.serial(async () => {
      await this.load();
      const now = this.clock.now();
      // The newest root is never deleted, whatever its state: it is what the next successor follows.
      const doomed = this.gens.slice(0, -1).filter((_, i) => this.dropAt(i) <= now);
      for (const g of doomed) await this.store.delete(NS.ca, recordKey(g.n));
      if (doomed.length > 0) await this.load();
      return doomed.map((g) => g.n);
    });
  }

  /** Issues an X.509-SVID for `req.spiffeId` to the key that signed `req.csrPem`. */
  async issue(req: IssueRequest): Promise<IssuedCertificate> {
    // Proof of possession and the CSR's shape first: nothing about the request matters until the CSR is shown genuine.
    const csr = verifiedCsr(req.csrPem);
    const id = parseSpiffeId(req.spiffeId, this.trustDomain);
    if (id.path === '') {
      throw new PortcullisError('PCL_ERR_SPIFFE_ID_INVALID', `"${id.id}" names the trust domain itself, which only the CA may carry`);
    }
    if (csr.uri !== id.id) throw new PortcullisError('PCL_ERR_CSR_INVALID', 'the CSR must ask for exactly the SPIFFE ID the workload is attested for');
    const extraSans = sanEntries(req.dnsNames ?? [], req.ipAddresses ?? []);
    const ttlMs = req.ttlMs ?? DEFAULT_CERT_TTL_MS;
    if (!Number.isSafeInteger(ttlMs) || ttlMs <= 0 || ttlMs > this.maxCertTtlMs) {
      throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `ttlMs must be a positive integer of at most ${this.maxCertTtlMs}`);
    }
    await this.hooks?.assertIssuable(id.id);

    const now = this.clock.now();
    const g = this.signer(now);
    // X.509 times have whole seconds: round here so the returned dates are exactly the certificate's.
    const notBefore = new Date(Math.max(floorToSecond(now - CLOCK_SKEW_MS), g.notBefore));
    // Never outlives its issuer: a peer would refuse the chain from then on anyway.
    const notAfter = new Date(Math.min(floorToSecond(now + ttlMs), g.notAfter));

    const serial = randomSerial();
    // Built as DER here (cert-der.ts) and signed by node:crypto: the profile below is the whole certificate.
    const tbs = der.tbsCertificate({
      serial,
      signatureAlgorithm: ECDSA_SHA256_ALGORITHM,
      issuer: g.subjectDer,
      notBefore,
      notAfter,
      subject: LEAF_SUBJECT,
      spki: csr.spki,
      extensions: [
        LEAF_BASIC_CONSTRAINTS,
        LEAF_KEY_USAGE,
        LEAF_EXT_KEY_USAGE,
        // RFC 5280 §4.2.1.2 method 1: SHA-1 of the subjectPublicKey bits (an identifier, not a security property).
        der.extension(OID.subjectKeyIdentifier, false, der.octetString(createHash('sha1').update(csr.point).digest())),
        der.extension(OID.authorityKeyIdentifier, false, der.authorityKeyIdentifier(Buffer.from(g.keyId, 'hex'))),
        // Exactly one URI SAN (X509-SVID §2): the identity, then the optional DNS/IP names.
        der.extension(OID.subjectAltName, false, der.generalNames([{ type: 'uri', value: id.id }, ...extraSans])),
      ],
    });
    const certPem = der.pem('CERTIFICATE', der.certificate(tbs, ECDSA_SHA256_ALGORITHM, sign('sha256', tbs, g.signingKey)));
    const issued: IssuedCertificate = { certPem, chainPem: certPem, serial: serial.toString('hex'), notBefore, notAfter, generation: g.n };
    await this.hooks?.recordIssued({ spiffeId: id.id, serial: issued.serial, notBefore: issued.notBefore, notAfter: issued.notAfter, generation: g.n });
    return issued;
  }

  // ---------------------------------------------------------------------------------------------

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const result = this.queue.then(fn);
    this.queue = result.catch(() => undefined);
    return result;
  }

  private newest(): Generation {
    const g = this.gens[this.gens.length - 1];
    // load() never installs an empty list.
    if (!g) throw new PortcullisError('PCL_ERR_INTERNAL', 'CA not loaded');
    return g;
  }

  /** Half the root's life after its start: when its successor is created. */
  private successorDue(g: Generation): number {
    return g.notBefore + Math.floor((g.notAfter - g.notBefore) / 2);
  }

  /**
   * When generation i leaves the bundle: at its expiry, or, once its successor signs, after the last
   * certificate it can have signed has expired (a lagging replica, the longest lifetime, a peer's skew).
   */
  private dropAt(i: number): number {
    const g = this.gens[i];
    if (!g) return 0;
    const next = this.gens[i + 1];
    if (!next) return g.notAfter;
    return Math.min(g.notAfter, next.activateAt + this.replicaLagMs + this.maxCertTtlMs + CLOCK_SKEW_MS);
  }

  /** The newest valid root that has started signing; failing that (all of them expired), the newest valid root. */
  private signerOrUndefined(now: number): Generation | undefined {
    const valid = this.gens.filter((g) => g.notAfter > now);
    return valid.filter((g) => g.activateAt <= now).at(-1) ?? valid.at(-1);
  }

  private signer(now = this.clock.now()): Generation {
    const g = this.signerOrUndefined(now);
    if (!g) {
      throw new PortcullisError('PCL_ERR_INTERNAL', `every CA root of "${this.trustDomain}" has expired (the last at ${iso(this.newest().notAfter)}); the rotation scheduler must run`);
    }
    return g;
  }

  private info(g: Generation): CaGenerationInfo {
    const found = this.generations().find((x) => x.generation === g.n);
    // g comes from this.gens, which generations() maps one to one.
    if (!found) throw new PortcullisError('PCL_ERR_INTERNAL', 'generation vanished');
    return found;
  }

  private async createSuccessor(newest: Generation): Promise<CaRotationResult> {
    const n = newest.n + 1;
    const activateAt = floorToSecond(this.clock.now() + this.publishLeadMs);
    const record = await this.createRoot(n, activateAt);
    const created = await this.store.insert(NS.ca, recordKey(n), record);
    await this.load();
    const successor = this.gens.find((g) => g.n === n);
    if (!successor) throw new PortcullisError('PCL_ERR_STORE', `CA generation ${n} vanished while being created`);
    return { created, successor: this.info(successor) };
  }

  private async createRoot(n: number, activateAt: number | undefined): Promise<StoredRoot> {
    // Extractable only for the one PKCS#8 export that gets wrapped; the in-memory key is re-imported non-extractable.
    const keys = await webcrypto.subtle.generateKey(EC_P256, true, ['sign', 'verify']);
    const now = this.clock.now();
    // Successors carry their generation in the name, so no two roots of the bundle share a subject.
    const cn = n === 0 ? `Portcullis CA ${this.trustDomain}` : `Portcullis CA ${this.trustDomain} gen ${n}`;
    const cert = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: randomSerial().toString('hex'),
      name: [{ O: ['Portcullis'] }, { CN: [cn] }],
      notBefore: new Date(floorToSecond(now - CLOCK_SKEW_MS)),
      notAfter: new Date(floorToSecond(now + this.caTtlMs)),
      keys,
      signingAlgorithm: ECDSA_SHA256,
      extensions: [
        new x509.BasicConstraintsExtension(true, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
        // SPIFFE-ID §3.1: the signing authority carries the trust domain's own ID.
        new x509.SubjectAlternativeNameExtension([{ type: 'url', value: trustDomainId(this.trustDomain) }]),
      ],
    });
    const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
    const activate = activateAt === undefined ? undefined : iso(activateAt);
    const wrappedKey = await this.wrapper.wrap(pkcs8, keyAad(n, activate));
    pkcs8.fill(0);
    return { v: 1, trustDomain: this.trustDomain, certPem: pem(cert), wrappedKey, ...(activate ? { activateAt: activate } : {}) };
  }

  private async records(): Promise<{ n: number; record: StoredRoot }[]> {
    const out: { n: number; record: StoredRoot }[] = [];
    for (const { key, value } of await this.store.list<StoredRoot>(NS.ca)) {
      if (key === ROOT_RECORD) out.push({ n: 0, record: value });
      const m = GEN_RECORD.exec(key);
      if (m?.[1]) out.push({ n: Number(m[1]), record: value });
    }
    return out.sort((a, b) => a.n - b.n);
  }

  /** Reads every root, checks each against its wrapped key, then swaps them in at once. */
  private async load(): Promise<void> {
    const records = await this.records();
    if (records.length === 0) throw new PortcullisError('PCL_ERR_STORE', 'the store holds no CA root');
    const loaded: Generation[] = [];
    for (const { n, record } of records) {
      const prev = loaded[loaded.length - 1];
      // Generations are only ever pruned from the oldest end: a gap means a tampered store.
      if (prev && prev.n !== n - 1) throw new PortcullisError('PCL_ERR_STORE', `CA generation ${n - 1} is missing between ${prev.n} and ${n}`);
      const cached = this.gens.find((g) => g.n === n && g.pem === record.certPem);
      loaded.push(cached ?? (await this.loadGeneration(n, record)));
    }
    this.gens = loaded;
  }

  private async loadGeneration(n: number, record: StoredRoot): Promise<Generation> {
    if (record.v !== 1 || typeof record.certPem !== 'string' || typeof record.wrappedKey !== 'string') {
      throw new PortcullisError('PCL_ERR_STORE', `CA generation ${n} record has an unknown format`);
    }
    if (record.trustDomain !== this.trustDomain) {
      throw new PortcullisError(
        'PCL_ERR_INVALID_ARGUMENT',
        `the store holds the CA of trust domain "${record.trustDomain}", but "${this.trustDomain}" is configured; a trust domain cannot be renamed in place`,
      );
    }
    const activate = n === 0 ? undefined : record.activateAt;
    const activateMs = activate === undefined ? undefined : Date.parse(activate);
    if (n > 0 && (activateMs === undefined || Number.isNaN(activateMs))) throw new PortcullisError('PCL_ERR_STORE', `CA generation ${n} has no activation time`);
    // The AAD names generation and activation time: a record moved or edited does not unwrap.
    const pkcs8 = await this.wrapper.unwrap(record.wrappedKey, keyAad(n, activate));
    let key: webcrypto.CryptoKey;
    try {
      key = await webcrypto.subtle.importKey('pkcs8', pkcs8, EC_P256, false, ['sign']);
    } catch (err) {
      throw new PortcullisError('PCL_ERR_KEY_UNWRAP', 'stored CA key is not a P-256 private key', { cause: err });
    } finally {
      pkcs8.fill(0);
    }
    const cert = new x509.X509Certificate(record.certPem);
    // The certificate is stored in clear. Its self-signature (OpenSSL does not check it on a trust
    // anchor) plus the signing probe below tie it to the wrapped key, so an edited record is refused.
    const selfSigned = await cert.verify({ signatureOnly: true });
    const probe = randomBytes(32);
    const sig = await webcrypto.subtle.sign(ECDSA_SHA256, key, probe);
    const matches = await webcrypto.subtle.verify(ECDSA_SHA256, await cert.publicKey.export(), sig, probe);
    if (!selfSigned || !matches) {
      throw new PortcullisError('PCL_ERR_KEY_UNWRAP', 'stored CA certificate does not match the stored CA key (tampered record)');
    }
    const ski = cert.getExtension(x509.SubjectKeyIdentifierExtension);
    if (!ski) throw new PortcullisError('PCL_ERR_STORE', 'stored CA certificate has no subject key identifier');
    const notBefore = cert.notBefore.getTime();
    // Created CLOCK_SKEW_MS after its notBefore, to the second: when it entered the bundle.
    const publishedAt = notBefore + CLOCK_SKEW_MS;
    return {
      n, cert, pem: record.certPem, keyId: ski.keyId, key, signingKey: KeyObject.from(key), subjectDer: der.certificateSubject(Buffer.from(cert.rawData)),
      publishedAt, activateAt: activateMs ?? notBefore, notBefore, notAfter: cert.notAfter.getTime(),
    };
  }
}

function recordKey(n: number): string {
  return n === 0 ? ROOT_RECORD : `gen:${n}`;
}

function keyAad(n: number, activateAt: string | undefined): string {
  return n === 0 ? ROOT_KEY_AAD : `ca:gen:${n}:${activateAt ?? ''}`;
}

// ---------------------------------------------------------------------------------------------
// CSR checks: strict, deny by default. Each refusal is PCL_ERR_CSR_INVALID and names the rule, never the content.

const PEM_CSR = /^\s*-----BEGIN CERTIFICATE REQUEST-----\r?\n([A-Za-z0-9+/=\r\n]+?)\r?\n-----END CERTIFICATE REQUEST-----\s*$/;
const PRINTABLE_ASCII = /^[\x20-\x7e\t\r\n]*$/;
const OID_EXTENSION_REQUEST = '1.2.840.113549.1.9.14';
const OID_SAN = '2.5.29.17';
const OID_BASIC_CONSTRAINTS = '2.5.29.19';
const OID_KEY_USAGE = '2.5.29.15';
const OID_EXT_KEY_USAGE = '2.5.29.37';
const OID_SUBJECT_KEY_ID = '2.5.29.14';
/** Extensions a workload CSR may carry; any other is refused rather than ignored. */
const ALLOWED_EXTENSIONS = new Set([OID_SAN, OID_BASIC_CONSTRAINTS, OID_KEY_USAGE, OID_EXT_KEY_USAGE, OID_SUBJECT_KEY_ID]);

function csrInvalid(why: string, cause?: unknown): PortcullisError {
  return new PortcullisError('PCL_ERR_CSR_INVALID', `CSR refused: ${why}`, cause === undefined ? undefined : { cause });
}

/** Decodes the input to text: at most MAX_CSR_BYTES, valid UTF-8, and (as PEM is) printable ASCII. */
function csrText(input: unknown): string {
  let text: string;
  if (typeof input === 'string') {
    // Bytes, not characters: 8 KiB of multi-byte characters is still over the limit.
    if (input.length > MAX_CSR_BYTES || Buffer.byteLength(input, 'utf8') > MAX_CSR_BYTES) throw csrInvalid(`over ${MAX_CSR_BYTES} bytes`);
    text = input;
  } else if (input instanceof Uint8Array) {
    if (input.byteLength > MAX_CSR_BYTES) throw csrInvalid(`over ${MAX_CSR_BYTES} bytes`);
    try {
      text = new TextDecoder('utf-8', { fatal: true }).decode(input);
    } catch (err) {
      throw csrInvalid('not valid UTF-8', err);
    }
  } else {
    throw csrInvalid('not a PEM certificate request');
  }
  // Also catches what a lenient decoder upstream turned into U+FFFD, and lone surrogates.
  if (!PRINTABLE_ASCII.test(text)) throw csrInvalid('contains characters PEM does not have (PEM is ASCII)');
  return text;
}

/** Exactly one PEM block of canonical base64, nothing but whitespace around it. */
function csrDer(text: string): Buffer {
  const m = PEM_CSR.exec(text);
  if (!m?.[1]) throw csrInvalid('not exactly one PEM "CERTIFICATE REQUEST" block');
  const b64 = m[1].replace(/\r?\n/g, '');
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(b64) || b64.length % 4 !== 0) throw csrInvalid('PEM body is not base64');
  const bytes = Buffer.from(b64, 'base64');
  // Base64 with non-zero padding bits decodes too; only the canonical spelling is accepted.
  if (bytes.toString('base64') !== b64) throw csrInvalid('PEM body is not canonical base64');
  return bytes;
}

/**
 * Verifies a workload CSR: size, encoding, PEM, DER with nothing trailing, an ECDSA P-256 key,
 * signature (proof of possession, ECDSA with SHA-256), only the extensionRequest attribute, only
 * known extensions, no CA rights, and exactly one SAN: one URI. Returns the key (SPKI DER and its
 * point) and that URI (compared with the attested ID by the caller). The DER is read by cert-der.ts
 * and every signature is checked by node:crypto.
 */
function verifiedCsr(input: unknown): { spki: Buffer; point: Buffer; uri: string } {
  const csr = csrParts(csrDer(csrText(input)));
  if (!csr.signatureAlgorithm.equals(ECDSA_SHA256_ALGORITHM)) throw csrInvalid('signature algorithm must be ecdsa-with-SHA256');
  const point = der.p256Point(csr.spki);
  if (!point) throw csrInvalid(`key must be ECDSA P-256 (uncompressed), got ${keyTypeOf(csr.spki)}`);
  let signatureOk: boolean;
  try {
    // JWK import of the coordinates: half the cost of decoding the SPKI again, and it too refuses a point not on the curve.
    const key = createPublicKey({ key: { kty: 'EC', crv: 'P-256', x: point.subarray(1, 33).toString('base64url'), y: point.subarray(33).toString('base64url') }, format: 'jwk' });
    signatureOk = verify('sha256', csr.info, key, csr.signature);
  } catch (err) {
    throw csrInvalid('public key or signature unreadable', err);
  }
  if (!signatureOk) throw csrInvalid('signature does not verify');
  // The request is genuine from here on; now what it asks for.
  let extensions: der.ExtensionParts[] = [];
  let requested = false;
  for (const attr of csr.attributes) {
    if (attr.type !== OID_EXTENSION_REQUEST) throw csrInvalid(`attribute ${attr.type} is not accepted`);
    if (requested) throw csrInvalid('extensionRequest appears twice');
    requested = true;
    const [value, ...more] = attr.values;
    if (!value || more.length > 0) throw csrInvalid('extensionRequest must have exactly one value');
    try {
      extensions = der.parseExtensions(value);
    } catch (err) {
      throw csrInvalid('extensionRequest is malformed', err);
    }
  }
  const seen = new Set<string>();
  let uri: string | undefined;
  for (const ext of extensions) {
    if (!ALLOWED_EXTENSIONS.has(ext.id)) throw csrInvalid(`extension ${ext.id} is not accepted`);
    if (seen.has(ext.id)) throw csrInvalid(`extension ${ext.id} appears twice`);
    seen.add(ext.id);
    try {
      if (ext.id === OID_BASIC_CONSTRAINTS) {
        if (der.readBasicConstraintsCa(ext.value)) throw csrInvalid('asks to be a CA (basicConstraints CA:true)');
      } else if (ext.id === OID_KEY_USAGE) {
        if ((der.readKeyUsage(ext.value) & (KU_KEY_CERT_SIGN | KU_CRL_SIGN)) !== 0) throw csrInvalid('asks for keyCertSign or cRLSign');
      } else if (ext.id === OID_SAN) {
        const names = der.readGeneralNames(ext.value);
        const [only] = names;
        if (names.length !== 1 || only?.tag !== der.GENERAL_NAME_URI) throw csrInvalid('must have exactly one SAN, the SPIFFE ID');
        // IA5String: ASCII only; the caller compares it with the attested ID character for character.
        if (!/^[\x21-\x7e]*$/.test(only.value.toString('latin1'))) throw csrInvalid('the SAN URI is not printable ASCII');
        uri = only.value.toString('latin1');
      } else if (ext.id === OID_EXT_KEY_USAGE) {
        der.checkExtKeyUsage(ext.value);
      } else if (ext.id === OID_SUBJECT_KEY_ID) {
        der.checkKeyIdentifier(ext.value);
      }
    } catch (err) {
      if (err instanceof PortcullisError) throw err;
      throw csrInvalid(`extension ${ext.id} is malformed`, err);
    }
  }
  if (uri === undefined) throw csrInvalid('has no SAN: it must ask for the SPIFFE ID');
  return { spki: csr.spki, point, uri };
}

function csrParts(bytes: Buffer): der.CsrParts {
  try {
    return der.parseCsr(bytes);
  } catch (err) {
    // The reader's messages are fixed texts about the structure, never the content.
    throw csrInvalid(`malformed (${err instanceof Error ? err.message : 'unreadable'})`, err);
  }
}

/** For the refusal message only: what node:crypto makes of a key that is not ECDSA P-256. */
function keyTypeOf(spki: Buffer): string {
  try {
    const key = createPublicKey({ key: spki, format: 'der', type: 'spki' });
    return key.asymmetricKeyDetails?.namedCurve ? `${key.asymmetricKeyType ?? 'unknown'} ${key.asymmetricKeyDetails.namedCurve}` : key.asymmetricKeyType ?? 'unknown';
  } catch {
    return 'an unreadable key';
  }
}

function sanEntries(dnsNames: string[], ipAddresses: string[]): { type: 'dns' | 'ip'; value: string }[] {
  if (dnsNames.length + ipAddresses.length > MAX_EXTRA_SANS) {
    throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `at most ${MAX_EXTRA_SANS} DNS and IP names per certificate`);
  }
  for (const name of dnsNames) {
    if (!isDnsName(name)) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `${JSON.stringify(name).slice(0, 100)} is not a lowercase DNS name (wildcards are not issued)`);
  }
  for (const ip of ipAddresses) {
    // A zone (fe80::1%eth0) means nothing outside one host: not in a certificate.
    if (isIP(ip) === 0 || ip.includes('%')) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `${JSON.stringify(ip).slice(0, 100)} is not an IP address without a zone`);
  }
  return [...dnsNames.map((value) => ({ type: 'dns' as const, value })), ...ipAddresses.map((value) => ({ type: 'ip' as const, value }))];
}

const DNS_LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
function isDnsName(name: unknown): boolean {
  return typeof name === 'string' && name.length <= 253 && name.split('.').every((label) => DNS_LABEL.test(label));
}

/** 16 random bytes, first bit clear so the DER INTEGER is positive, first byte non-zero so it stays 16 bytes. */
function randomSerial(): Buffer {
  const b = randomBytes(16);
  b[0] = (b[0]! & 0x7f) || 0x01; // randomBytes(16) always has index 0.
  return b;
}

function floorToSecond(ms: number): number {
  return Math.floor(ms / 1000) * 1000;
}

const iso = (ms: number): string => new Date(ms).toISOString();

function pem(cert: x509.X509Certificate): string {
  return `${cert.toString('pem')}\n`;
}
