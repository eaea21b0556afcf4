// The login page and the error page: plain HTML that works without JavaScript, labelled inputs,
// and a CSP that allows nothing but inline styles and posting the form back to ourselves.
import type { AuthorizationRequest } from './authorize-request.js';

const BASE_CSP = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; frame-ancestors 'none'";

/**
 * CSP of the login page. Browsers apply form-action to the redirects that follow a submission
 * too, so the (already verified) redirect URI's origin is allowed alongside 'self'.
 */
export function loginPageCsp(redirectUri: string): string {
  return `${BASE_CSP}; form-action 'self' ${new URL(redirectUri).origin}`;
}

export const ERROR_PAGE_CSP = `${BASE_CSP}; form-action 'none'`;

/** Pages that post only to themselves and redirect nowhere (the device verification page). */
export const SELF_FORM_CSP = `${BASE_CSP}; form-action 'self'`;

const STYLE = `body{font-family:system-ui,sans-serif;max-width:24rem;margin:4rem auto;padding:0 1rem;color:#1a1a1a}
label{display:block;margin-top:1rem;font-weight:600}
input[type=text],input[type=password]{display:block;width:100%;box-sizing:border-box;padding:.5rem;margin-top:.25rem;font-size:1rem}
button{margin-top:1.5rem;padding:.6rem 1.2rem;font-size:1rem}
.error{border:2px solid #b00020;padding:.5rem .75rem;color:#b00020}
:focus{outline:3px solid #0b57d0;outline-offset:2px}`;

export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

export function page(title: string, body: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>${escapeHtml(title)}</title>
<style>${STYLE}</style>
</head>
<body>
<main>
${body}
</main>
</body>
</html>
`;
}

/** What a sign-in page shows and carries; each flow (authorization request, device) makes its own. */
export interface LoginForm {
  /** Where the form posts. */
  action: string;
  /** The application that asks, and for which scope values: shown on every step. */
  clientId: string;
  scope: readonly string[];
  /** The flow's verified parameters, posted back with each step. */
  hidden: readonly (readonly [string, string])[];
  /** The line before the application's name. Default "to continue to". */
  lead?: string;
  /** One more line of plain text under the heading (a device's code to compare, say). */
  notice?: string;
}

/** The sign-in form of an authorization request: every verified request parameter is carried. */
export function authorizeLoginForm(r: AuthorizationRequest, action: string): LoginForm {
  const hidden: [string, string][] = [
    ['response_type', 'code'],
    ['client_id', r.client.clientId],
    ['redirect_uri', r.redirectUri],
    ['code_challenge', r.codeChallenge],
    ['code_challenge_method', 'S256'],
    ['state', r.state],
  ];
  if (r.scope.length > 0) hidden.push(['scope', r.scope.join(' ')]);
  return { action, clientId: r.client.clientId, scope: r.scope, hidden };
}

export function hiddenFields(fields: readonly (readonly [string, string])[]): string {
  return fields.map(([n, v]) => `<input type="hidden" name="${escapeHtml(n)}" value="${escapeHtml(v)}">`).join('\n');
}

/** The heading lines every step shows: which application, which access. */
function intro(f: LoginForm): string {
  return `<p>${escapeHtml(f.lead ?? 'to continue to')} <strong>${escapeHtml(f.clientId)}</strong></p>
${f.scope.length > 0 ? `<p>Access requested: ${f.scope.map((v) => `<code>${escapeHtml(v)}</code>`).join(', ')}</p>\n` : ''}${f.notice ? `<p>${escapeHtml(f.notice)}</p>\n` : ''}`;
}

/** The form posts the flow's parameters back, plus the credentials. */
export function renderLoginPage(f: LoginForm, error?: string): string {
  const alert = error ? `<p class="error" role="alert" id="login-error">${escapeHtml(error)}</p>\n` : '';
  const describedBy = error ? ' aria-describedby="login-error" aria-invalid="true"' : '';
  return page('Sign in — Portcullis', `<h1>Sign in</h1>
${intro(f)}${alert}<form method="post" action="${escapeHtml(f.action)}">
${hiddenFields(f.hidden)}
<label for="username">Username</label>
<input type="text" id="username" name="username" autocomplete="username" autocapitalize="none" spellcheck="false" required maxlength="64"${describedBy}>
<label for="password">Password</label>
<input type="password" id="password" name="password" autocomplete="current-password" required maxlength="1024"${describedBy}>
<button type="submit">Sign in</button>
</form>`);
}

/**
 * The second step, after the right password: a one-time code from the authenticator app. The form
 * carries the login challenge instead of the password; `code` is a plain numeric field the
 * browser or password manager can fill (autocomplete="one-time-code").
 */
export function renderCodePage(f: LoginForm, challenge: string, error?: string): string {
  const alert = error ? `<p class="error" role="alert" id="code-error">${escapeHtml(error)}</p>\n` : '';
  const describedBy = error ? 'code-help code-error' : 'code-help';
  const invalid = error ? ' aria-invalid="true"' : '';
  return page('Sign in: one-time code — Portcullis', `<h1>Enter your one-time code</h1>
${intro(f)}${alert}<form method="post" action="${escapeHtml(f.action)}">
${hiddenFields([...f.hidden, ['login_challenge', challenge]])}
<label for="code">One-time code</label>
<p id="code-help">The 6-digit code your authenticator app shows for this account.</p>
<input type="text" id="code" name="code" inputmode="numeric" autocomplete="one-time-code" pattern="[0-9 ]*" required minlength="6" maxlength="9" spellcheck="false" aria-describedby="${describedBy}"${invalid}>
<button type="submit">Verify</button>
</form>`);
}

/** A right password without the second factor a privileged role requires: how to get one. */
export function renderEnrolmentRequiredPage(): string {
  return page('Second factor required — Portcullis', `<h1>A second factor is required</h1>
<p role="alert">Your account has a role that requires a one-time code (TOTP) at sign-in, and none is set up yet.</p>
<p>Ask an administrator to enrol one for you (<code>portcullis user totp-enroll</code>), add it to your authenticator app, then sign in again.</p>`);
}

export function renderErrorPage(message: string): string {
  return page('Sign-in error — Portcullis', `<h1>This sign-in request cannot be completed</h1>
<p role="alert">${escapeHtml(message)}</p>
<p>Return to the application and start again.</p>`);
}
