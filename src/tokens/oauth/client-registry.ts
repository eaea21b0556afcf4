// Where the OAuth endpoints look clients up, per request: the fixed registrations first (the CLI's
// own public client and the config file's tokens.clients, validated at start, never changed at run
// time), then the clients registered through the admin API, kept in the store (NS.oauthClients).
//
// The stored ones are read through a small cache: the whole set (a few hundred records at most),
// reloaded when it is older than `refreshMs` (2 s). A change made through this replica reloads it
// before the change is answered, so it takes effect here at once; another control-plane replica
// sees it at its next reload, within `refreshMs`. The same idea as API-key revocation reaching the
// gateways by a 2-second poll, with no channel to keep alive: the store is the only truth.
// A lookup that needs a reload and cannot read the store fails (the request gets server_error):
// a removed client must never be served from a copy that may be stale.
import { systemClock, type Clock } from '../../core/clock.js';
import { RESERVED_CLIENT_IDS } from '../../core/config/tokens-check.js';
import { PortcullisError } from '../../core/errors.js';
import { silentLogger, type Logger } from '../../core/log.js';
import { NS, type Store } from '../../store/store.js';
import { indexClients, validateClient, type ConfidentialClient, type OAuthClient } from './clients.js';
import type { JWK } from 'jose';

/** How the endpoints find a client: what ResolvedDeps.clients offers. */
export interface ClientLookup {
  /** The registration of `clientId`, or undefined for an unknown (or removed) client. */
  get(clientId: string): Promise<OAuthClient | undefined>;
}

/** One stored registration (NS.oauthClients, key = client_id). */
interface StoredClient {
  registration: OAuthClient;
  createdAt: string;
  updatedAt: string;
}

/** A client as the admin API shows it. */
export type ClientEntry = OAuthClient & { source: 'config' | 'api'; createdAt?: string; updatedAt?: string };

/** Default age after which the cached set of stored clients is read again. */
export const CLIENT_CACHE_REFRESH_MS = 2000;
/** Most clients the API may register: bounds the cache and each reload. */
export const MAX_REGISTERED_CLIENTS = 1000;

interface Snapshot {
  /** Order of the load that produced it: a slower, older load never replaces a newer one. */
  seq: number;
  loadedAt: number;
  byId: ReadonlyMap<string, OAuthClient>;
}

export class ClientRegistry implements ClientLookup {
  private snapshot: Snapshot = { seq: 0, loadedAt: -Infinity, byId: new Map() };
  private loading: Promise<Snapshot> | undefined;
  private seq = 0;

  private constructor(
    private readonly fixedById: ReadonlyMap<string, OAuthClient>,
    private readonly store: Store | undefined,
    private readonly clock: Clock,
    private readonly refreshMs: number,
    private readonly logger: Logger,
  ) {}

  /** The fixed registrations only: nothing can be registered at run time (the OAuth router's default). */
  static fixed(clients: OAuthClient[]): ClientRegistry {
    return new ClientRegistry(indexClients(clients), undefined, systemClock, CLIENT_CACHE_REFRESH_MS, silentLogger);
  }

  /** Fixed registrations plus those in the store, read once now (a store that cannot be read fails the start). */
  static async open(o: { store: Store; fixed: OAuthClient[]; clock?: Clock; refreshMs?: number; logger?: Logger }): Promise<ClientRegistry> {
    const r = new ClientRegistry(indexClients(o.fixed), o.store, o.clock ?? systemClock, o.refreshMs ?? CLIENT_CACHE_REFRESH_MS, o.logger ?? silentLogger);
    const loaded = await r.reload();
    for (const id of loaded.byId.keys()) {
      if (r.fixedById.has(id)) r.logger.warn({ clientId: id }, 'a client registered through the API has the client_id of a config-file client: the config file wins');
    }
    return r;
  }

  async get(clientId: string): Promise<OAuthClient | undefined> {
    const fixed = this.fixedById.get(clientId);
    if (fixed) return fixed;
    // Workloads (client_id = SPIFFE ID) are never registered: no store read on the token hot path.
    if (!this.store || clientId.toLowerCase().startsWith('spiffe:')) return undefined;
    return (await this.current()).byId.get(clientId);
  }

  /** True for the CLI's client and the config file's: the API can neither change nor remove them. */
  isFixed(clientId: string): boolean {
    return this.fixedById.has(clientId) || RESERVED_CLIENT_IDS.includes(clientId);
  }

  /** Scopes of every client known now without a store read (RFC 8414 scopes_supported is RECOMMENDED, not exhaustive). */
  knownScopes(): string[] {
    const scopes = new Set<string>();
    for (const byId of [this.fixedById, this.snapshot.byId]) for (const c of byId.values()) for (const s of c.scopes ?? []) scopes.add(s);
    return [...scopes].sort();
  }

  /** Every client, fixed ones first (`source: config`), then the stored ones as the store has them now. */
  async list(): Promise<ClientEntry[]> {
    const out: ClientEntry[] = [...this.fixedById.values()].map((c) => ({ ...c, source: 'config' }));
    for (const { value } of await this.readStored()) {
      if (!this.fixedById.has(value.registration.clientId)) out.push(entry(value));
    }
    return out;
  }

  /** One client; PCL_ERR_CLIENT_NOT_FOUND when there is none. */
  async show(clientId: string): Promise<ClientEntry> {
    const fixed = this.fixedById.get(clientId);
    if (fixed) return { ...fixed, source: 'config' };
    const stored = await this.readOne(clientId);
    if (!stored) throw notFound(clientId);
    return entry(stored);
  }

  /**
   * Registers a client (validated as every registration is; create-only, so of two concurrent
   * registrations of one id exactly one wins). It works on this replica when this resolves.
   */
  async register(input: OAuthClient): Promise<ClientEntry> {
    const store = this.writable();
    const registration = validateClient(input);
    if (this.isFixed(registration.clientId)) throw immutable(registration.clientId);
    if ((await store.list(NS.oauthClients)).length >= MAX_REGISTERED_CLIENTS) {
      throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `too many registered OAuth clients (${MAX_REGISTERED_CLIENTS}): remove unused ones`);
    }
    const now = new Date(this.clock.now()).toISOString();
    const record: StoredClient = { registration, createdAt: now, updatedAt: now };
    if (!(await store.insert(NS.oauthClients, registration.clientId, record))) {
      throw new PortcullisError('PCL_ERR_CLIENT_EXISTS', `OAuth client "${registration.clientId}" is already registered`);
    }
    await this.reload();
    return entry(record);
  }

  /** Removes a registered client; its next request at any endpoint is invalid_client. Returns what it was. */
  async remove(clientId: string): Promise<ClientEntry> {
    const store = this.writable();
    if (this.isFixed(clientId)) throw immutable(clientId);
    const taken = await store.take<StoredClient>(NS.oauthClients, clientId);
    if (!taken) throw notFound(clientId);
    await this.reload();
    return entry(taken);
  }

  /**
   * Replaces the public keys of a private_key_jwt client (key rotation: register old and new, then
   * the new alone). Assertions signed with a key no longer listed fail from then on.
   */
  async setKeys(clientId: string, jwks: { keys: JWK[] }): Promise<ClientEntry> {
    const store = this.writable();
    if (this.isFixed(clientId)) throw immutable(clientId);
    // Compare-and-set: a concurrent change (another key update, a removal) is never overwritten.
    for (let attempt = 0; attempt < 3; attempt++) {
      const current = await store.get<StoredClient>(NS.oauthClients, clientId);
      if (!current) throw notFound(clientId);
      const c = current.registration;
      if (c.type !== 'confidential' || (c.authMethod ?? 'private_key_jwt') !== 'private_key_jwt') {
        throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `OAuth client "${clientId}" does not authenticate with private_key_jwt: it has no keys to replace`);
      }
      const registration = validateClient({ ...c, jwks } satisfies ConfidentialClient);
      const next: StoredClient = { ...current, registration, updatedAt: new Date(this.clock.now()).toISOString() };
      if (await store.replace(NS.oauthClients, [{ key: clientId, expected: current, next }])) {
        await this.reload();
        return entry(next);
      }
    }
    throw new PortcullisError('PCL_ERR_STORE', `OAuth client "${clientId}" kept changing while its keys were replaced: try again`);
  }

  private writable(): Store {
    if (!this.store) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', 'this token service has fixed clients only');
    return this.store;
  }

  /** The cached set, reloaded first when older than refreshMs (one load at a time). */
  private async current(): Promise<Snapshot> {
    if (this.clock.now() - this.snapshot.loadedAt < this.refreshMs) return this.snapshot;
    this.loading ??= this.reload().finally(() => { this.loading = undefined; });
    return this.loading;
  }

  /** Reads every stored client now; the result replaces the cache unless a newer load already did. */
  private async reload(): Promise<Snapshot> {
    const seq = ++this.seq;
    const loadedAt = this.clock.now();
    const byId = new Map<string, OAuthClient>();
    for (const { key, value } of await this.readStored()) byId.set(key, value.registration);
    const next: Snapshot = { seq, loadedAt, byId };
    if (seq > this.snapshot.seq) this.snapshot = next;
    return this.snapshot;
  }

  /** Stored records, each validated again: a record that no longer passes (edited by hand, an older rule) authenticates nothing. */
  private async readStored(): Promise<{ key: string; value: StoredClient }[]> {
    if (!this.store) return [];
    const out: { key: string; value: StoredClient }[] = [];
    for (const { key, value } of await this.store.list<StoredClient>(NS.oauthClients)) {
      const checked = this.check(key, value);
      if (checked) out.push({ key, value: checked });
    }
    return out;
  }

  private async readOne(clientId: string): Promise<StoredClient | undefined> {
    if (!this.store) return undefined;
    const value = await this.store.get<StoredClient>(NS.oauthClients, clientId);
    return value === undefined ? undefined : this.check(clientId, value);
  }

  private check(key: string, value: StoredClient): StoredClient | undefined {
    try {
      const registration = validateClient(value.registration);
      if (registration.clientId !== key) throw new PortcullisError('PCL_ERR_STORE', 'record key differs from its client_id');
      return { ...value, registration };
    } catch (err) {
      this.logger.error({ clientId: key, err: err instanceof Error ? err.message : String(err) }, 'stored OAuth client registration is invalid: ignored');
      return undefined;
    }
  }
}

function entry(s: StoredClient): ClientEntry {
  return { ...s.registration, source: 'api', createdAt: s.createdAt, updatedAt: s.updatedAt };
}

function notFound(clientId: string): PortcullisError {
  return new PortcullisError('PCL_ERR_CLIENT_NOT_FOUND', `no OAuth client "${clientId}" registered through the API`);
}

function immutable(clientId: string): PortcullisError {
  return new PortcullisError('PCL_ERR_CLIENT_IMMUTABLE', `OAuth client "${clientId}" comes from the config file (or is the CLI's own): change portcullis.yaml and restart instead`);
}
