// Who signs audit checkpoints. Two kinds, as CloudTrail signs its digests with a service key:
// - WorkloadSigner: the process's own workload key (ECDSA P-256) and X.509-SVID chain; the chain
//   travels in each checkpoint, so a verifier needs only the trust domain's CA certificate.
// - KmsSigner: an ecdsa-p256 keyring of the KMS (e.g. `audit`); the signature string names the
//   keyring and version (`pcl:audit:v3:…`), and a verifier uses the keyring's published public keys.
import { X509Certificate, createPrivateKey, createPublicKey, sign as cryptoSign, type KeyObject } from 'node:crypto';
import { PortcullisError } from '../core/errors.js';
import { spiffeIdFromCertificate } from '../identity/spiffe.js';
import type { Kms } from '../kms/types.js';

/** What a checkpoint records about its signer; part of the signed statement. */
export type SignerInfo =
  | {
      kind: 'workload';
      /** The SPIFFE ID of the leaf certificate. */
      id: string;
      /** Leaf first, then any intermediates (PEM); the CA root is not included. */
      chainPem: string;
    }
  | {
      kind: 'kms';
      /** `kms:<keyring>`; the version is in the signature string. */
      id: string;
      keyring: string;
    };

/**
 * Signs checkpoint statements. The log calls `describe()` and then `sign()` for one checkpoint,
 * with nothing in between: `sign` must use the key that the last `describe()` named.
 */
export interface CheckpointSigner {
  describe(): SignerInfo;
  /** The signature as text: base64url (workload) or the KMS string form `pcl:<keyring>:v<N>:…`. */
  sign(data: Buffer): Promise<string>;
}

/** A workload's current key and certificate chain (WorkloadIdentity.current() has this shape). */
export interface WorkloadKeyMaterial {
  /** PKCS#8 PEM, ECDSA P-256. */
  keyPem: string;
  /** Leaf first, then any intermediates. */
  chainPem: string;
}

interface Pinned {
  keyPem: string;
  chainPem: string;
  key: KeyObject;
  id: string;
}

export class WorkloadSigner implements CheckpointSigner {
  private pinned: Pinned | undefined;

  /** `source` as a function follows certificate renewal: each checkpoint uses the material current then. */
  constructor(private readonly source: WorkloadKeyMaterial | (() => WorkloadKeyMaterial)) {}

  describe(): SignerInfo {
    const m = typeof this.source === 'function' ? this.source() : this.source;
    // Parsing and the key/certificate match check run once per renewal, not per checkpoint.
    if (!this.pinned || this.pinned.keyPem !== m.keyPem || this.pinned.chainPem !== m.chainPem) this.pinned = pin(m);
    return { kind: 'workload', id: this.pinned.id, chainPem: this.pinned.chainPem };
  }

  async sign(data: Buffer): Promise<string> {
    if (!this.pinned) this.describe();
    const key = this.pinned?.key;
    if (!key) throw new PortcullisError('PCL_ERR_INTERNAL', 'workload signer has no key');
    return cryptoSign('sha256', data, { key, dsaEncoding: 'ieee-p1363' }).toString('base64url');
  }
}

function pin(m: WorkloadKeyMaterial): Pinned {
  const leafPem = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(m.chainPem)?.[0];
  if (!leafPem) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', 'workload signer: the chain holds no certificate');
  const leaf = new X509Certificate(leafPem);
  const key = createPrivateKey(m.keyPem);
  if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
    throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', 'workload signer: the key must be ECDSA P-256');
  }
  // A key that is not the certificate's would sign checkpoints nobody can verify: refuse it now.
  const spki = (k: KeyObject): Buffer => k.export({ type: 'spki', format: 'der' });
  if (!spki(createPublicKey(key)).equals(spki(leaf.publicKey))) {
    throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', 'workload signer: the key does not belong to the leaf certificate');
  }
  return { keyPem: m.keyPem, chainPem: m.chainPem, key, id: spiffeIdFromCertificate(leaf) };
}

export class KmsSigner implements CheckpointSigner {
  /** `kms` may be the KeyManager or any client with the same `sign`; the keyring must be ecdsa-p256 (or ed25519). */
  constructor(private readonly kms: Pick<Kms, 'sign'>, readonly keyring = 'audit') {}

  describe(): SignerInfo {
    return { kind: 'kms', id: `kms:${this.keyring}`, keyring: this.keyring };
  }

  sign(data: Buffer): Promise<string> {
    return this.kms.sign(this.keyring, data);
  }
}
