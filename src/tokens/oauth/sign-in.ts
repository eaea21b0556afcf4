// The sign-in steps every flow with a person shares (the authorization request's form, the device
// verification page): the password, then for users with a second factor a TOTP code, carried by a
// login challenge instead of the password. Before either is checked, the login throttle is asked;
// a throttled attempt gets the wrong-password page, plus Retry-After, unchecked. Every failure
// gets the same page and status whatever went wrong, so the page is no account-existence oracle.
import type { ServerResponse } from 'node:http';
import { PortcullisError, type ErrorCode } from '../../core/errors.js';
import type { LoginAttempt } from '../../identity/login-throttle.js';
import { UNKNOWN_USER } from '../../identity/users.js';
import { auditEvent } from './audit.js';
import type { OAuthContext, ResolvedDeps } from './deps.js';
import { sendHtml } from './http.js';
import { createLoginChallenge, returnLoginChallenge, takeLoginChallenge } from './login-challenges.js';
import { ERROR_PAGE_CSP, renderCodePage, renderEnrolmentRequiredPage, renderLoginPage, type LoginForm } from './login-page.js';

/** The same words whatever went wrong: unknown user, wrong password, disabled account, throttled. */
const LOGIN_FAILED_TEXT = 'Wrong username or password.';
/** The same words for a wrong, replayed or expired code, and for a throttled one. */
const CODE_FAILED_TEXT = 'Wrong or expired code. Enter the code your app shows now.';
const CHALLENGE_GONE_TEXT = 'The sign-in was interrupted or took too long. Please sign in again.';

/** One flow's use of the sign-in: what its pages show and carry, and what a sign-in leads to. */
export interface SignInFlow {
  form: LoginForm;
  /** Content-Security-Policy of the flow's pages. */
  csp: string;
  /** What the sign-in is for: a login challenge made here is valid only for the same binding. */
  binding: string;
  /** Added to the flow's `oauth.login` audit events (identifiers only). */
  auditDetail?: Record<string, string>;
  /**
   * The person is signed in: do the flow's work (issue a code, a consent ticket) and return how to
   * answer. Throwing leaves the attempt counted as a failure (fail closed).
   */
  signedIn(username: string): Promise<(res: ServerResponse) => void>;
}

export async function passwordStep(deps: ResolvedDeps, ctx: OAuthContext, flow: SignInFlow, username: string, password: string, res: ServerResponse): Promise<void> {
  const attempt = await deps.users.throttle.attempt(username, ctx.sourceAddress);
  if (!attempt.allowed) {
    await auditFailure(deps, ctx, flow, username, 'PCL_ERR_LOGIN_THROTTLED', `throttled (${attempt.stage})`, await isAccount(deps, username));
    res.setHeader('Retry-After', String(attempt.retryAfterSeconds));
    return sendHtml(res, 401, renderLoginPage(flow.form, LOGIN_FAILED_TEXT), flow.csp);
  }
  let account: string;
  try {
    account = (await deps.users.verifyPassword(username, password)).username;
  } catch (err) {
    // The attempt stays counted as a failure (also when something else went wrong: fail closed).
    if (!(err instanceof PortcullisError) || err.code !== 'PCL_ERR_LOGIN_FAILED') throw err;
    await auditFailure(deps, ctx, flow, username, err.code, err.message, err.message !== UNKNOWN_USER);
    // The form again, without the username, so every failure gets the byte-identical page.
    return sendHtml(res, 401, renderLoginPage(flow.form, LOGIN_FAILED_TEXT), flow.csp);
  }
  const factor = await deps.users.secondFactor(account);
  if (factor === 'none') return signedIn(deps, ctx, flow, account, attempt, res);
  // The password was right: not a failure, not a sign-in yet. Each code is an attempt of its own.
  await attempt.release();
  if (factor === 'enrolment-required') {
    await auditFailure(deps, ctx, flow, account, 'PCL_ERR_TOTP_ENROLMENT_REQUIRED', 'privileged role without a second factor', true);
    return sendHtml(res, 403, renderEnrolmentRequiredPage(), ERROR_PAGE_CSP);
  }
  const challenge = await createLoginChallenge(deps.store, deps.clock, account, flow.binding);
  sendHtml(res, 200, renderCodePage(flow.form, challenge), flow.csp);
}

export async function codeStep(deps: ResolvedDeps, ctx: OAuthContext, flow: SignInFlow, challenge: string, code: string, res: ServerResponse): Promise<void> {
  const c = await takeLoginChallenge(deps.store, deps.clock, challenge, flow.binding);
  if (!c) return sendHtml(res, 401, renderLoginPage(flow.form, CHALLENGE_GONE_TEXT), flow.csp);
  const attempt = await deps.users.throttle.attempt(c.username, ctx.sourceAddress);
  if (!attempt.allowed) {
    // Not checked, so not counted against the challenge either.
    await returnLoginChallenge(deps.store, challenge, c, false);
    await auditFailure(deps, ctx, flow, c.username, 'PCL_ERR_LOGIN_THROTTLED', `throttled (${attempt.stage}), one-time code`, true);
    res.setHeader('Retry-After', String(attempt.retryAfterSeconds));
    return sendHtml(res, 401, renderCodePage(flow.form, challenge, CODE_FAILED_TEXT), flow.csp);
  }
  if (await deps.users.verifyTotp(c.username, code)) return signedIn(deps, ctx, flow, c.username, attempt, res, { secondFactor: 'totp' });
  await auditFailure(deps, ctx, flow, c.username, 'PCL_ERR_LOGIN_FAILED', 'wrong one-time code', true);
  if (await returnLoginChallenge(deps.store, challenge, c, true)) {
    return sendHtml(res, 401, renderCodePage(flow.form, challenge, CODE_FAILED_TEXT), flow.csp);
  }
  sendHtml(res, 401, renderLoginPage(flow.form, CHALLENGE_GONE_TEXT), flow.csp);
}

async function signedIn(deps: ResolvedDeps, ctx: OAuthContext, flow: SignInFlow, username: string, attempt: Extract<LoginAttempt, { allowed: true }>, res: ServerResponse, detail: Record<string, string> = {}): Promise<void> {
  const respond = await flow.signedIn(username);
  await attempt.succeeded();
  auditEvent(deps, ctx, { action: 'oauth.login', outcome: 'success', who: { sub: username, clientId: flow.form.clientId }, detail: { ...flow.auditDetail, ...detail } });
  respond(res);
}

/** Whether a typed name is an account (a store read, no password check): decides how the audit records it. */
async function isAccount(deps: ResolvedDeps, username: string): Promise<boolean> {
  return (await deps.users.get(username)) !== undefined;
}

async function auditFailure(deps: ResolvedDeps, ctx: OAuthContext, flow: SignInFlow, username: string, code: ErrorCode, reason: string, account: boolean): Promise<void> {
  // A name that is no account may be a password typed into the wrong field: only its keyed hash is
  // recorded. An account's name is recorded as it is. Either way detection counts the same value.
  const sub = !account && deps.hashId ? await deps.hashId(username) : username.slice(0, 64);
  const clientId = flow.form.clientId;
  auditEvent(deps, ctx, {
    action: 'oauth.login',
    outcome: 'failure',
    // The reason tells detection an unknown name from a wrong password.
    who: { sub, clientId },
    detail: { ...flow.auditDetail, code, reason },
  });
  deps.logger.info({ clientId, reason }, 'login failed');
}
