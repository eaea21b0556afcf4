// A person logging in from the CLI or the demo: plays the browser (GET the form, POST it, post the
// one-time code form back when the account has a second factor, read the 302) and the client (PKCE
// S256, state and RFC 9207 iss checks, code exchange). Never follows a redirect, and never puts
// the password, one-time code, verifier or token into an error message.
import { randomBytes } from 'node:crypto';
import { PortcullisError } from '../../core/errors.js';
import { codeForOAuthError } from '../oauth/errors.js';
import { PATHS } from '../oauth/deps.js';
import { s256Challenge } from '../oauth/pkce.js';
import { checkBaseUrl, clientAgent, describe, parseJson, postForm, printable, send, tokenSet, type Answer, type TokenSet } from './http.js';

export interface PkceLoginOptions {
  /** Base URL of the control plane, e.g. https://127.0.0.1:8444. */
  controlUrl: string;
  /** PEM trust anchors for the control plane's TLS certificate (the Portcullis CA). */
  caPem?: string;
  clientId: string;
  username: string;
  password: string;
  /** Must be registered for the client; loopback IPs match on any port. */
  redirectUri?: string;
  /** Scope to ask for (`offline_access` for a refresh token). Default: none. */
  scope?: string;
  /**
   * The one-time code (TOTP), asked only when the server wants one (the account has a second
   * factor, or a privileged role). Without it such an account cannot sign in here.
   */
  totpCode?: () => Promise<string>;
}

export const DEFAULT_REDIRECT_URI = 'http://127.0.0.1/callback';

export async function loginWithPkce(o: PkceLoginOptions): Promise<TokenSet> {
  const base = checkBaseUrl(o.controlUrl);
  const url = (path: string): string => new URL(path, base).href;
  const redirectUri = o.redirectUri ?? DEFAULT_REDIRECT_URI;
  const agent = clientAgent(o.caPem);
  try {
    const metadata = await send(agent, url(PATHS.metadata), { method: 'GET' });
    const issuer = metadata.status === 200 ? (parseJson(metadata.body) as { issuer?: unknown } | undefined)?.issuer : undefined; // shape checked next
    if (typeof issuer !== 'string') throw new PortcullisError('PCL_ERR_INTERNAL', `no authorization server metadata at ${url(PATHS.metadata)} (status ${metadata.status})`);

    const verifier = randomBytes(32).toString('base64url');
    const state = randomBytes(16).toString('base64url');
    const authParams = new URLSearchParams({
      response_type: 'code',
      client_id: o.clientId,
      redirect_uri: redirectUri,
      code_challenge: s256Challenge(verifier),
      code_challenge_method: 'S256',
      state,
      ...(o.scope ? { scope: o.scope } : {}),
    });

    // 1. The login page: proves the request is acceptable before the password is sent anywhere.
    const page = await send(agent, `${url(PATHS.authorize)}?${authParams.toString()}`, { method: 'GET' });
    if (page.status === 302) throw fromRedirect(page.location, redirectUri, state, issuer);
    if (page.status !== 200) throw new PortcullisError('PCL_ERR_OAUTH_INVALID_CLIENT', `authorization request refused (status ${page.status}): client or redirect URI not registered`);

    // 2. The form post, as a browser would send it.
    const form = new URLSearchParams(authParams);
    form.set('username', o.username);
    form.set('password', o.password);
    let login = await postForm(agent, url(PATHS.authorize), form);
    if (login.status === 401) throw loginRefused(login, `login refused for "${printable(o.username, 64)}"`, 'PCL_ERR_LOGIN_FAILED');
    if (login.status === 403) throw new PortcullisError('PCL_ERR_TOTP_ENROLMENT_REQUIRED', `"${printable(o.username, 64)}" has a role that requires a second factor, and none is enrolled: ask an administrator (portcullis user totp-enroll)`);
    // 2b. The second factor: the page's form carries a login challenge; post it back with the code.
    if (login.status === 200) login = await secondFactor(agent, url(PATHS.authorize), login, o);
    if (login.status !== 302) throw new PortcullisError('PCL_ERR_INTERNAL', `unexpected answer to the login form (status ${login.status})`);
    const code = codeFromRedirect(login.location, redirectUri, state, issuer);

    // 3. The code exchange.
    const exchange = await postForm(agent, url(PATHS.token), { grant_type: 'authorization_code', client_id: o.clientId, code, redirect_uri: redirectUri, code_verifier: verifier });
    return tokenSet(exchange, 'token request');
  } finally {
    await agent.close();
  }
}

async function secondFactor(agent: Parameters<typeof send>[0], action: string, page: Answer, o: PkceLoginOptions): Promise<Answer> {
  const fields = hiddenInputs(page.body);
  if (!fields.has('login_challenge') || !/<input [^>]*name="code"/.test(page.body)) {
    throw new PortcullisError('PCL_ERR_INTERNAL', 'unexpected page after the password (neither a redirect nor the one-time code form)');
  }
  if (!o.totpCode) throw new PortcullisError('PCL_ERR_TOTP_INVALID', `"${printable(o.username, 64)}" signs in with a one-time code: give it (PORTCULLIS_TOTP_CODE, the second line of --password-stdin, or at the prompt)`);
  fields.set('code', (await o.totpCode()).trim());
  const answer = await postForm(agent, action, fields);
  if (answer.status === 401) throw loginRefused(answer, 'one-time code refused (wrong, expired or already used)', 'PCL_ERR_TOTP_INVALID');
  return answer;
}

/** A 401 from the form: throttled when the server says when to retry, else `code`. */
function loginRefused(a: Answer, message: string, code: 'PCL_ERR_LOGIN_FAILED' | 'PCL_ERR_TOTP_INVALID'): PortcullisError {
  if (a.retryAfter !== undefined && /^\d{1,6}$/.test(a.retryAfter)) return new PortcullisError('PCL_ERR_LOGIN_THROTTLED', `${message}; too many attempts: retry in ${a.retryAfter} s`);
  return new PortcullisError(code, message);
}

/** The hidden inputs of our own sign-in page (login-page.ts writes them, attribute order fixed). */
function hiddenInputs(html: string): URLSearchParams {
  const unescape = (v: string): string => v.replace(/&#(\d{1,3});/g, (_, n: string) => String.fromCharCode(Number(n)));
  const fields = new URLSearchParams();
  for (const m of html.matchAll(/<input type="hidden" name="([^"]*)" value="([^"]*)">/g)) fields.append(unescape(m[1] ?? ''), unescape(m[2] ?? ''));
  return fields;
}

/** Parses an authorization response, checking where it goes, state and iss, before looking further. */
function parseRedirect(location: string | undefined, redirectUri: string, state: string, issuer: string): URLSearchParams {
  if (!location) throw new PortcullisError('PCL_ERR_INTERNAL', 'authorization response without Location');
  let got: URL;
  try {
    got = new URL(location);
  } catch {
    throw new PortcullisError('PCL_ERR_INTERNAL', 'authorization response Location is not a URL');
  }
  const want = new URL(redirectUri);
  if (got.origin !== want.origin || got.pathname !== want.pathname) {
    throw new PortcullisError('PCL_ERR_OAUTH_INVALID_REQUEST', 'authorization response sent to another redirect URI');
  }
  const q = got.searchParams;
  // RFC 9207 §2.4: a response from another issuer is a mix-up attack, whatever it says.
  if (q.get('iss') !== issuer) throw new PortcullisError('PCL_ERR_OAUTH_INVALID_REQUEST', 'authorization response from an unexpected issuer');
  if (q.get('state') !== state) throw new PortcullisError('PCL_ERR_OAUTH_INVALID_REQUEST', 'authorization response state does not match');
  return q;
}

function fromRedirect(location: string | undefined, redirectUri: string, state: string, issuer: string): PortcullisError {
  // Either way the login stops here: report the server's error when there is one (an error
  // response may lack state, when state itself was the problem), else the failed check.
  let checked: PortcullisError | undefined;
  try {
    parseRedirect(location, redirectUri, state, issuer);
  } catch (err) {
    if (!(err instanceof PortcullisError)) throw err;
    checked = err;
  }
  let error: string | null = null;
  let description: string | undefined;
  try {
    const q = new URL(location ?? '').searchParams;
    error = q.get('error');
    description = q.get('error_description') ?? undefined;
  } catch {
    // not a URL: `checked` already says so
  }
  if (error) return new PortcullisError(codeForOAuthError(error), `authorization refused: ${describe({ error, error_description: description })}`);
  return checked ?? new PortcullisError('PCL_ERR_INTERNAL', 'authorization server redirected without a login');
}

function codeFromRedirect(location: string | undefined, redirectUri: string, state: string, issuer: string): string {
  const q = parseRedirect(location, redirectUri, state, issuer);
  const error = q.get('error');
  if (error) throw new PortcullisError(codeForOAuthError(error), `authorization refused: ${describe({ error, error_description: q.get('error_description') ?? undefined })}`);
  const code = q.get('code');
  if (!code) throw new PortcullisError('PCL_ERR_INTERNAL', 'authorization response without code');
  return code;
}
