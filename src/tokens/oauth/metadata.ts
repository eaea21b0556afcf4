// GET /.well-known/oauth-authorization-server (RFC 8414), also served as openid-configuration for
// clients that only look there (no ID tokens are issued, so no OIDC-only members are claimed).
// Everything listed here is implemented and tested; nothing is claimed that is not.
import type { ServerResponse } from 'node:http';
import { CLIENT_AUTH_METHODS } from './client-auth.js';
import { ASSERTION_ALGORITHMS } from './client-assertion.js';
import type { ResolvedDeps } from './deps.js';
import { sendJson } from './http.js';
import { supportedGrantTypes } from './token.js';

export function authorizationServerMetadata(deps: ResolvedDeps): Record<string, unknown> {
  const scopes = deps.clients.knownScopes();
  return {
    issuer: deps.issuer,
    authorization_endpoint: deps.endpoints.authorization,
    token_endpoint: deps.endpoints.token,
    jwks_uri: deps.endpoints.jwks,
    revocation_endpoint: deps.endpoints.revocation,
    introspection_endpoint: deps.endpoints.introspection,
    // RFC 8628 §4.
    device_authorization_endpoint: deps.endpoints.deviceAuthorization,
    ...(scopes.length > 0 ? { scopes_supported: scopes } : {}),
    response_types_supported: ['code'],
    response_modes_supported: ['query'],
    grant_types_supported: supportedGrantTypes(deps),
    code_challenge_methods_supported: ['S256'],
    token_endpoint_auth_methods_supported: [...CLIENT_AUTH_METHODS],
    token_endpoint_auth_signing_alg_values_supported: [...ASSERTION_ALGORITHMS],
    revocation_endpoint_auth_methods_supported: [...CLIENT_AUTH_METHODS],
    revocation_endpoint_auth_signing_alg_values_supported: [...ASSERTION_ALGORITHMS],
    // Protected resources: workloads by certificate. (The operator's admin token works too; it is not a client auth method.)
    introspection_endpoint_auth_methods_supported: ['tls_client_auth'],
    // RFC 8705 §3 certificate-bound tokens (cnf x5t#S256) are not issued yet.
    tls_client_certificate_bound_access_tokens: false,
    // RFC 9207: every authorization response carries `iss`.
    authorization_response_iss_parameter_supported: true,
  };
}

export function handleMetadata(deps: ResolvedDeps, res: ServerResponse): void {
  sendJson(res, 200, authorizationServerMetadata(deps), { 'Cache-Control': 'public, max-age=300' });
}
