// The KMS engine (issue 6), modelled on Vault's transit engine: named keyrings with versions, the
// version named in every ciphertext, associated data binding a ciphertext to its context.
//
// Keys at rest: each version's key material is generated here and stored only wrapped by the root
// key (KeyWrapper, associated data `kms:<type>:<keyring>:v<N>`, so a record cannot be moved to
// another keyring, version or type). Unwrapped keys live in memory as KeyObjects; nothing is
// unwrapped or written per call.
//
// Nonces: AES-256-GCM with random 96-bit nonces is safe for 2^32 messages per key (NIST SP
// 800-38D §8.3). Each version counts its messages; the count is persisted by reserving blocks
// ("up to N may have been used") before they are used, so after a crash the count is an upper
// bound and never goes back. The message that would pass `usageLimit` rotates the keyring first.
//
// Crash safety: a rotation writes the new version (and its first reservation) before it moves
// `latestVersion`; a version record left behind by an interrupted rotation is adopted by the next
// one. Every version ever written stays readable until it is retired with a minimum version.
//
// Concurrency: mutations (create, rotate, retire, reservations) are serialized per keyring in this
// process; reads use the in-memory state without locks. Several processes on one store: a version
// or keyring another process created is loaded on first sight (an unknown version above the
// latest, an unknown keyring), but concurrent mutations of one keyring from two processes are not
// coordinated (the Store has no compare-and-set): run one writer per keyring.
import {
  createHmac, createPrivateKey, createPublicKey, createSecretKey, generateKeyPairSync, randomBytes,
  sign as cryptoSign, timingSafeEqual, verify as cryptoVerify, type KeyObject,
} from 'node:crypto';
import { systemClock, type Clock } from '../core/clock.js';
import { PortcullisError } from '../core/errors.js';
import { publishAudit } from '../core/events.js';
import { NS, type Store } from '../store/store.js';
import { KEY_BYTES, open as openPayload, seal } from './aead.js';
import { aadHeader, canonicalContext, formatCiphertext, isKeyringName, MAX_PLAINTEXT_BYTES, MAX_VERSION, parseCiphertext, type ParsedCiphertext } from './ciphertext.js';
import { KeyedMutex } from './mutex.js';
import { RotationScheduler } from './rotation-scheduler.js';
import type { CreateKeyringOptions, DataKey, KeyringInfo, KeyType, Kms, KmsContext } from './types.js';
import type { KeyWrapper } from './wrap.js';

/** Messages per AES-256-GCM version before rotation is forced: the random-nonce bound. */
export const DEFAULT_USAGE_LIMIT = 2 ** 32;
/** Messages reserved per store write; a crash wastes at most this many of a version's budget. */
export const DEFAULT_USAGE_RESERVE_BLOCK = 65_536;
/** Shortest automatic rotation period accepted. */
export const MIN_ROTATION_PERIOD_MS = 1000;
/** After a failed scheduled rotation, the next attempt waits this long. */
const ROTATION_RETRY_MS = 60_000;
const KEY_TYPES: readonly KeyType[] = ['aes256-gcm', 'hmac-sha256', 'ecdsa-p256', 'ed25519'];
const SIGNING: readonly KeyType[] = ['ecdsa-p256', 'ed25519'];
const SIGNATURE_BYTES = 64; // P-256 in IEEE P1363 form (r ‖ s) and Ed25519 alike
const MAC_BYTES = 32;

export interface KeyManagerOptions {
  store: Store;
  /** Wraps key material under the root key. */
  wrapper: KeyWrapper;
  /** Time for createdAt, scheduled rotation and audit events (default: the system clock). */
  clock?: Clock;
  /** Messages per AES version before a forced rotation (default 2^32, also the maximum). */
  usageLimit?: number;
  /** Messages reserved per store write (default 65,536, capped at usageLimit). */
  usageReserveBlock?: number;
}

/** NS.kmsKeyrings, key = name. Replaced as a whole on every change. */
interface KeyringRecord {
  name: string;
  type: KeyType;
  latestVersion: number;
  minDecryptionVersion: number;
  createdAt: string;
  rotationPeriodMs?: number;
  nextRotationAt?: string;
}

/** NS.kmsKeyVersions, key = `<name>/<version>`. Written once. */
interface VersionRecord {
  keyring: string;
  version: number;
  createdAt: string;
  /** KeyWrapper envelope: 32 raw bytes (aes, hmac) or PKCS#8 DER (ecdsa, ed25519). */
  wrapped: string;
}

/** NS.kmsUsage, key = `<name>/<version>`. Only ever grows. */
interface UsageRecord {
  reserved: number;
}

interface LoadedVersion {
  readonly version: number;
  readonly createdAt: string;
  /** Secret key (aes, hmac) or private key (signing). */
  readonly key: KeyObject;
  readonly publicKey: KeyObject | undefined;
  readonly aadHeader: Buffer;
  /** Associated data for an empty context, computed once. */
  readonly aadEmpty: Buffer;
  /** Messages encrypted (or, after a restart, possibly encrypted). */
  used: number;
  /** Persisted upper bound: `used` may grow up to here without a store write. */
  reserved: number;
}

interface Located {
  ring: Ring;
  v: LoadedVersion;
  payload: Buffer;
}

interface Ring {
  /** Replaced, never mutated, so a reader sees one consistent record. */
  rec: KeyringRecord;
  readonly versions: Map<number, LoadedVersion>;
  latest: LoadedVersion;
  /** Set after a failed scheduled rotation: not retried before this time. */
  retryAt?: number;
}

/** Associated data of a wrapped key version. */
export const keyWrapAad = (type: KeyType, keyring: string, version: number): string => `kms:${type}:${keyring}:v${version}`;
const recordKey = (keyring: string, version: number): string => `${keyring}/${version}`;
const iso = (ms: number): string => new Date(ms).toISOString();

export class KeyManager implements Kms {
  private readonly rings = new Map<string, Ring>();
  private readonly mutex = new KeyedMutex();
  private readonly refreshing = new Map<string, Promise<Ring | undefined>>();
  private readonly scheduler: RotationScheduler;
  private readonly store: Store;
  private readonly wrapper: KeyWrapper;
  private readonly clock: Clock;
  private readonly usageLimit: number;
  private readonly block: number;
  /** A background top-up starts when this many reserved messages are left. */
  private readonly lowWater: number;

  private constructor(o: KeyManagerOptions) {
    this.store = o.store;
    this.wrapper = o.wrapper;
    this.clock = o.clock ?? systemClock;
    this.usageLimit = o.usageLimit ?? DEFAULT_USAGE_LIMIT;
    this.block = Math.min(o.usageReserveBlock ?? DEFAULT_USAGE_RESERVE_BLOCK, this.usageLimit);
    this.lowWater = Math.floor(this.block / 4);
    this.scheduler = new RotationScheduler(this.clock, {
      nextDue: () => this.nextDue(),
      rotateDue: (now) => this.rotateDue(now),
    });
  }

  /** Loads and unwraps every keyring version in the store (PCL_ERR_KEY_UNWRAP with another root key). */
  static async open(o: KeyManagerOptions): Promise<KeyManager> {
    if (o.usageLimit !== undefined && !(Number.isSafeInteger(o.usageLimit) && o.usageLimit >= 1 && o.usageLimit <= DEFAULT_USAGE_LIMIT)) {
      throw invalidArgument(`usageLimit must be an integer from 1 to 2^32`);
    }
    if (o.usageReserveBlock !== undefined && !(Number.isSafeInteger(o.usageReserveBlock) && o.usageReserveBlock >= 1)) {
      throw invalidArgument('usageReserveBlock must be a positive integer');
    }
    const km = new KeyManager(o);
    await km.loadAll();
    return km;
  }

  // ---- keyrings ----

  async ensureKeyring(name: string, opts: CreateKeyringOptions = {}): Promise<KeyringInfo> {
    requireName(name);
    const type = opts.type ?? 'aes256-gcm';
    if (!KEY_TYPES.includes(type)) throw invalidArgument(`key type must be one of ${KEY_TYPES.join(', ')}`);
    if (opts.rotationPeriodMs !== undefined) checkPeriod(opts.rotationPeriodMs);
    return this.mutex.run(name, async () => {
      const ring = this.rings.get(name) ?? (await this.reloadLocked(name)) ?? (await this.createLocked(name, type, opts.rotationPeriodMs));
      if (ring.rec.type !== type) throw new PortcullisError('PCL_ERR_KMS_KEYRING_TYPE', `keyring "${name}" exists with type ${ring.rec.type}, not ${type}`);
      return info(ring);
    });
  }

  async getKeyring(name: string): Promise<KeyringInfo | undefined> {
    if (!isKeyringName(name)) return undefined;
    const ring = this.rings.get(name) ?? (await this.refresh(name));
    return ring && info(ring);
  }

  /** The keyrings this process knows (all of the store's at open, plus those created or seen since). */
  async listKeyrings(): Promise<KeyringInfo[]> {
    return [...this.rings.values()].sort((a, b) => (a.rec.name < b.rec.name ? -1 : 1)).map(info);
  }

  async rotate(name: string): Promise<KeyringInfo> {
    requireName(name);
    return this.mutex.run(name, async () => {
      const ring = await this.ringLocked(name);
      await this.rotateLocked(ring, 'manual');
      return info(ring);
    });
  }

  /** Retires versions below `version`; lowering it again is allowed (as in Vault). */
  async setMinDecryptionVersion(name: string, version: number): Promise<KeyringInfo> {
    requireName(name);
    if (!Number.isSafeInteger(version) || version < 1) throw invalidArgument('minimum decryption version must be a positive integer');
    return this.mutex.run(name, async () => {
      const ring = await this.ringLocked(name);
      if (version > ring.rec.latestVersion) throw invalidArgument(`minimum decryption version ${version} is above the latest version ${ring.rec.latestVersion}`);
      await this.replaceRecord(ring, { ...ring.rec, minDecryptionVersion: version });
      this.audit('kms.keyring.min-decryption-version', { keyring: name, minDecryptionVersion: version });
      return info(ring);
    });
  }

  /** Sets (or with undefined, removes) the automatic rotation period; the next rotation is one period from now. */
  async setRotationPeriod(name: string, periodMs: number | undefined): Promise<KeyringInfo> {
    requireName(name);
    if (periodMs !== undefined) checkPeriod(periodMs);
    return this.mutex.run(name, async () => {
      const ring = await this.ringLocked(name);
      const next: KeyringRecord = { ...ring.rec };
      delete next.rotationPeriodMs;
      delete next.nextRotationAt;
      if (periodMs !== undefined) Object.assign(next, { rotationPeriodMs: periodMs, nextRotationAt: iso(this.clock.now() + periodMs) });
      await this.replaceRecord(ring, next);
      ring.retryAt = undefined;
      this.audit('kms.keyring.rotation-period', { keyring: name, rotationPeriodMs: periodMs ?? 0 });
      this.scheduler.arm();
      return info(ring);
    });
  }

  // ---- encryption ----

  async encrypt(name: string, plaintext: Buffer, context?: KmsContext): Promise<string> {
    const ctx = contextBytes(context);
    checkData(plaintext, 'plaintext', MAX_PLAINTEXT_BYTES);
    const ring = this.rings.get(name) ?? (await this.ringFor(name));
    requireType(ring, ['aes256-gcm'], 'encrypt');
    return this.encryptIn(ring, plaintext, ctx);
  }

  /**
   * Order of checks (pinned by a test): context, format, expected keyring, keyring exists, keyring
   * type, version retired, version known, authentication.
   */
  async decrypt(ciphertext: string, context?: KmsContext, expectKeyring?: string): Promise<Buffer> {
    const ctx = contextBytes(context);
    const found = this.locate(ciphertext, 'decrypt', expectKeyring);
    const { v, payload } = found instanceof Promise ? await found : found;
    return this.decryptWith(v, payload, ctx);
  }

  /**
   * Re-encrypts under the latest version; the plaintext stays inside. A ciphertext already at the
   * latest version is authenticated and returned unchanged (no new nonce, no usage spent), so
   * `rewrap(c) === c` means "nothing to write".
   */
  async rewrap(ciphertext: string, context?: KmsContext, expectKeyring?: string): Promise<string> {
    const ctx = contextBytes(context);
    const { ring, v, payload } = await this.locate(ciphertext, 'rewrap', expectKeyring);
    const plaintext = this.decryptWith(v, payload, ctx);
    try {
      return v === ring.latest ? ciphertext : await this.encryptIn(ring, plaintext, ctx);
    } finally {
      plaintext.fill(0);
    }
  }

  /** 32 random bytes, returned in clear and encrypted under the keyring with `context`. */
  async generateDataKey(name: string, context?: KmsContext): Promise<DataKey> {
    const ctx = contextBytes(context);
    const ring = this.rings.get(name) ?? (await this.ringFor(name));
    requireType(ring, ['aes256-gcm'], 'datakey');
    const plaintext = randomBytes(KEY_BYTES);
    try {
      return { plaintext, ciphertext: await this.encryptIn(ring, plaintext, ctx) };
    } catch (err) {
      plaintext.fill(0);
      throw err;
    }
  }

  // ---- MACs and signatures ----
  // verify*: false for anything that does not verify (malformed, another keyring, unknown version);
  // a coded error for the caller's own mistakes (unknown keyring, wrong type) and retired versions.

  async hmac(name: string, data: Buffer): Promise<string> {
    checkData(data, 'data');
    const ring = this.rings.get(name) ?? (await this.ringFor(name));
    requireType(ring, ['hmac-sha256'], 'hmac');
    const v = ring.latest;
    return formatCiphertext(name, v.version, createHmac('sha256', v.key).update(data).digest());
  }

  async verifyHmac(name: string, data: Buffer, mac: string): Promise<boolean> {
    checkData(data, 'data');
    const ring = this.rings.get(name) ?? (await this.ringFor(name));
    requireType(ring, ['hmac-sha256'], 'verify-hmac');
    const found = await this.verifiable(ring, mac, MAC_BYTES);
    if (!found) return false;
    return timingSafeEqual(createHmac('sha256', found.v.key).update(data).digest(), found.payload);
  }

  /** ECDSA P-256 with SHA-256 (IEEE P1363 r ‖ s), or Ed25519. */
  async sign(name: string, data: Buffer): Promise<string> {
    checkData(data, 'data');
    const ring = this.rings.get(name) ?? (await this.ringFor(name));
    requireType(ring, SIGNING, 'sign');
    const v = ring.latest;
    const sig = ring.rec.type === 'ed25519' ? cryptoSign(null, data, v.key) : cryptoSign('sha256', data, { key: v.key, dsaEncoding: 'ieee-p1363' });
    return formatCiphertext(name, v.version, sig);
  }

  async verify(name: string, data: Buffer, signature: string): Promise<boolean> {
    checkData(data, 'data');
    const ring = this.rings.get(name) ?? (await this.ringFor(name));
    requireType(ring, SIGNING, 'verify');
    const found = await this.verifiable(ring, signature, SIGNATURE_BYTES);
    const pub = found?.v.publicKey;
    if (!found || !pub) return false;
    return ring.rec.type === 'ed25519'
      ? cryptoVerify(null, data, pub, found.payload)
      : cryptoVerify('sha256', data, { key: pub, dsaEncoding: 'ieee-p1363' }, found.payload);
  }

  /** SPKI PEM of each live (not retired) version, oldest first. */
  async publicKeys(name: string): Promise<{ version: number; pem: string }[]> {
    const ring = this.rings.get(name) ?? (await this.ringFor(name));
    requireType(ring, SIGNING, 'public-keys');
    const out: { version: number; pem: string }[] = [];
    for (const v of [...ring.versions.values()].sort((a, b) => a.version - b.version)) {
      if (v.version >= ring.rec.minDecryptionVersion && v.publicKey) out.push({ version: v.version, pem: v.publicKey.export({ type: 'spki', format: 'pem' }).toString() });
    }
    return out;
  }

  // ---- scheduling ----

  start(): void {
    this.scheduler.start();
  }

  stop(): void {
    this.scheduler.stop();
  }

  /**
   * Clean shutdown: stops the scheduler, waits for work in progress, and hands back the unused
   * part of each reservation so the next start reports exact usage (after a crash it reports the
   * reservation, an upper bound). The instance still works afterwards, reserving afresh.
   */
  async close(): Promise<void> {
    this.stop();
    await this.idle();
    await Promise.all([...this.rings.values()].map((ring) => this.mutex.run(ring.rec.name, async () => {
      for (const v of ring.versions.values()) {
        if (v.used >= v.reserved) continue;
        v.reserved = v.used; // first in memory, so nothing encrypts past what is persisted next
        await this.store.put(NS.kmsUsage, recordKey(ring.rec.name, v.version), { reserved: v.used } satisfies UsageRecord);
      }
    })));
  }

  /** Resolves when no mutation or scheduled rotation is in progress (tests, shutdown). */
  async idle(): Promise<void> {
    await this.mutex.idle();
    await this.scheduler.settled();
    await this.mutex.idle();
  }

  // ---- internals: the hot path ----

  private async encryptIn(ring: Ring, plaintext: Uint8Array, ctx: Buffer | undefined): Promise<string> {
    const v = this.take(ring) ?? (await this.takeSlow(ring));
    return formatCiphertext(ring.rec.name, v.version, seal(v.key, plaintext, ctx ? Buffer.concat([v.aadHeader, ctx]) : v.aadEmpty));
  }

  /** Counts one message against the latest version's reservation; undefined when it is used up. */
  private take(ring: Ring): LoadedVersion | undefined {
    const v = ring.latest;
    if (v.used >= v.reserved) return undefined;
    v.used++;
    if (v.reserved - v.used === this.lowWater && v.reserved < this.usageLimit) {
      // Reserve the next block before this one runs out, so encryption rarely waits on the store.
      // A failure here is not lost: the next caller to run out retries and gets the error.
      void this.mutex.run(ring.rec.name, () => this.extendLocked(ring, v)).catch(() => {});
    }
    return v;
  }

  /** Reservation used up: reserve more, or rotate when the version reached the usage limit. */
  private async takeSlow(ring: Ring): Promise<LoadedVersion> {
    for (;;) {
      await this.mutex.run(ring.rec.name, async () => {
        const v = ring.latest;
        if (v.used < v.reserved) return;
        if (v.reserved >= this.usageLimit) await this.rotateLocked(ring, 'usage-limit');
        else await this.extendLocked(ring, v);
      });
      const v = this.take(ring);
      if (v) return v;
    }
  }

  private async extendLocked(ring: Ring, v: LoadedVersion): Promise<void> {
    if (ring.latest !== v || v.reserved >= this.usageLimit || v.reserved - v.used > this.lowWater) return;
    const reserved = Math.min(this.usageLimit, v.reserved + this.block);
    // Written before use: a crash after this line can only over-count.
    await this.store.put(NS.kmsUsage, recordKey(ring.rec.name, v.version), { reserved } satisfies UsageRecord);
    v.reserved = reserved;
  }

  /**
   * Parses a ciphertext and finds its keyring (aes256-gcm) and version, in the documented order.
   * Synchronous when both are in memory (the hot path pays no extra promise); a promise otherwise.
   */
  private locate(ciphertext: string, op: string, expectKeyring: string | undefined): Located | Promise<Located> {
    const p = parseCiphertext(ciphertext);
    if (expectKeyring !== undefined && p.keyring !== expectKeyring) throw invalidCiphertext('it names another keyring');
    const ring = this.rings.get(p.keyring);
    if (ring) {
      requireType(ring, ['aes256-gcm'], op);
      const v = this.liveVersion(ring, p.version);
      if (v) return { ring, v, payload: p.payload };
    }
    return this.locateSlow(p, op);
  }

  private async locateSlow(p: ParsedCiphertext, op: string): Promise<Located> {
    const ring = this.rings.get(p.keyring) ?? (await this.ringFor(p.keyring));
    requireType(ring, ['aes256-gcm'], op);
    const v = this.liveVersion(ring, p.version) ?? (await this.versionAfterRefresh(ring, p.version));
    if (!v) throw invalidCiphertext(`keyring "${p.keyring}" has no version ${p.version}`);
    return { ring, v, payload: p.payload };
  }

  private decryptWith(v: LoadedVersion, payload: Buffer, ctx: Buffer | undefined): Buffer {
    const plaintext = openPayload(v.key, payload, ctx ? Buffer.concat([v.aadHeader, ctx]) : v.aadEmpty);
    if (!plaintext) throw invalidCiphertext('tampered, truncated or bound to another context');
    return plaintext;
  }

  /** A MAC or signature string of this keyring, parsed, with its version; undefined if it cannot verify. */
  private async verifiable(ring: Ring, text: string, bytes: number): Promise<{ v: LoadedVersion; payload: Buffer } | undefined> {
    const p = tryParse(text);
    if (!p || p.keyring !== ring.rec.name || p.payload.length !== bytes) return undefined;
    const v = this.liveVersion(ring, p.version) ?? (await this.versionAfterRefresh(ring, p.version));
    return v && { v, payload: p.payload };
  }

  /** The version if loaded; PCL_ERR_KMS_VERSION_RETIRED below the minimum. */
  private liveVersion(ring: Ring, version: number): LoadedVersion | undefined {
    if (version < ring.rec.minDecryptionVersion) {
      throw new PortcullisError('PCL_ERR_KMS_VERSION_RETIRED', `keyring "${ring.rec.name}" version ${version} is retired (minimum ${ring.rec.minDecryptionVersion})`);
    }
    return ring.versions.get(version);
  }

  /** A version above our latest may have been made by another process: look once in the store. */
  private async versionAfterRefresh(ring: Ring, version: number): Promise<LoadedVersion | undefined> {
    if (version <= ring.rec.latestVersion) return undefined;
    await this.refresh(ring.rec.name);
    return this.liveVersion(ring, version);
  }

  // ---- internals: keyring state ----

  private async ringFor(name: string): Promise<Ring> {
    requireName(name);
    const ring = this.rings.get(name) ?? (await this.refresh(name));
    if (!ring) throw notFound(name);
    return ring;
  }

  private async ringLocked(name: string): Promise<Ring> {
    const ring = this.rings.get(name) ?? (await this.reloadLocked(name));
    if (!ring) throw notFound(name);
    return ring;
  }

  /** One store look-up at a time per keyring, shared by every caller that asks meanwhile. */
  private refresh(name: string): Promise<Ring | undefined> {
    if (!isKeyringName(name)) return Promise.resolve(undefined);
    let p = this.refreshing.get(name);
    if (!p) {
      p = this.mutex.run(name, () => this.reloadLocked(name)).finally(() => this.refreshing.delete(name));
      this.refreshing.set(name, p);
    }
    return p;
  }

  private async loadAll(): Promise<void> {
    const [rings, versions, usage] = await Promise.all([
      this.store.list<unknown>(NS.kmsKeyrings),
      this.store.list<unknown>(NS.kmsKeyVersions),
      this.store.list<unknown>(NS.kmsUsage),
    ]);
    const versionRecords = new Map(versions.map((r) => [r.key, r.value]));
    const usageRecords = new Map(usage.map((r) => [r.key, r.value]));
    for (const { key, value } of rings) {
      const rec = checkKeyringRecord(value, key);
      const loaded = new Map<number, LoadedVersion>();
      for (let n = 1; n <= rec.latestVersion; n++) {
        loaded.set(n, this.loadVersion(rec.name, rec.type, n, versionRecords.get(recordKey(rec.name, n)), usageRecords.get(recordKey(rec.name, n))));
      }
      this.rings.set(rec.name, { rec, versions: loaded, latest: latestOf(loaded, rec) });
    }
  }

  /** Brings one keyring up to the store's state (another process may have created or rotated it). */
  private async reloadLocked(name: string): Promise<Ring | undefined> {
    const known = this.rings.get(name);
    const raw = await this.store.get<unknown>(NS.kmsKeyrings, name);
    if (raw === undefined) return known;
    const rec = checkKeyringRecord(raw, name);
    if (known && known.rec.type !== rec.type) throw new PortcullisError('PCL_ERR_STORE', `keyring "${name}" changed type in the store`);
    if (known && rec.latestVersion < known.rec.latestVersion) return known; // never go back
    const versions = known?.versions ?? new Map<number, LoadedVersion>();
    for (let n = (known?.rec.latestVersion ?? 0) + 1; n <= rec.latestVersion; n++) {
      const [v, u] = await Promise.all([
        this.store.get<unknown>(NS.kmsKeyVersions, recordKey(name, n)),
        this.store.get<unknown>(NS.kmsUsage, recordKey(name, n)),
      ]);
      versions.set(n, this.loadVersion(name, rec.type, n, v, u));
    }
    const latest = latestOf(versions, rec);
    if (known) {
      known.rec = rec;
      known.latest = latest;
      this.scheduler.arm();
      return known;
    }
    const ring: Ring = { rec, versions, latest };
    this.rings.set(name, ring);
    this.scheduler.arm();
    return ring;
  }

  private async createLocked(name: string, type: KeyType, rotationPeriodMs: number | undefined): Promise<Ring> {
    const now = this.clock.now();
    const first = await this.writeVersion(name, type, 1, now);
    const rec: KeyringRecord = {
      name, type, latestVersion: 1, minDecryptionVersion: 1, createdAt: iso(now),
      ...(rotationPeriodMs === undefined ? {} : { rotationPeriodMs, nextRotationAt: iso(now + rotationPeriodMs) }),
    };
    if (!(await this.store.insert(NS.kmsKeyrings, name, rec))) {
      // Another process created it meanwhile: its record wins.
      const theirs = await this.reloadLocked(name);
      if (!theirs) throw new PortcullisError('PCL_ERR_STORE', `keyring "${name}" vanished while being created`);
      return theirs;
    }
    const ring: Ring = { rec, versions: new Map([[1, first]]), latest: first };
    this.rings.set(name, ring);
    this.audit('kms.keyring.create', { keyring: name, type, version: 1 });
    this.scheduler.arm();
    return ring;
  }

  private async rotateLocked(ring: Ring, reason: 'manual' | 'scheduled' | 'usage-limit'): Promise<void> {
    const { rec } = ring;
    const n = rec.latestVersion + 1;
    if (n > MAX_VERSION) throw invalidArgument(`keyring "${rec.name}" has reached the highest version`);
    const now = this.clock.now();
    // 1. the new version (and its first reservation); 2. only then `latestVersion` moves.
    const v = await this.writeVersion(rec.name, rec.type, n, now);
    const next: KeyringRecord = { ...rec, latestVersion: n, ...(rec.rotationPeriodMs === undefined ? {} : { nextRotationAt: iso(now + rec.rotationPeriodMs) }) };
    await this.store.put(NS.kmsKeyrings, rec.name, next);
    ring.versions.set(n, v); // before `latest`, so a reader never meets a version it cannot find
    ring.rec = next;
    ring.latest = v;
    ring.retryAt = undefined;
    this.audit('kms.keyring.rotate', { keyring: rec.name, version: n, reason });
    this.scheduler.arm();
  }

  /** Generates, wraps and stores version `n`; adopts a record already there (an interrupted rotation). */
  private async writeVersion(name: string, type: KeyType, n: number, now: number): Promise<LoadedVersion> {
    const raw = generateKeyMaterial(type);
    const record: VersionRecord = { keyring: name, version: n, createdAt: iso(now), wrapped: this.wrapper.wrap(raw, keyWrapAad(type, name, n)) };
    const material = materialize(type, raw, name, n); // zeroes raw
    if (await this.store.insert(NS.kmsKeyVersions, recordKey(name, n), record)) {
      const reserved = type === 'aes256-gcm' ? this.block : 0;
      if (reserved > 0) await this.store.put(NS.kmsUsage, recordKey(name, n), { reserved } satisfies UsageRecord);
      return makeVersion(name, n, record.createdAt, material, 0, reserved);
    }
    const [existing, usage] = await Promise.all([
      this.store.get<unknown>(NS.kmsKeyVersions, recordKey(name, n)),
      this.store.get<unknown>(NS.kmsUsage, recordKey(name, n)),
    ]);
    return this.loadVersion(name, type, n, existing, usage);
  }

  private loadVersion(name: string, type: KeyType, n: number, raw: unknown, usage: unknown): LoadedVersion {
    if (!isVersionRecord(raw, name, n)) throw new PortcullisError('PCL_ERR_STORE', `key record ${name} v${n} is missing or malformed`);
    const material = materialize(type, this.wrapper.unwrap(raw.wrapped, keyWrapAad(type, name, n)), name, n);
    let reserved = 0;
    if (type === 'aes256-gcm' && usage !== undefined) {
      if (!isUsageRecord(usage)) throw new PortcullisError('PCL_ERR_STORE', `usage record ${name} v${n} is malformed`);
      reserved = usage.reserved;
    }
    // After a restart every reserved message counts as used: the count is an upper bound.
    return makeVersion(name, n, raw.createdAt, material, reserved, reserved);
  }

  private async replaceRecord(ring: Ring, next: KeyringRecord): Promise<void> {
    await this.store.put(NS.kmsKeyrings, next.name, next);
    ring.rec = next;
  }

  private nextDue(): number | undefined {
    let due: number | undefined;
    for (const ring of this.rings.values()) {
      const at = dueAt(ring);
      if (at !== undefined && (due === undefined || at < due)) due = at;
    }
    return due;
  }

  private async rotateDue(now: number): Promise<void> {
    for (const ring of [...this.rings.values()]) {
      const at = dueAt(ring);
      if (at === undefined || at > now) continue;
      try {
        await this.mutex.run(ring.rec.name, async () => {
          const again = dueAt(ring); // another rotation may have happened while waiting
          if (again !== undefined && again <= this.clock.now()) await this.rotateLocked(ring, 'scheduled');
        });
      } catch (err) {
        ring.retryAt = now + ROTATION_RETRY_MS;
        const code = err instanceof PortcullisError ? err.code : 'PCL_ERR_INTERNAL';
        this.audit('kms.keyring.rotate', { keyring: ring.rec.name, reason: 'scheduled', code }, 'failure');
      }
    }
  }

  private audit(action: string, detail: Record<string, string | number | boolean>, outcome: 'success' | 'failure' = 'success'): void {
    publishAudit({ type: 'admin', time: iso(this.clock.now()), component: 'kms', action, outcome, who: {}, detail });
  }
}

// ---- key material ----

function generateKeyMaterial(type: KeyType): Buffer {
  switch (type) {
    case 'aes256-gcm':
    case 'hmac-sha256':
      return randomBytes(KEY_BYTES);
    case 'ecdsa-p256':
      return generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'der', type: 'pkcs8' });
    case 'ed25519':
      return generateKeyPairSync('ed25519').privateKey.export({ format: 'der', type: 'pkcs8' });
  }
}

/** KeyObjects from raw material, checked against the type; zeroes `raw` in every case. */
function materialize(type: KeyType, raw: Buffer, name: string, n: number): { key: KeyObject; publicKey: KeyObject | undefined } {
  try {
    if (type === 'aes256-gcm' || type === 'hmac-sha256') {
      if (raw.length !== KEY_BYTES) throw new Error('wrong key length');
      return { key: createSecretKey(raw), publicKey: undefined };
    }
    const key = createPrivateKey({ key: raw, format: 'der', type: 'pkcs8' });
    const ok = type === 'ed25519'
      ? key.asymmetricKeyType === 'ed25519'
      : key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1';
    if (!ok) throw new Error('key type mismatch');
    return { key, publicKey: createPublicKey(key) };
  } catch (err) {
    throw new PortcullisError('PCL_ERR_KEY_UNWRAP', `stored key ${name} v${n} is not a valid ${type} key`, { cause: err });
  } finally {
    raw.fill(0);
  }
}

function makeVersion(name: string, n: number, createdAt: string, m: { key: KeyObject; publicKey: KeyObject | undefined }, used: number, reserved: number): LoadedVersion {
  const header = aadHeader(name, n);
  return { version: n, createdAt, key: m.key, publicKey: m.publicKey, aadHeader: header, aadEmpty: Buffer.concat([header, canonicalContext()]), used, reserved };
}

// ---- small helpers ----

function info(ring: Ring): KeyringInfo {
  const { rec } = ring;
  return {
    name: rec.name,
    type: rec.type,
    latestVersion: rec.latestVersion,
    minDecryptionVersion: rec.minDecryptionVersion,
    ...(rec.rotationPeriodMs === undefined ? {} : { rotationPeriodMs: rec.rotationPeriodMs }),
    ...(rec.nextRotationAt === undefined ? {} : { nextRotationAt: rec.nextRotationAt }),
    versions: [...ring.versions.values()].sort((a, b) => a.version - b.version).map((v) => ({ version: v.version, createdAt: v.createdAt, usage: v.used })),
  };
}

function dueAt(ring: Ring): number | undefined {
  if (ring.rec.nextRotationAt === undefined) return undefined;
  return Math.max(Date.parse(ring.rec.nextRotationAt), ring.retryAt ?? 0);
}

function latestOf(versions: Map<number, LoadedVersion>, rec: KeyringRecord): LoadedVersion {
  const v = versions.get(rec.latestVersion);
  if (!v) throw new PortcullisError('PCL_ERR_STORE', `keyring "${rec.name}" has no version ${rec.latestVersion}`);
  return v;
}

/** The canonical context bytes, or undefined for none (the cached empty associated data applies). */
function contextBytes(context: KmsContext | undefined): Buffer | undefined {
  if (context === undefined) return undefined;
  const bytes = canonicalContext(context);
  return bytes.length === 4 ? undefined : bytes; // 4 bytes = entry count 0
}

function tryParse(text: string): ParsedCiphertext | undefined {
  try {
    return parseCiphertext(text);
  } catch {
    return undefined;
  }
}

function checkData(data: unknown, what: string, max?: number): void {
  if (!(data instanceof Uint8Array)) throw invalidArgument(`${what} must be a Buffer`);
  if (max !== undefined && data.length > max) throw invalidArgument(`${what} is larger than ${max} bytes; encrypt a data key instead`);
}

function checkPeriod(ms: number): void {
  if (!Number.isSafeInteger(ms) || ms < MIN_ROTATION_PERIOD_MS) throw invalidArgument(`rotation period must be an integer of at least ${MIN_ROTATION_PERIOD_MS} ms`);
}

function requireName(name: unknown): asserts name is string {
  // The name is not echoed: whatever was passed may not be meant for a log.
  if (!isKeyringName(name)) throw invalidArgument('keyring names are 1-63 characters of a-z, 0-9, ".", "_", "-", starting with a letter or digit');
}

function requireType(ring: Ring, allowed: readonly KeyType[], op: string): void {
  if (!allowed.includes(ring.rec.type)) {
    throw new PortcullisError('PCL_ERR_KMS_KEYRING_TYPE', `${op} needs a ${allowed.join(' or ')} keyring; "${ring.rec.name}" is ${ring.rec.type}`);
  }
}

const invalidArgument = (message: string): PortcullisError => new PortcullisError('PCL_ERR_INVALID_ARGUMENT', message);
const notFound = (name: string): PortcullisError => new PortcullisError('PCL_ERR_KMS_KEYRING_NOT_FOUND', `keyring "${name}" not found`);
const invalidCiphertext = (why: string): PortcullisError => new PortcullisError('PCL_ERR_KMS_CIPHERTEXT_INVALID', `ciphertext cannot be decrypted: ${why}`);

// ---- store records: checked on load, since the store is outside the trust boundary ----

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isPositiveInt = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 1;

function checkKeyringRecord(v: unknown, key: string): KeyringRecord {
  const ok = isObject(v)
    && v.name === key && isKeyringName(v.name)
    // Widening the list's element type to string only to ask whether a string is in it.
    && typeof v.type === 'string' && (KEY_TYPES as readonly string[]).includes(v.type)
    && isPositiveInt(v.latestVersion) && v.latestVersion <= MAX_VERSION
    && isPositiveInt(v.minDecryptionVersion) && v.minDecryptionVersion <= v.latestVersion
    && typeof v.createdAt === 'string'
    && (v.rotationPeriodMs === undefined || isPositiveInt(v.rotationPeriodMs))
    && (v.nextRotationAt === undefined || (typeof v.nextRotationAt === 'string' && !Number.isNaN(Date.parse(v.nextRotationAt))));
  if (!ok) throw new PortcullisError('PCL_ERR_STORE', `keyring record "${isKeyringName(key) ? key : '?'}" is malformed`);
  return v as unknown as KeyringRecord; // every member checked just above
}

function isVersionRecord(v: unknown, name: string, n: number): v is VersionRecord {
  return isObject(v) && v.keyring === name && v.version === n && typeof v.createdAt === 'string' && typeof v.wrapped === 'string';
}

function isUsageRecord(v: unknown): v is UsageRecord {
  return isObject(v) && typeof v.reserved === 'number' && Number.isSafeInteger(v.reserved) && v.reserved >= 0;
}
