// Certificate-bound access tokens (RFC 8705 §3): a token whose `cnf` carries `x5t#S256`, the
// SHA-256 of the DER of a TLS client certificate, is accepted only over a connection on which the
// client presented that very certificate. The TLS handshake already proved the client holds the
// certificate's private key (CertificateVerify), so the certificate need not chain to our trust
// bundle (RFC 8705 §2.2 allows self-signed ones): the token's issuer vouched for the thumbprint.
import { timingSafeEqual, hash as digest } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import { PortcullisError } from '../../core/errors.js';

/** The part of a TLS socket read here (a TLSSocket, or HTTP/2's proxy of one, fits). */
export type PeerCertificateSource = Pick<TLSSocket, 'getPeerCertificate'>;

/** base64url(SHA-256(DER)) of the client certificate on `socket`; undefined when it presented none. */
export function certificateThumbprint(socket: PeerCertificateSource): string | undefined {
  // `getPeerCertificate()` returns `{}` when the peer sent none, whatever its declared type says.
  const raw: Buffer | undefined = socket.getPeerCertificate().raw;
  if (!raw || raw.length === 0) return undefined;
  return digest('sha256', raw, 'base64url');
}

/**
 * Refuses with PCL_ERR_TOKEN_BINDING (401) unless the connection's client certificate has the
 * thumbprint `x5tS256` (the token's `cnf.x5t#S256`): no certificate, another certificate, or a
 * thumbprint that is not a base64url SHA-256. The digests are compared in constant time.
 */
export function checkCertificateBinding(x5tS256: string, socket: PeerCertificateSource): void {
  const expected = Buffer.from(x5tS256, 'base64url');
  if (expected.length !== 32 || expected.toString('base64url') !== x5tS256) {
    throw new PortcullisError('PCL_ERR_TOKEN_BINDING', 'token cnf.x5t#S256 is not a base64url SHA-256 digest');
  }
  const presented = certificateThumbprint(socket);
  if (presented === undefined) {
    throw new PortcullisError('PCL_ERR_TOKEN_BINDING', 'token is bound to a client certificate and the connection presented none');
  }
  if (!timingSafeEqual(Buffer.from(presented, 'base64url'), expected)) {
    throw new PortcullisError('PCL_ERR_TOKEN_BINDING', 'token is bound to another client certificate than the one presented');
  }
}
