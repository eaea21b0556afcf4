// The audit store's search endpoint: GET /v1/audit/events, for the admin token only. Every filter
// is checked (unknown parameters are refused, not ignored); the answer is newest first, at most
// `limit` (default 100, at most 1000) events. It answers the path it owns (true) and leaves
// everything else to the caller (false), like the KMS API.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { PortcullisError } from '../core/errors.js';
import type { AuditQuery, Store } from '../store/store.js';
import type { AdminToken } from './admin-token.js';
import type { IdHasher } from './audit-ids.js';
import { readJsonObject, sendJson, stringField } from './http.js';

export const AUDIT_EVENTS_PATH = '/v1/audit/events';
/** POST {value} → {hash}: the keyed hash an audit event records for that value. */
export const AUDIT_HASH_PATH = '/v1/admin/audit/hash';
export const MAX_AUDIT_LIMIT = 1000;
export const DEFAULT_AUDIT_LIMIT = 100;

const STRING_FILTERS = ['principal', 'workload', 'route', 'policy', 'component'] as const;
const TIME_FILTERS = ['since', 'until'] as const;
const KNOWN = new Set<string>([...STRING_FILTERS, ...TIME_FILTERS, 'decision', 'limit']);

export type AuditApi = (req: IncomingMessage, res: ServerResponse) => Promise<boolean>;

/** The query string as an AuditQuery; throws PCL_ERR_INVALID_ARGUMENT naming the bad parameter. */
export function parseAuditQuery(params: URLSearchParams): AuditQuery {
  const bad = (msg: string): PortcullisError => new PortcullisError('PCL_ERR_INVALID_ARGUMENT', msg);
  for (const k of params.keys()) {
    if (!KNOWN.has(k)) throw bad(`unknown parameter ${k.slice(0, 64)} (known: ${[...KNOWN].join(', ')})`);
    if (params.getAll(k).length > 1) throw bad(`parameter ${k} given twice`);
  }
  const q: AuditQuery = { limit: DEFAULT_AUDIT_LIMIT };
  for (const k of STRING_FILTERS) {
    const v = params.get(k);
    if (v === null) continue;
    if (v === '' || v.length > 2048) throw bad(`${k} must be 1 to 2048 characters`);
    q[k] = v;
  }
  for (const k of TIME_FILTERS) {
    const v = params.get(k);
    if (v === null) continue;
    const t = Date.parse(v);
    if (!/^\d{4}-\d{2}-\d{2}T/.test(v) || Number.isNaN(t)) throw bad(`${k} must be an ISO 8601 time`);
    q[k] = new Date(t).toISOString();
  }
  const decision = params.get('decision');
  if (decision !== null) {
    if (decision !== 'allow' && decision !== 'deny') throw bad('decision must be allow or deny');
    q.decision = decision;
  }
  const limit = params.get('limit');
  if (limit !== null) {
    if (!/^\d{1,4}$/.test(limit) || Number(limit) < 1 || Number(limit) > MAX_AUDIT_LIMIT) throw bad(`limit must be 1 to ${MAX_AUDIT_LIMIT}`);
    q.limit = Number(limit);
  }
  return q;
}

export function createAuditApi(deps: { store: Store; admin: AdminToken; hashId: IdHasher }): AuditApi {
  return async (req, res) => {
    const url = new URL(req.url ?? '/', 'https://control.invalid');
    if (url.pathname === AUDIT_HASH_PATH) {
      if (req.method !== 'POST') throw new PortcullisError('PCL_ERR_METHOD_NOT_ALLOWED', `${req.method} ${url.pathname}: only POST`);
      deps.admin.check(req.headers.authorization);
      const value = stringField(await readJsonObject(req), 'value', 1024);
      sendJson(res, 200, { hash: await deps.hashId(value) });
      return true;
    }
    if (url.pathname !== AUDIT_EVENTS_PATH) return false;
    if (req.method !== 'GET') throw new PortcullisError('PCL_ERR_METHOD_NOT_ALLOWED', `${req.method} ${url.pathname}: only GET`);
    deps.admin.check(req.headers.authorization); // authentication before anything is parsed
    const events = await deps.store.queryAuditEvents(parseAuditQuery(url.searchParams));
    sendJson(res, 200, { events });
    return true;
  };
}
