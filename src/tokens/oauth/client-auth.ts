// Who is calling the token and revocation endpoints (RFC 6749 §2.3, §3.2.1). Three methods, one
// per kind of client, and nothing else:
//   none             a registered public client names itself with client_id (PKCE protects the code);
//   private_key_jwt  a registered confidential client proves itself with a signed assertion;
//   tls_client_auth  a workload proves itself with the certificate the server verified (RFC 8705 §2.1):
//                    unregistered (client_id = its SPIFFE ID), or as a registered confidential client
//                    whose SPIFFE ID the certificate carries.
// A confidential client may use only the method it is registered with. Client secrets do not exist
// here, so HTTP authentication (Basic) is refused, not ignored.
import type { IncomingHttpHeaders } from 'node:http';
import { JWT_BEARER_CLIENT_ASSERTION, verifyClientAssertion } from './client-assertion.js';
import type { ConfidentialClient, PublicClient } from './clients.js';
import type { OAuthContext, ResolvedDeps } from './deps.js';
import { OAuthError } from './errors.js';

export type AuthenticatedClient =
  | { kind: 'public'; clientId: string; client: PublicClient }
  | { kind: 'confidential'; clientId: string; client: ConfidentialClient }
  /** A workload: its client_id is its SPIFFE ID. */
  | { kind: 'workload'; clientId: string };

/** Token endpoint authentication methods, as named in RFC 8414 metadata. */
export const CLIENT_AUTH_METHODS = ['none', 'private_key_jwt', 'tls_client_auth'] as const;

/** A token68-ish scheme name, safe to echo in WWW-Authenticate. */
const AUTH_SCHEME = /^[A-Za-z][A-Za-z0-9!#$%&'*+.^_`|~-]{0,31}$/;

/** Authenticates the client of a token or revocation request; `invalid_client` (401) when it cannot. */
export async function authenticateClient(deps: ResolvedDeps, headers: IncomingHttpHeaders, params: URLSearchParams, ctx: OAuthContext): Promise<AuthenticatedClient> {
  if (headers.authorization !== undefined) {
    // RFC 6749 §5.2: a client that tried the Authorization header gets 401 and a challenge in its scheme.
    const scheme = headers.authorization.split(' ')[0] ?? '';
    throw new OAuthError('PCL_ERR_OAUTH_INVALID_CLIENT', 'HTTP client authentication is not supported (use none, private_key_jwt or tls_client_auth)', {
      wwwAuthenticate: `${AUTH_SCHEME.test(scheme) ? scheme : 'Basic'} realm="portcullis"`,
    });
  }
  const clientId = params.get('client_id');
  const assertionType = params.get('client_assertion_type');
  const assertion = params.get('client_assertion');
  if (assertionType !== null || assertion !== null) {
    // RFC 7521 §4.2: both parameters, and a type we support, or the client is not authenticated.
    if (!assertionType || !assertion) throw new OAuthError('PCL_ERR_OAUTH_INVALID_REQUEST', 'client_assertion and client_assertion_type go together');
    if (assertionType !== JWT_BEARER_CLIENT_ASSERTION) throw new OAuthError('PCL_ERR_OAUTH_INVALID_CLIENT', 'unsupported client_assertion_type');
    const client = await verifyClientAssertion({
      clients: deps.clients,
      audiences: [deps.issuer, deps.endpoints.token],
      clock: deps.clock,
      seen: deps.assertions,
    }, assertion, clientId);
    return { kind: 'confidential', clientId: client.clientId, client };
  }
  const registered = clientId === null ? undefined : await deps.clients.get(clientId);
  if (registered?.type === 'public') return { kind: 'public', clientId: registered.clientId, client: registered };
  if (registered?.type === 'confidential') {
    if (registered.authMethod !== 'tls_client_auth') throw new OAuthError('PCL_ERR_OAUTH_INVALID_CLIENT', 'this client must authenticate with private_key_jwt');
    // RFC 8705 §2.1.2, with the SPIFFE ID as the subject: the certificate the server verified must be the registered one.
    if (ctx.peerSpiffeId === undefined || ctx.peerSpiffeId !== registered.spiffeId) throw new OAuthError('PCL_ERR_OAUTH_INVALID_CLIENT', 'this client must authenticate with tls_client_auth (its registered certificate)');
    return { kind: 'confidential', clientId: registered.clientId, client: registered };
  }
  const peer = ctx.peerSpiffeId;
  if (peer !== undefined && peer.startsWith('spiffe://')) {
    if (clientId !== null && clientId !== peer) throw new OAuthError('PCL_ERR_OAUTH_INVALID_CLIENT', 'client_id does not match the client certificate');
    return { kind: 'workload', clientId: peer };
  }
  // A client_id alone authenticates nothing unless it names a registered public client.
  throw new OAuthError('PCL_ERR_OAUTH_INVALID_CLIENT', clientId === null ? 'client authentication required' : 'unknown client');
}
