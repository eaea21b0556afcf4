// The storage interface every part of the control plane uses. Records are small JSON documents
// in namespaces; adapters (embedded PGlite, PostgreSQL) run the same SQL and pass the same tests.

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
  close(): Promise<void>;
}

/** Namespaces in use, in one place so two modules never collide. */
export const NS = {
  ca: 'ca',
  signingKeys: 'signing_keys',
  users: 'users',
  joinTokens: 'join_tokens',
  authCodes: 'auth_codes',
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
} as const;
