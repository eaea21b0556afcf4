// POST /oauth2/introspect (RFC 7662) for protected resources. Callers must authenticate (§2.1): a
// workload with a certificate the server verified, or the operator with the admin token. The answer
// is `{ "active": false }` — nothing more, whatever the reason (expired, revoked, malformed, unknown,
// someone else's disabled user) — or the token's claims (§2.2).
import type { IncomingMessage, ServerResponse } from 'node:http';
import { PortcullisError } from '../../core/errors.js';
import { looksLikeRefreshToken } from '../refresh-tokens.js';
import { auditRefusal } from './audit.js';
import type { OAuthContext, ResolvedDeps } from './deps.js';
import { OAuthError } from './errors.js';
import { readForm, refuseRepeated, sendJson } from './http.js';
import { verifyOwnAccessToken } from './own-tokens.js';

const INACTIVE = Object.freeze({ active: false });
const REALM = 'Bearer realm="portcullis"';

export async function handleIntrospect(deps: ResolvedDeps, req: IncomingMessage, res: ServerResponse, ctx: OAuthContext): Promise<void> {
  try {
    authenticateCaller(deps, req.headers.authorization, ctx);
    const params = await readForm(req);
    refuseRepeated(params);
    const token = params.get('token');
    if (!token) throw new OAuthError('PCL_ERR_OAUTH_INVALID_REQUEST', 'token is required');
    // token_type_hint is not needed: a refresh token never has the shape of a JWT (§2.1 allows ignoring it).
    sendJson(res, 200, looksLikeRefreshToken(token) ? await introspectRefreshToken(deps, token) : await introspectAccessToken(deps, token));
  } catch (err) {
    if (!(err instanceof OAuthError)) throw err;
    auditRefusal(deps, ctx, 'oauth.introspect', {}, undefined, err);
    sendJson(res, err.httpStatus, err.toOAuthJSON(), err.headers());
  }
}

/** §2.1: the endpoint is for protected resources only. Throws a 401 with a Bearer challenge otherwise. */
function authenticateCaller(deps: ResolvedDeps, authorization: string | undefined, ctx: OAuthContext): void {
  if (ctx.peerSpiffeId !== undefined && ctx.peerSpiffeId.startsWith('spiffe://')) return;
  if (authorization === undefined || !deps.admin) {
    // RFC 6750 §3.1: no credentials at all → a challenge without an error code.
    throw new OAuthError('PCL_ERR_OAUTH_INVALID_CLIENT', 'introspection requires a workload certificate or the admin token', { wwwAuthenticate: REALM });
  }
  try {
    deps.admin.check(authorization);
  } catch (err) {
    if (!(err instanceof PortcullisError)) throw err;
    throw new OAuthError('PCL_ERR_OAUTH_INVALID_TOKEN', 'the bearer credential is not accepted here', { cause: err, wwwAuthenticate: `${REALM}, error="invalid_token"` });
  }
}

async function introspectAccessToken(deps: ResolvedDeps, token: string): Promise<Record<string, unknown>> {
  const c = await verifyOwnAccessToken(deps, token);
  if (!c) return INACTIVE;
  await deps.revocations.ready();
  if (deps.revocations.isRevokedToken(c)) return INACTIVE;
  return {
    active: true,
    iss: c.iss,
    sub: c.sub,
    // §2.2 aud: a string for one audience, as the token carries it.
    aud: c.aud.length === 1 ? c.aud[0] : c.aud,
    client_id: c.client_id,
    ...(c.scope !== undefined ? { scope: c.scope } : {}),
    token_type: 'Bearer',
    exp: c.exp,
    iat: c.iat,
    ...(c.nbf !== undefined ? { nbf: c.nbf } : {}),
    jti: c.jti,
    roles: c.roles ?? [],
    ...(c.attrs !== undefined ? { attrs: c.attrs } : {}),
    ...(c.act !== undefined ? { act: c.act } : {}),
  };
}

async function introspectRefreshToken(deps: ResolvedDeps, token: string): Promise<Record<string, unknown>> {
  const found = await deps.refreshTokens.lookup(token);
  if (found.state !== 'active') return INACTIVE;
  // A refresh for a removed or disabled user would be refused: the token is not active.
  const user = await deps.users.get(found.family.username);
  if (!user || user.disabled) return INACTIVE;
  return {
    active: true,
    iss: deps.issuer,
    sub: found.family.username,
    client_id: found.clientId,
    ...(found.family.scope ? { scope: found.family.scope } : {}),
    exp: Math.floor(found.expiresAt / 1000),
    iat: Math.floor(found.issuedAt / 1000),
  };
}
