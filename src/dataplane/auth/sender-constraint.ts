// Sender-constrained tokens at the gateway (issue 3, "The gateway refuses a bound token presented
// without its key"): after a token's signature and claims check out, its `cnf` decides what else
// the request must show. No `cnf`: a bearer token. `cnf.x5t#S256`: the TLS client certificate
// (cnf-binding.ts). `cnf.jkt`: the DPoP scheme and a proof by that key (dpop.ts). Anything the
// gateway cannot check is refused, never waved through as a bearer token.
import { PortcullisError } from '../../core/errors.js';
import type { TokenConfirmation } from '../../tokens/verify.js';
import { checkCertificateBinding, type PeerCertificateSource } from './cnf-binding.js';
import type { DpopVerifier } from './dpop.js';

/** The two Authorization schemes that carry an access token. */
export type TokenScheme = 'Bearer' | 'DPoP';

/** An access token as presented. */
export interface PresentedToken {
  scheme: TokenScheme;
  token: string;
}

// RFC 9110 §11: schemes are case-insensitive; the token is a token68 (RFC 6750 §2.1, RFC 9449 §7.1).
const AUTHORIZATION = /^(Bearer|DPoP) +([A-Za-z0-9\-._~+/]+=*)$/i;

/**
 * The access token of `Authorization: Bearer <token>` or `Authorization: DPoP <token>`.
 * PCL_ERR_TOKEN_MISSING without the header; PCL_ERR_TOKEN_MALFORMED for any other scheme or shape.
 */
export function parseAuthorization(header: string | string[] | undefined): PresentedToken {
  if (header === undefined || header === '') throw new PortcullisError('PCL_ERR_TOKEN_MISSING', 'no Authorization header');
  if (typeof header !== 'string') throw new PortcullisError('PCL_ERR_TOKEN_MALFORMED', 'Authorization header repeated');
  const m = AUTHORIZATION.exec(header.trim());
  if (!m?.[1] || !m[2]) throw new PortcullisError('PCL_ERR_TOKEN_MALFORMED', 'Authorization header is not a Bearer or DPoP token');
  return { scheme: m[1].toLowerCase() === 'dpop' ? 'DPoP' : 'Bearer', token: m[2] };
}

/** What the request shows besides the token. */
export interface SenderEvidence extends PresentedToken {
  /** The request's TLS connection (its client certificate, if any). */
  socket: PeerCertificateSource;
  /** The `DPoP` request header(s), as received. */
  dpopProof: string | string[] | undefined;
  method: string;
  /** The request URL for `htu` (requestHtu in dpop.ts). */
  url: string;
}

/**
 * Refuses a token presented without the key it is bound to. Order: the scheme must fit the token
 * (DPoP-bound ⇔ DPoP scheme, else PCL_ERR_DPOP_INVALID), a `cnf` with nothing we can check is
 * PCL_ERR_TOKEN_BINDING, then the certificate binding (PCL_ERR_TOKEN_BINDING) and the DPoP proof
 * (PCL_ERR_DPOP_INVALID). A token bound both ways must pass both.
 */
export async function checkSenderConstraint(claims: { cnf?: TokenConfirmation }, e: SenderEvidence, dpop: DpopVerifier): Promise<void> {
  const cnf = claims.cnf;
  const jkt = cnf?.jkt;
  const x5t = cnf?.['x5t#S256'];
  // RFC 9449 §7.2: a DPoP-bound token sent as a bearer token is refused; §7.1: the DPoP scheme needs a bound token.
  if (jkt !== undefined && e.scheme !== 'DPoP') throw new PortcullisError('PCL_ERR_DPOP_INVALID', 'DPoP-bound token presented with the Bearer scheme');
  if (jkt === undefined && e.scheme === 'DPoP') throw new PortcullisError('PCL_ERR_DPOP_INVALID', 'DPoP scheme used with a token that is not DPoP-bound');
  if (cnf === undefined) return;
  if (jkt === undefined && x5t === undefined) throw new PortcullisError('PCL_ERR_TOKEN_BINDING', 'token cnf names no confirmation method the gateway supports');
  if (x5t !== undefined) checkCertificateBinding(x5t, e.socket);
  if (jkt !== undefined) await dpop.verify({ proof: e.dpopProof, method: e.method, url: e.url, accessToken: e.token, jkt });
}

/**
 * The `WWW-Authenticate` value for a refused token request, or undefined when none applies:
 * RFC 9449 §7.1 `DPoP error="invalid_dpop_proof"` for PCL_ERR_DPOP_INVALID, `DPoP
 * error="invalid_token"` for another token refusal (PCL_ERR_TOKEN_*) of a DPoP request, RFC 6750
 * `Bearer error="invalid_token"` for one of a Bearer request, a bare challenge when no credential
 * was sent (PCL_ERR_TOKEN_MISSING), none for other errors.
 */
export function authChallenge(err: PortcullisError, scheme: TokenScheme | undefined, dpopAlgorithms: readonly string[]): string | undefined {
  const algs = `algs="${dpopAlgorithms.join(' ')}"`;
  if (err.code === 'PCL_ERR_DPOP_INVALID') return `DPoP error="invalid_dpop_proof", ${algs}`;
  if (!err.code.startsWith('PCL_ERR_TOKEN_')) return undefined; // API keys, client certificates, 503s: no token challenge
  if (err.code === 'PCL_ERR_TOKEN_MISSING') return `Bearer, DPoP ${algs}`;
  return scheme === 'DPoP' ? `DPoP error="invalid_token", ${algs}` : 'Bearer error="invalid_token"';
}
