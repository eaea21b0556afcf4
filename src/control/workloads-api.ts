// Admin API for workload identities and the CA (docs/workload-identity.md), all behind the admin token:
//   GET  /v1/admin/workloads          known workloads: newest certificate (serial, expiry), status
//   POST /v1/admin/workloads/revoke   {spiffeId, reason?}: stops renewal, joins the data planes' deny list
//   GET  /v1/admin/ca                 the CA's roots and where each is in its rotation
//   POST /v1/admin/ca/rotate          starts a rotation now (successor published, signing after the publish lead)
import type { IncomingMessage, ServerResponse } from 'node:http';
import { PortcullisError } from '../core/errors.js';
import type { CertificateAuthority } from '../identity/ca.js';
import type { CaRotationScheduler } from '../identity/ca-rotation.js';
import type { WorkloadRevocations } from '../identity/workload-revocations.js';
import type { AdminToken } from './admin-token.js';
import { readJsonObject, sendJson, stringField } from './http.js';

export type WorkloadsApi = (req: IncomingMessage, res: ServerResponse, ctx: { requestId: string }) => Promise<boolean>;

export interface WorkloadsApiOptions {
  workloads: WorkloadRevocations;
  ca: CertificateAuthority;
  admin: AdminToken;
  /** When given, a manual rotation is logged and audited through it like a scheduled one (and the bundle file refreshed). */
  scheduler?: CaRotationScheduler;
}

const REVOKE_FIELDS = ['spiffeId', 'reason'];

/** Answers the four paths above (true), or leaves the request to the next handler (false). */
export function createWorkloadsApi(o: WorkloadsApiOptions): WorkloadsApi {
  const routes: Record<string, { method: 'GET' | 'POST'; run: (req: IncomingMessage, res: ServerResponse, requestId: string) => Promise<void> }> = {
    '/v1/admin/workloads': {
      method: 'GET',
      run: async (_req, res) => sendJson(res, 200, { workloads: await o.workloads.list() }),
    },
    '/v1/admin/workloads/revoke': {
      method: 'POST',
      run: async (req, res, requestId) => {
        const body = await readJsonObject(req, 8 * 1024);
        const extra = Object.keys(body).filter((k) => !REVOKE_FIELDS.includes(k));
        if (extra.length > 0) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `unknown field(s) in the body; known: ${REVOKE_FIELDS.join(', ')}`);
        if (body.reason !== undefined && typeof body.reason !== 'string') throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', 'field "reason" must be a string');
        const { revocation, alreadyRevoked } = await o.workloads.revoke(stringField(body, 'spiffeId', 2048), {
          ...(typeof body.reason === 'string' ? { reason: body.reason } : {}), by: 'admin', requestId,
        });
        sendJson(res, 200, { spiffeId: revocation.spiffeId, revoked: true, alreadyRevoked, at: revocation.at, serials: revocation.serials.map((s) => s.serial) });
      },
    },
    '/v1/admin/ca': {
      method: 'GET',
      run: async (_req, res) => sendJson(res, 200, { trustDomain: o.ca.trustDomain, generations: o.ca.generations(), publishLeadMs: o.ca.publishLeadMs, successorDueAt: new Date(o.ca.successorDueAt()).toISOString() }),
    },
    '/v1/admin/ca/rotate': {
      method: 'POST',
      // No body is read: a rotation has no parameters.
      run: async (_req, res, requestId) => {
        const r = await o.ca.rotate();
        o.scheduler?.report(r, 'admin', requestId);
        sendJson(res, r.created ? 201 : 200, r);
      },
    },
  };
  return async (req, res, ctx) => {
    const path = new URL(req.url ?? '/', 'https://control.invalid').pathname;
    const route = Object.hasOwn(routes, path) ? routes[path] : undefined;
    if (!route) return false;
    // The token before anything else, the method and the body included.
    o.admin.check(req.headers.authorization);
    if (req.method !== route.method) throw new PortcullisError('PCL_ERR_METHOD_NOT_ALLOWED', `${req.method ?? '?'} ${path}: only ${route.method}`);
    await route.run(req, res, ctx.requestId);
    return true;
  };
}
