// API keys (issue 3): `pcl_` + 32 random base62 characters + a 6-character base62 CRC32 of the
// random part, so secret scanners can recognise a leaked key and tell it from random text. A key
// is shown once; the store keeps only HMAC-SHA-256(hashing key, key). The hashing key is a random
// 32-byte secret sealed by the KeySealer (like the CA and signing keys): gateways need its raw
// bytes to hash a presented key locally, which a KMS hmac keyring never hands out. It travels to
// them in the snapshot (mTLS, authenticated data planes only).
// This module holds the format (shared with the data plane) and the control plane's service.
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { systemClock, type Clock, type Timer } from '../core/clock.js';
import { PortcullisError } from '../core/errors.js';
import { publishAudit } from '../core/events.js';
import type { KeySealer } from '../kms/key-sealer.js';
import { KeyedMutex } from '../kms/mutex.js';
import { NS, type Store } from '../store/store.js';

// ---------------------------------------------------------------------------------------------
// Format

/** What every key starts with (what secret scanners match on). */
export const API_KEY_PREFIX = 'pcl_';
/** Random base62 characters: 32 × log2(62) ≈ 190.5 bits. */
export const API_KEY_RANDOM_CHARS = 32;
/** Base62 characters of the CRC32 checksum (62^6 > 2^32, so any CRC fits). */
export const API_KEY_CHECKSUM_CHARS = 6;
/** Total length of a key: 42. */
export const API_KEY_LENGTH = API_KEY_PREFIX.length + API_KEY_RANDOM_CHARS + API_KEY_CHECKSUM_CHARS;
/** Public key ids: `ak_` + 12 base62 characters. */
export const API_KEY_ID = /^ak_[0-9A-Za-z]{12}$/;

const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
const KEY_SHAPE = /^pcl_[0-9A-Za-z]{38}$/;

/** `n` uniformly random base62 characters (rejection sampling: no modulo bias). */
export function randomBase62(n: number): string {
  let out = '';
  while (out.length < n) {
    for (const b of randomBytes(n * 2)) {
      // 248 = 4 × 62: bytes at or above it would favour the first characters.
      if (b < 248) out += BASE62[b % 62];
      if (out.length === n) break;
    }
  }
  return out;
}

/** CRC32 of the random part in 6 base62 digits, most significant first, zero-padded. */
function checksum(random: string): string {
  let v = crc32(random);
  let out = '';
  for (let i = 0; i < API_KEY_CHECKSUM_CHARS; i++) {
    out = BASE62[v % 62] + out;
    v = Math.floor(v / 62);
  }
  return out;
}

/** A new key (`pcl_…`, 42 characters) from node:crypto's CSPRNG. */
export function generateApiKey(): string {
  const random = randomBase62(API_KEY_RANDOM_CHARS);
  return API_KEY_PREFIX + random + checksum(random);
}

/**
 * Checks prefix, length, alphabet and checksum, without any lookup: junk is refused cheaply.
 * Throws PCL_ERR_APIKEY_INVALID (the message never contains any part of the text); returns the key.
 */
export function parseApiKey(text: string): string {
  if (!KEY_SHAPE.test(text)) throw new PortcullisError('PCL_ERR_APIKEY_INVALID', 'API key is malformed (prefix, length or alphabet)');
  const random = text.slice(API_KEY_PREFIX.length, API_KEY_PREFIX.length + API_KEY_RANDOM_CHARS);
  // Not a secret comparison: the checksum is derived from the presented text itself.
  if (checksum(random) !== text.slice(API_KEY_PREFIX.length + API_KEY_RANDOM_CHARS)) {
    throw new PortcullisError('PCL_ERR_APIKEY_INVALID', 'API key checksum does not match (mistyped or not a Portcullis key)');
  }
  return text;
}

/** Whether `text` has the form of a key, checksum included (for scanners and quick checks). */
export function isApiKey(text: string): boolean {
  try {
    parseApiKey(text);
    return true;
  } catch {
    return false;
  }
}

/** HMAC-SHA-256 of the whole key under the hashing key: what is stored and distributed. */
export function hashApiKey(hashKey: Buffer, key: string): Buffer {
  return createHmac('sha256', hashKey).update(key, 'utf8').digest();
}

/** Bytes of the hash used as the lookup key; the whole hash is then compared in constant time. */
export const HASH_LOOKUP_BYTES = 16;
export const lookupKeyOf = (hash: Buffer): string => hash.subarray(0, HASH_LOOKUP_BYTES).toString('base64url');

// ---------------------------------------------------------------------------------------------
// Records and the service

/** The stored record (NS.apiKeys, key = id). Never the key itself. */
export interface ApiKeyRecord {
  /** Public id (`ak_…`), shown in lists and audit entries. */
  id: string;
  name: string;
  /** base64url HMAC-SHA-256 of the key under the hashing key. */
  hash: string;
  /** The user or client the key acts as (the principal's `sub`). */
  owner: string;
  roles: string[];
  /** Route ids the key may call; absent = any route its roles allow. */
  routes?: string[];
  createdAt: string;
  expiresAt?: string;
  /** Written at most once a minute per key. */
  lastUsedAt?: string;
  revokedAt?: string;
  /** The key this one replaced (rotation). */
  rotatedFrom?: string;
  /** The key that replaced this one (rotation). */
  rotatedTo?: string;
  /** Set by a rotation on the old key: it keeps working until then. */
  overlapUntil?: string;
}

export type ApiKeyStatus = 'active' | 'rotating' | 'rotated' | 'expired' | 'revoked';

/** What an administrator sees: the record without its hash, with its status now. */
export type ApiKeyInfo = Omit<ApiKeyRecord, 'hash'> & { status: ApiKeyStatus };

/** What a gateway needs to authenticate one active key (the snapshot's `apiKeys.entries`). */
export interface ApiKeySnapshotEntry {
  /** base64url HMAC-SHA-256 of the key. */
  hash: string;
  id: string;
  owner: string;
  roles: string[];
  routes?: string[];
  expiresAt?: string;
  /** End of a rotation's overlap: the key stops working then. */
  notAfter?: string;
}

/** The snapshot's `apiKeys` member. */
export interface ApiKeySnapshot {
  /** base64url of the 32-byte hashing key. */
  hashKey: string;
  entries: ApiKeySnapshotEntry[];
}

export interface CreateApiKeyRequest {
  name: string;
  owner: string;
  roles: string[];
  routes?: string[];
  /** Lifetime in seconds (API_KEY_LIMITS.ttlSeconds); absent = no expiry. */
  ttlSeconds?: number;
}

/** Who asked, for the audit entry. */
export interface ApiKeyActor {
  /** Default `admin`. */
  by?: string;
  requestId?: string;
}

/** Bounds of every input, checked by the service (the admin API relies on them). */
export const API_KEY_LIMITS = {
  ttlSeconds: { min: 60, max: 2 * 365 * 24 * 3600 },
  overlapSeconds: { min: 0, max: 30 * 24 * 3600 },
  roles: 32,
  routes: 100,
  /** Keys that are neither revoked nor expired. */
  active: 10_000,
} as const;

/** Default overlap of a rotation: 24 h. */
export const DEFAULT_OVERLAP_SECONDS = 24 * 3600;
/** `lastUsedAt` is written at most once per key per this many ms. */
export const USAGE_WRITE_INTERVAL_MS = 60_000;

/** Role and route ids, as the config's `identifier`. */
export const IDENTIFIER = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;
const NAME = /^[A-Za-z0-9][A-Za-z0-9 ._:-]{0,63}$/;
/** A user name, client id or SPIFFE ID. */
const OWNER = /^[A-Za-z0-9][A-Za-z0-9._@:+/-]{0,255}$/;

/** The meta record holding the sealed hashing key. */
const HASH_KEY_RECORD = 'api-key-hashing-key';
const HASH_KEY_LABEL = 'api-key-hashing-key';

const invalid = (msg: string): PortcullisError => new PortcullisError('PCL_ERR_INVALID_ARGUMENT', msg);

function identifiers(v: unknown, field: string, max: number, allowEmpty: boolean): string[] {
  if (!Array.isArray(v) || v.length > max || (!allowEmpty && v.length === 0)) throw invalid(`${field} must be a list of ${allowEmpty ? '0' : '1'} to ${max} identifiers`);
  v.forEach((x, i) => {
    if (typeof x !== 'string' || !IDENTIFIER.test(x)) throw invalid(`${field}[${i}] is not an identifier (letters, digits, . _ : -)`);
  });
  const list = v as string[]; // every item checked above
  if (new Set(list).size !== list.length) throw invalid(`${field} lists a value twice`);
  return [...list];
}

function seconds(v: unknown, field: string, bounds: { min: number; max: number }): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < bounds.min || v > bounds.max) throw invalid(`${field} must be a whole number of seconds, ${bounds.min} to ${bounds.max}`);
  return v;
}

const iso = (ms: number): string => new Date(ms).toISOString();

/** The moment a record stops authenticating (expiry or overlap end, the earlier), or undefined. */
function endOf(r: ApiKeyRecord): number | undefined {
  const ends = [r.expiresAt, r.overlapUntil].filter((x): x is string => x !== undefined).map((x) => Date.parse(x));
  return ends.length === 0 ? undefined : Math.min(...ends);
}

function statusOf(r: ApiKeyRecord, now: number): ApiKeyStatus {
  if (r.revokedAt) return 'revoked';
  if (r.expiresAt && Date.parse(r.expiresAt) <= now) return 'expired';
  if (r.overlapUntil) return Date.parse(r.overlapUntil) <= now ? 'rotated' : 'rotating';
  return 'active';
}

const usable = (r: ApiKeyRecord, now: number): boolean => {
  const s = statusOf(r, now);
  return s === 'active' || s === 'rotating';
};

function infoOf(r: ApiKeyRecord, now: number): ApiKeyInfo {
  const info: ApiKeyInfo & { hash?: string } = { ...r, status: statusOf(r, now) };
  delete info.hash; // never leaves the control plane through an admin answer
  return info;
}

/** The control plane's API keys: create, list, rotate, revoke, verify, and what gateways need. */
export class ApiKeys {
  /** Every record by id; the store is written first, then this. */
  private readonly records = new Map<string, ApiKeyRecord>();
  /** Lookup part of each hash → id. */
  private readonly index = new Map<string, string>();
  private readonly mutex = new KeyedMutex();
  /** The newest use of each key (ms), whether written yet or not; merged into every write. */
  private readonly usedAt = new Map<string, number>();
  /** Keys whose newest use is not written yet, and when each key's lastUsedAt was last written. */
  private readonly pendingUse = new Set<string>();
  private readonly lastUseWrite = new Map<string, number>();
  private readonly useTimers = new Map<string, Timer>();

  private constructor(
    private readonly store: Store,
    private readonly clock: Clock,
    private readonly hashKey: Buffer,
  ) {}

  /** Loads the keys and the hashing key, creating the hashing key (sealed) on first start. */
  static async open(o: { store: Store; sealer: KeySealer; clock?: Clock }): Promise<ApiKeys> {
    const clock = o.clock ?? systemClock;
    const hashKey = await loadOrCreateHashKey(o.store, o.sealer, clock);
    const keys = new ApiKeys(o.store, clock, hashKey);
    for (const { value } of await o.store.list<ApiKeyRecord>(NS.apiKeys)) keys.remember(value);
    return keys;
  }

  /** Creates a key; the key itself is in this answer only. Audit: `apikey.create`. */
  async create(req: CreateApiKeyRequest, actor: ApiKeyActor = {}): Promise<{ id: string; key: string; info: ApiKeyInfo }> {
    if (typeof req.name !== 'string' || !NAME.test(req.name)) throw invalid('name must be 1-64 characters: letters, digits, space, . _ : -');
    if (typeof req.owner !== 'string' || !OWNER.test(req.owner)) throw invalid('owner must be a user name, client id or SPIFFE ID (1-256 characters)');
    const roles = identifiers(req.roles, 'roles', API_KEY_LIMITS.roles, false);
    const routes = req.routes === undefined ? undefined : identifiers(req.routes, 'routes', API_KEY_LIMITS.routes, false);
    const ttl = req.ttlSeconds === undefined ? undefined : seconds(req.ttlSeconds, 'ttlSeconds', API_KEY_LIMITS.ttlSeconds);
    const now = this.clock.now();
    this.checkCapacity(now);
    const created = await this.insertNew({
      name: req.name, owner: req.owner, roles, ...(routes ? { routes } : {}),
      createdAt: iso(now), ...(ttl === undefined ? {} : { expiresAt: iso(now + ttl * 1000) }),
    });
    this.audit('apikey.create', actor, created.record);
    return { id: created.record.id, key: created.key, info: infoOf(created.record, now) };
  }

  /** Every key, newest first, without hashes. */
  list(): ApiKeyInfo[] {
    const now = this.clock.now();
    return [...this.records.values()].sort((a, b) => (a.createdAt < b.createdAt ? 1 : a.createdAt > b.createdAt ? -1 : a.id < b.id ? -1 : 1)).map((r) => infoOf(this.withUse(r), now));
  }

  /** One key without its hash, or undefined. */
  get(id: string): ApiKeyInfo | undefined {
    const r = this.records.get(id);
    return r ? infoOf(this.withUse(r), this.clock.now()) : undefined;
  }

  /**
   * Revokes a key now: it leaves the snapshot and the revocation feed (`revokedSince`) names it.
   * Returns false when it was already revoked. Throws PCL_ERR_APIKEY_NOT_FOUND for an unknown id.
   */
  async revoke(id: string, actor: ApiKeyActor = {}): Promise<boolean> {
    return this.mutex.run(id, async () => {
      const r = this.records.get(id);
      if (!r) throw new PortcullisError('PCL_ERR_APIKEY_NOT_FOUND', 'no API key with this id');
      if (r.revokedAt) return false;
      const next: ApiKeyRecord = { ...r, revokedAt: iso(this.clock.now()) };
      await this.persist(next);
      this.audit('apikey.revoke', actor, next);
      return true;
    });
  }

  /**
   * A new key with the same name, owner, roles, routes and lifetime; the old one keeps working for
   * `overlapSeconds` (default DEFAULT_OVERLAP_SECONDS; 0 = stops now, never past its own expiry).
   * Audit: `apikey.rotate`. Refused for a revoked, expired or already rotated key.
   */
  async rotate(id: string, opts: { overlapSeconds?: number } = {}, actor: ApiKeyActor = {}): Promise<{ id: string; key: string; info: ApiKeyInfo; overlapUntil: string }> {
    const overlap = opts.overlapSeconds === undefined ? DEFAULT_OVERLAP_SECONDS : seconds(opts.overlapSeconds, 'overlapSeconds', API_KEY_LIMITS.overlapSeconds);
    return this.mutex.run(id, async () => {
      const old = this.records.get(id);
      if (!old) throw new PortcullisError('PCL_ERR_APIKEY_NOT_FOUND', 'no API key with this id');
      const now = this.clock.now();
      const status = statusOf(old, now);
      if (status !== 'active') throw invalid(`API key ${id} is ${status}: only an active key can be rotated${old.rotatedTo ? ` (its successor is ${old.rotatedTo})` : ''}`);
      this.checkCapacity(now);
      const lifetime = old.expiresAt ? Date.parse(old.expiresAt) - Date.parse(old.createdAt) : undefined;
      const created = await this.insertNew({
        name: old.name, owner: old.owner, roles: [...old.roles], ...(old.routes ? { routes: [...old.routes] } : {}),
        createdAt: iso(now), ...(lifetime === undefined ? {} : { expiresAt: iso(now + lifetime) }), rotatedFrom: old.id,
      });
      const until = Math.min(now + overlap * 1000, old.expiresAt ? Date.parse(old.expiresAt) : Infinity);
      const retiring: ApiKeyRecord = { ...old, rotatedTo: created.record.id, overlapUntil: iso(until) };
      await this.persist(retiring);
      this.audit('apikey.rotate', actor, created.record, { rotatedFrom: old.id, overlapUntil: retiring.overlapUntil ?? '' });
      return { id: created.record.id, key: created.key, info: infoOf(created.record, now), overlapUntil: iso(until) };
    });
  }

  /**
   * The key's record when it is valid now (known, not revoked, not expired, within any overlap);
   * otherwise undefined. Malformed text is refused before any hashing or lookup. Does not mark use.
   */
  async verify(key: string): Promise<ApiKeyInfo | undefined> {
    if (!isApiKey(key)) return undefined;
    const hash = hashApiKey(this.hashKey, key);
    const id = this.index.get(lookupKeyOf(hash));
    // The store, not the cache, decides: a revocation written by another replica counts at once.
    const r = id === undefined ? undefined : await this.store.get<ApiKeyRecord>(NS.apiKeys, id);
    const expected = r ? Buffer.from(r.hash, 'base64url') : Buffer.alloc(hash.length);
    const same = expected.length === hash.length && timingSafeEqual(expected, hash);
    const now = this.clock.now();
    return r && same && usable(r, now) ? infoOf(r, now) : undefined;
  }

  /**
   * Records that a key was used at `time` (ms). The list shows it at once; the store is written at
   * most once per key per USAGE_WRITE_INTERVAL_MS (a timer writes the latest time later).
   */
  async markUsed(id: string, time: number): Promise<void> {
    const r = this.records.get(id);
    const now = this.clock.now();
    // A gateway's clock may run ahead a little; never record a use in the future.
    const at = Math.min(time, now);
    if (!r || !Number.isFinite(at) || at <= this.lastUseOf(r)) return;
    this.usedAt.set(id, at);
    this.pendingUse.add(id);
    const last = this.lastUseWrite.get(id);
    if (last === undefined || now - last >= USAGE_WRITE_INTERVAL_MS) return this.writeUse(id);
    if (!this.useTimers.has(id)) {
      this.useTimers.set(id, this.clock.setTimer(last + USAGE_WRITE_INTERVAL_MS - now, () => {
        this.useTimers.delete(id);
        void this.writeUse(id).catch(() => { /* kept pending; the next use or flush retries */ });
      }));
    }
  }

  /** Writes every pending last-used time now (at shutdown). */
  async flush(): Promise<void> {
    for (const t of this.useTimers.values()) t.cancel();
    this.useTimers.clear();
    await Promise.all([...this.pendingUse].map((id) => this.writeUse(id)));
    await this.mutex.idle();
  }

  /** What gateways need: the hashing key and the keys usable now (never revoked or expired ones). */
  snapshot(): ApiKeySnapshot {
    return { hashKey: this.hashKey.toString('base64url'), entries: this.snapshotEntries() };
  }

  /** Active keys, and rotated ones still in their overlap (with `notAfter`), sorted by id. */
  snapshotEntries(): ApiKeySnapshotEntry[] {
    const now = this.clock.now();
    return [...this.records.values()].filter((r) => usable(r, now)).sort((a, b) => (a.id < b.id ? -1 : 1)).map((r) => ({
      hash: r.hash, id: r.id, owner: r.owner, roles: [...r.roles],
      ...(r.routes ? { routes: [...r.routes] } : {}),
      ...(r.expiresAt ? { expiresAt: r.expiresAt } : {}),
      ...(r.overlapUntil ? { notAfter: r.overlapUntil } : {}),
    }));
  }

  /**
   * The revocation feed gateways poll between snapshots: ids of keys revoked at or after `since`
   * (a cursor this method returned; absent = all) that would otherwise still work. Pass `cursor`
   * back next time; an id may come twice, which is harmless.
   */
  revokedSince(since?: string): { cursor: string; revoked: string[] } {
    const now = this.clock.now();
    let from = -Infinity;
    if (since !== undefined) {
      from = Date.parse(since);
      if (!/^\d{4}-\d{2}-\d{2}T/.test(since) || Number.isNaN(from)) throw invalid('since must be a cursor returned by this endpoint (an ISO 8601 time)');
    }
    const revoked: string[] = [];
    for (const r of this.records.values()) {
      if (!r.revokedAt || Date.parse(r.revokedAt) < from) continue;
      const end = endOf(r);
      if (end === undefined || end > now) revoked.push(r.id);
    }
    return { cursor: iso(now), revoked: revoked.sort() };
  }

  private remember(r: ApiKeyRecord): void {
    this.records.set(r.id, r);
    this.index.set(lookupKeyOf(Buffer.from(r.hash, 'base64url')), r.id);
  }

  private checkCapacity(now: number): void {
    let live = 0;
    for (const r of this.records.values()) if (usable(r, now)) live++;
    if (live >= API_KEY_LIMITS.active) throw invalid(`too many usable API keys (${API_KEY_LIMITS.active}): revoke unused ones`);
  }

  /** Generates a key and an unused id, stores the record (hash only), and indexes it. */
  private async insertNew(fields: Omit<ApiKeyRecord, 'id' | 'hash'>): Promise<{ key: string; record: ApiKeyRecord }> {
    for (let attempt = 0; attempt < 5; attempt++) {
      const key = generateApiKey();
      const hash = hashApiKey(this.hashKey, key);
      const record: ApiKeyRecord = { id: `ak_${randomBase62(12)}`, hash: hash.toString('base64url'), ...fields };
      if (this.index.has(lookupKeyOf(hash))) continue;
      if (!(await this.store.insert(NS.apiKeys, record.id, record))) continue;
      this.remember(record);
      return { key, record };
    }
    throw new PortcullisError('PCL_ERR_INTERNAL', 'could not allocate an unused API key id');
  }

  private async writeUse(id: string): Promise<void> {
    await this.mutex.run(id, async () => {
      const r = this.records.get(id);
      if (!this.pendingUse.has(id) || !r) return;
      await this.persist(r);
    });
  }

  /** Writes a record (with the newest known use) and caches it; callers hold the id's mutex. */
  private async persist(r: ApiKeyRecord): Promise<void> {
    const next = this.withUse(r);
    const wroteUse = this.pendingUse.delete(next.id);
    try {
      await this.store.put(NS.apiKeys, next.id, next);
    } catch (err) {
      if (wroteUse) this.pendingUse.add(next.id);
      throw err;
    }
    this.records.set(next.id, next);
    if (wroteUse) this.lastUseWrite.set(next.id, this.clock.now());
  }

  private lastUseOf(r: ApiKeyRecord): number {
    return Math.max(this.usedAt.get(r.id) ?? -Infinity, r.lastUsedAt ? Date.parse(r.lastUsedAt) : -Infinity);
  }

  private withUse(r: ApiKeyRecord): ApiKeyRecord {
    const t = this.lastUseOf(r);
    return Number.isFinite(t) ? { ...r, lastUsedAt: iso(t) } : r;
  }

  private audit(action: 'apikey.create' | 'apikey.revoke' | 'apikey.rotate', actor: ApiKeyActor, r: ApiKeyRecord, extra: Record<string, string> = {}): void {
    // The key id, name and scopes; never the key or its hash.
    publishAudit({
      type: 'admin', time: iso(this.clock.now()), ...(actor.requestId ? { requestId: actor.requestId } : {}), component: 'control', action, outcome: 'success',
      who: { sub: actor.by ?? 'admin' },
      detail: {
        id: r.id, name: r.name, owner: r.owner, roles: r.roles.join(','),
        ...(r.routes ? { routes: r.routes.join(',') } : {}), ...(r.expiresAt ? { expiresAt: r.expiresAt } : {}), ...extra,
      },
    });
  }
}

/** The sealed hashing key from the store, created on first start (a racing replica's wins). */
async function loadOrCreateHashKey(store: Store, sealer: KeySealer, clock: Clock): Promise<Buffer> {
  const saved = await store.get<{ sealed: string }>(NS.meta, HASH_KEY_RECORD);
  if (!saved) {
    const fresh = randomBytes(32);
    await store.insert(NS.meta, HASH_KEY_RECORD, { sealed: await sealer.wrap(fresh, HASH_KEY_LABEL), createdAt: iso(clock.now()) });
    fresh.fill(0);
    return loadOrCreateHashKey(store, sealer, clock);
  }
  const key = Buffer.from(await sealer.unwrap(saved.sealed, HASH_KEY_LABEL));
  if (key.length !== 32) throw new PortcullisError('PCL_ERR_KEY_UNWRAP', `stored key "${HASH_KEY_LABEL}" is not 32 bytes`);
  return key;
}
