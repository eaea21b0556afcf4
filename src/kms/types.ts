// The key-management contract (issue 6). Vault's transit engine is the model: named keyrings
// with versions; a ciphertext names its keyring and version so decryption finds the key; a
// context (associated data) binds a ciphertext to where it belongs; plaintext never leaves
// except to the caller that asked for it.

export type KeyType = 'aes256-gcm' | 'hmac-sha256' | 'ecdsa-p256' | 'ed25519';

/** Associated data such as { tenant: 't1', field: 'card' }; canonicalised (sorted keys) before use. */
export type KmsContext = Readonly<Record<string, string>>;

export interface KeyVersionInfo {
  version: number;
  createdAt: string;
  /** Messages encrypted under this version so far (aes256-gcm only; an upper bound after a crash). */
  usage: number;
}

export interface KeyringInfo {
  name: string;
  type: KeyType;
  latestVersion: number;
  /** Versions below this cannot decrypt, sign or verify any more (retired). */
  minDecryptionVersion: number;
  /** Automatic rotation period in ms; undefined = manual only. */
  rotationPeriodMs?: number;
  /** When the scheduler rotates next (ISO time), if scheduled. */
  nextRotationAt?: string;
  versions: KeyVersionInfo[];
}

export interface CreateKeyringOptions {
  type?: KeyType; // default aes256-gcm
  rotationPeriodMs?: number;
}

export interface DataKey {
  /** The raw data key, for the caller to encrypt locally; never stored. */
  plaintext: Buffer;
  /** The same key wrapped by the keyring (a normal ciphertext string). */
  ciphertext: string;
}

export interface Kms {
  /** Creates the keyring, or returns the existing one when type matches (idempotent). */
  ensureKeyring(name: string, opts?: CreateKeyringOptions): Promise<KeyringInfo>;
  getKeyring(name: string): Promise<KeyringInfo | undefined>;
  listKeyrings(): Promise<KeyringInfo[]>;
  /** Adds a new latest version; old versions keep decrypting until retired. */
  rotate(name: string): Promise<KeyringInfo>;
  /** Retires versions below `version` (must be ≤ latest). */
  setMinDecryptionVersion(name: string, version: number): Promise<KeyringInfo>;

  /** `pcl:<keyring>:v<N>:<base64url(nonce ‖ ciphertext ‖ tag)>` */
  encrypt(name: string, plaintext: Buffer, context?: KmsContext): Promise<string>;
  /** Finds keyring and version from the prefix; `expectKeyring`, when given, must match it. */
  decrypt(ciphertext: string, context?: KmsContext, expectKeyring?: string): Promise<Buffer>;
  /** Re-encrypts under the latest version without returning the plaintext; one already at the latest comes back unchanged (authenticated). */
  rewrap(ciphertext: string, context?: KmsContext, expectKeyring?: string): Promise<string>;
  generateDataKey(name: string, context?: KmsContext): Promise<DataKey>;

  /** `pcl:<keyring>:v<N>:<base64url(mac)>` with an hmac-sha256 keyring. */
  hmac(name: string, data: Buffer): Promise<string>;
  verifyHmac(name: string, data: Buffer, mac: string): Promise<boolean>;
  /** `pcl:<keyring>:v<N>:<base64url(signature)>` with an ecdsa-p256 or ed25519 keyring. */
  sign(name: string, data: Buffer): Promise<string>;
  verify(name: string, data: Buffer, signature: string): Promise<boolean>;
  /** Public keys (PEM SPKI) of a signing keyring's live versions. */
  publicKeys(name: string): Promise<{ version: number; pem: string }[]>;

  /** Starts scheduled rotation on the injected clock; stop() cancels it. */
  start(): void;
  stop(): void;
}
