// Step 3 of the gateway pipeline, whole: which credential a request presents, whether its route
// accepts that kind (`auth: [jwt, apikey, mtls, introspection]`), and the credential's own checks,
// sender constraints included. One credential per request: an API key (X-API-Key or `ApiKey`),
// else an access token (Authorization `Bearer`/`DPoP`), else the TLS client certificate.
import type { IncomingHttpHeaders } from 'node:http';
import type { TLSSocket } from 'node:tls';
import { PortcullisError } from '../../core/errors.js';
import type { AccessTokenClaims, AccessTokenVerifier } from '../../tokens/verify.js';
import { ApiKeyAuthenticator } from '../api-key-auth.js';
import { DpopVerifier, requestHtu } from './dpop.js';
import type { IntrospectionClient } from './introspection.js';
import { authenticateClientCertificate, mtlsClaims } from './mtls-client.js';
import { checkSenderConstraint, parseAuthorization, type TokenScheme } from './sender-constraint.js';

/** The credential kinds a route may accept (config `routes[].auth`). */
export type RouteCredential = 'jwt' | 'apikey' | 'mtls' | 'introspection';

/** The parts of a route read here (RouteConfig fits; `mtls.allow` is the proposed per-route allow-list). */
export interface RouteAuthSpec {
  id: string;
  auth: readonly string[];
  mtls?: { allow?: readonly string[] };
}

/** The parts of a request read here (IncomingMessage fits, HTTP/1.1 or HTTP/2 compatibility). */
export interface AuthRequest {
  method?: string | undefined;
  url?: string | undefined;
  headers: IncomingHttpHeaders;
  socket: unknown;
}

export interface Authenticated {
  claims: AccessTokenClaims;
  /** The API key's id, when the credential was one. */
  apiKeyId?: string;
  credential: RouteCredential;
  /** The Authorization scheme, when the credential was an access token (for the WWW-Authenticate challenge). */
  scheme?: TokenScheme;
}

export interface RequestAuthenticatorOptions {
  trustDomain: string;
  /** `tokens.audience`: the `aud` of principals built from API keys and certificates. */
  audience: string;
  /** Local verification of JWT access tokens. */
  verifier: Pick<AccessTokenVerifier, 'verify'>;
  /** Absent: no route takes API keys. */
  apiKeys?: ApiKeyAuthenticator;
  /** Absent: `introspection` routes refuse tokens with PCL_ERR_INTROSPECTION_UNAVAILABLE. */
  introspection?: Pick<IntrospectionClient, 'introspect'>;
  /** Default: a DpopVerifier on the system clock (ES256, EdDSA, 60 s, in-memory replay cache). */
  dpop?: DpopVerifier;
  /** The gateway's public origins (`https://api.example.com`) a DPoP proof's htu may name; absent: the request's Host. */
  publicOrigins?: readonly string[];
}

/** Authenticates requests for the gateway; refusals are PortcullisErrors (see docs/authentication.md). */
export class RequestAuthenticator {
  readonly dpop: DpopVerifier;

  constructor(private readonly o: RequestAuthenticatorOptions) {
    this.dpop = o.dpop ?? new DpopVerifier();
  }

  async authenticate(req: AuthRequest, route: RouteAuthSpec): Promise<Authenticated> {
    const takes = (c: RouteCredential): boolean => route.auth.includes(c);
    if (this.o.apiKeys && ApiKeyAuthenticator.presented(req.headers)) {
      if (!takes('apikey')) throw new PortcullisError('PCL_ERR_APIKEY_INVALID', `route ${route.id} does not accept API keys`);
      const k = this.o.apiKeys.authenticate(req.headers, { routeId: route.id });
      // The key's owner acts with the key's roles; the key id stands where a token's client_id would.
      return { credential: 'apikey', apiKeyId: k.id, claims: { iss: 'apikey', sub: k.owner, roles: [...k.roles], client_id: k.id, aud: this.o.audience, exp: 0, iat: 0, jti: k.id } };
    }
    const socket = req.socket as TLSSocket; // the gateway listens with TLS only (HTTP/2's socket proxy forwards these members)
    if (req.headers.authorization === undefined && takes('mtls')) {
      const { spiffeId } = authenticateClientCertificate(socket, this.o.trustDomain, route.mtls?.allow);
      return { credential: 'mtls', claims: mtlsClaims(spiffeId, this.o.audience) };
    }
    if (!takes('jwt') && !takes('introspection')) {
      if (takes('mtls')) throw new PortcullisError('PCL_ERR_PEER_CERT_REQUIRED', `route ${route.id} takes a client certificate, not an access token`);
      throw new PortcullisError('PCL_ERR_TOKEN_MISSING', `route ${route.id} takes an API key (X-API-Key)`);
    }
    const presented = parseAuthorization(req.headers.authorization);
    const method = req.method ?? 'GET';
    // JWS-shaped tokens are verified locally when the route takes JWTs; the rest go to introspection.
    const local = takes('jwt') && (!takes('introspection') || presented.token.split('.').length === 3);
    let claims: AccessTokenClaims;
    if (local) {
      claims = await this.o.verifier.verify(presented.token);
    } else {
      if (!this.o.introspection) throw new PortcullisError('PCL_ERR_INTROSPECTION_UNAVAILABLE', `route ${route.id} takes introspected tokens and no introspection endpoint is configured`);
      claims = await this.o.introspection.introspect(presented.token, method);
    }
    // htu is computed only when a proof will be checked (a bearer request need not carry a usable Host).
    const url = claims.cnf?.jkt !== undefined && presented.scheme === 'DPoP' ? requestHtu(req.headers, req.url ?? '/', this.o.publicOrigins) : '';
    // A plain bearer token (no cnf, Bearer scheme) has nothing to check: no promise on the hot path.
    if (claims.cnf !== undefined || presented.scheme === 'DPoP') {
      await checkSenderConstraint(claims, { ...presented, socket, dpopProof: req.headers.dpop, method, url }, this.dpop);
    }
    return { credential: local ? 'jwt' : 'introspection', claims, scheme: presented.scheme };
  }
}
