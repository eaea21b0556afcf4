// One error root with stable codes (STYLE.md habit 1). Tests check `code`, never the message.
// What a client sees is `status` + `publicMessage`; the detail stays in `message`/`cause` for logs,
// and no message may ever contain a token, key, password or card number (habit 2).

/** Every code Portcullis can raise, with the HTTP status and the public message a client gets. */
export const ERROR_CODES = {
  PCL_ERR_INTERNAL: { status: 500, public: 'internal error' },
  // configuration
  PCL_ERR_CONFIG_READ: { status: 500, public: 'configuration cannot be read' },
  PCL_ERR_CONFIG_SYNTAX: { status: 500, public: 'configuration is not valid YAML' },
  PCL_ERR_CONFIG_INVALID: { status: 500, public: 'configuration does not match the schema' },
  PCL_ERR_CONFIG_REFERENCE: { status: 500, public: 'configuration refers to something undefined' },
  PCL_ERR_POLICY_INVALID: { status: 500, public: 'policy set is not valid' },
  PCL_ERR_INVALID_ARGUMENT: { status: 400, public: 'invalid argument' },
  PCL_ERR_METHOD_NOT_ALLOWED: { status: 405, public: 'method not allowed' },
  // storage and keys
  PCL_ERR_STORE: { status: 500, public: 'storage error' },
  PCL_ERR_KEY_UNWRAP: { status: 500, public: 'a stored key cannot be decrypted' },
  PCL_ERR_MASTER_KEY: { status: 500, public: 'master key missing or invalid' },
  // key management and secrets
  PCL_ERR_KMS_SEALED: { status: 503, public: 'key management is sealed' },
  PCL_ERR_KMS_PASSPHRASE: { status: 401, public: 'wrong passphrase' },
  PCL_ERR_KMS_KEYRING_NOT_FOUND: { status: 404, public: 'keyring not found' },
  PCL_ERR_KMS_KEYRING_TYPE: { status: 400, public: 'operation not supported by this keyring' },
  PCL_ERR_KMS_CIPHERTEXT_INVALID: { status: 400, public: 'ciphertext cannot be decrypted' },
  PCL_ERR_KMS_VERSION_RETIRED: { status: 400, public: 'key version retired' },
  PCL_ERR_SECRET_NOT_FOUND: { status: 404, public: 'secret not found' },
  PCL_ERR_SECRET_CONFLICT: { status: 409, public: 'secret version conflict' },
  // certificates and workload identity
  PCL_ERR_CSR_INVALID: { status: 400, public: 'certificate signing request refused' },
  PCL_ERR_SPIFFE_ID_INVALID: { status: 400, public: 'invalid SPIFFE ID' },
  PCL_ERR_JOIN_TOKEN_INVALID: { status: 401, public: 'join token invalid, expired or used' },
  PCL_ERR_PEER_CERT_REQUIRED: { status: 401, public: 'a client certificate is required' },
  PCL_ERR_PEER_IDENTITY: { status: 403, public: 'peer identity not accepted' },
  PCL_ERR_CERT_RENEWAL: { status: 500, public: 'certificate renewal failed' },
  PCL_ERR_WORKLOAD_REVOKED: { status: 403, public: 'workload identity revoked' },
  PCL_ERR_PRINCIPAL_ASSERTION: { status: 401, public: 'user assertion not accepted' },
  // tokens and OAuth2
  PCL_ERR_TOKEN_MISSING: { status: 401, public: 'authentication required' },
  PCL_ERR_TOKEN_MALFORMED: { status: 401, public: 'invalid token' },
  PCL_ERR_TOKEN_SIGNATURE: { status: 401, public: 'invalid token' },
  PCL_ERR_TOKEN_ALG: { status: 401, public: 'invalid token' },
  PCL_ERR_TOKEN_ISSUER: { status: 401, public: 'invalid token' },
  PCL_ERR_TOKEN_AUDIENCE: { status: 401, public: 'invalid token' },
  PCL_ERR_TOKEN_EXPIRED: { status: 401, public: 'token expired' },
  PCL_ERR_TOKEN_NOT_YET_VALID: { status: 401, public: 'invalid token' },
  PCL_ERR_TOKEN_CLAIMS: { status: 401, public: 'invalid token' },
  PCL_ERR_TOKEN_REVOKED: { status: 401, public: 'invalid token' },
  PCL_ERR_TOKEN_INACTIVE: { status: 401, public: 'invalid token' },
  PCL_ERR_TOKEN_BINDING: { status: 401, public: 'invalid token' },
  PCL_ERR_DPOP_INVALID: { status: 401, public: 'invalid DPoP proof' },
  PCL_ERR_INTROSPECTION_UNAVAILABLE: { status: 503, public: 'token introspection unavailable' },
  PCL_ERR_KEY_ROTATION_TOO_EARLY: { status: 409, public: 'signing-key rotation refused: the next key is not published long enough' },
  PCL_ERR_APIKEY_INVALID: { status: 401, public: 'invalid API key' },
  PCL_ERR_APIKEY_NOT_FOUND: { status: 404, public: 'API key not found' },
  PCL_ERR_CLIENT_NOT_FOUND: { status: 404, public: 'OAuth client not found' },
  PCL_ERR_CLIENT_EXISTS: { status: 409, public: 'OAuth client already registered' },
  PCL_ERR_CLIENT_IMMUTABLE: { status: 409, public: 'OAuth client is defined by the configuration file (or is the CLI\'s own) and cannot be changed or removed through the API' },
  PCL_ERR_OAUTH_INVALID_REQUEST: { status: 400, public: 'invalid_request' },
  PCL_ERR_OAUTH_INVALID_CLIENT: { status: 401, public: 'invalid_client' },
  PCL_ERR_OAUTH_INVALID_GRANT: { status: 400, public: 'invalid_grant' },
  PCL_ERR_OAUTH_UNSUPPORTED_GRANT: { status: 400, public: 'unsupported_grant_type' },
  PCL_ERR_OAUTH_UNAUTHORIZED_CLIENT: { status: 400, public: 'unauthorized_client' },
  PCL_ERR_OAUTH_INVALID_SCOPE: { status: 400, public: 'invalid_scope' },
  PCL_ERR_OAUTH_INVALID_TARGET: { status: 400, public: 'invalid_target' },
  PCL_ERR_OAUTH_UNSUPPORTED_TOKEN_TYPE: { status: 400, public: 'unsupported_token_type' },
  PCL_ERR_OAUTH_INVALID_TOKEN: { status: 401, public: 'invalid_token' },
  // RFC 8628 §3.5 (device authorization grant) and RFC 6749 §4.1.2.1
  PCL_ERR_OAUTH_AUTHORIZATION_PENDING: { status: 400, public: 'authorization_pending' },
  PCL_ERR_OAUTH_SLOW_DOWN: { status: 400, public: 'slow_down' },
  PCL_ERR_OAUTH_ACCESS_DENIED: { status: 400, public: 'access_denied' },
  PCL_ERR_OAUTH_EXPIRED_TOKEN: { status: 400, public: 'expired_token' },
  PCL_ERR_OAUTH_TEMPORARILY_UNAVAILABLE: { status: 503, public: 'temporarily_unavailable' },
  PCL_ERR_USER_CODE_INVALID: { status: 400, public: 'user code wrong or expired' },
  PCL_ERR_USER_CODE_THROTTLED: { status: 429, public: 'too many wrong user codes; try again later' },
  PCL_ERR_SESSION_EXPIRED: { status: 401, public: 'session ended; sign in again' },
  PCL_ERR_LOGIN_FAILED: { status: 401, public: 'wrong username or password' },
  PCL_ERR_ADMIN_AUTH: { status: 401, public: 'administrator credential required' },
  PCL_ERR_USER_EXISTS: { status: 409, public: 'user already exists' },
  PCL_ERR_USER_NOT_FOUND: { status: 404, public: 'user not found' },
  PCL_ERR_LOGIN_THROTTLED: { status: 429, public: 'too many sign-in attempts; try again later' },
  PCL_ERR_TOTP_INVALID: { status: 400, public: 'one-time code wrong, expired or already used' },
  PCL_ERR_TOTP_ENROLMENT_REQUIRED: { status: 403, public: 'a second factor must be enrolled before signing in' },
  // data plane
  PCL_ERR_PATH_INVALID: { status: 400, public: 'malformed request path' },
  PCL_ERR_ROUTE_NOT_FOUND: { status: 404, public: 'not found' },
  PCL_ERR_FORBIDDEN: { status: 403, public: 'forbidden' },
  PCL_ERR_BLOCKED: { status: 403, public: 'forbidden' },
  PCL_ERR_UPSTREAM_UNAVAILABLE: { status: 502, public: 'upstream unavailable' },
  PCL_ERR_UPSTREAM_TIMEOUT: { status: 504, public: 'upstream timed out' },
  PCL_ERR_SNAPSHOT_UNAVAILABLE: { status: 503, public: 'not ready' },
  PCL_ERR_HEADER_INVALID: { status: 400, public: 'malformed request header' },
  PCL_ERR_BODY_TOO_LARGE: { status: 413, public: 'request body too large' },
  PCL_ERR_CONTENT_TYPE: { status: 415, public: 'unsupported content type' },
  PCL_ERR_JSON_INVALID: { status: 400, public: 'malformed JSON body' },
  PCL_ERR_VALIDATION: { status: 400, public: 'request does not match the API schema' },
  PCL_ERR_INJECTION: { status: 400, public: 'request refused' },
  PCL_ERR_CORS: { status: 403, public: 'origin not allowed' },
  PCL_ERR_RATE_LIMITED: { status: 429, public: 'too many requests' },
  PCL_ERR_RATE_LIMIT_UNAVAILABLE: { status: 503, public: 'rate limiter unavailable' },
  PCL_ERR_CONCURRENCY_LIMIT: { status: 503, public: 'upstream busy' },
  PCL_ERR_CIRCUIT_OPEN: { status: 503, public: 'upstream unavailable' },
  PCL_ERR_OPENAPI_INVALID: { status: 500, public: 'OpenAPI document is not valid' },
  PCL_ERR_UPGRADE_UNSUPPORTED: { status: 400, public: 'upgrade not supported' },
  // audit log
  PCL_ERR_AUDIT_EVENT_INVALID: { status: 400, public: 'audit event refused' },
  PCL_ERR_AUDIT_UNAVAILABLE: { status: 503, public: 'audit log unavailable' },
  PCL_ERR_AUDIT_CORRUPT: { status: 500, public: 'audit log damaged' },
} as const satisfies Record<string, { status: number; public: string }>;

export type ErrorCode = keyof typeof ERROR_CODES;

export class PortcullisError extends Error {
  readonly code: ErrorCode;
  /** HTTP status a client receives. */
  readonly status: number;
  /** Safe to send to a client: never contains secrets or internals. */
  readonly publicMessage: string;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'PortcullisError';
    this.code = code;
    this.status = ERROR_CODES[code].status;
    this.publicMessage = ERROR_CODES[code].public;
  }

  /** The JSON body a client receives; the detail stays in logs. */
  toPublicJSON(): { error: { code: ErrorCode; message: string } } {
    return { error: { code: this.code, message: this.publicMessage } };
  }
}

/** A configuration problem, located in its file. */
export class ConfigError extends PortcullisError {
  readonly file: string;
  readonly line: number;
  readonly column: number;
  readonly hint: string | undefined;

  constructor(
    code: 'PCL_ERR_CONFIG_READ' | 'PCL_ERR_CONFIG_SYNTAX' | 'PCL_ERR_CONFIG_INVALID' | 'PCL_ERR_CONFIG_REFERENCE',
    where: { file: string; line: number; column: number },
    detail: string,
    hint?: string,
  ) {
    super(code, `${where.file}:${where.line}:${where.column}: ${detail}${hint ? ` (${hint})` : ''}`);
    this.name = 'ConfigError';
    this.file = where.file;
    this.line = where.line;
    this.column = where.column;
    this.hint = hint;
  }
}

/** Wraps anything thrown into a PortcullisError without leaking its message to clients. */
export function asPortcullisError(err: unknown): PortcullisError {
  if (err instanceof PortcullisError) return err;
  return new PortcullisError('PCL_ERR_INTERNAL', err instanceof Error ? err.message : String(err), { cause: err });
}
