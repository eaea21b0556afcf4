// SPIFFE IDs (spiffe/spiffe standards/SPIFFE-ID.md) and reading them out of X.509-SVIDs.
// Parsing is strict and never normalizes: one identity has exactly one spelling, so a policy written
// for `spiffe://td/api` cannot be dodged with `SPIFFE://td/api`, `spiffe://td//api` or `spiffe://td/%61pi`.
import type { X509Certificate } from 'node:crypto';
import type { PeerCertificate } from 'node:tls';
import { PortcullisError } from '../core/errors.js';
import { x509 } from './x509.js';

export interface SpiffeId {
  /** The authority part, e.g. `prod.example.com`. */
  trustDomain: string;
  /** `''` or `/seg/seg…` (no trailing slash). */
  path: string;
  /** The whole ID, exactly as given (already canonical, since nothing else is accepted). */
  id: string;
}

const SCHEME = 'spiffe://';
/** SPIFFE-ID §2.3: implementations must support, and need not accept more than, 2048 bytes. */
const MAX_ID_BYTES = 2048;
/** SPIFFE-ID §2.3: the host component of a URI is at most 255 bytes. */
const MAX_TRUST_DOMAIN_BYTES = 255;
const TRUST_DOMAIN_CHARS = /^[a-z0-9._-]+$/;
const PATH_SEGMENT_CHARS = /^[a-zA-Z0-9._-]+$/;
const SAN_OID = '2.5.29.17';

/** Parses and validates a SPIFFE ID; with `trustDomain`, also requires membership of that trust domain. */
export function parseSpiffeId(id: string, trustDomain?: string): SpiffeId {
  if (typeof id !== 'string' || id === '') throw invalid(id, 'is empty');
  // Checked first so the rest of the work is bounded. All valid IDs are ASCII, so chars = bytes there.
  if (Buffer.byteLength(id, 'utf8') > MAX_ID_BYTES) throw invalid(id, `is longer than ${MAX_ID_BYTES} bytes`);
  // The scheme must be exactly "spiffe://": no upper case, no missing slashes.
  if (!id.startsWith(SCHEME)) throw invalid(id, 'must start with "spiffe://"');
  const rest = id.slice(SCHEME.length);
  const slash = rest.indexOf('/');
  const authority = slash === -1 ? rest : rest.slice(0, slash);
  const path = slash === -1 ? '' : rest.slice(slash);

  checkTrustDomain(authority, id);
  if (path.includes('?')) throw invalid(id, 'must not have a query');
  if (path.includes('#')) throw invalid(id, 'must not have a fragment');
  if (path !== '') {
    const segments = path.slice(1).split('/');
    segments.forEach((segment, i) => {
      if (segment === '') {
        throw invalid(id, i === segments.length - 1 ? 'must not end with "/"' : 'must not have empty path segments');
      }
      if (segment === '.' || segment === '..') throw invalid(id, 'must not have "." or ".." path segments');
      // This also refuses percent-encoding: "%" is not an allowed character.
      if (!PATH_SEGMENT_CHARS.test(segment)) throw invalid(id, 'path segments may only contain [a-zA-Z0-9._-]');
    });
  }
  if (trustDomain !== undefined && authority !== trustDomain) {
    throw invalid(id, `is not in trust domain "${trustDomain}"`);
  }
  return { trustDomain: authority, path, id };
}

/** Validates a bare trust domain name (as configured), returning it unchanged. */
export function parseTrustDomain(trustDomain: string): string {
  checkTrustDomain(trustDomain, trustDomain);
  return trustDomain;
}

/** The SPIFFE ID of a trust domain itself, which its CA carries (SPIFFE-ID §3.1). */
export function trustDomainId(trustDomain: string): string {
  return SCHEME + parseTrustDomain(trustDomain);
}

function checkTrustDomain(td: string, id: string): void {
  if (td === '') throw invalid(id, 'has an empty trust domain');
  if (td.includes('@')) throw invalid(id, 'must not have user info');
  if (td.includes(':')) throw invalid(id, 'must not have a port');
  if (td.includes('?')) throw invalid(id, 'must not have a query');
  if (td.includes('#')) throw invalid(id, 'must not have a fragment');
  if (td.length > MAX_TRUST_DOMAIN_BYTES) throw invalid(id, `has a trust domain longer than ${MAX_TRUST_DOMAIN_BYTES} bytes`);
  if (!TRUST_DOMAIN_CHARS.test(td)) throw invalid(id, 'trust domain may only contain [a-z0-9._-]');
}

function invalid(id: unknown, why: string): PortcullisError {
  // IDs are not secrets, but they can be attacker-chosen: quote (escapes control characters) and bound them.
  const shown = typeof id === 'string' ? JSON.stringify(id.length > 120 ? `${id.slice(0, 120)}…` : id) : typeof id;
  return new PortcullisError('PCL_ERR_SPIFFE_ID_INVALID', `SPIFFE ID ${shown} ${why}`);
}

/**
 * The SPIFFE ID of an X.509-SVID: its one and only URI SAN, which must be a valid SPIFFE ID
 * (X509-SVID §2). Reads the DER, never Node's `subjectaltname` text, whose quoting rules
 * (commas, quotes, a DNS name containing "URI:…") are easy to get wrong and have changed between
 * Node versions. The certificate must already be chain-verified: this checks naming, not trust.
 */
export function spiffeIdFromCertificate(cert: X509Certificate | PeerCertificate): string {
  // `getPeerCertificate()` returns `{}` when the peer sent none, whatever its declared type says.
  const raw: Buffer | undefined = cert.raw;
  if (!raw || raw.length === 0) throw new PortcullisError('PCL_ERR_PEER_CERT_REQUIRED', 'peer presented no certificate');
  let uris: string[];
  try {
    const sanExtensions = new x509.X509Certificate(raw).extensions.filter((e) => e.type === SAN_OID);
    // RFC 5280 §4.2: an extension appears at most once; two SANs are an attempt to confuse.
    if (sanExtensions.length > 1) throw new Error('more than one subjectAltName extension');
    const san = sanExtensions[0];
    if (san !== undefined && !(san instanceof x509.SubjectAlternativeNameExtension)) throw new Error('unreadable subjectAltName');
    uris = san ? san.names.items.filter((n) => n.type === 'url').map((n) => n.value) : [];
  } catch (err) {
    throw new PortcullisError('PCL_ERR_PEER_IDENTITY', 'peer certificate cannot be read', { cause: err });
  }
  const [uri] = uris;
  if (uris.length !== 1 || uri === undefined) {
    throw new PortcullisError('PCL_ERR_PEER_IDENTITY', `peer certificate must have exactly one URI SAN, has ${uris.length}`);
  }
  try {
    return parseSpiffeId(uri).id;
  } catch (err) {
    throw new PortcullisError('PCL_ERR_PEER_IDENTITY', 'peer certificate URI SAN is not a valid SPIFFE ID', { cause: err });
  }
}
