// A person logging in from the CLI or the demo: plays the browser (GET the form, POST it, read the
// 302) and the client (PKCE S256, state and RFC 9207 iss checks, code exchange). Never follows a
// redirect, and never puts the password, code, verifier or token into an error message.
import { randomBytes } from 'node:crypto';
import { Agent, request, type Dispatcher } from 'undici';
import { PortcullisError } from '../../core/errors.js';
import { codeForOAuthError } from '../oauth/errors.js';
import { PATHS } from '../oauth/deps.js';
import { s256Challenge } from '../oauth/pkce.js';

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
}

export const DEFAULT_REDIRECT_URI = 'http://127.0.0.1/callback';

/** Bodies we read are a few hundred bytes; anything bigger is not our server talking. */
const MAX_RESPONSE_BYTES = 64 * 1024;

export async function loginWithPkce(o: PkceLoginOptions): Promise<{ accessToken: string; expiresIn: number }> {
  const base = new URL(o.controlUrl);
  if (base.protocol !== 'https:' && base.protocol !== 'http:') throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', 'controlUrl must be http(s)');
  const url = (path: string): string => new URL(path, base).href;
  const redirectUri = o.redirectUri ?? DEFAULT_REDIRECT_URI;
  const agent = new Agent(o.caPem ? { connect: { ca: o.caPem } } : {});
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
    });

    // 1. The login page: proves the request is acceptable before the password is sent anywhere.
    const page = await send(agent, `${url(PATHS.authorize)}?${authParams.toString()}`, { method: 'GET' });
    if (page.status === 302) throw fromRedirect(page.location, redirectUri, state, issuer);
    if (page.status !== 200) throw new PortcullisError('PCL_ERR_OAUTH_INVALID_CLIENT', `authorization request refused (status ${page.status}): client or redirect URI not registered`);

    // 2. The form post, as a browser would send it.
    const form = new URLSearchParams(authParams);
    form.set('username', o.username);
    form.set('password', o.password);
    const login = await send(agent, url(PATHS.authorize), { method: 'POST', body: form.toString(), headers: { 'content-type': 'application/x-www-form-urlencoded' } });
    if (login.status === 401) throw new PortcullisError('PCL_ERR_LOGIN_FAILED', `login refused for "${o.username}"`);
    if (login.status !== 302) throw new PortcullisError('PCL_ERR_INTERNAL', `unexpected answer to the login form (status ${login.status})`);
    const code = codeFromRedirect(login.location, redirectUri, state, issuer);

    // 3. The code exchange.
    const exchange = await send(agent, url(PATHS.token), {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'authorization_code', client_id: o.clientId, code, redirect_uri: redirectUri, code_verifier: verifier }).toString(),
    });
    const json = parseJson(exchange.body) as Record<string, unknown> | undefined; // each member type-checked below
    if (exchange.status !== 200) {
      throw new PortcullisError(codeForOAuthError(json?.error), `token request refused: ${describe(json)} (status ${exchange.status})`);
    }
    const accessToken = json?.access_token;
    const expiresIn = json?.expires_in;
    if (typeof accessToken !== 'string' || typeof expiresIn !== 'number' || String(json?.token_type).toLowerCase() !== 'bearer') {
      throw new PortcullisError('PCL_ERR_INTERNAL', 'token response is not an RFC 6749 §5.1 bearer token response');
    }
    return { accessToken, expiresIn };
  } finally {
    await agent.close();
  }
}

interface Answer { status: number; location: string | undefined; body: string }

async function send(dispatcher: Dispatcher, url: string, opts: { method: 'GET' | 'POST'; body?: string; headers?: Record<string, string> }): Promise<Answer> {
  let r: Dispatcher.ResponseData;
  try {
    r = await request(url, { ...opts, dispatcher });
  } catch (err) {
    throw new PortcullisError('PCL_ERR_INTERNAL', `cannot reach ${new URL(url).origin}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of r.body) {
    const b = Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk));
    size += b.length;
    if (size > MAX_RESPONSE_BYTES) {
      r.body.destroy();
      throw new PortcullisError('PCL_ERR_INTERNAL', `response from ${new URL(url).origin} too large`);
    }
    chunks.push(b);
  }
  const loc = r.headers.location;
  return { status: r.statusCode, location: Array.isArray(loc) ? loc[0] : loc, body: Buffer.concat(chunks).toString('utf8') };
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** The server's error and description, bounded and stripped of control characters. */
function describe(json: Record<string, unknown> | undefined): string {
  const clean = (v: unknown): string => String(v).replace(/[^\x20-\x7e]/g, '?').slice(0, 200);
  return json?.error === undefined ? 'no OAuth error in the answer' : `${clean(json.error)}${json.error_description === undefined ? '' : `: ${clean(json.error_description)}`}`;
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
