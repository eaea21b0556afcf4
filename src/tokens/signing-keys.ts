// The token service's signing keys: ES256 (P-256), kid = RFC 7638 thumbprint of the public key.
// The private JWK is stored only wrapped by the master key, with associated data naming the kid,
// so a record cannot be swapped for another; the public half is derived from it on load and its
// thumbprint re-checked, so nothing stored in clear is trusted.
import { calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK, type CryptoKey, type JWK } from 'jose';
import { systemClock, type Clock } from '../core/clock.js';
import { PortcullisError } from '../core/errors.js';
import type { KeySealer } from '../kms/key-sealer.js';
import { NS, type Store } from '../store/store.js';

export const SIGNING_ALG = 'ES256';

/** Stored record (NS.signingKeys, key = kid). */
interface SigningKeyRecord {
  kid: string;
  alg: typeof SIGNING_ALG;
  /** KeySealer envelope of the private JWK (JSON), aad `signing-key:<kid>`. */
  wrapped: string;
  createdAt: string;
}

interface LoadedKey {
  kid: string;
  createdAt: string;
  publicJwk: JWK;
  privateKey: CryptoKey;
}

export class SigningKeys {
  private constructor(
    /** Newest first; [0] signs. */
    private readonly keys: LoadedKey[],
  ) {}

  /** Loads the stored keys, creating the first one when there is none. */
  static async loadOrCreate(opts: { store: Store; wrapper: KeySealer; clock?: Clock }): Promise<SigningKeys> {
    const clock = opts.clock ?? systemClock;
    let records = (await opts.store.list<SigningKeyRecord>(NS.signingKeys)).map((r) => r.value);
    if (records.length === 0) {
      await createKey(opts.store, opts.wrapper, clock);
      records = (await opts.store.list<SigningKeyRecord>(NS.signingKeys)).map((r) => r.value);
    }
    const keys = await Promise.all(records.map((r) => loadKey(r, opts.wrapper)));
    // Deterministic choice, so replicas that raced at first start still agree on the current key.
    keys.sort((a, b) => (a.createdAt === b.createdAt ? (a.kid < b.kid ? -1 : 1) : a.createdAt < b.createdAt ? 1 : -1));
    return new SigningKeys(keys);
  }

  /** The public JWK Set for /.well-known/jwks.json and data-plane snapshots: public members only. */
  jwks(): { keys: JWK[] } {
    return { keys: this.keys.map((k) => ({ ...k.publicJwk })) };
  }

  /** The key new tokens are signed with. */
  current(): { kid: string; alg: typeof SIGNING_ALG; key: CryptoKey } {
    const k = this.keys[0];
    // loadOrCreate never constructs an instance without at least one key.
    if (!k) throw new PortcullisError('PCL_ERR_INTERNAL', 'no signing key loaded');
    return { kid: k.kid, alg: SIGNING_ALG, key: k.privateKey };
  }
}

const aadFor = (kid: string): string => `signing-key:${kid}`;

async function createKey(store: Store, wrapper: KeySealer, clock: Clock): Promise<void> {
  const { privateKey } = await generateKeyPair(SIGNING_ALG, { extractable: true });
  const privateJwk = await exportJWK(privateKey);
  const kid = await calculateJwkThumbprint(publicPart(privateJwk));
  const record: SigningKeyRecord = {
    kid,
    alg: SIGNING_ALG,
    wrapped: await wrapper.wrap(JSON.stringify(privateJwk), aadFor(kid)),
    createdAt: new Date(clock.now()).toISOString(),
  };
  await store.insert(NS.signingKeys, kid, record);
}

async function loadKey(r: SigningKeyRecord, wrapper: KeySealer): Promise<LoadedKey> {
  const plain = await wrapper.unwrap(r.wrapped, aadFor(r.kid));
  let privateJwk: JWK;
  try {
    privateJwk = JSON.parse(plain.toString('utf8')) as JWK; // shape checked just below (kty/crv/d)
  } catch (err) {
    throw new PortcullisError('PCL_ERR_KEY_UNWRAP', `stored key "${aadFor(r.kid)}" is not a JWK`, { cause: err });
  } finally {
    plain.fill(0);
  }
  if (privateJwk.kty !== 'EC' || privateJwk.crv !== 'P-256' || typeof privateJwk.d !== 'string') {
    throw new PortcullisError('PCL_ERR_KEY_UNWRAP', `stored key "${aadFor(r.kid)}" is not a P-256 private key`);
  }
  const pub = publicPart(privateJwk);
  if ((await calculateJwkThumbprint(pub)) !== r.kid) {
    throw new PortcullisError('PCL_ERR_KEY_UNWRAP', `stored key "${aadFor(r.kid)}" does not match its kid`);
  }
  const privateKey = await importJWK({ ...privateJwk, alg: SIGNING_ALG }, SIGNING_ALG, { extractable: false });
  // An EC JWK always imports as a CryptoKey (Uint8Array is only for "oct" keys).
  if (privateKey instanceof Uint8Array) throw new PortcullisError('PCL_ERR_KEY_UNWRAP', 'unexpected key type');
  return {
    kid: r.kid,
    createdAt: r.createdAt,
    publicJwk: { ...pub, kid: r.kid, alg: SIGNING_ALG, use: 'sig' },
    privateKey,
  };
}

/** The RFC 7518 public members of an EC key; anything else (d, ext, key_ops) is dropped. */
function publicPart(jwk: JWK): JWK {
  return { kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y };
}
