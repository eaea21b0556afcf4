// Versioned, encrypted key-value secrets (database passwords, third-party API keys), in the spirit
// of Vault's KV v2. Each version is one KMS ciphertext bound by its context to its path and version,
// so a row copied to another path or version in the database does not decrypt. Metadata (versions,
// deletion marks) lives apart from the ciphertexts, so destroying a version deletes its only copy.
import { EventEmitter } from 'node:events';
import { systemClock, type Clock, type Timer } from '../core/clock.js';
import { SECRETS_KEYRING } from '../core/config/defaults.js';
import { PortcullisError } from '../core/errors.js';
import { NS, type Store } from '../store/store.js';
import type { Kms, KmsContext } from './types.js';

/** Segments of lowercase letters, digits, ".", "_", "-", each starting with a letter or digit (so no "." or ".." segment). */
const SECRET_PATH = /^[a-z0-9][a-z0-9._-]*(?:\/[a-z0-9][a-z0-9._-]*)*$/;
export const MAX_SECRET_PATH_LENGTH = 256;
/** Keys of a secret's data: names such as `password`, `API_KEY`, `tls.crt`. */
const DATA_KEY = /^[A-Za-z0-9._-]{1,128}$/;
export const MAX_SECRET_KEYS = 100;
/** The whole data of one version, as JSON: secrets are small; files belong elsewhere. */
export const MAX_SECRET_BYTES = 64 * 1024;
/** Versions kept per path unless configured otherwise; older ones are destroyed. */
export const DEFAULT_MAX_VERSIONS = 10;
/** Versions named in one delete, undelete or destroy call. */
const MAX_VERSIONS_PER_CALL = 100;

export function isSecretPath(path: unknown): path is string {
  return typeof path === 'string' && path.length <= MAX_SECRET_PATH_LENGTH && SECRET_PATH.test(path);
}

export interface SecretVersionInfo {
  version: number;
  createdAt: string;
  deleted: boolean;
  destroyed: boolean;
}

export interface SecretInfo {
  path: string;
  latest: number;
  versions: SecretVersionInfo[];
}

export interface SecretValue {
  data: Record<string, string>;
  version: number;
  createdAt: string;
}

export interface SecretStoreOptions {
  store: Store;
  kms: Kms;
  clock?: Clock;
  /** Keyring the values are encrypted under; default `secrets` (created on first write). */
  keyring?: string;
  /** Versions kept per path (1..1000); default 10. */
  maxVersions?: number;
}

/** Stored in NS.secrets under the path. */
interface MetaRecord {
  latest: number;
  versions: { version: number; createdAt: string; deletedAt?: string; destroyed: boolean }[];
}

/** Stored in NS.secretVersions under `<path>@<version>` ("@" cannot occur in a path). */
interface VersionRecord {
  ciphertext: string;
}

const versionKey = (path: string, version: number): string => `${path}@${version}`;
const notFound = (path: string, version?: number): PortcullisError =>
  new PortcullisError('PCL_ERR_SECRET_NOT_FOUND', `no secret ${path}${version === undefined ? '' : ` version ${version}`}`);

export class SecretStore {
  private readonly store: Store;
  private readonly kms: Kms;
  private readonly clock: Clock;
  private readonly keyring: string;
  private readonly maxVersions: number;
  /** New versions by path, for long polling; in-process only (one control plane replica's writes). */
  private readonly changes = new EventEmitter();
  /** Per-path chains: writes to one path run one at a time, so check-and-set and pruning see a stable latest. */
  private readonly locks = new Map<string, Promise<void>>();
  private keyringReady: Promise<void> | undefined;

  constructor(o: SecretStoreOptions) {
    this.store = o.store;
    this.kms = o.kms;
    this.clock = o.clock ?? systemClock;
    this.keyring = o.keyring ?? SECRETS_KEYRING;
    this.maxVersions = o.maxVersions ?? DEFAULT_MAX_VERSIONS;
    if (!Number.isInteger(this.maxVersions) || this.maxVersions < 1 || this.maxVersions > 1000) {
      throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', 'maxVersions must be an integer from 1 to 1000');
    }
    // Every long poll adds a listener; the default limit of 10 would only print warnings.
    this.changes.setMaxListeners(0);
  }

  /** Writes a new version; with `cas`, only if the latest version is `cas` (0: only if there is none). */
  async put(path: string, data: Record<string, string>, o: { cas?: number } = {}): Promise<{ version: number }> {
    checkPath(path);
    const plaintext = encodeData(data);
    if (o.cas !== undefined && !(Number.isInteger(o.cas) && o.cas >= 0)) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', 'cas must be a non-negative integer');
    await this.ensureKeyring();
    let version: number;
    try {
      version = await this.locked(path, async () => {
        const meta = await this.meta(path);
        const latest = meta?.latest ?? 0;
        if (o.cas !== undefined && o.cas !== latest) throw new PortcullisError('PCL_ERR_SECRET_CONFLICT', `check-and-set on ${path}: expected version ${o.cas}, latest is ${latest}`);
        const next = latest + 1;
        const ciphertext = await this.kms.encrypt(this.keyring, plaintext, context(path, next));
        // A record left by a write that crashed before its metadata is simply overwritten.
        await this.store.put(NS.secretVersions, versionKey(path, next), { ciphertext } satisfies VersionRecord);
        const versions = [...(meta?.versions ?? []), { version: next, createdAt: this.now(), destroyed: false }];
        // Oldest beyond the limit go for good; their ciphertexts are deleted before the metadata
        // stops naming them, so a crash in between leaves a version that reads as destroyed.
        const pruned = versions.splice(0, Math.max(0, versions.length - this.maxVersions));
        for (const p of pruned) if (!p.destroyed) await this.store.delete(NS.secretVersions, versionKey(path, p.version));
        await this.store.put(NS.secrets, path, { latest: next, versions } satisfies MetaRecord);
        return next;
      });
    } finally {
      plaintext.fill(0);
    }
    this.changes.emit(path, version);
    return { version };
  }

  /** The latest version, or `version`; a deleted or destroyed one is PCL_ERR_SECRET_NOT_FOUND. */
  async get(path: string, version?: number): Promise<SecretValue> {
    checkPath(path);
    if (version !== undefined) checkVersion(version);
    const meta = await this.meta(path);
    if (!meta) throw notFound(path);
    const wanted = version ?? meta.latest;
    const info = meta.versions.find((v) => v.version === wanted);
    if (!info || info.destroyed || info.deletedAt !== undefined) throw notFound(path, wanted);
    const record = await this.store.get<VersionRecord>(NS.secretVersions, versionKey(path, wanted));
    if (!record) throw notFound(path, wanted);
    const plaintext = await this.kms.decrypt(record.ciphertext, context(path, wanted), this.keyring);
    try {
      return { data: decodeData(plaintext), version: wanted, createdAt: info.createdAt };
    } finally {
      plaintext.fill(0);
    }
  }

  /** Metadata of every secret whose path starts with `prefix` (all when absent), sorted by path; no values. */
  async list(prefix = ''): Promise<SecretInfo[]> {
    if (typeof prefix !== 'string' || prefix.length > MAX_SECRET_PATH_LENGTH || !/^[a-z0-9._/-]*$/.test(prefix)) {
      throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', 'invalid secret prefix');
    }
    const records = await this.store.list<MetaRecord>(NS.secrets);
    return records
      .filter((r) => r.key.startsWith(prefix))
      .map((r) => ({
        path: r.key,
        latest: r.value.latest,
        versions: r.value.versions.map((v) => ({ version: v.version, createdAt: v.createdAt, deleted: v.deletedAt !== undefined, destroyed: v.destroyed })),
      }));
  }

  /** Soft delete of `versions` (default: the latest): they stop reading until undeleted. */
  async delete(path: string, versions?: number[]): Promise<void> {
    checkPath(path);
    if (versions !== undefined) checkVersions(versions);
    await this.update(path, (meta) => {
      const targets = new Set(versions ?? [meta.latest]);
      const deletedAt = this.now();
      for (const v of meta.versions) if (targets.has(v.version) && !v.destroyed) v.deletedAt ??= deletedAt;
    });
  }

  /** Reverses a soft delete; destroyed versions stay destroyed. */
  async undelete(path: string, versions: number[]): Promise<void> {
    checkPath(path);
    checkVersions(versions);
    await this.update(path, (meta) => {
      const targets = new Set(versions);
      for (const v of meta.versions) if (targets.has(v.version)) delete v.deletedAt;
    });
  }

  /** Erases the ciphertexts of `versions` from the store; their metadata remains, marked destroyed. */
  async destroy(path: string, versions: number[]): Promise<void> {
    checkPath(path);
    checkVersions(versions);
    await this.update(path, async (meta) => {
      const targets = new Set(versions);
      for (const v of meta.versions) {
        if (!targets.has(v.version) || v.destroyed) continue;
        // Ciphertext first: a crash before the metadata write leaves a version that reads as destroyed.
        await this.store.delete(NS.secretVersions, versionKey(path, v.version));
        v.destroyed = true;
      }
    });
  }

  /**
   * Resolves with the latest version as soon as it is above `afterVersion` (at once if it already
   * is), or undefined after `timeoutMs` or when `signal` aborts. Sees writes of this process only.
   */
  async waitForChange(path: string, afterVersion: number, timeoutMs: number, signal?: AbortSignal): Promise<number | undefined> {
    checkPath(path);
    if (!Number.isInteger(afterVersion) || afterVersion < 0) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', 'afterVersion must be a non-negative integer');
    if (!(timeoutMs >= 0)) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', 'timeoutMs must be a non-negative number');
    return new Promise<number | undefined>((resolve, reject) => {
      let done = false;
      const finish = (outcome: { version: number | undefined } | { error: unknown }): void => {
        if (done) return;
        done = true;
        timer.cancel();
        this.changes.off(path, onChange);
        signal?.removeEventListener('abort', onAbort);
        if ('error' in outcome) reject(outcome.error);
        else resolve(outcome.version);
      };
      const onChange = (version: number): void => {
        if (version > afterVersion) finish({ version });
      };
      const onAbort = (): void => finish({ version: undefined });
      // Timers never fire synchronously, so `finish` cannot run before `timer` is set.
      const timer: Timer = this.clock.setTimer(timeoutMs, () => finish({ version: undefined }));
      // Listen before reading the store, so a write landing between the two is not missed.
      this.changes.on(path, onChange);
      if (signal?.aborted) return onAbort();
      signal?.addEventListener('abort', onAbort, { once: true });
      this.meta(path).then(
        (meta) => { if (meta && meta.latest > afterVersion) finish({ version: meta.latest }); },
        (error: unknown) => finish({ error }),
      );
    });
  }

  // -------------------------------------------------------------------------------------------

  private now(): string {
    return new Date(this.clock.now()).toISOString();
  }

  private meta(path: string): Promise<MetaRecord | undefined> {
    return this.store.get<MetaRecord>(NS.secrets, path);
  }

  /** Read-modify-write of a path's metadata under its lock; an unknown path is not found. */
  private async update(path: string, change: (meta: MetaRecord) => void | Promise<void>): Promise<void> {
    await this.locked(path, async () => {
      const meta = await this.meta(path);
      if (!meta) throw notFound(path);
      await change(meta);
      await this.store.put(NS.secrets, path, meta satisfies MetaRecord);
    });
  }

  private async locked<T>(path: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.locks.get(path) ?? Promise.resolve();
    const run = previous.then(fn);
    const tail = run.then(() => undefined, () => undefined);
    this.locks.set(path, tail);
    try {
      return await run;
    } finally {
      // The last one out removes the chain, so idle paths hold no memory.
      if (this.locks.get(path) === tail) this.locks.delete(path);
    }
  }

  /** Creates the secrets keyring once, on the first write (reads need no keyring of their own: no ciphertext, no read). */
  private ensureKeyring(): Promise<void> {
    this.keyringReady ??= this.kms.ensureKeyring(this.keyring, { type: 'aes256-gcm' }).then(
      () => undefined,
      (err: unknown) => {
        this.keyringReady = undefined; // a sealed KMS, say: the next write tries again
        throw err;
      },
    );
    return this.keyringReady;
  }
}

/** Binds a ciphertext to where it belongs: moved to another path or version, it does not decrypt. */
function context(path: string, version: number): KmsContext {
  return { path, version: String(version) };
}

function checkPath(path: unknown): asserts path is string {
  if (!isSecretPath(path)) {
    throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `a secret path is at most ${MAX_SECRET_PATH_LENGTH} characters of segments [a-z0-9][a-z0-9._-]* joined by "/"`);
  }
}

function checkVersion(version: unknown): asserts version is number {
  if (typeof version !== 'number' || !Number.isSafeInteger(version) || version < 1) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', 'a version is a positive integer');
}

function checkVersions(versions: unknown): asserts versions is number[] {
  if (!Array.isArray(versions) || versions.length === 0 || versions.length > MAX_VERSIONS_PER_CALL) {
    throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `versions must list 1 to ${MAX_VERSIONS_PER_CALL} version numbers`);
  }
  for (const v of versions) checkVersion(v);
}

/** Validates a secret's data and serializes it (own keys only, so `__proto__` is just a key). */
function encodeData(data: unknown): Buffer {
  if (typeof data !== 'object' || data === null || Array.isArray(data)) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', 'secret data must be an object of strings');
  const entries = Object.entries(data);
  if (entries.length === 0 || entries.length > MAX_SECRET_KEYS) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `secret data must have 1 to ${MAX_SECRET_KEYS} keys`);
  for (const [key, value] of entries) {
    if (!DATA_KEY.test(key)) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', 'secret data keys are 1 to 128 of [A-Za-z0-9._-]');
    // The value is never named in the message: it is the secret.
    if (typeof value !== 'string') throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `secret data value of "${key}" must be a string`);
  }
  const json = Buffer.from(JSON.stringify(Object.fromEntries(entries)), 'utf8');
  if (json.length > MAX_SECRET_BYTES) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `secret data is over ${MAX_SECRET_BYTES} bytes`);
  return json;
}

function decodeData(plaintext: Buffer): Record<string, string> {
  const value: unknown = JSON.parse(plaintext.toString('utf8'));
  // Authenticated by the KMS, so this is what encodeData wrote; checked anyway, cheaply.
  if (typeof value !== 'object' || value === null || Array.isArray(value) || !Object.values(value).every((v) => typeof v === 'string')) {
    throw new PortcullisError('PCL_ERR_INTERNAL', 'stored secret data has an unexpected shape');
  }
  return Object.fromEntries(Object.entries(value).filter((e): e is [string, string] => typeof e[1] === 'string'));
}
