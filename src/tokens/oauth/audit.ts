// Audit events of the token service: who logged in or got a token, never a password, code or token.
import { publishAudit, type AdminEvent } from '../../core/events.js';
import type { OAuthContext, ResolvedDeps } from './deps.js';

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
