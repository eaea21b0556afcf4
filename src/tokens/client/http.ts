// What the CLI's OAuth clients (PKCE login, device login, sessions) share: bounded requests that
// never follow redirects, RFC 6749 §5.1 token responses checked member by member, and errors that
// carry the server's OAuth error (bounded, printable) but never a token, code or password.
import { Agent, request, type Dispatcher } from 'undici';
import { PortcullisError } from '../../core/errors.js';
import { codeForOAuthError } from '../oauth/errors.js';

/** Bodies we read are a few hundred bytes; anything bigger is not our server talking. */
const MAX_RESPONSE_BYTES = 64 * 1024;

export interface Answer { status: number; location: string | undefined; retryAfter: string | undefined; body: string }

/** The tokens of a successful token response (RFC 6749 §5.1). */
export interface TokenSet {
  accessToken: string;
  /** Seconds, as the server said. */
  expiresIn: number;
  refreshToken?: string;
  scope?: string;
}

/** An agent trusting `caPem` only (the Portcullis CA), or the system's roots without it. */
export function clientAgent(caPem: string | undefined): Agent {
  return new Agent(caPem ? { connect: { ca: caPem, minVersion: 'TLSv1.2' } } : {});
}

export function checkBaseUrl(controlUrl: string): URL {
  let base: URL;
  try {
    base = new URL(controlUrl);
  } catch {
    throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', 'controlUrl is not a URL');
  }
  if (base.protocol !== 'https:' && base.protocol !== 'http:') throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', 'controlUrl must be http(s)');
  return base;
}

export async function send(dispatcher: Dispatcher, url: string, opts: { method: 'GET' | 'POST'; body?: string; headers?: Record<string, string> }): Promise<Answer> {
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
  const first = (v: string | string[] | undefined): string | undefined => (Array.isArray(v) ? v[0] : v);
  return { status: r.statusCode, location: first(r.headers.location), retryAfter: first(r.headers['retry-after']), body: Buffer.concat(chunks).toString('utf8') };
}

/** A form POST, as RFC 6749 clients send to the token endpoint. */
export function postForm(dispatcher: Dispatcher, url: string, form: Record<string, string> | URLSearchParams): Promise<Answer> {
  return send(dispatcher, url, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(form).toString() });
}

export function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** Untrusted text made safe for a terminal: printable ASCII only, bounded. */
export function printable(v: unknown, max = 200): string {
  return String(v).replace(/[^\x20-\x7e]/g, '?').slice(0, max);
}

/** The server's error and description, bounded and stripped of control characters. */
export function describe(json: Record<string, unknown> | undefined): string {
  return json?.error === undefined ? 'no OAuth error in the answer' : `${printable(json.error)}${json.error_description === undefined ? '' : `: ${printable(json.error_description)}`}`;
}

/** The RFC 6749 §5.2 `error` of an answer, if it has one. */
export function oauthErrorOf(a: Answer): string | undefined {
  const json = parseJson(a.body) as Record<string, unknown> | undefined; // `error` type-checked below
  return typeof json?.error === 'string' ? json.error : undefined;
}

/** A refused token request as a coded error; `what` says which request it was. */
export function refusal(a: Answer, what: string): PortcullisError {
  const json = parseJson(a.body) as Record<string, unknown> | undefined; // only read through describe()
  return new PortcullisError(codeForOAuthError(json?.error), `${what} refused: ${describe(json)} (status ${a.status})`);
}

/** The tokens of a 200 token response, each member type-checked; anything else is refused. */
export function tokenSet(a: Answer, what: string): TokenSet {
  if (a.status !== 200) throw refusal(a, what);
  const json = parseJson(a.body) as Record<string, unknown> | undefined; // each member type-checked below
  const accessToken = json?.access_token;
  const expiresIn = json?.expires_in;
  const refreshToken = json?.refresh_token;
  const scope = json?.scope;
  if (typeof accessToken !== 'string' || typeof expiresIn !== 'number' || !(expiresIn > 0) || String(json?.token_type).toLowerCase() !== 'bearer'
    || (refreshToken !== undefined && typeof refreshToken !== 'string') || (scope !== undefined && typeof scope !== 'string')) {
    throw new PortcullisError('PCL_ERR_INTERNAL', `${what}: the answer is not an RFC 6749 §5.1 bearer token response`);
  }
  return { accessToken, expiresIn, ...(refreshToken ? { refreshToken } : {}), ...(scope ? { scope } : {}) };
}
