// The token service's signing keys and their lifecycle (docs/keys.md):
//   next     published in the JWKS, signs nothing yet, so every data plane has it before it signs;
//   current  signs new tokens (exactly one);
//   retired  stopped signing, still published until the last token it signed has expired;
//   removed  out of the JWKS; its record (the private key) is deleted by prune().
// Key records (NS.signingKeys) hold only immutable key material: ES256 (P-256) or EdDSA (Ed25519),
// kid = RFC 7638 thumbprint, the private JWK wrapped with associated data naming the kid, so a
// record cannot be swapped for another; the public half is derived on load and its thumbprint
// re-checked, so nothing stored in clear is trusted. The lifecycle is a log (NS.signingKeyRotations)
// written with insert-only records: `genesis`, then one `from:<kid>` per rotation and
// `revoke:<kid>` for forced ones. Only one writer can ever create each entry, so control-plane
// replicas racing to rotate agree on the outcome, and every state is derived from the log alone.
import { calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK, type CryptoKey, type JWK } from 'jose';
import { systemClock, type Clock } from '../core/clock.js';
import { PortcullisError } from '../core/errors.js';
import type { KeySealer } from '../kms/key-sealer.js';
import { NS, type Store } from '../store/store.js';

/** JWS algorithms a signing key can have. */
export type SigningAlg = 'ES256' | 'EdDSA';
export const SIGNING_ALGS: readonly SigningAlg[] = ['ES256', 'EdDSA'];
/** The algorithm of new keys unless `alg` says otherwise. */
export const SIGNING_ALG = 'ES256';

export type KeyState = 'next' | 'current' | 'retired' | 'removed';

/** The data planes' snapshot refresh period (SnapshotSource's default, src/dataplane/snapshot.ts). */
export const DATA_PLANE_REFRESH_MS = 30_000;
/** Default publish lead: two data-plane refreshes, so every data plane has the next key before it signs. */
export const DEFAULT_PUBLISH_LEAD_MS = 2 * DATA_PLANE_REFRESH_MS;
/** Default interval at which a replica re-reads the keys (KeyRotationScheduler), i.e. how late it may learn of a rotation. */
export const DEFAULT_RELOAD_MS = 10_000;
/** Default longest token lifetime: the default access-token TTL (900 s). */
export const DEFAULT_MAX_TOKEN_LIFETIME_MS = 900_000;
/** Default clock skew verifiers accept on `exp` (tokens.clockSkew, 30 s). */
export const DEFAULT_CLOCK_SKEW_MS = 30_000;
/** A key record no log entry names (a writer that lost a race, or crashed) is deleted after this long. */
export const ORPHAN_GRACE_MS = 3_600_000;

export interface SigningKeysOptions {
  store: Store;
  wrapper: KeySealer;
  /** Default: the system clock. */
  clock?: Clock;
  /** Algorithm of keys created from now on; existing keys keep theirs. Default 'ES256'. */
  alg?: SigningAlg;
  /** Longest lifetime of a token these keys sign (the access-token TTL). Default 900 000 ms. */
  maxTokenLifetimeMs?: number;
  /** Clock skew verifiers accept on `exp`. Default 30 000 ms. */
  clockSkewMs?: number;
  /** How long a `next` key must have been published before a rotation (not forced) promotes it. Default 60 000 ms. */
  publishLeadMs?: number;
  /**
   * How long another replica may go on signing with a key after it was rotated out (its reload
   * interval); added to the retired key's time in the JWKS. Default 10 000 ms.
   */
  replicaLagMs?: number;
}

/** What the admin API and the CLI show of a key: never any key material. Times are ISO 8601. */
export interface SigningKeyInfo {
  kid: string;
  alg: SigningAlg;
  state: KeyState;
  createdAt: string;
  /** When it entered the JWKS. */
  publishedAt: string;
  /** When it started signing (current and retired keys). */
  activatedAt?: string;
  /** When it stopped signing (retired and removed keys). */
  retiredAt?: string;
  /** When it leaves (or left) the JWKS (retired and removed keys). */
  retireAt?: string;
}

export interface RotationResult {
  /** False when another replica rotated this key first; the outcome below is then that replica's. */
  rotated: boolean;
  /** The key that stopped signing. */
  from: string;
  /** The key that signs from now on (the former `next`). */
  to: string;
  /** The new `next` key. */
  next: string;
  force: boolean;
  /** ISO 8601 time of the rotation. */
  at: string;
  /** ISO 8601 time `from` leaves the JWKS (= `at` when forced). */
  retireAt: string;
}

/** Stored key record (NS.signingKeys, key = kid); never changed once written. */
interface SigningKeyRecord {
  kid: string;
  alg: SigningAlg;
  /** KeySealer envelope of the private JWK (JSON), aad `signing-key:<kid>`. */
  wrapped: string;
  createdAt: string;
}

interface GenesisEntry { kind: 'genesis'; to: string; next: string; at: string; retired: string[] }
interface RotationEntry { kind: 'rotation'; from: string; to: string; next: string; at: string; retireAt: string; force: boolean; by: string }
interface RevokeEntry { kind: 'revoke'; kid: string; at: string; by: string }
type LogEntry = GenesisEntry | RotationEntry | RevokeEntry;

interface LoadedKey {
  kid: string;
  alg: SigningAlg;
  createdAt: string;
  publicJwk: JWK;
  privateKey: CryptoKey;
}

/** A key's place in the lifecycle, as derived from the log (times in ms). */
interface Slot {
  kid: string;
  publishedAt: number;
  activatedAt?: number;
  retiredAt?: number;
  retireAt?: number;
}

interface View {
  current: Slot;
  next: Slot;
  /** Rotated-out keys, most recently retired first, expired ones included. */
  retired: Slot[];
  /** Every kid the log names. */
  referenced: Set<string>;
  /** Rotation entries by the kid they rotated out. */
  rotations: Map<string, RotationEntry>;
}

export class SigningKeys {
  private view: View | undefined;
  private readonly loaded = new Map<string, LoadedKey>();
  private records: SigningKeyRecord[] = [];
  /** Reloads, rotations and prunes run one at a time so the view is never swapped mid-decision. */
  private queue: Promise<unknown> = Promise.resolve();
  private readonly store: Store;
  private readonly wrapper: KeySealer;
  private readonly clock: Clock;
  private readonly alg: SigningAlg;
  /** Publish lead in ms (see SigningKeysOptions.publishLeadMs). */
  readonly publishLeadMs: number;
  /** Replica lag in ms (see SigningKeysOptions.replicaLagMs). */
  readonly replicaLagMs: number;
  /** How long a retired key stays published after it stopped signing: replica lag + token lifetime + skew. */
  readonly retireWindowMs: number;

  private constructor(o: SigningKeysOptions) {
    this.store = o.store;
    this.wrapper = o.wrapper;
    this.clock = o.clock ?? systemClock;
    this.alg = o.alg ?? SIGNING_ALG;
    if (!SIGNING_ALGS.includes(this.alg)) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `alg must be one of ${SIGNING_ALGS.join(', ')}`);
    const ms = (name: string, v: number | undefined, dflt: number): number => {
      const value = v ?? dflt;
      if (!Number.isSafeInteger(value) || value < 0) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `${name} must be a non-negative whole number of milliseconds`);
      return value;
    };
    this.publishLeadMs = ms('publishLeadMs', o.publishLeadMs, DEFAULT_PUBLISH_LEAD_MS);
    this.replicaLagMs = ms('replicaLagMs', o.replicaLagMs, DEFAULT_RELOAD_MS);
    this.retireWindowMs = this.replicaLagMs + ms('maxTokenLifetimeMs', o.maxTokenLifetimeMs, DEFAULT_MAX_TOKEN_LIFETIME_MS) + ms('clockSkewMs', o.clockSkewMs, DEFAULT_CLOCK_SKEW_MS);
  }

  /**
   * Loads the keys and their lifecycle from the store; on first start creates the first `current`
   * and `next` keys (replicas starting together agree: one genesis entry wins, the others' keys are
   * discarded). Keys stored by an earlier version without a log are adopted: the newest signs on,
   * the others are retired.
   */
  static async loadOrCreate(opts: SigningKeysOptions): Promise<SigningKeys> {
    const keys = new SigningKeys(opts);
    await keys.serial(async () => {
      await keys.ensureGenesis();
      await keys.load();
    });
    return keys;
  }

  /** The public JWK Set for /.well-known/jwks.json and data-plane snapshots: current, next and unexpired retired keys; public members only. */
  jwks(): { keys: JWK[] } {
    const now = this.clock.now();
    const v = this.viewOrThrow();
    const slots = [v.current, v.next, ...v.retired.filter((s) => (s.retireAt ?? 0) > now)];
    const out: JWK[] = [];
    for (const s of slots) {
      const k = this.loaded.get(s.kid);
      if (k) out.push({ ...k.publicJwk });
    }
    return { keys: out };
  }

  /** The key new tokens are signed with. */
  current(): { kid: string; alg: SigningAlg; key: CryptoKey } {
    const k = this.loaded.get(this.viewOrThrow().current.kid);
    // load() never installs a view whose current key did not load.
    if (!k) throw new PortcullisError('PCL_ERR_INTERNAL', 'no signing key loaded');
    return { kid: k.kid, alg: k.alg, key: k.privateKey };
  }

  /** Every key still held in the store, with its state now: current, next, then retired/removed newest first. */
  list(): SigningKeyInfo[] {
    const now = this.clock.now();
    const v = this.viewOrThrow();
    const held = new Map(this.records.map((r) => [r.kid, r]));
    const info = (s: Slot, state: KeyState): SigningKeyInfo | undefined => {
      const r = held.get(s.kid);
      if (!r) return undefined;
      const iso = (t: number | undefined): string | undefined => (t === undefined ? undefined : new Date(t).toISOString());
      const out: SigningKeyInfo = { kid: s.kid, alg: r.alg, state, createdAt: r.createdAt, publishedAt: new Date(s.publishedAt).toISOString() };
      const activatedAt = iso(s.activatedAt);
      const retiredAt = iso(s.retiredAt);
      const retireAt = iso(s.retireAt);
      if (activatedAt) out.activatedAt = activatedAt;
      if (retiredAt) out.retiredAt = retiredAt;
      if (retireAt) out.retireAt = retireAt;
      return out;
    };
    const rows = [info(v.current, 'current'), info(v.next, 'next'), ...v.retired.map((s) => info(s, (s.retireAt ?? 0) > now ? 'retired' : 'removed'))];
    return rows.filter((r): r is SigningKeyInfo => r !== undefined);
  }

  /** When the current key started signing (ms): the scheduler's reference, the same on every replica and after restarts. */
  activatedAt(): number {
    const c = this.viewOrThrow().current;
    return c.activatedAt ?? c.publishedAt;
  }

  /** Re-reads keys and log from the store (other replicas' rotations). */
  reload(): Promise<void> {
    return this.serial(() => this.load());
  }

  /**
   * Promotes `next` to `current`, creates a new `next`, retires the old `current` (published for
   * retireWindowMs more). Reloads first, so the decision is taken on the store's state. Refused with
   * PCL_ERR_KEY_ROTATION_TOO_EARLY while `next` has been published for less than publishLeadMs,
   * unless `force`: then the old key also leaves the JWKS at once and tokens it signed are refused
   * (for a compromised key). `by` names who asked, for the log (default 'admin').
   */
  rotate(opts: { force?: boolean; by?: string } = {}): Promise<RotationResult> {
    return this.serial(async () => {
      await this.load();
      const { current, next } = this.viewOrThrow();
      const force = opts.force === true;
      const by = opts.by ?? 'admin';
      const now = this.clock.now();
      const published = now - next.publishedAt;
      if (!force && published < this.publishLeadMs) {
        throw new PortcullisError('PCL_ERR_KEY_ROTATION_TOO_EARLY', `the next key has been published for ${Math.max(0, Math.floor(published / 1000))} s; a rotation needs ${Math.ceil(this.publishLeadMs / 1000)} s (or force)`);
      }
      const newKid = await this.createKey(this.alg);
      const entry: RotationEntry = {
        kind: 'rotation', from: current.kid, to: next.kid, next: newKid, at: iso(now),
        retireAt: iso(force ? now : now + this.retireWindowMs), force, by,
      };
      const won = await this.store.insert(NS.signingKeyRotations, `from:${current.kid}`, entry);
      if (!won) await this.discard([newKid]);
      // Even when another replica rotated first, a forced rotation still takes the key out of the JWKS.
      if (force) await this.store.insert(NS.signingKeyRotations, `revoke:${current.kid}`, { kind: 'revoke', kid: current.kid, at: iso(now), by } satisfies RevokeEntry);
      await this.load();
      const v = this.viewOrThrow();
      const applied = v.rotations.get(current.kid);
      const old = v.retired.find((s) => s.kid === current.kid);
      // The entry `from:<current>` exists now (ours or the winner's), so load() put the old key among the retired.
      if (!applied || !old) throw new PortcullisError('PCL_ERR_STORE', 'the rotation log does not show the rotation just written');
      return { rotated: won, from: applied.from, to: applied.to, next: applied.next, force: applied.force || force, at: applied.at, retireAt: iso(old.retireAt ?? now) };
    });
  }

  /**
   * Deletes the records of removed keys (their private keys are destroyed; the log keeps kid and
   * times) and of keys no log entry names after ORPHAN_GRACE_MS. Returns the deleted kids.
   */
  prune(): Promise<string[]> {
    return this.serial(async () => {
      await this.load();
      const now = this.clock.now();
      const v = this.viewOrThrow();
      const removed = new Set(v.retired.filter((s) => (s.retireAt ?? 0) <= now).map((s) => s.kid));
      const doomed = this.records.filter((r) => removed.has(r.kid) || (!v.referenced.has(r.kid) && now - Date.parse(r.createdAt) >= ORPHAN_GRACE_MS));
      for (const r of doomed) await this.store.delete(NS.signingKeys, r.kid);
      if (doomed.length > 0) await this.load();
      return doomed.map((r) => r.kid);
    });
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const result = this.queue.then(fn);
    this.queue = result.catch(() => undefined);
    return result;
  }

  private viewOrThrow(): View {
    // loadOrCreate installs a view before it returns the instance.
    if (!this.view) throw new PortcullisError('PCL_ERR_INTERNAL', 'signing keys not loaded');
    return this.view;
  }

  private async ensureGenesis(): Promise<void> {
    if (await this.store.get(NS.signingKeyRotations, 'genesis')) return;
    const existing = (await this.store.list<SigningKeyRecord>(NS.signingKeys)).map((r) => r.value);
    // The choice the previous version made (newest, then smallest kid), so its signing key signs on.
    existing.sort((a, b) => (a.createdAt === b.createdAt ? (a.kid < b.kid ? -1 : 1) : a.createdAt < b.createdAt ? 1 : -1));
    const mine: string[] = [];
    const to = existing[0]?.kid ?? (await this.createKey(this.alg));
    if (!existing[0]) mine.push(to);
    const next = await this.createKey(this.alg);
    mine.push(next);
    const genesis: GenesisEntry = { kind: 'genesis', to, next, at: iso(this.clock.now()), retired: existing.slice(1).map((r) => r.kid) };
    if (!(await this.store.insert(NS.signingKeyRotations, 'genesis', genesis))) await this.discard(mine);
  }

  /** Deletes keys this instance created for an entry another replica wrote first, unless the log names them. */
  private async discard(kids: string[]): Promise<void> {
    const named = new Set<string>();
    for (const { value: e } of await this.store.list<LogEntry>(NS.signingKeyRotations)) {
      if (e.kind === 'genesis') [e.to, e.next, ...(Array.isArray(e.retired) ? e.retired : [])].forEach((k) => named.add(k));
      else if (e.kind === 'rotation') [e.from, e.to, e.next].forEach((k) => named.add(k));
    }
    for (const kid of kids) if (!named.has(kid)) await this.store.delete(NS.signingKeys, kid);
  }

  /** Reads records and log, derives the view, loads the keys it needs, then swaps everything in at once. */
  private async load(): Promise<void> {
    const records = (await this.store.list<SigningKeyRecord>(NS.signingKeys)).map((r) => r.value);
    const log = await this.store.list<LogEntry>(NS.signingKeyRotations);
    const view = deriveView(log, this.retireWindowMs);
    const byKid = new Map(records.map((r) => [r.kid, r]));
    const now = this.clock.now();
    const loaded = new Map<string, LoadedKey>();
    const need = async (kid: string, required: boolean): Promise<void> => {
      const cached = this.loaded.get(kid);
      if (cached) return void loaded.set(kid, cached);
      const r = byKid.get(kid);
      if (!r) {
        if (required) throw new PortcullisError('PCL_ERR_STORE', `the rotation log names signing key ${kid}, which is not in the store`);
        return;
      }
      loaded.set(kid, await loadKey(r, this.wrapper));
    };
    await need(view.current.kid, true);
    await need(view.next.kid, true);
    // A retired key pruned by a replica whose clock runs ahead is simply no longer published.
    for (const s of view.retired) if ((s.retireAt ?? 0) > now) await need(s.kid, false);
    this.view = view;
    this.records = records;
    this.loaded.clear();
    for (const [kid, k] of loaded) this.loaded.set(kid, k);
  }

  private async createKey(alg: SigningAlg): Promise<string> {
    const { privateKey } = await generateKeyPair(alg, { extractable: true });
    const privateJwk = await exportJWK(privateKey);
    const kid = await calculateJwkThumbprint(publicPart(privateJwk));
    const record: SigningKeyRecord = {
      kid,
      alg,
      wrapped: await this.wrapper.wrap(JSON.stringify(privateJwk), aadFor(kid)),
      createdAt: iso(this.clock.now()),
    };
    // A fresh key pair's thumbprint colliding with a stored one would mean a broken generator.
    if (!(await this.store.insert(NS.signingKeys, kid, record))) throw new PortcullisError('PCL_ERR_INTERNAL', 'a new signing key has the kid of a stored one');
    return kid;
  }
}

const iso = (ms: number): string => new Date(ms).toISOString();

const aadFor = (kid: string): string => `signing-key:${kid}`;

/** Parses an ISO time of the log; a log that does not parse fails closed. */
function timeOf(v: unknown, where: string): number {
  const t = typeof v === 'string' ? Date.parse(v) : NaN;
  if (Number.isNaN(t)) throw new PortcullisError('PCL_ERR_STORE', `signing-key log entry ${where} has no valid time`);
  return t;
}

function kidOf(v: unknown, where: string): string {
  if (typeof v !== 'string' || v.length === 0) throw new PortcullisError('PCL_ERR_STORE', `signing-key log entry ${where} names no key`);
  return v;
}

/** Follows the log from genesis through one `from:<kid>` entry per rotation; revocations cut retired keys short. */
function deriveView(log: { key: string; value: LogEntry }[], windowMs: number): View {
  const entries = new Map(log.map((e) => [e.key, e.value]));
  const g = entries.get('genesis');
  if (!g || g.kind !== 'genesis') throw new PortcullisError('PCL_ERR_STORE', 'the signing-key log has no genesis entry');
  const gAt = timeOf(g.at, 'genesis');
  const referenced = new Set<string>();
  const retiredAtGenesis = Array.isArray(g.retired) ? g.retired.map((k) => kidOf(k, 'genesis')) : [];
  let current: Slot = { kid: kidOf(g.to, 'genesis'), publishedAt: gAt, activatedAt: gAt };
  let next: Slot = { kid: kidOf(g.next, 'genesis'), publishedAt: gAt };
  const retired: Slot[] = retiredAtGenesis.map((kid) => ({ kid, publishedAt: gAt, retiredAt: gAt, retireAt: gAt + windowMs }));
  [current.kid, next.kid, ...retiredAtGenesis].forEach((k) => referenced.add(k));
  const rotations = new Map<string, RotationEntry>();
  // Each step consumes one entry, so a longer chain can only be a cycle in a tampered log.
  for (let steps = 0; ; steps++) {
    const r = entries.get(`from:${current.kid}`);
    if (!r) break;
    const where = `from:${current.kid}`;
    if (steps > log.length || r.kind !== 'rotation' || r.from !== current.kid || r.to !== next.kid) {
      throw new PortcullisError('PCL_ERR_STORE', `signing-key log entry ${where} does not follow from the entries before it`);
    }
    const at = timeOf(r.at, where);
    const retireAt = r.force ? at : Math.max(timeOf(r.retireAt, where), at + windowMs);
    retired.unshift({ ...current, retiredAt: at, retireAt });
    rotations.set(r.from, r);
    current = { ...next, activatedAt: at };
    next = { kid: kidOf(r.next, where), publishedAt: at };
    referenced.add(next.kid);
  }
  for (const s of retired) {
    const rv = entries.get(`revoke:${s.kid}`);
    if (rv?.kind === 'revoke') s.retireAt = Math.min(s.retireAt ?? Infinity, timeOf(rv.at, `revoke:${s.kid}`));
  }
  return { current, next, retired, referenced, rotations };
}

async function loadKey(r: SigningKeyRecord, wrapper: KeySealer): Promise<LoadedKey> {
  if (!SIGNING_ALGS.includes(r.alg)) throw new PortcullisError('PCL_ERR_KEY_UNWRAP', `stored key "${aadFor(r.kid)}" has an unknown algorithm`);
  const plain = await wrapper.unwrap(r.wrapped, aadFor(r.kid));
  let privateJwk: JWK;
  try {
    privateJwk = JSON.parse(plain.toString('utf8')) as JWK; // shape checked just below (kty/crv/d)
  } catch (err) {
    throw new PortcullisError('PCL_ERR_KEY_UNWRAP', `stored key "${aadFor(r.kid)}" is not a JWK`, { cause: err });
  } finally {
    plain.fill(0);
  }
  const shapeOk = r.alg === 'ES256'
    ? privateJwk.kty === 'EC' && privateJwk.crv === 'P-256'
    : privateJwk.kty === 'OKP' && privateJwk.crv === 'Ed25519';
  if (!shapeOk || typeof privateJwk.d !== 'string') {
    throw new PortcullisError('PCL_ERR_KEY_UNWRAP', `stored key "${aadFor(r.kid)}" is not a ${r.alg} private key`);
  }
  const pub = publicPart(privateJwk);
  if ((await calculateJwkThumbprint(pub)) !== r.kid) {
    throw new PortcullisError('PCL_ERR_KEY_UNWRAP', `stored key "${aadFor(r.kid)}" does not match its kid`);
  }
  const privateKey = await importJWK({ ...privateJwk, alg: r.alg }, r.alg, { extractable: false });
  // An EC or OKP JWK always imports as a CryptoKey (Uint8Array is only for "oct" keys).
  if (privateKey instanceof Uint8Array) throw new PortcullisError('PCL_ERR_KEY_UNWRAP', 'unexpected key type');
  return {
    kid: r.kid,
    alg: r.alg,
    createdAt: r.createdAt,
    publicJwk: { ...pub, kid: r.kid, alg: r.alg, use: 'sig' },
    privateKey,
  };
}

/** The RFC 7518 / RFC 8037 public members of an EC or OKP key; anything else (d, ext, key_ops) is dropped. */
function publicPart(jwk: JWK): JWK {
  return jwk.kty === 'OKP' ? { kty: jwk.kty, crv: jwk.crv, x: jwk.x } : { kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y };
}
