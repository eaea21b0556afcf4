// The control plane's user administration, for the admin token only: list, disable, enable,
// delete, set a password, enrol / confirm / remove a TOTP second factor. Adding a user stays
// where it is (POST /v1/admin/users in server.ts): this API leaves that request to the caller.
// Disabling, deleting and changing the password also end the user's sessions: their refresh-token
// families are revoked, with the access tokens those produced. Every change is an audit entry;
// none records a password or a TOTP secret.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { systemClock, type Clock } from '../core/clock.js';
import { PortcullisError } from '../core/errors.js';
import { publishAudit } from '../core/events.js';
import { isValidUsername, type Users } from '../identity/users.js';
import type { AdminToken } from './admin-token.js';
import { readJsonObject, sendJson, stringField } from './http.js';

/** GET: every user (POST, adding one, is server.ts's). */
export const USERS_ADMIN_PATH = '/v1/admin/users';

/** Ends a user's sessions: RefreshTokens is one (its families, with the access tokens they produced). */
export interface UserSessions {
  /** Revokes every session (refresh-token family) of the user; returns how many were active. */
  revokeUser(username: string): Promise<number>;
}

export type UsersApi = (req: IncomingMessage, res: ServerResponse, ctx: { requestId: string }) => Promise<boolean>;

const ITEM = /^\/v1\/admin\/users\/([^/]+)(?:\/(disable|enable|password|totp|totp\/confirm))?$/;

/** Refuses any member not in `known`. */
function onlyKnown(body: Record<string, unknown>, known: readonly string[]): void {
  if (Object.keys(body).some((k) => !known.includes(k))) {
    throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `unknown field(s) in the body; known: ${known.join(', ')}`);
  }
}

/**
 * `sessions`: how disable, delete and a new password end the user's sessions. Default: none ended
 * (tokens already issued then last until they expire; new ones are refused to a disabled user).
 */
export function createUsersApi(o: { users: Users; admin: AdminToken; clock?: Clock; sessions?: UserSessions }): UsersApi {
  const clock = o.clock ?? systemClock;
  const audit = (action: string, requestId: string, detail: Record<string, string | number | boolean>): void => {
    publishAudit({ type: 'admin', time: new Date(clock.now()).toISOString(), requestId, component: 'control', action, outcome: 'success', who: { sub: 'admin' }, detail });
  };
  const endSessions = async (username: string): Promise<number> => (o.sessions ? o.sessions.revokeUser(username) : 0);

  return async (req, res, ctx) => {
    const path = new URL(req.url ?? '/', 'https://control.invalid').pathname;
    const method = req.method ?? '';
    if (path === USERS_ADMIN_PATH) {
      if (method === 'POST') return false; // adding a user: server.ts
      o.admin.check(req.headers.authorization);
      if (method !== 'GET') throw notAllowed(method, path, 'GET, POST');
      sendJson(res, 200, { users: await o.users.list() });
      return true;
    }
    const m = ITEM.exec(path);
    if (!m?.[1]) return false;
    o.admin.check(req.headers.authorization); // authentication before anything is parsed
    const username = m[1];
    const action = m[2];
    // No such account can exist, so the answer is the same as for a name that is not one.
    if (!isValidUsername(username)) throw new PortcullisError('PCL_ERR_USER_NOT_FOUND', 'no such user');
    const route = `${method} ${action ?? ''}`;
    switch (route) {
      case 'DELETE ': {
        await o.users.delete(username);
        const revokedSessions = await endSessions(username);
        audit('user.delete', ctx.requestId, { username, revokedSessions });
        sendJson(res, 200, { username, deleted: true, revokedSessions });
        return true;
      }
      case 'POST disable':
      case 'POST enable': {
        const disabled = action === 'disable';
        await o.users.setDisabled(username, disabled);
        const revokedSessions = disabled ? await endSessions(username) : 0;
        audit(`user.${action}`, ctx.requestId, { username, revokedSessions });
        sendJson(res, 200, { username, disabled, revokedSessions });
        return true;
      }
      case 'POST password': {
        const body = await readJsonObject(req, 8 * 1024);
        onlyKnown(body, ['password']);
        await o.users.setPassword(username, stringField(body, 'password', 1024));
        const revokedSessions = await endSessions(username);
        audit('user.password', ctx.requestId, { username, revokedSessions });
        sendJson(res, 200, { username, revokedSessions });
        return true;
      }
      case 'POST totp': {
        const enrolment = await o.users.enrollTotp(username);
        audit('user.totp.enrol', ctx.requestId, { username });
        // The secret is in this answer only (no-store); it is sealed at rest and never shown again.
        sendJson(res, 201, { username, ...enrolment, status: 'pending' });
        return true;
      }
      case 'POST totp/confirm': {
        const body = await readJsonObject(req, 1024);
        onlyKnown(body, ['code']);
        await o.users.confirmTotp(username, stringField(body, 'code', 16));
        audit('user.totp.confirm', ctx.requestId, { username });
        sendJson(res, 200, { username, status: 'active' });
        return true;
      }
      case 'DELETE totp': {
        const removed = await o.users.removeTotp(username);
        audit('user.totp.remove', ctx.requestId, { username, removed });
        sendJson(res, 200, { username, removed });
        return true;
      }
      default:
        throw notAllowed(method, path, allowedFor(action));
    }
  };
}

function allowedFor(action: string | undefined): string {
  if (action === undefined) return 'DELETE';
  return action === 'totp' ? 'POST, DELETE' : 'POST';
}

function notAllowed(method: string, path: string, allowed: string): PortcullisError {
  return new PortcullisError('PCL_ERR_METHOD_NOT_ALLOWED', `${method || '?'} ${path}: only ${allowed}`);
}
