// The storage interface every part of the control plane uses. Records are small JSON documents
// in namespaces; adapters (embedded PGlite, PostgreSQL) run the same SQL and pass the same tests.
// Audit events have a table of their own, indexed on time, for search.
import type { AuditEvent } from '../core/events.js';

/** One audit event as kept in the audit store; `id` makes storing the same event twice a no-op. */
export interface StoredAuditEvent {
  id: string;
  event: AuditEvent;
}

/** Search of the audit store: every given filter must match; newest first, at most `limit`. */
export interface AuditQuery {
  /** who.sub or who.clientId equals this. */
  principal?: string;
  /** who.spiffeId (the calling workload) equals this. */
  workload?: string;
  /** what.route equals this (decision events). */
  route?: string;
  decision?: 'allow' | 'deny';
  /** Among the decision's reasons (policy / rule ids). */
  policy?: string;
  component?: string;
  /** ISO 8601; events at or after. */
  since?: string;
  /** ISO 8601; events before. */
  until?: string;
  limit: number;
}

/** The searchable columns of an event, derived the same way by every adapter. */
export function auditColumns(e: AuditEvent): { time: string; component: string; sub: string | null; clientId: string | null; spiffeId: string | null; route: string | null; decision: string | null; policies: string[] } {
  const d = e.type === 'decision' ? e : undefined;
  return {
    time: e.time, component: e.component,
    sub: e.who.sub ?? null, clientId: e.who.clientId ?? null, spiffeId: e.who.spiffeId ?? null,
    route: d?.what.route ?? null, decision: d?.decision ?? null, policies: d?.reasons ?? [],
  };
}

/**
 * Which records of a namespace a filtered operation reaches: every condition given must hold.
 * Member conditions (all but `keyPrefix`) match only records whose value is a JSON object and
 * look at its top-level members only.
 */
export interface RecordFilter {
  /** Keys that start with this; absent or '': every key. */
  keyPrefix?: string;
  /** Members equal to these scalars (a number equals the same number, a string the same string). */
  equals?: Readonly<Record<string, string | number | boolean>>;
  /** Member `field` is a string, one of `values` (an empty list matches nothing). */
  oneOf?: { field: string; values: readonly string[] };
  /** Member `field` is not there. */
  absent?: string;
  /** Member `field` is a number below `value`. */
  below?: { field: string; value: number };
}

/** One record of a compare-and-set (Store.replace). */
export interface RecordChange {
  key: string;
  /** The value it must still have; undefined: it must not exist. */
  expected: unknown;
  next: unknown;
}

export interface Store {
  get<T>(ns: string, key: string): Promise<T | undefined>;
  /** Creates or replaces. */
  put(ns: string, key: string, value: unknown): Promise<void>;
  /** Creates only; returns false when the key already exists (never overwrites). */
  insert(ns: string, key: string, value: unknown): Promise<boolean>;
  list<T>(ns: string): Promise<{ key: string; value: T }[]>;
  delete(ns: string, key: string): Promise<boolean>;
  /** Atomically removes and returns a record: one-time tokens and codes can be taken once only. */
  take<T>(ns: string, key: string): Promise<T | undefined>;
  /**
   * Compare-and-set over several records at once: writes every change's `next` only while every
   * record still equals its `expected` (a value as `get` returned it; JSON equality), or is absent
   * where `expected` is undefined — all in one transaction, or nothing. True when written. Of
   * concurrent replaces from the same values exactly one wins.
   */
  replace(ns: string, changes: readonly RecordChange[]): Promise<boolean>;
  /** The records matching `filter`, in the order of `list`; the filter runs in the store, not in the caller. */
  listWhere<T>(ns: string, filter: RecordFilter): Promise<{ key: string; value: T }[]>;
  /**
   * Merges the members of `patch` into every record matching `filter` whose value is a JSON
   * object (top-level members replaced, others kept), in one atomic statement (a
   * record changed meanwhile is judged again as it is now), and returns the changed records as
   * stored now, in the order of `list`.
   */
  patchWhere<T>(ns: string, filter: RecordFilter, patch: Readonly<Record<string, unknown>>): Promise<{ key: string; value: T }[]>;
  /** Deletes every record matching `filter`, in one atomic statement; returns how many. */
  deleteWhere(ns: string, filter: RecordFilter): Promise<number>;
  /** Stores events whose id is new (others are skipped); returns how many were new. */
  addAuditEvents(events: StoredAuditEvent[]): Promise<number>;
  queryAuditEvents(q: AuditQuery): Promise<StoredAuditEvent[]>;
  close(): Promise<void>;
}

/** Namespaces in use, in one place so two modules never collide. */
export const NS = {
  ca: 'ca',
  signingKeys: 'signing_keys',
  /** The signing keys' rotation log (key = `genesis`, `from:<kid>`, `revoke:<kid>`); written once per key, never changed. */
  signingKeyRotations: 'signing_key_rotations',
  users: 'users',
  joinTokens: 'join_tokens',
  authCodes: 'auth_codes',
  /** Refresh tokens (key `t:<sha256>`), their spent marks (`u:<sha256>`) and families (`f:<id>`). */
  refreshTokens: 'refresh_tokens',
  /** Revoked access tokens (key = jti) with their `exp`, kept until then. */
  revokedTokens: 'revoked_tokens',
  /**
   * OAuth clients registered through the admin API (key = client_id): `{ registration, createdAt,
   * updatedAt }`, public keys only, never a secret. Config-file clients are not stored here.
   */
  oauthClients: 'oauth_clients',
  /** private_key_jwt assertion ids seen (key = `<client_id>:<sha256(jti)>`), kept until the assertion's exp. */
  clientAssertions: 'client_assertion_jtis',
  adminTokens: 'admin_tokens',
  meta: 'meta',
  /** KMS keyring records (key = keyring name). */
  kmsKeyrings: 'kms_keyrings',
  /** KMS key versions, wrapped by the root key (key = `<keyring>/<version>`); written once, never changed. */
  kmsKeyVersions: 'kms_key_versions',
  /** KMS usage reservations per aes256-gcm version (key = `<keyring>/<version>`); only ever grow. */
  kmsUsage: 'kms_usage',
  /** Secrets store: one metadata record per secret path (versions, deletion marks; never values). */
  secrets: 'secrets',
  /** Secrets store: one record per kept version (key = `<path>@<version>`) holding its ciphertext. */
  secretVersions: 'secret_versions',
  /** Policy bundles by version (key = version), and the active one (key = `active`). */
  policies: 'policies',
  /** Temporary blocks of an address, user or workload (key = `<kind>:<value>`). */
  blocks: 'blocks',
  /** The newest signed checkpoint each component's audit log published (key = component). */
  auditCheckpoints: 'audit_checkpoints',
  /** API keys: one record per key id (`ak_…`), holding only the keyed hash of the key, never the key. */
  apiKeys: 'api_keys',
  /** Sign-ins waiting for their second factor (key = sha256 of the form's challenge), kept 5 minutes. */
  loginChallenges: 'login_challenges',
  /**
   * Device authorizations (RFC 8628), keys by kind: `d:` device code, `u:` user code, `p:` polling,
   * `a:` the person's decision, `c:` consent ticket, `r:` redeemed; every key a SHA-256, never a code.
   */
  deviceCodes: 'device_codes',
  /** The CA's issuance log: one record per workload certificate (key = serial, lowercase hex); written once, pruned after expiry. */
  workloadCerts: 'workload_certs',
  /** Revoked workload identities (key = SPIFFE ID); written once, never lifted. */
  workloadRevocations: 'workload_revocations',
  /**
   * Login throttle counters (src/identity/login-throttle.ts): `p:<account hash>:<network>`,
   * `s:<source>`, `a:<account hash>`; each deleted once past its `expiresAt`.
   */
  loginThrottle: 'login_throttle',
} as const;
