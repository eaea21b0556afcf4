// What a grant hands back to the token endpoint: the tokens for the RFC 6749 §5.1 response, and
// whom they were issued to (for audit).
import type { AdminEvent } from '../../core/events.js';
import type { IssuedAccessToken } from '../issue.js';
import type { AuthenticatedClient } from './client-auth.js';
import type { OAuthContext, ResolvedDeps } from './deps.js';

export interface GrantResult {
  issued: IssuedAccessToken;
  who: AdminEvent['who'];
  /** Granted scope, space-separated (the response's `scope`); absent for none. */
  scope?: string;
  /** A new refresh token (authorization_code with offline_access, and every refresh). */
  refreshToken?: string;
  /** RFC 8693 §2.2.1 `issued_token_type` (token exchange only). */
  issuedTokenType?: string;
  /** Extra audit detail: identifiers, never a token. */
  detail?: AdminEvent['detail'];
}

/** A grant type's handler: the client is already authenticated; it checks the client may use the grant. */
export type Grant = (deps: ResolvedDeps, params: URLSearchParams, client: AuthenticatedClient, ctx: OAuthContext) => Promise<GrantResult>;
