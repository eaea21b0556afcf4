// The commented starter portcullis.yaml that `portcullis init` writes: one service, one route,
// every section explained, defaults written out so the file doubles as documentation.
import { PortcullisError } from '../errors.js';
import { DEFAULTS } from './defaults.js';
import { quote } from './hint.js';
import { checkConfig } from './load.js';
import { matchesDefinition } from './schema.js';

export interface StarterOptions {
  /** Name of the first service (lowercase letters, digits, "-"), e.g. "orders". */
  serviceName: string;
  /** Where that service listens, plain HTTP origin, e.g. "http://127.0.0.1:3000". */
  upstream: string;
  /** SPIFFE trust domain; default "example.org" (replace it with a domain you own). */
  trustDomain?: string;
}

/** Default trust domain of a starter file: the SPIFFE documentation's placeholder. */
export const STARTER_TRUST_DOMAIN = 'example.org';

/**
 * Returns the starter YAML. Inputs are checked first (they end up inside YAML, so an unchecked one
 * could inject keys) and the result is validated, so the text always loads with parseConfig().
 */
export function starterConfig(opts: StarterOptions): string {
  const trustDomain = opts.trustDomain ?? STARTER_TRUST_DOMAIN;
  const checks: [string, string, string, string][] = [
    ['serviceName', opts.serviceName, 'serviceName', 'lowercase letters, digits and "-", at most 63 characters'],
    ['upstream', opts.upstream, 'upstreamUrl', 'an http:// origin without a path, e.g. http://127.0.0.1:3000'],
    ['trustDomain', trustDomain, 'trustDomain', 'lowercase letters, digits, ".", "-" and "_"'],
  ];
  for (const [name, value, definition, expected] of checks) {
    if (typeof value !== 'string' || !matchesDefinition(definition, value)) {
      throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `${name} ${quote(String(value))} is not valid: expected ${expected}`);
    }
  }
  const name = opts.serviceName;
  const text = render(name, opts.upstream, trustDomain);

  const { errors } = checkConfig(text, 'portcullis.yaml');
  if (errors[0] !== undefined) {
    // Only reachable if the template and the schema drift apart: a bug, reported as such.
    throw new PortcullisError('PCL_ERR_INTERNAL', `the starter configuration does not validate: ${errors[0].message}`);
  }
  return text;
}

function render(name: string, upstream: string, trustDomain: string): string {
  return `# yaml-language-server: $schema=./node_modules/portcullis/schema/portcullis.schema.json
# Portcullis configuration. Check it with \`portcullis config check\`; unknown keys are errors.
# The schema line above gives editors completion and inline documentation for every key.

# SPIFFE trust domain: every workload identity below is spiffe://${trustDomain}/...
# Use a domain you own; changing it later re-issues every workload certificate.
trustDomain: ${trustDomain}

# The control plane: certificate authority, token service, policies and audit log.
control:
  # HTTPS listener. Loopback only; expose it deliberately, never by accident.
  listen: ${DEFAULTS.controlListen}
  # How data planes and clients reach the control plane (default https://<control.listen>).
  url: https://${DEFAULTS.controlListen}
  # Embedded store, keys and logs, relative to this file. It holds private keys:
  # keep it out of version control.
  dataDir: ${DEFAULTS.dataDir}

# The gateway: the one public entrance. It terminates TLS, checks the caller's token
# against the routes below and forwards over mutual TLS to the service's sidecar.
gateway:
  listen: ${DEFAULTS.gatewayListen}
  # Names the gateway's TLS certificate is valid for.
  serverNames: [${DEFAULTS.gatewayServerNames.join(', ')}]
  # Milliseconds to wait for a service's answer.
  upstreamTimeout: ${DEFAULTS.upstreamTimeout}
  # Milliseconds a client connection may stay idle (HTTP/1.1 between requests, HTTP/2 with no stream).
  keepAliveTimeout: ${DEFAULTS.keepAliveTimeout}
  # Workload identity of the gateway (default spiffe://<trustDomain>/gateway).
  # spiffeId: spiffe://${trustDomain}/gateway
  # Prometheus metrics (GET /metrics, plain HTTP; off unless set). Keep it on loopback.
  # metricsListen: 127.0.0.1:9464

# OAuth2 access tokens issued by the control plane and required by the gateway.
tokens:
  # Lifetime in seconds (60..86400). Keep it short: a bearer token is valid until it expires.
  accessTokenTtl: ${DEFAULTS.accessTokenTtl}
  # Seconds of clock drift tolerated on exp/nbf (0..300).
  clockSkew: ${DEFAULTS.clockSkew}
  # issuer: defaults to control.url
  # audience: defaults to https://<gateway.listen>
  # Signing keys: ES256 (default) or EdDSA; the gateway accepts only the algorithms listed.
  # signingAlg: ${DEFAULTS.signingAlg}
  # algorithms: [${DEFAULTS.tokenAlgorithms.join(', ')}]
  # Machines that get tokens with client_credentials (docs/oauth.md); no client secrets.
  # clients:
  #   - clientId: reports
  #     authMethod: tls_client_auth
  #     spiffeId: spiffe://${trustDomain}/reports
  #     scopes: [orders:read]

# The services Portcullis protects. Each runs behind its own sidecar, which holds the
# service's certificate and lets in only callers allowed below.
services:
  - name: ${name}
    spiffeId: spiffe://${trustDomain}/${name}
    # Where the service itself listens: plain HTTP, so keep it on loopback.
    upstream: ${upstream}
    sidecar:
      # Inbound mutual-TLS listener that the gateway and other sidecars reach.
      listen: 127.0.0.1:15001
      # Loopback listener for the service's own outgoing calls to other services.
      outbound: 127.0.0.1:16001

# Public routes of the gateway. A request matching no route is refused (404).
# Paths: literal segments match exactly, {name} matches one segment. No wildcards.
routes:
  - id: ${name}.list
    method: GET
    path: /${name}
    service: ${name}
    # Credentials accepted (default [jwt]: an access token from this control plane).
    auth: [jwt]
    # Roles allowed (any one of them). Without roles, only Cedar policies (policies.files) decide:
    # deny by default. See docs/policy.md.
    roles: [reader]

# Service-to-service calls allowed through the sidecars; anything not listed is refused.
# Add a second service, then for example:
#   - from: ${name}
#     to: payments
#     operations: ["POST /payments/charge"]
calls: []
`;
}
