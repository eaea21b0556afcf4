// OAuth2 errors (RFC 6749 §4.1.2.1 and §5.2). The `error` string a client receives is the code's
// public message in ERROR_CODES; `description` is written for clients and never holds a secret.
import { PortcullisError, type ErrorCode } from '../../core/errors.js';

export type OAuthErrorCode = Extract<ErrorCode, `PCL_ERR_OAUTH_${string}`>;

export class OAuthError extends PortcullisError {
  /** Safe to send (error_description): short, fixed text, never a token, code, verifier or password. */
  readonly description: string;
  /** HTTP status to answer with: the code's own, except where a request needs another (413). */
  readonly httpStatus: number;
  /** A WWW-Authenticate challenge to send with a 401 (RFC 6749 §5.2, RFC 6750 §3). */
  readonly wwwAuthenticate: string | undefined;

  constructor(code: OAuthErrorCode, description: string, options?: { cause?: unknown; status?: number; wwwAuthenticate?: string }) {
    super(code, description, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'OAuthError';
    this.description = description;
    this.httpStatus = options?.status ?? this.status;
    this.wwwAuthenticate = options?.wwwAuthenticate;
  }

  /** The response headers that go with the error body. */
  headers(): Record<string, string> {
    const h: Record<string, string> = {};
    if (this.wwwAuthenticate !== undefined) h['WWW-Authenticate'] = this.wwwAuthenticate;
    if (this.httpStatus === 413) h.Connection = 'close';
    return h;
  }

  /** The RFC 6749 §5.2 body. */
  toOAuthJSON(): { error: string; error_description: string } {
    return { error: this.publicMessage, error_description: this.description };
  }
}

/** Maps an RFC 6749 `error` value back to our code (used by the client side). */
export function codeForOAuthError(error: unknown): OAuthErrorCode | 'PCL_ERR_INTERNAL' {
  switch (error) {
    case 'invalid_request': return 'PCL_ERR_OAUTH_INVALID_REQUEST';
    case 'invalid_client': return 'PCL_ERR_OAUTH_INVALID_CLIENT';
    case 'invalid_grant': return 'PCL_ERR_OAUTH_INVALID_GRANT';
    case 'unsupported_grant_type': return 'PCL_ERR_OAUTH_UNSUPPORTED_GRANT';
    case 'unauthorized_client': return 'PCL_ERR_OAUTH_UNAUTHORIZED_CLIENT';
    case 'invalid_scope': return 'PCL_ERR_OAUTH_INVALID_SCOPE';
    case 'invalid_target': return 'PCL_ERR_OAUTH_INVALID_TARGET';
    case 'unsupported_token_type': return 'PCL_ERR_OAUTH_UNSUPPORTED_TOKEN_TYPE';
    case 'invalid_token': return 'PCL_ERR_OAUTH_INVALID_TOKEN';
    case 'authorization_pending': return 'PCL_ERR_OAUTH_AUTHORIZATION_PENDING';
    case 'slow_down': return 'PCL_ERR_OAUTH_SLOW_DOWN';
    case 'access_denied': return 'PCL_ERR_OAUTH_ACCESS_DENIED';
    case 'expired_token': return 'PCL_ERR_OAUTH_EXPIRED_TOKEN';
    case 'temporarily_unavailable': return 'PCL_ERR_OAUTH_TEMPORARILY_UNAVAILABLE';
    // unsupported_response_type: the request itself was not acceptable.
    case 'unsupported_response_type': return 'PCL_ERR_OAUTH_INVALID_REQUEST';
    default: return 'PCL_ERR_INTERNAL';
  }
}
