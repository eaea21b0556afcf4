// POST /oauth2/token (RFC 6749 §3.2): reads the form, picks the grant, answers per §5.1 / §5.2.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { auditEvent } from './audit.js';
import type { OAuthContext, ResolvedDeps } from './deps.js';
import { OAuthError } from './errors.js';
import { grantAuthorizationCode } from './grant-authorization-code.js';
import { grantClientCredentials } from './grant-client-credentials.js';
import type { GrantResult } from './grant-result.js';
import { readForm, repeatedParams, sendJson } from './http.js';

const GRANTS: Record<string, (deps: ResolvedDeps, params: URLSearchParams, ctx: OAuthContext) => Promise<GrantResult>> = {
  authorization_code: (deps, params) => grantAuthorizationCode(deps, params),
  client_credentials: grantClientCredentials,
};

export async function handleToken(deps: ResolvedDeps, req: IncomingMessage, res: ServerResponse, ctx: OAuthContext): Promise<void> {
  let grantType = '';
  try {
    // Client secrets are not a supported authentication method: refuse rather than ignore them.
    if (req.headers.authorization !== undefined) {
      throw new OAuthError('PCL_ERR_OAUTH_INVALID_CLIENT', 'HTTP client authentication is not supported (use none or tls_client_auth)');
    }
    const params = await readForm(req);
    const repeated = repeatedParams(params);
    if (repeated.length > 0) throw new OAuthError('PCL_ERR_OAUTH_INVALID_REQUEST', `parameter repeated: ${repeated.slice(0, 3).join(', ')}`);
    grantType = params.get('grant_type') ?? '';
    if (!grantType) throw new OAuthError('PCL_ERR_OAUTH_INVALID_REQUEST', 'grant_type is required');
    const grant = Object.hasOwn(GRANTS, grantType) ? GRANTS[grantType] : undefined;
    if (!grant) throw new OAuthError('PCL_ERR_OAUTH_UNSUPPORTED_GRANT', 'supported grant types: authorization_code, client_credentials');

    const { issued, who } = await grant(deps, params, ctx);
    auditEvent(deps, ctx, {
      action: 'oauth.token',
      outcome: 'success',
      who,
      detail: { grant_type: grantType, jti: issued.jti, expires_in: issued.expiresIn },
    });
    sendJson(res, 200, { access_token: issued.token, token_type: 'Bearer', expires_in: issued.expiresIn });
  } catch (err) {
    if (!(err instanceof OAuthError)) throw err;
    const reason = err.cause instanceof Error ? err.cause.message : err.description;
    auditEvent(deps, ctx, {
      action: 'oauth.token',
      outcome: 'failure',
      who: ctx.peerSpiffeId ? { spiffeId: ctx.peerSpiffeId } : {},
      detail: { grant_type: grantType.slice(0, 64), error: err.publicMessage, reason },
    });
    deps.logger.info({ grantType: grantType.slice(0, 64), error: err.publicMessage, reason }, 'token request refused');
    sendJson(res, err.httpStatus, err.toOAuthJSON(), err.httpStatus === 413 ? { Connection: 'close' } : {});
  }
}
