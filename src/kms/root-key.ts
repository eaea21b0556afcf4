// The sealed root key: 32 random bytes that exist on disk only encrypted under a key derived from
// a passphrase with argon2id (memory-hard, RFC 9106), for `portcullis kms init|unseal|seal`.
//
// The file is JSON: the KDF parameters and salt, then the AES-256-GCM-wrapped root key, with the
// parameters as associated data. Unsealing reads the parameters from the file, but only within
// bounds, so a planted file cannot make us allocate gigabytes or spin for minutes.
import { randomBytes, createCipheriv, createDecipheriv } from 'node:crypto';
import { link, open, readFile, stat, unlink } from 'node:fs/promises';
import { Algorithm, hashRaw } from '@node-rs/argon2';
import { PortcullisError } from '../core/errors.js';

const FORMAT = 'portcullis-sealed-root-key';
const FILE_VERSION = 1;
const ARGON2_VERSION = 0x13;
const MAX_FILE_BYTES = 16 * 1024;
export const MIN_PASSPHRASE_LENGTH = 8;

/** Parameters written by initSealedRoot: 64 MiB, 3 passes, 1 lane (RFC 9106's second recommendation). */
export const SEALED_ROOT_KDF = { memoryCost: 65536, timeCost: 3, parallelism: 1 } as const;
/** What unsealRoot accepts from a file: at most 256 MiB, 10 passes, 4 lanes; no weaker than OWASP's minimum. */
export const SEALED_ROOT_KDF_BOUNDS = {
  memoryCost: { min: 19456, max: 262144 },
  timeCost: { min: 1, max: 10 },
  parallelism: { min: 1, max: 4 },
  saltBytes: { min: 16, max: 64 },
} as const;

interface KdfParams {
  algorithm: 'argon2id';
  version: number;
  memoryCost: number;
  timeCost: number;
  parallelism: number;
  /** base64url */
  salt: string;
}

interface SealedRootFile {
  format: typeof FORMAT;
  version: typeof FILE_VERSION;
  kdf: KdfParams;
  cipher: 'aes-256-gcm';
  /** base64url, each */
  nonce: string;
  ciphertext: string;
  tag: string;
}

/**
 * Writes a root key sealed to `file` (mode 0600); refuses to overwrite. The key is new, or
 * `existing` (a data directory moving from a key file to a passphrase keeps its data readable).
 */
export async function initSealedRoot(file: string, passphrase: string, existing?: Buffer): Promise<void> {
  checkPassphrase(passphrase);
  if (existing !== undefined && existing.length !== 32) throw new PortcullisError('PCL_ERR_MASTER_KEY', 'a root key is 32 bytes');
  const kdf: KdfParams = { algorithm: 'argon2id', version: ARGON2_VERSION, ...SEALED_ROOT_KDF, salt: randomBytes(16).toString('base64url') };
  const root = existing ? Buffer.from(existing) : randomBytes(32);
  const kek = await deriveKey(passphrase, kdf);
  let sealed: SealedRootFile;
  try {
    const nonce = randomBytes(12);
    const c = createCipheriv('aes-256-gcm', kek, nonce);
    c.setAAD(aadOf(kdf));
    const ciphertext = Buffer.concat([c.update(root), c.final()]);
    sealed = { format: FORMAT, version: FILE_VERSION, kdf, cipher: 'aes-256-gcm', nonce: nonce.toString('base64url'), ciphertext: ciphertext.toString('base64url'), tag: c.getAuthTag().toString('base64url') };
  } finally {
    kek.fill(0);
    root.fill(0);
  }
  await writeNew(file, JSON.stringify(sealed, null, 2) + '\n');
}

/**
 * Reads and unseals the root key. Wrong passphrase (or an altered file): PCL_ERR_KMS_PASSPHRASE;
 * missing, malformed or out-of-bounds file: PCL_ERR_MASTER_KEY. The returned Buffer is the only
 * copy: `fill(0)` it to seal again.
 */
export async function unsealRoot(file: string, passphrase: string): Promise<Buffer> {
  checkPassphrase(passphrase);
  const sealed = await readSealed(file);
  const kek = await deriveKey(passphrase, sealed.kdf);
  let body: Buffer | undefined;
  try {
    const d = createDecipheriv('aes-256-gcm', kek, Buffer.from(sealed.nonce, 'base64url'));
    d.setAAD(aadOf(sealed.kdf));
    d.setAuthTag(Buffer.from(sealed.tag, 'base64url'));
    body = d.update(Buffer.from(sealed.ciphertext, 'base64url'));
    d.final();
    // A Buffer of its own (not a slice of Node's shared pool), so zeroing it leaves no other copy.
    const root = Buffer.alloc(32);
    body.copy(root);
    return root;
  } catch {
    throw new PortcullisError('PCL_ERR_KMS_PASSPHRASE', `wrong passphrase for ${file} (or the file was altered)`);
  } finally {
    body?.fill(0);
    kek.fill(0);
  }
}

function checkPassphrase(passphrase: unknown): void {
  if (typeof passphrase !== 'string' || passphrase.length < MIN_PASSPHRASE_LENGTH) {
    throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `the passphrase must be at least ${MIN_PASSPHRASE_LENGTH} characters`);
  }
}

async function deriveKey(passphrase: string, kdf: KdfParams): Promise<Buffer> {
  return hashRaw(passphrase, {
    algorithm: Algorithm.Argon2id,
    memoryCost: kdf.memoryCost,
    timeCost: kdf.timeCost,
    parallelism: kdf.parallelism,
    outputLen: 32,
    salt: Buffer.from(kdf.salt, 'base64url'),
  });
}

/** The parameters as associated data: the file's header cannot be edited without detection. */
function aadOf(kdf: KdfParams): Buffer {
  return Buffer.from(`${FORMAT}:v${FILE_VERSION}:${kdf.algorithm}:${kdf.version}:m=${kdf.memoryCost},t=${kdf.timeCost},p=${kdf.parallelism}:${kdf.salt}`, 'utf8');
}

/** Writes a complete file or none: a temporary file, flushed, then hard-linked (which never overwrites). */
async function writeNew(file: string, text: string): Promise<void> {
  const tmp = `${file}.${randomBytes(6).toString('hex')}.tmp`;
  try {
    const fh = await open(tmp, 'wx', 0o600);
    try {
      await fh.writeFile(text, 'utf8');
      await fh.sync();
    } finally {
      await fh.close();
    }
    await link(tmp, file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') { // fs errors carry an errno code
      throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `${file} already exists; a sealed root key is never overwritten`);
    }
    throw new PortcullisError('PCL_ERR_MASTER_KEY', `cannot write the sealed root key to ${file}`, { cause: err });
  } finally {
    await unlink(tmp).catch(() => {});
  }
}

async function readSealed(file: string): Promise<SealedRootFile> {
  let text: string;
  try {
    if ((await stat(file)).size > MAX_FILE_BYTES) throw new Error('file too large');
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new PortcullisError('PCL_ERR_MASTER_KEY', `cannot read the sealed root key from ${file}`, { cause: err });
  }
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw malformed(file, 'not JSON');
  }
  if (!isObject(v) || v.format !== FORMAT || v.version !== FILE_VERSION || v.cipher !== 'aes-256-gcm') throw malformed(file, 'unknown format');
  const kdf = v.kdf;
  if (!isObject(kdf) || kdf.algorithm !== 'argon2id' || kdf.version !== ARGON2_VERSION) throw malformed(file, 'unknown KDF');
  const b = SEALED_ROOT_KDF_BOUNDS;
  if (!within(kdf.memoryCost, b.memoryCost) || !within(kdf.timeCost, b.timeCost) || !within(kdf.parallelism, b.parallelism)) {
    throw malformed(file, 'KDF parameters out of bounds');
  }
  if (!isB64(kdf.salt) || !within(Buffer.from(kdf.salt, 'base64url').length, b.saltBytes)) throw malformed(file, 'bad salt');
  if (!isB64(v.nonce, 12) || !isB64(v.tag, 16) || !isB64(v.ciphertext, 32)) throw malformed(file, 'bad ciphertext');
  return v as unknown as SealedRootFile; // every member checked above
}

const malformed = (file: string, why: string): PortcullisError => new PortcullisError('PCL_ERR_MASTER_KEY', `${file} is not a valid sealed root key file: ${why}`);
const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const within = (v: unknown, r: { min: number; max: number }): boolean => typeof v === 'number' && Number.isSafeInteger(v) && v >= r.min && v <= r.max;

function isB64(v: unknown, bytes?: number): v is string {
  if (typeof v !== 'string' || v.length > 256) return false;
  const b = Buffer.from(v, 'base64url');
  return b.toString('base64url') === v && (bytes === undefined || b.length === bytes);
}
