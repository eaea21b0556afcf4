// The gateway's mTLS client authentication (issue 5, "mTLS peer identity"): a caller that presents a
// workload certificate instead of a token. The certificate must have been verified against the
// trust bundle during the handshake and carry exactly one URI SAN, a SPIFFE ID of our trust domain
// (optionally one of an allow-list). The gateway asks for, but does not require, client
// certificates at the handshake; routes that take `mtls` then require one here.
import type { TLSSocket, TlsOptions } from 'node:tls';
import { PortcullisError } from '../../core/errors.js';
import { parseSpiffeId } from '../../identity/spiffe.js';
import { peerSpiffeId } from '../../identity/tls-options.js';
import type { AccessTokenClaims } from '../../tokens/verify.js';

/** The identity a verified client certificate proves. */
export interface ClientCertificateIdentity {
  /** The certificate's one SPIFFE ID, canonical (SPIFFE IDs have exactly one spelling). */
  spiffeId: string;
}

/**
 * The TLS server options that make the gateway ask every client for a certificate chaining to
 * `trustBundlePem`, without refusing the handshake of a client that sends none (or one that does
 * not verify): the request is then judged per route. Spread them into the server's TLS options and
 * into every `setSecureContext` call (a rotation must keep `ca`, or client certificates stop verifying).
 */
export function gatewayClientCertOptions(trustBundlePem: string): Pick<TlsOptions, 'ca' | 'requestCert' | 'rejectUnauthorized'> {
  return { ca: trustBundlePem, requestCert: true, rejectUnauthorized: false };
}

/**
 * Authenticates the TLS client of a request by its certificate.
 * - PCL_ERR_PEER_CERT_REQUIRED (401): no certificate, or one that did not chain to the trust bundle;
 * - PCL_ERR_PEER_IDENTITY (403): not exactly one URI SAN, a URI SAN that is not a SPIFFE ID, a SPIFFE
 *   ID outside `trustDomain` or naming the trust domain itself, or one not in `allowed`.
 * `allowed` absent: any workload of the trust domain; an empty list admits nobody.
 */
export function authenticateClientCertificate(socket: TLSSocket, trustDomain: string, allowed?: readonly string[]): ClientCertificateIdentity {
  // Throws PCL_ERR_PEER_CERT_REQUIRED unless `socket.authorized` (sent and chained), and
  // PCL_ERR_PEER_IDENTITY unless the DER has exactly one URI SAN that is a valid SPIFFE ID.
  const spiffeId = peerSpiffeId(socket);
  const id = parseSpiffeId(spiffeId);
  if (id.trustDomain !== trustDomain) {
    throw new PortcullisError('PCL_ERR_PEER_IDENTITY', `client certificate ${spiffeId} is outside trust domain ${trustDomain}`);
  }
  // spiffe://<td> alone is the CA's own name (SPIFFE-ID §3.1), never a workload's.
  if (id.path === '') throw new PortcullisError('PCL_ERR_PEER_IDENTITY', `client certificate ${spiffeId} names the trust domain, not a workload`);
  if (allowed !== undefined && !allowed.includes(spiffeId)) {
    throw new PortcullisError('PCL_ERR_PEER_IDENTITY', `client ${spiffeId} is not among the workloads this route admits`);
  }
  return { spiffeId };
}

/**
 * The principal of an mTLS client, in the shape the rest of the pipeline takes: `sub` and
 * `client_id` are the SPIFFE ID, no roles (policies name the workload), `iss: 'mtls'`.
 */
export function mtlsClaims(spiffeId: string, audience: string): AccessTokenClaims {
  return { iss: 'mtls', sub: spiffeId, roles: [], client_id: spiffeId, aud: audience, exp: 0, iat: 0, jti: '' };
}
