// POST /oauth2/device_authorization (RFC 8628 §3.1-3.2): a device without a browser asks for a
// device code (kept by the device, polled with at the token endpoint) and a user code (typed by a
// person at the verification page). The client authenticates as at the token endpoint, or names
// itself as a public client, and must be registered for the device grant; the scope is at most
// what it is registered for. Nothing about the codes goes to the audit log or the logs.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { auditEvent, auditRefusal } from './audit.js';
import { authenticateClient, type AuthenticatedClient } from './client-auth.js';
import { clientHasGrant, DEVICE_CODE_GRANT } from './clients.js';
import type { OAuthContext, ResolvedDeps } from './deps.js';
import { OAuthError } from './errors.js';
import { readForm, refuseRepeated, sendJson } from './http.js';
import { formatScope, narrowScope, parseScope } from './scope.js';

const ACTION = 'oauth.device_authorization';

export async function handleDeviceAuthorization(deps: ResolvedDeps, req: IncomingMessage, res: ServerResponse, ctx: OAuthContext): Promise<void> {
  let client: AuthenticatedClient | undefined;
  try {
    const params = await readForm(req);
    refuseRepeated(params);
    client = await authenticateClient(deps, req.headers, params, ctx);
    // Workloads have no registration, so no device grant; a registration must list it.
    if (client.kind === 'workload' || !clientHasGrant(client.client, DEVICE_CODE_GRANT)) {
      throw new OAuthError('PCL_ERR_OAUTH_UNAUTHORIZED_CLIENT', 'this client may not use the device authorization grant');
    }
    const scope = narrowScope(parseScope(params.get('scope')), client.client.scopes ?? []);
    const issued = await deps.deviceAuthorizations.issue(client.clientId, scope);
    if (!issued) {
      throw new OAuthError('PCL_ERR_OAUTH_TEMPORARILY_UNAVAILABLE', 'too many device authorizations pending; try again later', {
        cause: new Error(`maxPending (${deps.deviceAuthorizations.maxPending}) reached`),
      });
    }
    const granted = formatScope(scope);
    auditEvent(deps, ctx, { action: ACTION, outcome: 'success', who: { clientId: client.clientId }, detail: granted ? { scope: granted } : {} });
    const complete = new URL(deps.endpoints.deviceVerification);
    complete.searchParams.set('user_code', issued.userCode);
    sendJson(res, 200, {
      device_code: issued.deviceCode,
      user_code: issued.userCode,
      verification_uri: deps.endpoints.deviceVerification,
      verification_uri_complete: complete.href,
      expires_in: issued.expiresIn,
      interval: issued.interval,
    });
  } catch (err) {
    if (!(err instanceof OAuthError)) throw err;
    auditRefusal(deps, ctx, ACTION, {}, client, err);
    const headers = err.headers();
    // Room is made by the sweep of expired authorizations, once a minute.
    if (err.httpStatus === 503) headers['Retry-After'] = '60';
    sendJson(res, err.httpStatus, err.toOAuthJSON(), headers);
  }
}
