// The access token of a signed-in user, as both user grants issue it (authorization code, refresh):
// the user's roles and attributes as they are now, the scope as granted.
import type { User } from '../../identity/users.js';
import { issueAccessToken, type IssuedAccessToken } from '../issue.js';
import type { ResolvedDeps } from './deps.js';
import { accessTokenScope } from './scope.js';

export function issueUserAccessToken(deps: ResolvedDeps, user: User, clientId: string, scope: readonly string[]): Promise<IssuedAccessToken> {
  const atScope = accessTokenScope(scope);
  return issueAccessToken(deps.keys, {
    issuer: deps.issuer,
    audience: deps.audience,
    subject: user.username,
    clientId,
    roles: user.roles,
    attrs: user.attributes,
    ...(atScope ? { scope: atScope } : {}),
    ttlSec: deps.accessTokenTtl,
    clock: deps.clock,
  });
}
