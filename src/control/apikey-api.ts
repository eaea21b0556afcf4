// The control plane's API-key endpoints. Admin (the admin token): create, list, rotate, revoke.
// Gateway (its workload certificate): the revocation feed it polls every 2 s, and the usage
// report behind `lastUsedAt`. It answers the paths it owns (true) and leaves the rest to the
// caller (false), like the block and audit APIs. A key appears in exactly one answer: the one
// that created it.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { PortcullisConfig } from '../core/config/types.js';
import { PortcullisError } from '../core/errors.js';
import { API_KEY_ID, type ApiKeys } from '../identity/api-keys.js';
import type { AdminToken } from './admin-token.js';
import { readJsonObject, sendJson } from './http.js';

/** GET (list), POST (create). */
export const APIKEYS_ADMIN_PATH = '/v1/admin/apikeys';
/** GET ?since=<cursor>: ids of keys revoked since the cursor (the gateway, by certificate). */
export const APIKEYS_REVOKED_PATH = '/v1/apikeys/revoked';
/** POST { used: [{ id, at }] }: when keys were last used (the gateway, by certificate). */
export const APIKEYS_USED_PATH = '/v1/apikeys/used';
/** Most uses one report may carry. */
export const MAX_USAGE_ITEMS = 1000;

export type ApiKeyApi = (req: IncomingMessage, res: ServerResponse, ctx: { peerSpiffeId: string | undefined; requestId: string }) => Promise<boolean>;

const invalid = (msg: string): PortcullisError => new PortcullisError('PCL_ERR_INVALID_ARGUMENT', msg);
const notAllowed = (method: string | undefined, path: string, allowed: string): PortcullisError =>
  new PortcullisError('PCL_ERR_METHOD_NOT_ALLOWED', `${method ?? '?'} ${path}: only ${allowed}`);

/** Refuses any member not in `known` (a misspelt `ttlSecond` must not silently mean "no expiry"). */
function onlyKnown(body: Record<string, unknown>, known: readonly string[]): void {
  const extra = Object.keys(body).filter((k) => !known.includes(k));
  if (extra.length > 0) throw invalid(`unknown field(s) in the body; known: ${known.join(', ')}`);
}

/** A number field, or undefined when absent; the service checks its bounds. */
function optionalNumber(body: Record<string, unknown>, name: string): number | undefined {
  const v = body[name];
  if (v === undefined) return undefined;
  if (typeof v !== 'number') throw invalid(`field "${name}" must be a number of seconds`);
  return v;
}

function requiredString(body: Record<string, unknown>, name: string): string {
  const v = body[name];
  if (typeof v !== 'string') throw invalid(`field "${name}" must be a string`);
  return v;
}

/**
 * `config` names the routes a key may be limited to and the gateway whose certificate may use
 * the data-plane endpoints.
 */
export function createApiKeyApi(o: { apiKeys: ApiKeys; admin: AdminToken; config: PortcullisConfig }): ApiKeyApi {
  const routeIds = new Set(o.config.routes.map((r) => r.id));

  /** The gateway only: it is the data plane that authenticates API keys. */
  const gatewayOnly = (peer: string | undefined): void => {
    if (!peer) throw new PortcullisError('PCL_ERR_PEER_CERT_REQUIRED', 'the API key feed is for the gateway, by its certificate');
    if (peer !== o.config.gateway.spiffeId) throw new PortcullisError('PCL_ERR_PEER_IDENTITY', `${peer} is not the gateway of this config`);
  };

  return async (req, res, ctx) => {
    const url = new URL(req.url ?? '/', 'https://control.invalid');
    const path = url.pathname;
    const actor = { by: 'admin', requestId: ctx.requestId };

    if (path === APIKEYS_ADMIN_PATH) {
      if (req.method !== 'GET' && req.method !== 'POST') throw notAllowed(req.method, path, 'GET, POST');
      o.admin.check(req.headers.authorization); // authentication before anything is parsed
      if (req.method === 'GET') {
        sendJson(res, 200, { apiKeys: o.apiKeys.list() });
        return true;
      }
      const body = await readJsonObject(req, 16 * 1024);
      onlyKnown(body, ['name', 'owner', 'roles', 'routes', 'ttlSeconds']);
      const routes = body.routes;
      if (Array.isArray(routes)) {
        routes.forEach((r, i) => {
          if (typeof r === 'string' && !routeIds.has(r)) throw invalid(`routes[${i}] is not a route id of the config`);
        });
      }
      const ttlSeconds = optionalNumber(body, 'ttlSeconds');
      const created = await o.apiKeys.create({
        name: requiredString(body, 'name'), owner: requiredString(body, 'owner'),
        // Shapes are checked by the service; these casts only carry unknown values to it.
        roles: body.roles as string[], ...(routes === undefined ? {} : { routes: routes as string[] }),
        ...(ttlSeconds === undefined ? {} : { ttlSeconds }),
      }, actor);
      sendJson(res, 201, { ...created.info, key: created.key });
      return true;
    }

    const m = /^\/v1\/admin\/apikeys\/([^/]+)(\/rotate)?$/.exec(path);
    if (m?.[1] !== undefined) {
      const rotate = m[2] !== undefined;
      if (rotate ? req.method !== 'POST' : req.method !== 'DELETE') throw notAllowed(req.method, path.replace(m[1], '{id}'), rotate ? 'POST' : 'DELETE');
      o.admin.check(req.headers.authorization);
      const id = m[1];
      if (!API_KEY_ID.test(id)) throw new PortcullisError('PCL_ERR_APIKEY_NOT_FOUND', 'API key ids are ak_ and 12 letters or digits');
      if (!rotate) {
        const revoked = await o.apiKeys.revoke(id, actor);
        sendJson(res, 200, { id, revoked, alreadyRevoked: !revoked });
        return true;
      }
      // A body is optional: no body means the default overlap.
      const length = req.headers['content-length'];
      const hasBody = (length !== undefined && length !== '0') || req.headers['transfer-encoding'] !== undefined;
      const body = hasBody ? await readJsonObject(req, 4 * 1024) : {};
      onlyKnown(body, ['overlapSeconds']);
      const overlapSeconds = optionalNumber(body, 'overlapSeconds');
      const rotated = await o.apiKeys.rotate(id, overlapSeconds === undefined ? {} : { overlapSeconds }, actor);
      sendJson(res, 201, { ...rotated.info, key: rotated.key, previous: { id, overlapUntil: rotated.overlapUntil } });
      return true;
    }

    if (path === APIKEYS_REVOKED_PATH) {
      if (req.method !== 'GET') throw notAllowed(req.method, path, 'GET');
      gatewayOnly(ctx.peerSpiffeId);
      for (const k of url.searchParams.keys()) if (k !== 'since') throw invalid('the only parameter is since');
      if (url.searchParams.getAll('since').length > 1) throw invalid('parameter since given twice');
      const since = url.searchParams.get('since') ?? undefined;
      sendJson(res, 200, o.apiKeys.revokedSince(since));
      return true;
    }

    if (path === APIKEYS_USED_PATH) {
      if (req.method !== 'POST') throw notAllowed(req.method, path, 'POST');
      gatewayOnly(ctx.peerSpiffeId);
      const body = await readJsonObject(req, 128 * 1024);
      onlyKnown(body, ['used']);
      const used = body.used;
      if (!Array.isArray(used) || used.length > MAX_USAGE_ITEMS) throw invalid(`used must be a list of at most ${MAX_USAGE_ITEMS} { id, at }`);
      const items = used.map((u: unknown, i) => {
        const item = typeof u === 'object' && u !== null ? (u as Record<string, unknown>) : {}; // checked to be an object
        const at = typeof item.at === 'string' ? Date.parse(item.at) : NaN;
        if (typeof item.id !== 'string' || !API_KEY_ID.test(item.id) || Number.isNaN(at)) throw invalid(`used[${i}] must be { id: "ak_…", at: ISO 8601 time }`);
        return { id: item.id, at };
      });
      for (const { id, at } of items) await o.apiKeys.markUsed(id, at);
      sendJson(res, 200, { accepted: items.length });
      return true;
    }
    return false;
  };
}
