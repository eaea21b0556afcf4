// grant_type=authorization_code for public clients (RFC 6749 §4.1.3 + RFC 7636 §4.6). The code is
// taken (burnt) before anything else is compared, and every mismatch is the same invalid_grant.
// With `offline_access` in the granted scope the response also carries a refresh token, the first
// of a new family (see refresh-tokens.ts).
import { redeemAuthCode } from './auth-codes.js';
import type { AuthenticatedClient } from './client-auth.js';
import type { ResolvedDeps } from './deps.js';
import { OAuthError } from './errors.js';
import type { GrantResult } from './grant-result.js';
import { issueUserAccessToken } from './user-token.js';
import { verifyS256 } from './pkce.js';
import { formatScope, OFFLINE_ACCESS } from './scope.js';

export async function grantAuthorizationCode(deps: ResolvedDeps, params: URLSearchParams, client: AuthenticatedClient): Promise<GrantResult> {
  if (client.kind !== 'public') throw new OAuthError('PCL_ERR_OAUTH_UNAUTHORIZED_CLIENT', 'authorization_code is for public clients');
  const code = params.get('code');
  const redirectUri = params.get('redirect_uri');
  const verifier = params.get('code_verifier');
  if (!code || !redirectUri || !verifier) throw new OAuthError('PCL_ERR_OAUTH_INVALID_REQUEST', 'code, redirect_uri and code_verifier are required');

  const record = await redeemAuthCode(deps.store, deps.clock, code);
  // One answer for unknown, used, expired, someone else's, wrong redirect and wrong verifier.
  const invalid = (why: string): OAuthError => new OAuthError('PCL_ERR_OAUTH_INVALID_GRANT', 'authorization code invalid, expired or already used', { cause: new Error(why) });
  if (!record) throw invalid('unknown, used or expired code');
  if (record.clientId !== client.clientId) throw invalid('code issued to another client');
  if (record.redirectUri !== redirectUri) throw invalid('redirect_uri differs from the authorization request');
  if (!verifyS256(verifier, record.codeChallenge)) throw invalid('PKCE verifier does not match');

  // The user may have been disabled or removed since logging in.
  const user = await deps.users.get(record.username);
  if (!user || user.disabled) throw invalid('user no longer active');
  const scope = record.scope ?? [];
  const issued = await issueUserAccessToken(deps, user, client.clientId, scope);
  const granted = formatScope(scope);
  const refreshToken = scope.includes(OFFLINE_ACCESS)
    ? await deps.refreshTokens.issue({ clientId: client.clientId, username: user.username, scope: granted ?? '', access: { jti: issued.jti, exp: issued.exp } })
    : undefined;
  return {
    issued,
    who: { sub: user.username, clientId: client.clientId },
    ...(granted ? { scope: granted } : {}),
    ...(refreshToken ? { refreshToken } : {}),
  };
}
