// The admin API of the token signing keys: GET /v1/admin/keys lists them (kid, alg, state, times;
// never key material), POST /v1/admin/keys/rotate `{force?: boolean}` rotates them. Both need the
// admin token; every rotation asked for, done or refused, is an audit event (`keys.rotate`). It
// answers the paths it owns (true) and leaves everything else to the caller (false).
import type { IncomingMessage, ServerResponse } from 'node:http';
import { systemClock, type Clock } from '../core/clock.js';
import { asPortcullisError, PortcullisError } from '../core/errors.js';
import { publishAudit } from '../core/events.js';
import type { SigningKeyInfo, SigningKeys } from '../tokens/signing-keys.js';
import type { AdminToken } from './admin-token.js';
import { readJsonObject, sendJson } from './http.js';

export const KEYS_PATH = '/v1/admin/keys';
export const KEYS_ROTATE_PATH = '/v1/admin/keys/rotate';

/** Reply of GET /v1/admin/keys. */
export interface KeysListReply {
  keys: SigningKeyInfo[];
  /** How long a next key must be published before a rotation that is not forced (ms). */
  publishLeadMs: number;
}

/** Reply of POST /v1/admin/keys/rotate: the RotationResult and the keys after it. */
export interface KeysRotateReply {
  rotated: boolean;
  from: string;
  to: string;
  next: string;
  force: boolean;
  at: string;
  retireAt: string;
  keys: SigningKeyInfo[];
}

export type KeysApi = (req: IncomingMessage, res: ServerResponse, ctx: { requestId: string; peerSpiffeId?: string | undefined }) => Promise<boolean>;

export function createKeysApi(o: { keys: SigningKeys; admin: AdminToken; clock?: Clock }): KeysApi {
  const clock = o.clock ?? systemClock;
  return async (req, res, ctx) => {
    const path = new URL(req.url ?? '/', 'https://control.invalid').pathname;
    if (path !== KEYS_PATH && path !== KEYS_ROTATE_PATH) return false;
    const wanted = path === KEYS_PATH ? 'GET' : 'POST';
    if (req.method !== wanted) throw new PortcullisError('PCL_ERR_METHOD_NOT_ALLOWED', `${path} takes ${wanted}`);
    o.admin.check(req.headers.authorization);

    if (path === KEYS_PATH) {
      // Reload so the answer shows what another replica may have rotated meanwhile.
      await o.keys.reload();
      sendJson(res, 200, { keys: o.keys.list(), publishLeadMs: o.keys.publishLeadMs } satisfies KeysListReply);
      return true;
    }

    const body = await readJsonObject(req, 1024);
    const unknown = Object.keys(body).filter((k) => k !== 'force');
    if (unknown.length > 0) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `unknown field "${unknown[0]?.slice(0, 32)}" (known: force)`);
    if (body.force !== undefined && typeof body.force !== 'boolean') throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', 'field "force" must be a boolean');
    const force = body.force === true;
    const audit = (outcome: 'success' | 'failure', detail: Record<string, string | boolean>): void => publishAudit({
      type: 'admin', time: new Date(clock.now()).toISOString(), requestId: ctx.requestId, component: 'control', action: 'keys.rotate', outcome,
      who: { sub: 'admin' }, detail: { force, ...detail },
    });
    let r;
    try {
      r = await o.keys.rotate({ force, by: 'admin' });
    } catch (err) {
      audit('failure', { code: asPortcullisError(err).code });
      throw err;
    }
    audit('success', { rotated: r.rotated, from: r.from, to: r.to, next: r.next, retireAt: r.retireAt });
    sendJson(res, 200, { ...r, keys: o.keys.list() } satisfies KeysRotateReply);
    return true;
  };
}
