// /oauth2/authorize: GET shows the login form for a valid request; POST checks the credentials
// and redirects back to the client with a one-time code (RFC 6749 §4.1, PKCE, RFC 9207 `iss`).
import type { IncomingMessage, ServerResponse } from 'node:http';
import { PortcullisError } from '../../core/errors.js';
import { UNKNOWN_USER } from '../../identity/users.js';
import { issueAuthCode } from './auth-codes.js';
import { auditEvent } from './audit.js';
import { checkAuthorizationRequest, withParams, type AuthorizationCheck, type AuthorizationRequest } from './authorize-request.js';
import { PATHS, type OAuthContext, type ResolvedDeps } from './deps.js';
import { OAuthError } from './errors.js';
import { readForm, sendHtml, sendRedirect } from './http.js';
import { ERROR_PAGE_CSP, loginPageCsp, renderErrorPage, renderLoginPage } from './login-page.js';

/** The same words whatever went wrong: unknown user, wrong password or disabled account. */
const LOGIN_FAILED_TEXT = 'Wrong username or password.';

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
  const r = check.request;
  const username = form.get('username') ?? '';
  try {
    const user = await deps.users.verifyPassword(username, form.get('password') ?? '');
    const code = await issueAuthCode(deps.store, deps.clock, {
      clientId: r.client.clientId,
      redirectUri: r.redirectUri,
      codeChallenge: r.codeChallenge,
      username: user.username,
      scope: r.scope,
    });
    auditEvent(deps, ctx, { action: 'oauth.login', outcome: 'success', who: { sub: user.username, clientId: r.client.clientId }, detail: {} });
    sendRedirect(res, withParams(r.redirectUri, { code, state: r.state, iss: deps.issuer }));
  } catch (err) {
    if (!(err instanceof PortcullisError) || err.code !== 'PCL_ERR_LOGIN_FAILED') throw err;
    await loginFailed(deps, ctx, r, username, err, res);
  }
}

async function loginFailed(deps: ResolvedDeps, ctx: OAuthContext, r: AuthorizationRequest, username: string, err: PortcullisError, res: ServerResponse): Promise<void> {
  // A name that is no account may be a password typed into the wrong field: only its keyed hash is
  // recorded. An account's name is recorded as it is. Either way detection counts the same value.
  const unknown = err.message === UNKNOWN_USER;
  const sub = unknown && deps.hashId ? await deps.hashId(username) : username.slice(0, 64);
  auditEvent(deps, ctx, {
    action: 'oauth.login',
    outcome: 'failure',
    // The reason tells detection an unknown name from a wrong password.
    who: { sub, clientId: r.client.clientId },
    detail: { code: err.code, reason: err.message },
  });
  deps.logger.info({ clientId: r.client.clientId, reason: err.message }, 'login failed');
  // The form again, without the username, so every failure gets the byte-identical page.
  sendHtml(res, 401, renderLoginPage(r, PATHS.authorize, LOGIN_FAILED_TEXT), loginPageCsp(r.redirectUri));
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
