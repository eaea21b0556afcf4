// The OAuth2 endpoints of the control plane, as one function the server calls for every request:
// it answers the paths it owns (true) and leaves everything else to the caller (false).
import type { IncomingMessage, ServerResponse } from 'node:http';
import { handleAuthorizeGet, handleAuthorizePost } from './authorize.js';
import { PATHS, resolveDeps, type OAuthContext, type OAuthDeps, type ResolvedDeps } from './deps.js';
import { handleDeviceGet, handleDevicePost } from './device.js';
import { handleDeviceAuthorization } from './device-authorization.js';
import { sendJson, sendMethodNotAllowed } from './http.js';
import { handleIntrospect } from './introspect.js';
import { handleJwks } from './jwks.js';
import { handleMetadata } from './metadata.js';
import { handleRevoke } from './revoke.js';
import { handleToken } from './token.js';

export type { OAuthContext, OAuthDeps } from './deps.js';
export type { ConfidentialClient, OAuthClient, PublicClient } from './clients.js';
export { DEVICE_CODE_GRANT } from './clients.js';

export type OAuthRouter = (req: IncomingMessage, res: ServerResponse, ctx: OAuthContext) => Promise<boolean>;

type Handler = (deps: ResolvedDeps, req: IncomingMessage, res: ServerResponse, ctx: OAuthContext, url: URL) => Promise<void> | void;

/** path → method → handler; read top to bottom, this is the whole surface. */
const ROUTES: Record<string, Partial<Record<string, Handler>>> = {
  [PATHS.metadata]: { GET: (d, _q, res) => handleMetadata(d, res) },
  [PATHS.openidConfiguration]: { GET: (d, _q, res) => handleMetadata(d, res) },
  [PATHS.jwks]: { GET: (d, _q, res) => handleJwks(d, res) },
  [PATHS.authorize]: {
    GET: (d, _q, res, _c, url) => handleAuthorizeGet(d, url, res),
    POST: (d, req, res, ctx) => handleAuthorizePost(d, req, res, ctx),
  },
  [PATHS.token]: { POST: (d, req, res, ctx) => handleToken(d, req, res, ctx) },
  [PATHS.revoke]: { POST: (d, req, res, ctx) => handleRevoke(d, req, res, ctx) },
  [PATHS.introspect]: { POST: (d, req, res, ctx) => handleIntrospect(d, req, res, ctx) },
  [PATHS.deviceAuthorization]: { POST: (d, req, res, ctx) => handleDeviceAuthorization(d, req, res, ctx) },
  [PATHS.device]: {
    GET: (d, _q, res, _c, url) => handleDeviceGet(d, url, res),
    POST: (d, req, res, ctx) => handleDevicePost(d, req, res, ctx),
  },
};

export function createOAuthRouter(deps: OAuthDeps): OAuthRouter {
  const d = resolveDeps(deps);
  return async (req, res, ctx) => {
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://oauth.invalid');
    } catch {
      return false; // not a path we own; the caller answers
    }
    const methods = Object.hasOwn(ROUTES, url.pathname) ? ROUTES[url.pathname] : undefined;
    if (!methods) return false;
    const handler = req.method !== undefined && Object.hasOwn(methods, req.method) ? methods[req.method] : undefined;
    if (!handler) {
      sendMethodNotAllowed(res, Object.keys(methods));
      return true;
    }
    try {
      await handler(d, req, res, ctx, url);
    } catch (err) {
      // Unexpected (store down, key problem): logged here, the client learns only server_error.
      d.logger.error({ requestId: ctx.requestId, path: url.pathname, err: err instanceof Error ? err.message : String(err) }, 'OAuth endpoint failed');
      if (res.headersSent) res.destroy();
      else sendJson(res, 500, { error: 'server_error', error_description: 'internal error' });
    }
    return true;
  };
}
