// Audit events of the token service: who logged in or got a token, never a password, code or token.
import { publishAudit, type AdminEvent } from '../../core/events.js';
import type { AuthenticatedClient } from './client-auth.js';
import type { OAuthContext, ResolvedDeps } from './deps.js';
import type { OAuthError } from './errors.js';

const COMPONENT = 'tokens';

export function auditEvent(
  deps: ResolvedDeps,
  ctx: OAuthContext,
  e: { action: string; outcome: AdminEvent['outcome']; who: AdminEvent['who']; detail: AdminEvent['detail'] },
): void {
  const who: AdminEvent['who'] = { ...e.who };
  if (ctx.sourceAddress) who.sourceAddress = ctx.sourceAddress;
  publishAudit({
    type: 'admin',
    time: new Date(deps.clock.now()).toISOString(),
    ...(ctx.requestId ? { requestId: ctx.requestId } : {}),
    component: COMPONENT,
    action: e.action,
    outcome: e.outcome,
    who,
    detail: e.detail,
  });
}

/** Audit and log of a refused request: the public error and the inner reason (never a token). */
export function auditRefusal(deps: ResolvedDeps, ctx: OAuthContext, action: string, detail: Record<string, string>, client: AuthenticatedClient | undefined, err: OAuthError): void {
  const reason = err.cause instanceof Error ? err.cause.message : err.description;
  const who: AdminEvent['who'] = client
    ? { clientId: client.clientId, ...(client.kind === 'workload' ? { spiffeId: client.clientId } : {}) }
    : ctx.peerSpiffeId ? { spiffeId: ctx.peerSpiffeId } : {};
  auditEvent(deps, ctx, { action, outcome: 'failure', who, detail: { ...detail, error: err.publicMessage, reason } });
  deps.logger.info({ action, ...detail, error: err.publicMessage, reason }, 'OAuth request refused');
}
