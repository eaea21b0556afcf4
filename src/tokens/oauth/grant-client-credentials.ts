// grant_type=client_credentials for workloads, authenticated by their mTLS certificate
// (RFC 8705 §2.1 tls_client_auth): the client is the SPIFFE ID the server verified in the handshake.
import { issueAccessToken } from '../issue.js';
import type { OAuthContext, ResolvedDeps } from './deps.js';
import { OAuthError } from './errors.js';
import type { GrantResult } from './grant-result.js';

export async function grantClientCredentials(deps: ResolvedDeps, params: URLSearchParams, ctx: OAuthContext): Promise<GrantResult> {
  const spiffeId = ctx.peerSpiffeId;
  if (!spiffeId || !spiffeId.startsWith('spiffe://')) {
    throw new OAuthError('PCL_ERR_OAUTH_INVALID_CLIENT', 'client_credentials requires a verified workload certificate (tls_client_auth)');
  }
  const clientId = params.get('client_id');
  if (clientId !== null && clientId !== spiffeId) throw new OAuthError('PCL_ERR_OAUTH_INVALID_CLIENT', 'client_id does not match the client certificate');
  const scope = params.get('scope');
  if (scope !== null && scope !== '') throw new OAuthError('PCL_ERR_OAUTH_INVALID_SCOPE', 'no scopes are supported');
  const issued = await issueAccessToken(deps.keys, {
    issuer: deps.issuer,
    audience: deps.audience,
    subject: spiffeId,
    clientId: spiffeId,
    ttlSec: deps.accessTokenTtl,
    clock: deps.clock,
  });
  return { issued, who: { sub: spiffeId, clientId: spiffeId, spiffeId } };
}
