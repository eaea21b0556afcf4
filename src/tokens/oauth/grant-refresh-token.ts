// grant_type=refresh_token (RFC 6749 §6) with rotation (RFC 9700 §4.14.2): the presented token is
// spent and a new one returned with the new access token. Order, so that a refused request changes
// nothing unless it is reuse:
//   1. look the token up (read only); unknown / expired / revoked → invalid_grant;
//   2. bound to the client that got it (RFC 6749 §10.4) → else invalid_grant;
//   3. spent already → reuse: the whole family is revoked, invalid_grant;
//   4. scope at most the family's (RFC 6749 §6) → else invalid_scope;
//   5. the user re-read: removed or disabled → invalid_grant; roles and attributes as they are now;
//   6. rotate (the atomic spend); losing a race to another use is reuse too.
import type { AuthenticatedClient } from './client-auth.js';
import type { ResolvedDeps } from './deps.js';
import { OAuthError } from './errors.js';
import type { GrantResult } from './grant-result.js';
import { issueUserAccessToken } from './user-token.js';
import { formatScope, narrowScope, parseScope } from './scope.js';

const invalid = (why: string): OAuthError =>
  new OAuthError('PCL_ERR_OAUTH_INVALID_GRANT', 'refresh token invalid, expired or revoked', { cause: new Error(why) });

export async function grantRefreshToken(deps: ResolvedDeps, params: URLSearchParams, client: AuthenticatedClient): Promise<GrantResult> {
  // Refresh tokens are only ever issued to public clients (authorization_code + offline_access).
  if (client.kind !== 'public') throw new OAuthError('PCL_ERR_OAUTH_UNAUTHORIZED_CLIENT', 'refresh_token is for public clients');
  const token = params.get('refresh_token');
  if (!token) throw new OAuthError('PCL_ERR_OAUTH_INVALID_REQUEST', 'refresh_token is required');

  const found = await deps.refreshTokens.lookup(token);
  if (found.state === 'unknown') throw invalid('unknown refresh token');
  if (found.clientId !== client.clientId) throw invalid('refresh token issued to another client');
  if (found.state === 'spent') {
    await deps.refreshTokens.revokeFamily(found.familyId);
    deps.logger.warn({ clientId: client.clientId, family: found.familyId }, 'refresh token reused: family revoked');
    throw invalid('refresh token reused: family revoked');
  }
  if (found.state === 'inactive') throw invalid('refresh token expired or revoked');

  const { family } = found;
  const familyScope = parseScope(family.scope);
  const requested = parseScope(params.get('scope'));
  const scope = requested.length > 0 ? narrowScope(requested, familyScope) : familyScope;
  const user = await deps.users.get(family.username);
  if (!user || user.disabled) throw invalid('user no longer active');

  const issued = await issueUserAccessToken(deps, user, client.clientId, scope);
  const next = await deps.refreshTokens.rotate(found, { jti: issued.jti, exp: issued.exp });
  if (next === undefined) throw invalid('refresh token used concurrently: family revoked');
  const granted = formatScope(scope);
  return {
    issued,
    refreshToken: next,
    who: { sub: user.username, clientId: client.clientId },
    ...(granted ? { scope: granted } : {}),
    detail: { refresh_family: family.id },
  };
}
