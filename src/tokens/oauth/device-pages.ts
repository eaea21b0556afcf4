// The pages of the device verification flow (RFC 8628 §3.3), in the style of the login page: plain
// HTML without JavaScript, labelled inputs, errors announced with role="alert".
import { escapeHtml, hiddenFields, page } from './login-page.js';

/** Step 1: the user code the device shows. `prefill` only from verification_uri_complete. */
export function renderUserCodePage(action: string, prefill: string, error?: string): string {
  const alert = error ? `<p class="error" role="alert" id="code-error">${escapeHtml(error)}</p>\n` : '';
  const describedBy = error ? 'user-code-help code-error' : 'user-code-help';
  const invalid = error ? ' aria-invalid="true"' : '';
  return page('Connect a device — Portcullis', `<h1>Connect a device</h1>
${alert}<form method="post" action="${escapeHtml(action)}">
<label for="user_code">Code</label>
<p id="user-code-help">Enter the code your device shows, like BCDF-GHJK. Continue only if you started the sign-in on that device yourself.</p>
<input type="text" id="user_code" name="user_code" value="${escapeHtml(prefill)}" autocomplete="off" autocapitalize="characters" spellcheck="false" required maxlength="32" aria-describedby="${describedBy}"${invalid}>
<button type="submit">Continue</button>
</form>`);
}

/** After the sign-in: what the device asks for, and the decision (the ticket proves the sign-in). */
export function renderConsentPage(action: string, a: { clientId: string; scope: readonly string[]; userCode: string; username: string; ticket: string }): string {
  const scope = a.scope.length > 0
    ? `<p>It asks for: ${a.scope.map((v) => `<code>${escapeHtml(v)}</code>`).join(', ')}</p>\n`
    : '';
  return page('Allow the device? — Portcullis', `<h1>Allow the device?</h1>
<p><strong>${escapeHtml(a.clientId)}</strong> on a device asks to act as <strong>${escapeHtml(a.username)}</strong>.</p>
${scope}<p>Allow it only if you started this sign-in yourself and the device shows the code <strong>${escapeHtml(a.userCode)}</strong>.</p>
<form method="post" action="${escapeHtml(action)}">
${hiddenFields([['consent_ticket', a.ticket]])}
<button type="submit" name="decision" value="approve">Allow</button>
<button type="submit" name="decision" value="deny">Deny</button>
</form>`);
}

export function renderDeviceDonePage(approved: boolean): string {
  return approved
    ? page('Device connected — Portcullis', `<h1>Device connected</h1>
<p role="status">The device is signed in. You can close this page and return to it.</p>`)
    : page('Request denied — Portcullis', `<h1>Request denied</h1>
<p role="status">The device was not signed in. You can close this page.</p>`);
}
