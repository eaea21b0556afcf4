// grant_type=client_credentials (RFC 6749 §4.4) for machines, never for people:
//   - workloads, authenticated by their mTLS certificate (RFC 8705 §2.1 tls_client_auth): the client
//     is the SPIFFE ID the server verified in the handshake; no scopes (their access is policy's job);
//   - registered confidential clients (private_key_jwt, or tls_client_auth with their registered
//     SPIFFE ID): the scopes they are registered for (all of them when none are asked for, RFC 6749
//     §3.3's pre-defined default), for their registered audience (default: ours).
// No refresh token either way (RFC 6749 §4.4.3): a machine simply asks again.
import { issueAccessToken } from '../issue.js';
import type { AuthenticatedClient } from './client-auth.js';
import type { ResolvedDeps } from './deps.js';
import { OAuthError } from './errors.js';
import type { GrantResult } from './grant-result.js';
import { formatScope, narrowScope, parseScope } from './scope.js';

export async function grantClientCredentials(deps: ResolvedDeps, params: URLSearchParams, client: AuthenticatedClient): Promise<GrantResult> {
  if (client.kind === 'public') throw new OAuthError('PCL_ERR_OAUTH_UNAUTHORIZED_CLIENT', 'client_credentials is for workloads and confidential clients');
  const requested = parseScope(params.get('scope'));
  let scope: string | undefined;
  if (client.kind === 'workload') {
    if (requested.length > 0) throw new OAuthError('PCL_ERR_OAUTH_INVALID_SCOPE', 'workloads are granted no scopes');
  } else {
    const allowed = client.client.scopes ?? [];
    scope = formatScope(requested.length > 0 ? narrowScope(requested, allowed) : allowed);
  }
  const issued = await issueAccessToken(deps.keys, {
    issuer: deps.issuer,
    audience: client.kind === 'confidential' ? client.client.audience ?? deps.audience : deps.audience,
    subject: client.clientId,
    clientId: client.clientId,
    ...(scope ? { scope } : {}),
    ttlSec: deps.accessTokenTtl,
    clock: deps.clock,
  });
  const spiffeId = client.kind === 'workload' ? client.clientId : client.client.spiffeId;
  const who = { sub: client.clientId, clientId: client.clientId, ...(spiffeId !== undefined ? { spiffeId } : {}) };
  return { issued, who, ...(scope ? { scope } : {}) };
}
