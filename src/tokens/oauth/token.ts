// POST /oauth2/token (RFC 6749 §3.2): reads the form, authenticates the client, picks the grant,
// answers per §5.1 / §5.2. Every refusal is an RFC error code with a fixed description, audited.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { auditEvent, auditRefusal } from './audit.js';
import { authenticateClient, type AuthenticatedClient } from './client-auth.js';
import type { OAuthContext, ResolvedDeps } from './deps.js';
import { OAuthError } from './errors.js';
import { grantAuthorizationCode } from './grant-authorization-code.js';
import { grantClientCredentials } from './grant-client-credentials.js';
import { DEVICE_CODE_GRANT } from './clients.js';
import { grantDeviceCode } from './grant-device-code.js';
import { grantRefreshToken } from './grant-refresh-token.js';
import type { Grant } from './grant-result.js';
import { grantTokenExchange, MULTI_VALUED_PARAMS, TOKEN_EXCHANGE_GRANT } from './grant-token-exchange.js';
import { readForm, refuseRepeated, sendJson } from './http.js';

const GRANTS: Record<string, Grant> = {
  authorization_code: grantAuthorizationCode,
  refresh_token: grantRefreshToken,
  client_credentials: grantClientCredentials,
  [TOKEN_EXCHANGE_GRANT]: grantTokenExchange,
  [DEVICE_CODE_GRANT]: grantDeviceCode,
};

/** The grant types this token service offers (token exchange only when configured). */
export function supportedGrantTypes(deps: ResolvedDeps): string[] {
  return Object.keys(GRANTS).filter((g) => g !== TOKEN_EXCHANGE_GRANT || deps.tokenExchange !== undefined);
}

export async function handleToken(deps: ResolvedDeps, req: IncomingMessage, res: ServerResponse, ctx: OAuthContext): Promise<void> {
  let grantType = '';
  let client: AuthenticatedClient | undefined;
  try {
    const params = await readForm(req);
    grantType = params.get('grant_type') ?? '';
    // RFC 6749 §3.2: each parameter at most once — except where RFC 8693 §2.1 allows several.
    refuseRepeated(params, grantType === TOKEN_EXCHANGE_GRANT ? MULTI_VALUED_PARAMS : []);
    if (!grantType) throw new OAuthError('PCL_ERR_OAUTH_INVALID_REQUEST', 'grant_type is required');
    const offered = supportedGrantTypes(deps);
    const grant = offered.includes(grantType) ? GRANTS[grantType] : undefined;
    if (!grant) throw new OAuthError('PCL_ERR_OAUTH_UNSUPPORTED_GRANT', `supported grant types: ${offered.join(', ')}`);
    client = await authenticateClient(deps, req.headers, params, ctx);

    const r = await grant(deps, params, client, ctx);
    auditEvent(deps, ctx, {
      action: 'oauth.token',
      outcome: 'success',
      who: r.who,
      detail: { grant_type: grantType, jti: r.issued.jti, expires_in: r.issued.expiresIn, ...r.detail },
    });
    sendJson(res, 200, {
      access_token: r.issued.token,
      ...(r.issuedTokenType ? { issued_token_type: r.issuedTokenType } : {}),
      token_type: 'Bearer',
      expires_in: r.issued.expiresIn,
      ...(r.scope ? { scope: r.scope } : {}),
      ...(r.refreshToken ? { refresh_token: r.refreshToken } : {}),
    });
  } catch (err) {
    if (!(err instanceof OAuthError)) throw err;
    // A device polling every few seconds is not a refusal worth an audit event each time.
    if (err.code !== 'PCL_ERR_OAUTH_AUTHORIZATION_PENDING') auditRefusal(deps, ctx, 'oauth.token', { grant_type: grantType.slice(0, 64) }, client, err);
    sendJson(res, err.httpStatus, err.toOAuthJSON(), err.headers());
  }
}
