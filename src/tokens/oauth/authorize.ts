// /oauth2/authorize: GET shows the login form for a valid request; POST checks the credentials
// and redirects back to the client with a one-time code (RFC 6749 §4.1, PKCE, RFC 9207 `iss`).
// The POST has two steps for users with a second factor: the password, then (carrying a login
// challenge instead of the password) a TOTP code; both are sign-in.ts, shared with the device page.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { issueAuthCode } from './auth-codes.js';
import { checkAuthorizationRequest, withParams, type AuthorizationCheck, type AuthorizationRequest } from './authorize-request.js';
import { PATHS, type OAuthContext, type ResolvedDeps } from './deps.js';
import { OAuthError } from './errors.js';
import { readForm, sendHtml, sendRedirect } from './http.js';
import { authorizeLoginForm, ERROR_PAGE_CSP, loginPageCsp, renderErrorPage, renderLoginPage } from './login-page.js';
import { codeStep, passwordStep, type SignInFlow } from './sign-in.js';

export async function handleAuthorizeGet(deps: ResolvedDeps, url: URL, res: ServerResponse): Promise<void> {
  const check = await checkAuthorizationRequest(url.searchParams, deps.clients);
  if (!check.ok) return refuse(deps, check, res);
  sendHtml(res, 200, renderLoginPage(authorizeLoginForm(check.request, PATHS.authorize)), loginPageCsp(check.request.redirectUri));
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
  const check = await checkAuthorizationRequest(form, deps.clients);
  if (!check.ok) return refuse(deps, check, res);
  const flow = signInFlow(deps, check.request);
  const challenge = form.get('login_challenge');
  if (challenge !== null) return codeStep(deps, ctx, flow, challenge, form.get('code') ?? '', res);
  return passwordStep(deps, ctx, flow, form.get('username') ?? '', form.get('password') ?? '', res);
}

/** The sign-in of one authorization request: the code it leads to, and the redirect back. */
function signInFlow(deps: ResolvedDeps, r: AuthorizationRequest): SignInFlow {
  return {
    form: authorizeLoginForm(r, PATHS.authorize),
    csp: loginPageCsp(r.redirectUri),
    // A second step must belong to the very request the password was given for.
    binding: JSON.stringify(['authorize', r.client.clientId, r.redirectUri, r.codeChallenge, r.state, r.scope.join(' ')]),
    signedIn: async (username) => {
      const code = await issueAuthCode(deps.store, deps.clock, {
        clientId: r.client.clientId,
        redirectUri: r.redirectUri,
        codeChallenge: r.codeChallenge,
        username,
        scope: r.scope,
      });
      return (res) => sendRedirect(res, withParams(r.redirectUri, { code, state: r.state, iss: deps.issuer }));
    },
  };
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
