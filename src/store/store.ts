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
  /** The CA's issuance log: one record per workload certificate (key = serial, lowercase hex); written once, pruned after expiry. */
  workloadCerts: 'workload_certs',
  /** Revoked workload identities (key = SPIFFE ID); written once, never lifted. */
  workloadRevocations: 'workload_revocations',
} as const;
