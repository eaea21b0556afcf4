// grant_type=urn:ietf:params:oauth:grant-type:device_code (RFC 8628 §3.4-3.5). The device polls
// with its device code until the person at the verification page decided:
//   authorization_pending  not decided yet;
//   slow_down              polled sooner than the interval: the interval grows by 5 s, for good;
//   access_denied          the person said no;
//   expired_token          the codes expired: start again;
//   invalid_grant          unknown, another client's, or used: a device code yields tokens once,
//                          and a replay revokes what it yielded (the code has leaked).
// Tokens are those of authorization_code: the person as subject with their roles and attributes
// as they are now, and a refresh token when the granted scope has offline_access.
import type { AuthenticatedClient } from './client-auth.js';
import { clientHasGrant, DEVICE_CODE_GRANT } from './clients.js';
import type { ResolvedDeps } from './deps.js';
import { OAuthError } from './errors.js';
import type { GrantResult } from './grant-result.js';
import { formatScope, OFFLINE_ACCESS } from './scope.js';
import { issueUserAccessToken } from './user-token.js';

const invalid = (why: string): OAuthError =>
  new OAuthError('PCL_ERR_OAUTH_INVALID_GRANT', 'device code invalid or already used', { cause: new Error(why) });

export async function grantDeviceCode(deps: ResolvedDeps, params: URLSearchParams, client: AuthenticatedClient): Promise<GrantResult> {
  if (client.kind === 'workload' || !clientHasGrant(client.client, DEVICE_CODE_GRANT)) {
    throw new OAuthError('PCL_ERR_OAUTH_UNAUTHORIZED_CLIENT', 'this client may not use the device authorization grant');
  }
  const deviceCode = params.get('device_code');
  if (!deviceCode) throw new OAuthError('PCL_ERR_OAUTH_INVALID_REQUEST', 'device_code is required');

  const p = await deps.deviceAuthorizations.poll(deviceCode, client.clientId);
  switch (p.state) {
    case 'pending': throw new OAuthError('PCL_ERR_OAUTH_AUTHORIZATION_PENDING', 'the user has not decided yet');
    case 'slow_down': throw new OAuthError('PCL_ERR_OAUTH_SLOW_DOWN', `polling too fast: wait ${p.interval} seconds between requests`);
    case 'denied': throw new OAuthError('PCL_ERR_OAUTH_ACCESS_DENIED', 'the user denied the request');
    case 'expired': throw new OAuthError('PCL_ERR_OAUTH_EXPIRED_TOKEN', 'the device code has expired; start a new device authorization');
    case 'unknown': throw invalid('unknown device code, or issued to another client');
    case 'replayed':
      await deps.revocations.revoke(p.jti, p.exp);
      if (p.refreshFamily) await deps.refreshTokens.revokeFamily(p.refreshFamily);
      deps.logger.warn({ clientId: client.clientId, jti: p.jti }, 'device code replayed: what it issued is revoked');
      throw invalid('device code replayed: its tokens are revoked');
    case 'approved': break;
  }

  // The user may have been disabled or removed since approving.
  const user = await deps.users.get(p.username);
  if (!user || user.disabled) throw invalid('user no longer active');
  const issued = await issueUserAccessToken(deps, user, client.clientId, p.scope);
  const granted = formatScope(p.scope);
  // Refresh tokens are for public clients only (grant-refresh-token.ts), as with authorization_code.
  const refreshToken = client.kind === 'public' && p.scope.includes(OFFLINE_ACCESS)
    ? await deps.refreshTokens.issue({ clientId: client.clientId, username: user.username, scope: granted ?? '', access: { jti: issued.jti, exp: issued.exp } })
    : undefined;
  const family = refreshToken ? await deps.refreshTokens.lookup(refreshToken) : undefined;
  const refreshFamily = family?.state === 'active' ? family.family.id : undefined;
  await deps.deviceAuthorizations.redeemed(p.deviceKey, { jti: issued.jti, exp: issued.exp, ...(refreshFamily ? { refreshFamily } : {}) }, p.expiresAt);
  return {
    issued,
    who: { sub: user.username, clientId: client.clientId },
    ...(granted ? { scope: granted } : {}),
    ...(refreshToken ? { refreshToken } : {}),
    ...(refreshFamily ? { detail: { refresh_family: refreshFamily } } : {}),
  };
}
