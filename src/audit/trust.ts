// Checking a checkpoint's signature and who made it, for the verifier.
// - workload: the chain in the checkpoint must lead, certificate by certificate, to one of the
//   given CA certificates, every certificate valid at the checkpoint's time (a chain renewed hourly
//   signs old checkpoints with certificates long expired by now: that is fine), and the leaf's
//   SPIFFE ID must be the signer's id. Results are cached per chain, since it repeats.
// - kms: the signature's keyring and version (`pcl:<keyring>:v<N>:…`) select a published public key.
// Only node:crypto does the cryptography.
import { createPublicKey, verify as cryptoVerify, type KeyObject, type X509Certificate } from 'node:crypto';
import { parseAnchors, parsePemChain, verifySvidChain, type SvidChain } from '../identity/svid-chain.js';
import { decodeCanonical, parseCiphertext } from '../kms/ciphertext.js';
import { checkpointStatement, type CheckpointBody } from './format.js';

export interface KmsPublicKey {
  keyring: string;
  version: number;
  /** SPKI PEM, as Kms.publicKeys() returns it. */
  pem: string;
}

export interface TrustOptions {
  /** CA certificates (PEM, one or more) that workload signer chains must lead to. */
  caPem?: string;
  kmsPublicKeys?: KmsPublicKey[];
}

export type SignatureCheck = { ok: true; signer: string } | { ok: false; reason: string };

export class CheckpointTrust {
  private readonly anchors: X509Certificate[];
  private readonly kmsKeys = new Map<string, KeyObject>();
  private readonly chains = new Map<string, SvidChain | string>();

  constructor(o: TrustOptions) {
    this.anchors = parseAnchors(o.caPem ?? '');
    for (const k of o.kmsPublicKeys ?? []) this.kmsKeys.set(`${k.keyring}:${k.version}`, createPublicKey(k.pem));
  }

  check(cp: CheckpointBody): SignatureCheck {
    const { signature, ...unsigned } = cp;
    const statement = checkpointStatement(unsigned);
    return cp.signer.kind === 'workload'
      ? this.checkWorkload(cp, cp.signer.id, cp.signer.chainPem, statement, signature)
      : this.checkKms(cp.signer.id, cp.signer.keyring, statement, signature);
  }

  private checkWorkload(cp: CheckpointBody, id: string, chainPem: string, statement: Buffer, signature: string): SignatureCheck {
    if (this.anchors.length === 0) return { ok: false, reason: 'checkpoint signed by a workload, but no CA certificate was given to check its chain' };
    let chain = this.chains.get(chainPem);
    if (chain === undefined) {
      chain = this.buildChain(chainPem);
      this.chains.set(chainPem, chain);
    }
    if (typeof chain === 'string') return { ok: false, reason: chain };
    if (chain.id !== id) return { ok: false, reason: `checkpoint names signer ${id} but its certificate is ${chain.id}` };
    const at = Date.parse(cp.time);
    if (!(at >= chain.notBefore && at <= chain.notAfter)) return { ok: false, reason: `signer certificate chain not valid at ${cp.time}` };
    const sig = decodeCanonical(signature);
    if (!sig || !cryptoVerify('sha256', statement, { key: chain.key, dsaEncoding: 'ieee-p1363' }, sig)) {
      return { ok: false, reason: `checkpoint signature of ${id} does not verify` };
    }
    return { ok: true, signer: id };
  }

  /** The verified path from the leaf to an anchor, or why there is none. */
  private buildChain(chainPem: string): SvidChain | string {
    const certs = parsePemChain(chainPem);
    return typeof certs === 'string' ? certs : verifySvidChain(certs, this.anchors);
  }

  private checkKms(id: string, keyring: string, statement: Buffer, signature: string): SignatureCheck {
    let parsed;
    try {
      parsed = parseCiphertext(signature);
    } catch {
      return { ok: false, reason: 'KMS signature is malformed' };
    }
    if (parsed.keyring !== keyring || id !== `kms:${keyring}`) return { ok: false, reason: `KMS signature is from keyring ${parsed.keyring}, checkpoint names ${id}` };
    const signer = `kms:${keyring}:v${parsed.version}`;
    const key = this.kmsKeys.get(`${keyring}:${parsed.version}`);
    if (!key) return { ok: false, reason: `no public key given for ${signer}` };
    const ok = key.asymmetricKeyType === 'ed25519'
      ? cryptoVerify(null, statement, key, parsed.payload)
      : cryptoVerify('sha256', statement, { key, dsaEncoding: 'ieee-p1363' }, parsed.payload);
    return ok ? { ok: true, signer } : { ok: false, reason: `checkpoint signature of ${signer} does not verify` };
  }
}
