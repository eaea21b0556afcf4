// /device: where a person lets a device sign in (RFC 8628 §3.3). Steps, each a POST to this page:
//   1. the user code the device shows (GET may prefill it from verification_uri_complete; the
//      person still confirms it, §3.3.1);
//   2. the sign-in, shared with /oauth2/authorize (sign-in.ts: password, throttling, TOTP for
//      those who have it or whose role requires it), on a page naming the client and its scope;
//   3. allow or deny, carrying a consent ticket made at sign-in (32 random bytes, one use, 5 min).
// Every POST that carries a user code asks the user-code guard first and looks the code up again,
// so each step counts a wrong code and none trusts an earlier one. No cookies: a forged
// cross-site post carries no password, login challenge or consent ticket, so it changes nothing
// (CSRF); the pages may not be framed (clickjacking) and post only to themselves.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ErrorCode } from '../../core/errors.js';
import { auditEvent } from './audit.js';
import { PATHS, type OAuthContext, type ResolvedDeps } from './deps.js';
import { formatUserCode, normalizeUserCode, type PendingDeviceAuthorization } from './device-codes.js';
import { renderConsentPage, renderDeviceDonePage, renderUserCodePage } from './device-pages.js';
import { OAuthError } from './errors.js';
import { readForm, repeatedParams, sendHtml } from './http.js';
import { ERROR_PAGE_CSP, renderErrorPage, renderLoginPage, SELF_FORM_CSP } from './login-page.js';
import { codeStep, passwordStep, type SignInFlow } from './sign-in.js';

/** The same words for a wrong, used and expired code: none of them is an oracle for the others. */
const WRONG_CODE_TEXT = 'That code is wrong or has expired. Check the code your device shows now.';
const THROTTLED_TEXT = 'Too many wrong codes. Wait a few minutes, then try again.';
const GONE_TEXT = 'This device request is no longer open (already answered, or expired). Start again on the device.';

export function handleDeviceGet(_deps: ResolvedDeps, url: URL, res: ServerResponse): void {
  // Only a well-formed code is echoed into the form; nothing is looked up (no oracle, no count).
  const typed = url.searchParams.get('user_code');
  const code = typed === null ? undefined : normalizeUserCode(typed);
  sendHtml(res, 200, renderUserCodePage(PATHS.device, code ? formatUserCode(code) : ''), SELF_FORM_CSP);
}

export async function handleDevicePost(deps: ResolvedDeps, req: IncomingMessage, res: ServerResponse, ctx: OAuthContext): Promise<void> {
  let form: URLSearchParams;
  try {
    form = await readForm(req);
  } catch (err) {
    if (!(err instanceof OAuthError)) throw err;
    res.setHeader('Connection', 'close');
    return sendHtml(res, err.httpStatus, renderErrorPage('The form could not be read.'), ERROR_PAGE_CSP);
  }
  if (repeatedParams(form).length > 0) return sendHtml(res, 400, renderErrorPage('The form was sent with a field repeated.'), ERROR_PAGE_CSP);

  const ticket = form.get('consent_ticket');
  if (ticket !== null) return decide(deps, ctx, ticket, form.get('decision'), res);

  const typed = form.get('user_code') ?? '';
  const attempt = deps.userCodeGuard.attempt(ctx.sourceAddress);
  if (!attempt.allowed) {
    auditVerify(deps, ctx, 'PCL_ERR_USER_CODE_THROTTLED', `throttled (${attempt.scope})`);
    res.setHeader('Retry-After', String(attempt.retryAfterSeconds));
    return sendHtml(res, 429, renderUserCodePage(PATHS.device, '', THROTTLED_TEXT), SELF_FORM_CSP);
  }
  const pending = await deps.deviceAuthorizations.lookupUserCode(typed);
  if (!pending) {
    auditVerify(deps, ctx, 'PCL_ERR_USER_CODE_INVALID', normalizeUserCode(typed) ? 'unknown, used or expired user code' : 'malformed user code');
    return sendHtml(res, 400, renderUserCodePage(PATHS.device, '', WRONG_CODE_TEXT), SELF_FORM_CSP);
  }
  attempt.succeeded();

  const flow = signInFlow(deps, pending);
  const challenge = form.get('login_challenge');
  if (challenge !== null) return codeStep(deps, ctx, flow, challenge, form.get('code') ?? '', res);
  if (form.get('username') !== null) return passwordStep(deps, ctx, flow, form.get('username') ?? '', form.get('password') ?? '', res);
  sendHtml(res, 200, renderLoginPage(flow.form), flow.csp);
}

/** The sign-in for one user code: it leads to the consent page, never to tokens directly. */
function signInFlow(deps: ResolvedDeps, p: PendingDeviceAuthorization): SignInFlow {
  return {
    form: {
      action: PATHS.device,
      clientId: p.clientId,
      scope: p.scope,
      hidden: [['user_code', p.userCode]],
      lead: 'to let a device sign in to',
      notice: `Continue only if the device shows the code ${p.userCode}.`,
    },
    csp: SELF_FORM_CSP,
    binding: JSON.stringify(['device', p.userKey]),
    auditDetail: { flow: 'device' },
    signedIn: async (username) => {
      const ticket = await deps.deviceAuthorizations.createConsent(p.userKey, username);
      const html = renderConsentPage(PATHS.device, { clientId: p.clientId, scope: p.scope, userCode: p.userCode, username, ticket });
      return (res) => sendHtml(res, 200, html, SELF_FORM_CSP);
    },
  };
}

async function decide(deps: ResolvedDeps, ctx: OAuthContext, ticket: string, decision: string | null, res: ServerResponse): Promise<void> {
  if (decision !== 'approve' && decision !== 'deny') return sendHtml(res, 400, renderErrorPage('Choose Allow or Deny.'), ERROR_PAGE_CSP);
  const approved = decision === 'approve';
  const d = await deps.deviceAuthorizations.decide(ticket, approved);
  if (!d) {
    auditEvent(deps, ctx, { action: 'oauth.device.decision', outcome: 'failure', who: {}, detail: { code: 'PCL_ERR_USER_CODE_INVALID', reason: 'consent ticket unknown, used or expired, or the request was answered or expired' } });
    return sendHtml(res, 400, renderErrorPage(GONE_TEXT), ERROR_PAGE_CSP);
  }
  auditEvent(deps, ctx, {
    action: 'oauth.device.decision',
    outcome: 'success',
    who: { sub: d.username, clientId: d.clientId },
    detail: { decision: approved ? 'approved' : 'denied', ...(d.scope.length > 0 ? { scope: d.scope.join(' ') } : {}) },
  });
  sendHtml(res, 200, renderDeviceDonePage(approved), ERROR_PAGE_CSP);
}

function auditVerify(deps: ResolvedDeps, ctx: OAuthContext, code: ErrorCode, reason: string): void {
  // The typed code is not recorded: it may be someone else's code with a typo.
  auditEvent(deps, ctx, { action: 'oauth.device.verify', outcome: 'failure', who: {}, detail: { code, reason } });
  deps.logger.info({ reason }, 'device verification refused');
}
