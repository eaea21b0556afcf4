// POST /oauth2/revoke (RFC 7009). The client authenticates as at the token endpoint (§2.1), then:
//   - a refresh token of this client: its whole family is revoked, with the access tokens it produced;
//   - an access token of ours issued to this client: its jti joins the revocation list until its exp;
//   - a token issued to another client: refused (§2.1), unauthorized_client;
//   - anything else (unknown, expired, malformed, already revoked): 200 all the same (§2.2).
// token_type_hint only orders the search (§2.1); an unknown hint is ignored.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { looksLikeRefreshToken } from '../refresh-tokens.js';
import { auditEvent, auditRefusal } from './audit.js';
import { authenticateClient, type AuthenticatedClient } from './client-auth.js';
import type { OAuthContext, ResolvedDeps } from './deps.js';
import { OAuthError } from './errors.js';
import { readForm, refuseRepeated, sendJson } from './http.js';
import { verifyOwnAccessToken } from './own-tokens.js';

type Outcome = { revoked: 'refresh_token'; family: string } | { revoked: 'access_token'; jti: string } | { revoked: 'nothing' };

export async function handleRevoke(deps: ResolvedDeps, req: IncomingMessage, res: ServerResponse, ctx: OAuthContext): Promise<void> {
  let client: AuthenticatedClient | undefined;
  try {
    const params = await readForm(req);
    refuseRepeated(params);
    client = await authenticateClient(deps, req.headers, params, ctx);
    const token = params.get('token');
    if (!token) throw new OAuthError('PCL_ERR_OAUTH_INVALID_REQUEST', 'token is required');

    const outcome = await revoke(deps, token, client);
    auditEvent(deps, ctx, {
      action: 'oauth.revoke',
      outcome: 'success',
      who: { clientId: client.clientId, ...(client.kind === 'workload' ? { spiffeId: client.clientId } : {}) },
      detail: outcome.revoked === 'refresh_token' ? { revoked: outcome.revoked, refresh_family: outcome.family }
        : outcome.revoked === 'access_token' ? { revoked: outcome.revoked, jti: outcome.jti } : { revoked: 'nothing' },
    });
    // §2.2: 200, and the body is ignored by clients; no-store like every answer here.
    res.writeHead(200, { 'Cache-Control': 'no-store', Pragma: 'no-cache', 'Content-Length': 0 });
    res.end();
  } catch (err) {
    if (!(err instanceof OAuthError)) throw err;
    auditRefusal(deps, ctx, 'oauth.revoke', {}, client, err);
    sendJson(res, err.httpStatus, err.toOAuthJSON(), err.headers());
  }
}

async function revoke(deps: ResolvedDeps, token: string, client: AuthenticatedClient): Promise<Outcome> {
  const notYours = (): OAuthError => new OAuthError('PCL_ERR_OAUTH_UNAUTHORIZED_CLIENT', 'the token was not issued to this client');
  // The two kinds cannot be confused (a JWT has dots, a refresh token never), so no hint is needed.
  if (looksLikeRefreshToken(token)) {
    const found = await deps.refreshTokens.lookup(token);
    if (found.state === 'unknown') return { revoked: 'nothing' };
    if (found.clientId !== client.clientId) throw notYours();
    const family = found.state === 'active' ? found.family.id : found.state === 'spent' ? found.familyId : undefined;
    if (family === undefined) return { revoked: 'nothing' }; // already revoked or expired
    await deps.refreshTokens.revokeFamily(family);
    return { revoked: 'refresh_token', family };
  }
  const claims = await verifyOwnAccessToken(deps, token);
  if (!claims) return { revoked: 'nothing' };
  if (claims.client_id !== client.clientId) throw notYours();
  await deps.revocations.revoke(claims.jti, claims.exp);
  return { revoked: 'access_token', jti: claims.jti };
}
