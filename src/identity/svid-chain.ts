// Does an X.509-SVID chain lead to one of our CA certificates, and whose is it? Used wherever a
// workload's signature must be checked away from the TLS handshake (audit checkpoints, principal
// assertions): certificate by certificate to an anchor, the leaf an end-entity P-256 key with one
// SPIFFE ID. Validity is returned, not checked: callers check it at the instant that matters to
// them (a checkpoint's time, or now). Only node:crypto does the cryptography.
import { X509Certificate, type KeyObject } from 'node:crypto';
import { spiffeIdFromCertificate } from './spiffe.js';

/** Longest chain accepted (leaf and intermediates). */
export const MAX_SVID_CHAIN = 4;
const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

export interface SvidChain {
  key: KeyObject;
  id: string;
  /** Validity of the whole path, anchor included (ms since the epoch). */
  notBefore: number;
  notAfter: number;
}

/** The CA certificates of a PEM bundle (anything that is not a CA is ignored). */
export function parseAnchors(pem: string): X509Certificate[] {
  return (pem.match(PEM_CERT) ?? []).map((p) => new X509Certificate(p)).filter((c) => c.ca);
}

/** The certificates of a PEM chain, leaf first, or why they cannot be read. */
export function parsePemChain(pem: string): X509Certificate[] | string {
  try {
    return (pem.match(PEM_CERT) ?? []).map((p) => new X509Certificate(p));
  } catch {
    return 'certificate chain cannot be parsed';
  }
}

/** The verified path from `certs[0]` (the leaf) to one of `anchors`, or why there is none. */
export function verifySvidChain(certs: readonly X509Certificate[], anchors: readonly X509Certificate[]): SvidChain | string {
  const leaf = certs[0];
  if (!leaf || certs.length > MAX_SVID_CHAIN) return `certificate chain must hold 1 to ${MAX_SVID_CHAIN} certificates`;
  if (leaf.ca) return 'signer certificate is a CA certificate';
  const key = leaf.publicKey;
  if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') return 'signer key is not ECDSA P-256';
  let id: string;
  try {
    id = spiffeIdFromCertificate(leaf);
  } catch {
    return 'signer certificate has no valid SPIFFE ID';
  }
  const path = [...certs];
  for (let i = 0; i + 1 < certs.length; i++) {
    const child = certs[i];
    const parent = certs[i + 1];
    if (!child || !parent || !parent.ca || !child.checkIssued(parent) || !child.verify(parent.publicKey)) {
      return `signer chain is broken at certificate ${i + 1}`;
    }
  }
  // certs is non-empty (leaf checked above), so the last element exists.
  const top = certs[certs.length - 1]!;
  const anchor = anchors.find((a) => a.raw.equals(top.raw) || (top.checkIssued(a) && top.verify(a.publicKey)));
  if (!anchor) return `signer ${id}: certificate chain is not anchored in the given CA`;
  if (!anchor.raw.equals(top.raw)) path.push(anchor);
  let notBefore = -Infinity;
  let notAfter = Infinity;
  for (const c of path) {
    notBefore = Math.max(notBefore, Date.parse(c.validFrom));
    notAfter = Math.min(notAfter, Date.parse(c.validTo));
  }
  if (!Number.isFinite(notBefore) || !Number.isFinite(notAfter)) return 'signer certificate validity cannot be read';
  return { key, id, notBefore, notAfter };
}
