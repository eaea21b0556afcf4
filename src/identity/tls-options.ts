// Mutual-TLS settings for the data planes (gateway upstreams, sidecars, SDK). Trust is the trust
// bundle, never the system CA store; identity is the peer's SPIFFE ID, never its host name.
import { constants } from 'node:crypto';
import type { ConnectionOptions, PeerCertificate, TLSSocket, TlsOptions } from 'node:tls';
import { PortcullisError } from '../core/errors.js';
import { parseSpiffeId, spiffeIdFromCertificate } from './spiffe.js';

export interface MtlsCredentials {
  /** The workload's own PKCS#8 private key. */
  keyPem: string;
  /** Its certificate chain, as returned by CertificateAuthority.issue(). */
  chainPem: string;
  /** The CA certificates to trust, from CertificateAuthority.trustBundlePem() via the snapshot. */
  trustBundlePem: string;
}

/**
 * Forward-secret AEAD suites only. TLS 1.3 suites (the `TLS_` names) are always ECDHE; the TLS 1.2
 * ones are limited to ECDHE with ECDSA certificates, the only kind the CA issues.
 */
export const MTLS_CIPHERS = [
  'TLS_AES_128_GCM_SHA256',
  'TLS_AES_256_GCM_SHA384',
  'TLS_CHACHA20_POLY1305_SHA256',
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
].join(':');

/**
 * No TLS 1.2 renegotiation: a peer could otherwise swap certificates mid-connection, after its
 * identity was read (TLS 1.3 has no renegotiation at all).
 */
const SECURE_OPTIONS = constants.SSL_OP_NO_RENEGOTIATION;

/** Server side: a client certificate chaining to the trust bundle is required at the handshake. */
export function mtlsServerOptions(creds: MtlsCredentials): TlsOptions {
  return {
    key: creds.keyPem,
    cert: creds.chainPem,
    ca: creds.trustBundlePem,
    requestCert: true,
    rejectUnauthorized: true,
    minVersion: 'TLSv1.2',
    ciphers: MTLS_CIPHERS,
    honorCipherOrder: true,
    secureOptions: SECURE_OPTIONS,
  };
}

/**
 * Client side: the server must chain to the trust bundle AND carry exactly `expectedSpiffeId`.
 * Host names are not matched: under SPIFFE the ID is the identity, and upstreams are often IPs.
 */
export function mtlsClientOptions(creds: MtlsCredentials & { expectedSpiffeId: string }): ConnectionOptions {
  const expected = parseSpiffeId(creds.expectedSpiffeId).id;
  return {
    key: creds.keyPem,
    cert: creds.chainPem,
    ca: creds.trustBundlePem,
    rejectUnauthorized: true,
    minVersion: 'TLSv1.2',
    ciphers: MTLS_CIPHERS,
    secureOptions: SECURE_OPTIONS,
    // Node calls this only after the chain verified; returning an Error aborts the connection with it.
    checkServerIdentity: (_hostname: string, cert: PeerCertificate): Error | undefined => {
      let actual: string;
      try {
        actual = spiffeIdFromCertificate(cert);
      } catch (err) {
        return err instanceof Error ? err : new PortcullisError('PCL_ERR_PEER_IDENTITY', 'server identity unreadable');
      }
      if (actual !== expected) {
        return new PortcullisError('PCL_ERR_PEER_IDENTITY', `server is ${actual}, expected ${expected}`);
      }
      return undefined;
    },
  };
}

const peerIds = new WeakMap<TLSSocket, string>();

/**
 * The verified SPIFFE ID of the peer on a server-side mTLS socket, for authorization. Parsed once
 * per connection (keep-alive requests reuse it; renegotiation, which could change it, is disabled). Throws PCL_ERR_PEER_CERT_REQUIRED when the peer
 * is not authenticated, PCL_ERR_PEER_IDENTITY when its certificate carries no single valid SPIFFE ID.
 */
export function peerSpiffeId(socket: TLSSocket): string {
  const cached = peerIds.get(socket);
  if (cached !== undefined) return cached;
  // `authorized` is true only when a client certificate was sent and chained to the trust bundle.
  if (!socket.authorized) {
    throw new PortcullisError('PCL_ERR_PEER_CERT_REQUIRED', `peer not authenticated: ${String(socket.authorizationError ?? 'no certificate')}`);
  }
  const id = spiffeIdFromCertificate(socket.getPeerCertificate());
  peerIds.set(socket, id);
  return id;
}
