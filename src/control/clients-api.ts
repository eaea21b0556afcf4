// The control plane's OAuth client administration, for the admin token only: list, register, show,
// remove, and replace a private_key_jwt client's public keys (key rotation). Clients registered
// here live in the store and work on every replica within seconds (ClientRegistry); the CLI's own
// client and the config file's tokens.clients are listed (`source: config`) but cannot be changed
// or removed here (PCL_ERR_CLIENT_IMMUTABLE). A registration carries public keys or a SPIFFE ID,
// never a secret: a private or symmetric key, or any client-secret field, is refused and nothing is
// stored. Removing a client ends the sessions (refresh-token families) held through it. Every
// change is an audit entry.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { JWK } from 'jose';
import { systemClock, type Clock } from '../core/clock.js';
import { PortcullisError } from '../core/errors.js';
import { publishAudit } from '../core/events.js';
import { parseSpiffeId } from '../identity/spiffe.js';
import type { ClientEntry, ClientRegistry } from '../tokens/oauth/client-registry.js';
import type { OAuthClient } from '../tokens/oauth/clients.js';
import type { AdminToken } from './admin-token.js';
import { readJsonObject, sendJson } from './http.js';

/** GET (list), POST (register). */
export const CLIENTS_ADMIN_PATH = '/v1/admin/clients';

/** Ends the sessions held through a client: RefreshTokens is one. */
export interface ClientSessions {
  /** Revokes every refresh-token family of the client; returns how many were live. */
  revokeClient(clientId: string): Promise<number>;
}

export type ClientsApi = (req: IncomingMessage, res: ServerResponse, ctx: { requestId: string }) => Promise<boolean>;

const ITEM = /^\/v1\/admin\/clients\/([^/]+)(\/keys)?$/;
/** The only client_ids a registration can have (validateClient); anything else cannot exist. */
const CLIENT_ID = /^[A-Za-z0-9._~:-]{1,255}$/;
const REGISTRATION_FIELDS = ['clientId', 'type', 'redirectUris', 'scopes', 'grantTypes', 'authMethod', 'jwks', 'spiffeId', 'audience'] as const;
/** Names a client secret goes by: refused with the reason, not as a mere unknown field. */
const SECRET_FIELDS = ['clientSecret', 'client_secret', 'secret', 'password'];
const MAX_LIST = 100;

const invalid = (msg: string): PortcullisError => new PortcullisError('PCL_ERR_INVALID_ARGUMENT', msg);

/** Refuses any member not in `known`, and says why for a secret. */
function onlyKnown(body: Record<string, unknown>, known: readonly string[]): void {
  const extra = Object.keys(body).filter((k) => !known.includes(k));
  if (extra.some((k) => SECRET_FIELDS.includes(k))) {
    throw invalid('client secrets are not supported: register public keys (jwks, private_key_jwt) or a SPIFFE ID (tls_client_auth); docs/oauth.md');
  }
  if (extra.length > 0) throw invalid(`unknown field(s) in the body; known: ${known.join(', ')}`);
}

function optionalStringList(body: Record<string, unknown>, name: string): string[] | undefined {
  const v = body[name];
  if (v === undefined) return undefined;
  if (!Array.isArray(v) || v.length > MAX_LIST || !v.every((s) => typeof s === 'string')) throw invalid(`field "${name}" must be a list of at most ${MAX_LIST} strings`);
  return v as string[]; // checked just above
}

function optionalString(body: Record<string, unknown>, name: string, max = 2048): string | undefined {
  const v = body[name];
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || v.length === 0 || v.length > max) throw invalid(`field "${name}" must be a string of 1-${max} characters`);
  return v;
}

/** `{ keys: [objects] }`: validateClient checks each key; here only the shape. */
function jwksField(body: Record<string, unknown>): { keys: JWK[] } | undefined {
  const v = body.jwks;
  if (v === undefined) return undefined;
  const set = typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : {}; // an object, checked
  const keys = set.keys;
  if (!Array.isArray(keys) || Object.keys(set).length !== 1 || !keys.every((k) => typeof k === 'object' && k !== null && !Array.isArray(k))) {
    throw invalid('field "jwks" must be { "keys": [public JWKs] }');
  }
  return { keys: keys as JWK[] }; // objects, checked above; their members are validateClient's
}

/** A registration from the JSON body; validateClient (in the registry) then checks it like any other. */
export function registrationFromBody(body: Record<string, unknown>, trustDomain: string): OAuthClient {
  onlyKnown(body, REGISTRATION_FIELDS);
  const clientId = optionalString(body, 'clientId', 255);
  if (clientId === undefined) throw invalid('field "clientId" is required');
  const scopes = optionalStringList(body, 'scopes');
  const grantTypes = optionalStringList(body, 'grantTypes');
  const common = { clientId, ...(scopes ? { scopes } : {}), ...(grantTypes ? { grantTypes } : {}) };
  if (body.type === 'public') {
    const misplaced = ['authMethod', 'jwks', 'spiffeId', 'audience'].filter((k) => body[k] !== undefined);
    if (misplaced.length > 0) throw invalid(`a public client authenticates with nothing but its client_id and PKCE: remove ${misplaced.join(', ')}`);
    return { ...common, type: 'public', redirectUris: optionalStringList(body, 'redirectUris') ?? [] };
  }
  if (body.type === 'confidential') {
    if (body.redirectUris !== undefined) throw invalid('a confidential client gets tokens with client_credentials: it has no redirect URIs');
    const authMethod = body.authMethod;
    if (authMethod !== undefined && authMethod !== 'private_key_jwt' && authMethod !== 'tls_client_auth') {
      throw invalid('authMethod must be private_key_jwt or tls_client_auth (client secrets are not supported)');
    }
    const spiffeId = optionalString(body, 'spiffeId');
    // Only certificates of this trust domain's CA authenticate at the control plane.
    if (spiffeId !== undefined) parseSpiffeId(spiffeId, trustDomain);
    const jwks = jwksField(body);
    const audience = optionalString(body, 'audience');
    return {
      ...common, type: 'confidential',
      ...(authMethod !== undefined ? { authMethod } : {}), ...(jwks ? { jwks } : {}),
      ...(spiffeId !== undefined ? { spiffeId } : {}), ...(audience !== undefined ? { audience } : {}),
    };
  }
  throw invalid('field "type" must be "public" or "confidential"');
}

/** What the audit entry says of a client: never more than ids and kinds (keys are public, but long). */
function auditDetail(c: ClientEntry): Record<string, string | number | boolean> {
  return {
    clientId: c.clientId, type: c.type,
    ...(c.type === 'confidential' ? { authMethod: c.authMethod ?? 'private_key_jwt', keys: c.jwks?.keys.length ?? 0 } : { redirectUris: c.redirectUris.length }),
    scopes: (c.scopes ?? []).join(' '),
  };
}

/** `sessions`: how removing a client ends the sessions held through it. Default: none ended. */
export function createClientsApi(o: { registry: ClientRegistry; admin: AdminToken; trustDomain: string; clock?: Clock; sessions?: ClientSessions }): ClientsApi {
  const clock = o.clock ?? systemClock;
  const audit = (action: string, requestId: string, detail: Record<string, string | number | boolean>): void => {
    publishAudit({ type: 'admin', time: new Date(clock.now()).toISOString(), requestId, component: 'control', action, outcome: 'success', who: { sub: 'admin' }, detail });
  };

  return async (req, res, ctx) => {
    const path = new URL(req.url ?? '/', 'https://control.invalid').pathname;
    const method = req.method ?? '';
    if (path === CLIENTS_ADMIN_PATH) {
      o.admin.check(req.headers.authorization); // authentication before anything is parsed
      if (method === 'GET') {
        sendJson(res, 200, { clients: await o.registry.list() });
        return true;
      }
      if (method !== 'POST') throw notAllowed(method, path, 'GET, POST');
      const registered = await o.registry.register(registrationFromBody(await readJsonObject(req, 64 * 1024), o.trustDomain));
      audit('client.register', ctx.requestId, auditDetail(registered));
      sendJson(res, 201, registered);
      return true;
    }
    const m = ITEM.exec(path);
    if (!m?.[1]) return false;
    o.admin.check(req.headers.authorization);
    const clientId = decodeSegment(m[1]);
    const keys = m[2] !== undefined;
    if (keys) {
      if (method !== 'PUT') throw notAllowed(method, path, 'PUT');
      const body = await readJsonObject(req, 64 * 1024);
      onlyKnown(body, ['jwks']);
      const jwks = jwksField(body);
      if (!jwks) throw invalid('field "jwks" is required');
      const updated = await o.registry.setKeys(clientId, jwks);
      audit('client.keys', ctx.requestId, auditDetail(updated));
      sendJson(res, 200, updated);
      return true;
    }
    if (method === 'GET') {
      sendJson(res, 200, await o.registry.show(clientId));
      return true;
    }
    if (method !== 'DELETE') throw notAllowed(method, path, 'GET, DELETE');
    const removed = await o.registry.remove(clientId);
    const revokedSessions = o.sessions ? await o.sessions.revokeClient(clientId) : 0;
    audit('client.remove', ctx.requestId, { ...auditDetail(removed), revokedSessions });
    sendJson(res, 200, { clientId, removed: true, revokedSessions });
    return true;
  };
}

/** The path segment as a client_id; one that cannot be a client_id names no client. */
function decodeSegment(segment: string): string {
  let id: string;
  try {
    id = decodeURIComponent(segment);
  } catch {
    id = '';
  }
  if (!CLIENT_ID.test(id)) throw new PortcullisError('PCL_ERR_CLIENT_NOT_FOUND', 'no such OAuth client');
  return id;
}

function notAllowed(method: string, path: string, allowed: string): PortcullisError {
  return new PortcullisError('PCL_ERR_METHOD_NOT_ALLOWED', `${method || '?'} ${path}: only ${allowed}`);
}
