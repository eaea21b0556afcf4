// /oauth2/authorize: GET shows the login form for a valid request; POST checks the credentials
// and redirects back to the client with a one-time code (RFC 6749 §4.1, PKCE, RFC 9207 `iss`).
// The POST has two steps for users with a second factor: the password, then (carrying a login
// challenge instead of the password) a TOTP code. Before either is checked, the login throttle
// is asked; a throttled attempt gets the wrong-password page, plus Retry-After, unchecked.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { PortcullisError, type ErrorCode } from '../../core/errors.js';
import type { LoginAttempt } from '../../identity/login-throttle.js';
import { UNKNOWN_USER } from '../../identity/users.js';
import { issueAuthCode } from './auth-codes.js';
import { auditEvent } from './audit.js';
import { checkAuthorizationRequest, withParams, type AuthorizationCheck, type AuthorizationRequest } from './authorize-request.js';
import { PATHS, type OAuthContext, type ResolvedDeps } from './deps.js';
import { OAuthError } from './errors.js';
import { readForm, sendHtml, sendRedirect } from './http.js';
import { createLoginChallenge, returnLoginChallenge, takeLoginChallenge } from './login-challenges.js';
import { ERROR_PAGE_CSP, loginPageCsp, renderCodePage, renderEnrolmentRequiredPage, renderErrorPage, renderLoginPage } from './login-page.js';

/** The same words whatever went wrong: unknown user, wrong password, disabled account, throttled. */
const LOGIN_FAILED_TEXT = 'Wrong username or password.';
/** The same words for a wrong, replayed or expired code, and for a throttled one. */
const CODE_FAILED_TEXT = 'Wrong or expired code. Enter the code your app shows now.';
const CHALLENGE_GONE_TEXT = 'The sign-in was interrupted or took too long. Please sign in again.';

export function handleAuthorizeGet(deps: ResolvedDeps, url: URL, res: ServerResponse): void {
  const check = checkAuthorizationRequest(url.searchParams, deps.clients);
  if (!check.ok) return refuse(deps, check, res);
  sendHtml(res, 200, renderLoginPage(check.request, PATHS.authorize), loginPageCsp(check.request.redirectUri));
}

export async function handleAuthorizePost(deps: ResolvedDeps, req: IncomingMessage, res: ServerResponse, ctx: OAuthContext): Promise<void> {
  let form: URLSearchParams;
  try {
    form = await readForm(req);
  } catch (err) {
    // Nothing verified yet to redirect to: an error page, and the connection is not reused.
    if (!(err instanceof OAuthError)) throw err;
    res.setHeader('Connection', 'close');
    return sendHtml(res, err.httpStatus, renderErrorPage('The sign-in form could not be read.'), ERROR_PAGE_CSP);
  }
  const check = checkAuthorizationRequest(form, deps.clients);
  if (!check.ok) return refuse(deps, check, res);
  const challenge = form.get('login_challenge');
  if (challenge !== null) return codeStep(deps, ctx, check.request, challenge, form.get('code') ?? '', res);
  return passwordStep(deps, ctx, check.request, form.get('username') ?? '', form.get('password') ?? '', res);
}

async function passwordStep(deps: ResolvedDeps, ctx: OAuthContext, r: AuthorizationRequest, username: string, password: string, res: ServerResponse): Promise<void> {
  const attempt = deps.users.throttle.attempt(username, ctx.sourceAddress);
  if (!attempt.allowed) {
    await audit(deps, ctx, r, username, 'PCL_ERR_LOGIN_THROTTLED', `throttled (${attempt.stage})`, await isAccount(deps, username));
    res.setHeader('Retry-After', String(attempt.retryAfterSeconds));
    return sendHtml(res, 401, renderLoginPage(r, PATHS.authorize, LOGIN_FAILED_TEXT), loginPageCsp(r.redirectUri));
  }
  let account: string;
  try {
    account = (await deps.users.verifyPassword(username, password)).username;
  } catch (err) {
    // The attempt stays counted as a failure (also when something else went wrong: fail closed).
    if (!(err instanceof PortcullisError) || err.code !== 'PCL_ERR_LOGIN_FAILED') throw err;
    await audit(deps, ctx, r, username, err.code, err.message, err.message !== UNKNOWN_USER);
    // The form again, without the username, so every failure gets the byte-identical page.
    return sendHtml(res, 401, renderLoginPage(r, PATHS.authorize, LOGIN_FAILED_TEXT), loginPageCsp(r.redirectUri));
  }
  const factor = await deps.users.secondFactor(account);
  if (factor === 'none') return signedIn(deps, ctx, r, account, attempt, res);
  // The password was right: not a failure, not a sign-in yet. Each code is an attempt of its own.
  attempt.release();
  if (factor === 'enrolment-required') {
    await audit(deps, ctx, r, account, 'PCL_ERR_TOTP_ENROLMENT_REQUIRED', 'privileged role without a second factor', true);
    return sendHtml(res, 403, renderEnrolmentRequiredPage(), ERROR_PAGE_CSP);
  }
  const challenge = await createLoginChallenge(deps.store, deps.clock, account, r);
  sendHtml(res, 200, renderCodePage(r, PATHS.authorize, challenge), loginPageCsp(r.redirectUri));
}

async function codeStep(deps: ResolvedDeps, ctx: OAuthContext, r: AuthorizationRequest, challenge: string, code: string, res: ServerResponse): Promise<void> {
  const c = await takeLoginChallenge(deps.store, deps.clock, challenge, r);
  if (!c) return sendHtml(res, 401, renderLoginPage(r, PATHS.authorize, CHALLENGE_GONE_TEXT), loginPageCsp(r.redirectUri));
  const attempt = deps.users.throttle.attempt(c.username, ctx.sourceAddress);
  if (!attempt.allowed) {
    // Not checked, so not counted against the challenge either.
    await returnLoginChallenge(deps.store, challenge, c, false);
    await audit(deps, ctx, r, c.username, 'PCL_ERR_LOGIN_THROTTLED', `throttled (${attempt.stage}), one-time code`, true);
    res.setHeader('Retry-After', String(attempt.retryAfterSeconds));
    return sendHtml(res, 401, renderCodePage(r, PATHS.authorize, challenge, CODE_FAILED_TEXT), loginPageCsp(r.redirectUri));
  }
  if (await deps.users.verifyTotp(c.username, code)) return signedIn(deps, ctx, r, c.username, attempt, res, { secondFactor: 'totp' });
  await audit(deps, ctx, r, c.username, 'PCL_ERR_LOGIN_FAILED', 'wrong one-time code', true);
  if (await returnLoginChallenge(deps.store, challenge, c, true)) {
    return sendHtml(res, 401, renderCodePage(r, PATHS.authorize, challenge, CODE_FAILED_TEXT), loginPageCsp(r.redirectUri));
  }
  sendHtml(res, 401, renderLoginPage(r, PATHS.authorize, CHALLENGE_GONE_TEXT), loginPageCsp(r.redirectUri));
}

async function signedIn(deps: ResolvedDeps, ctx: OAuthContext, r: AuthorizationRequest, username: string, attempt: Extract<LoginAttempt, { allowed: true }>, res: ServerResponse, detail: Record<string, string> = {}): Promise<void> {
  const code = await issueAuthCode(deps.store, deps.clock, {
    clientId: r.client.clientId,
    redirectUri: r.redirectUri,
    codeChallenge: r.codeChallenge,
    username,
    scope: r.scope,
  });
  attempt.succeeded();
  auditEvent(deps, ctx, { action: 'oauth.login', outcome: 'success', who: { sub: username, clientId: r.client.clientId }, detail });
  sendRedirect(res, withParams(r.redirectUri, { code, state: r.state, iss: deps.issuer }));
}

/** Whether a typed name is an account (a store read, no password check): decides how the audit records it. */
async function isAccount(deps: ResolvedDeps, username: string): Promise<boolean> {
  return (await deps.users.get(username)) !== undefined;
}

async function audit(deps: ResolvedDeps, ctx: OAuthContext, r: AuthorizationRequest, username: string, code: ErrorCode, reason: string, account: boolean): Promise<void> {
  // A name that is no account may be a password typed into the wrong field: only its keyed hash is
  // recorded. An account's name is recorded as it is. Either way detection counts the same value.
  const sub = !account && deps.hashId ? await deps.hashId(username) : username.slice(0, 64);
  auditEvent(deps, ctx, {
    action: 'oauth.login',
    outcome: 'failure',
    // The reason tells detection an unknown name from a wrong password.
    who: { sub, clientId: r.client.clientId },
    detail: { code, reason },
  });
  deps.logger.info({ clientId: r.client.clientId, reason }, 'login failed');
}

function refuse(deps: ResolvedDeps, check: Exclude<AuthorizationCheck, { ok: true }>, res: ServerResponse): void {
  if (!check.redirect) {
    deps.logger.info({ reason: check.description }, 'authorization request refused (no verified redirect)');
    return sendHtml(res, 400, renderErrorPage(check.description), ERROR_PAGE_CSP);
  }
  sendRedirect(res, withParams(check.redirectUri, {
    error: check.error,
    error_description: check.description,
    state: check.state,
    iss: deps.issuer,
  }));
}
