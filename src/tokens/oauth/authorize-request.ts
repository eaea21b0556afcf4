// Validation of an authorization request (RFC 6749 §4.1.1 + RFC 7636), shared by the GET that
// shows the login form and the POST that submits it. The order matters:
//   1. client_id and redirect_uri: until both are verified nothing may redirect (an HTML error page);
//   2. everything else: errors go back to the verified redirect_uri (RFC 6749 §4.1.2.1).
import type { ClientLookup } from './client-registry.js';
import { redirectUriAllowed, type PublicClient } from './clients.js';
import { OAuthError } from './errors.js';
import { repeatedParams } from './http.js';
import { isValidCodeChallenge } from './pkce.js';
import { narrowScope, parseScope } from './scope.js';

/** The parameters the login form carries back, all verified. */
export interface AuthorizationRequest {
  client: PublicClient;
  redirectUri: string;
  codeChallenge: string;
  state: string;
  /** Requested scope values, each one the client is registered for; empty for none. */
  scope: string[];
}

export type AuthorizationCheck =
  | { ok: true; request: AuthorizationRequest }
  /** Nothing verified to redirect to: answer with an error page. */
  | { ok: false; redirect: false; description: string }
  /** The redirect URI is verified: send the error there. */
  | { ok: false; redirect: true; redirectUri: string; error: string; description: string; state?: string };

/** Long enough for any client's state (often a signed blob), short enough for a URL. */
const MAX_STATE_LENGTH = 512;
/** Printable ASCII (RFC 6749 Appendix A.5 VSCHAR). */
const VSCHAR = /^[\x20-\x7e]+$/;

export async function checkAuthorizationRequest(params: URLSearchParams, clients: ClientLookup): Promise<AuthorizationCheck> {
  const repeated = repeatedParams(params);
  const clientId = params.get('client_id');
  const redirectUri = params.get('redirect_uri');
  if (!clientId || repeated.includes('client_id')) return { ok: false, redirect: false, description: 'The request has no valid client_id.' };
  const client = await clients.get(clientId);
  // Confidential (machine) clients have no redirect URI and no user: they never come here.
  if (!client || client.type !== 'public') return { ok: false, redirect: false, description: 'The application is not registered.' };
  if (!redirectUri || repeated.includes('redirect_uri') || !redirectUriAllowed(client, redirectUri)) {
    return { ok: false, redirect: false, description: 'The redirect URI is not registered for this application.' };
  }

  const stateRaw = params.get('state');
  const stateOk = stateRaw !== null && stateRaw.length <= MAX_STATE_LENGTH && VSCHAR.test(stateRaw) && !repeated.includes('state');
  const back = (error: string, description: string): AuthorizationCheck =>
    ({ ok: false, redirect: true, redirectUri, error, description, ...(stateOk ? { state: stateRaw } : {}) });

  if (repeated.length > 0) return back('invalid_request', `parameter repeated: ${repeated.slice(0, 3).join(', ')}`);
  if (!stateOk) return back('invalid_request', `state is required (1-${MAX_STATE_LENGTH} printable ASCII characters)`);
  if (params.get('response_type') !== 'code') return back('unsupported_response_type', 'only response_type=code is supported');
  const method = params.get('code_challenge_method');
  if (method !== 'S256') return back('invalid_request', method === null ? 'PKCE is required (code_challenge_method=S256)' : 'only code_challenge_method=S256 is supported');
  const codeChallenge = params.get('code_challenge');
  if (!isValidCodeChallenge(codeChallenge)) return back('invalid_request', 'code_challenge must be 43-128 characters of [A-Za-z0-9-._~]');
  // Only scopes the client is registered for; granting an unknown one silently would be worse than refusing it.
  let scope: string[];
  try {
    scope = narrowScope(parseScope(params.get('scope')), client.scopes ?? []);
  } catch (err) {
    if (!(err instanceof OAuthError)) throw err;
    return back('invalid_scope', err.description);
  }
  return { ok: true, request: { client, redirectUri, codeChallenge, state: stateRaw, scope } };
}

/** The redirect_uri with the response parameters added (existing query kept). */
export function withParams(redirectUri: string, add: Record<string, string | undefined>): string {
  const u = new URL(redirectUri);
  for (const [k, v] of Object.entries(add)) if (v !== undefined) u.searchParams.set(k, v);
  return u.href;
}
