// GET /.well-known/oauth-authorization-server (RFC 8414), also served as openid-configuration for
// clients that only look there (no ID tokens are issued, so no OIDC-only members are claimed).
import type { ServerResponse } from 'node:http';
import type { ResolvedDeps } from './deps.js';
import { sendJson } from './http.js';

export function authorizationServerMetadata(deps: ResolvedDeps): Record<string, unknown> {
  return {
    issuer: deps.issuer,
    authorization_endpoint: deps.endpoints.authorization,
    token_endpoint: deps.endpoints.token,
    jwks_uri: deps.endpoints.jwks,
    response_types_supported: ['code'],
    response_modes_supported: ['query'],
    grant_types_supported: ['authorization_code', 'client_credentials'],
    code_challenge_methods_supported: ['S256'],
    token_endpoint_auth_methods_supported: ['none', 'tls_client_auth'],
    // RFC 8705 §3 certificate-bound tokens (cnf x5t#S256) are not issued yet.
    tls_client_certificate_bound_access_tokens: false,
    // RFC 9207: every authorization response carries `iss`.
    authorization_response_iss_parameter_supported: true,
  };
}

export function handleMetadata(deps: ResolvedDeps, res: ServerResponse): void {
  sendJson(res, 200, authorizationServerMetadata(deps), { 'Cache-Control': 'public, max-age=300' });
}
