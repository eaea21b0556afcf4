// The validated, frozen shape of portcullis.yaml. The JSON Schema in schema/portcullis.schema.json
// is the source of truth for what a file may contain; loadConfig() fills defaults and freezes.

export type Credential = 'jwt' | 'apikey' | 'mtls' | 'introspection';

export interface ServiceConfig {
  /** Unique name, also the DNS-like label other services use to call it through their sidecar. */
  name: string;
  /** spiffe://<trustDomain>/...; exactly the URI SAN of its workload certificate. */
  spiffeId: string;
  /** Where the service itself listens, plain HTTP on loopback, e.g. http://127.0.0.1:9101. */
  upstream: string;
  sidecar: {
    /** Inbound mTLS listener (host:port) that callers reach. */
    listen: string;
    /** Plain HTTP loopback listener (host:port) for the service's own outbound calls. */
    outbound: string;
    /** Plain HTTP listener (host:port) serving GET /metrics for this sidecar; absent = no metrics listener. */
    metricsListen?: string;
  };
  /** More inbound (sidecar) addresses of replicas; the gateway balances over sidecar.listen and these. Default []. */
  replicas: string[];
  /** Default least-request. */
  balance: 'round-robin' | 'least-request';
  /** Retries of idempotent requests with a replayable body; default { attempts: 1, backoffMs: 25 }. */
  retries: { attempts: number; backoffMs: number };
  /** Default { failureThreshold: 5, openMs: 10000 }. */
  breaker: { failureThreshold: number; openMs: number };
  /** Default { consecutiveFailures: 5, ejectMs: 30000, maxEjectedPercent: 50 }. */
  outlier: { consecutiveFailures: number; ejectMs: number; maxEjectedPercent: number };
  /** Active health checks; absent (the default): none. */
  healthCheck?: { path: string; intervalMs: number; timeoutMs: number; unhealthyAfter: number; healthyAfter: number };
  /** Most requests in flight from one gateway; absent (the default): no limit. */
  maxConcurrent?: number;
}

/** Per-route exceptions to the canonical path rules (docs/normalization.md); every default is strict. */
export interface PathRulesConfig {
  allowEncodedSlash: boolean;
  allowSemicolon: boolean;
  caseSensitive: boolean;
  trailingSlash: 'strict' | 'ignore';
}

/** Request validation of a route (docs/validation.md). */
export interface RouteValidateConfig {
  /** JSON Schemas (an object, or `true`/`false`). */
  body?: Record<string, unknown> | boolean;
  params?: Record<string, unknown> | boolean;
  query?: Record<string, unknown> | boolean;
  /** An OpenAPI operation supplies the schemas; `file` is absolute (resolved against the config's directory). */
  openapi?: { file: string; operation: string };
  /** Default gateway.maxBodyBytes. */
  maxBodyBytes: number;
  /** Default [application/json]. */
  contentTypes: string[];
  /** Default true: unknown properties and query parameters are refused. */
  strictProperties: boolean;
  /** Default enforce; report = shadow mode. */
  mode: 'enforce' | 'report';
  /** Injection screening; default report. */
  screen: 'off' | 'report' | 'block';
}

export interface LimitRuleConfig {
  id: string;
  key: 'principal' | 'apikey' | 'client' | 'route' | 'address';
  rate: number;
  per: 'second' | 'minute' | 'hour' | 'day';
  burst?: number;
  routes?: string[];
}

export interface RouteConfig {
  /** Stable id, used as the rule name in audit events. */
  id: string;
  method: 'GET' | 'HEAD' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  /** Path pattern; `{name}` matches one non-empty segment. */
  path: string;
  /** Name of the service the route forwards to. */
  service: string;
  /** Credentials accepted on this route: `jwt` access tokens and/or `apikey` (docs/api-keys.md); default [jwt]. */
  auth: Credential[];
  /** Roles any one of which may call (the Cedar policy `route:<id>`); empty (the default): only `policies` decide. */
  roles: string[];
  pathRules: PathRulesConfig;
  /** For `mtls` in `auth`: the SPIFFE IDs allowed (absent: any workload of the trust domain; policy still decides). */
  mtls?: { allow?: string[] };
  /** WebSocket upgrades on this GET route: `protocolToken` also takes the token from `Sec-WebSocket-Protocol: bearer.<token>` (browsers cannot set Authorization). */
  websocket?: { protocolToken: boolean };
  /** Absent (the default): bodies are only size-limited and screened in report mode. */
  validate?: RouteValidateConfig;
}

export interface CallRuleConfig {
  /** Calling service name. */
  from: string;
  /** Called service name. */
  to: string;
  /** Operations allowed, each "METHOD /path/pattern". */
  operations: string[];
}

/** Key types of a keyring (the same values as `KeyType` in src/kms/types.ts; core cannot import kms). */
export type KeyringType = 'aes256-gcm' | 'hmac-sha256' | 'ecdsa-p256' | 'ed25519';

/** Transit operations a service may be granted on a keyring. */
export type KmsOperation = 'encrypt' | 'decrypt' | 'rewrap' | 'datakey' | 'hmac' | 'sign' | 'verify';

export interface KeyringGrantConfig {
  /** Service name (in `services`) the grant is for. */
  service: string;
  /** Operations allowed; each fits the keyring's type (checked at load). */
  operations: KmsOperation[];
}

export interface KeyringConfig {
  /** Unique name; appears in every ciphertext's prefix (`pcl:<name>:v<N>:…`). */
  name: string;
  /** Default aes256-gcm. */
  type: KeyringType;
  /** Automatic rotation period in seconds (≥ 3600); undefined = manual rotation only. */
  rotationPeriod?: number;
  /** Which service may do what; default [] (only the admin token may use the keyring). */
  allow: KeyringGrantConfig[];
}

export interface SecretRuleConfig {
  /** Path prefix ending in "/", e.g. `payments/`; the rule covers every secret under it. */
  prefix: string;
  /** Services that may read secrets under the prefix; default []. */
  read: string[];
  /** Services that may write, delete and destroy secrets under the prefix; default []. */
  write: string[];
}

/** Algorithms of the token service's signing keys (SIGNING_ALGS in src/tokens/signing-keys.ts; core cannot import tokens). */
export type TokenAlg = 'ES256' | 'EdDSA';

/** A public key of a private_key_jwt client, as a JWK (RFC 7517); private members are refused at load. */
export interface PublicJwkConfig {
  kty: 'EC' | 'OKP' | 'RSA';
  crv?: string;
  x?: string;
  y?: string;
  n?: string;
  e?: string;
  kid?: string;
  alg?: string;
  use?: 'sig';
}

/**
 * A confidential OAuth client declared in the file. It authenticates with a key pair
 * (private_key_jwt, `jwks`) or with the workload certificate of `spiffeId` (tls_client_auth);
 * client secrets are not supported (docs/oauth.md says why).
 */
export interface OAuthClientConfig {
  clientId: string;
  /** Default private_key_jwt. */
  authMethod: 'private_key_jwt' | 'tls_client_auth';
  /** private_key_jwt only: the client's public keys. */
  jwks?: { keys: PublicJwkConfig[] };
  /** tls_client_auth only: the SPIFFE ID its client certificate must carry. */
  spiffeId?: string;
  /** Default [client_credentials] (the only grant for confidential clients). */
  grantTypes: 'client_credentials'[];
  /** Scope values client_credentials may grant; default []. */
  scopes: string[];
  /** `aud` of its access tokens; absent (the default): tokens.audience. */
  audience?: string;
}

export interface PortcullisConfig {
  /** File the config came from (for messages). */
  source: string;
  /** SPIFFE trust domain; every spiffeId is under spiffe://<trustDomain>/. */
  trustDomain: string;
  control: {
    /** host:port the control plane listens on (HTTPS); default 127.0.0.1:8444. */
    listen: string;
    /** URL data planes and clients use to reach the control plane; default https://<control.listen>. */
    url: string;
    /** Directory of the embedded store, keys and logs: absolute, resolved against the config file's directory; default .portcullis. */
    dataDir: string;
    /** Plain HTTP listener (host:port) serving GET /metrics; absent (the default) = no metrics listener. */
    metricsListen?: string;
    /** How often every data plane fetches its snapshot (policies, keys, revocations, blocks), in seconds; default 30. */
    snapshotRefreshSeconds: number;
  };
  tokens: {
    /** `iss` of access tokens; defaults to control.url. */
    issuer: string;
    /** `aud` the gateway requires; defaults to the gateway's public URL, https://<gateway.listen>. */
    audience: string;
    /** Access-token lifetime in seconds, 60..86400; default 900. */
    accessTokenTtl: number;
    /** Accepted clock skew in seconds for exp/nbf, 0..300; default 30. */
    clockSkew: number;
    /** Algorithm of signing keys created from now on (existing keys keep theirs); default ES256. */
    signingAlg: TokenAlg;
    /** JWS algorithms the gateway accepts in access tokens (asymmetric only); default [ES256]; includes signingAlg. */
    algorithms: TokenAlg[];
    /** Confidential OAuth clients (machines), docs/oauth.md; default []. */
    clients: OAuthClientConfig[];
  };
  gateway: {
    /** host:port of the gateway's HTTPS listener; default 127.0.0.1:8443. */
    listen: string;
    /** Workload identity of the gateway; default spiffe://<trustDomain>/gateway. */
    spiffeId: string;
    /** DNS names and IP addresses the gateway's TLS certificate is valid for; default [localhost, 127.0.0.1]. */
    serverNames: string[];
    /** Upstream request timeout in milliseconds, 100..600000; default 15000. */
    upstreamTimeout: number;
    /** Largest request body in bytes unless a route says otherwise; default 1 MiB. */
    maxBodyBytes: number;
    /** Strict-Transport-Security on every response; default true. */
    hsts: boolean;
    /** Idle time allowed on a client connection (HTTP/1.1: between requests; HTTP/2: no open stream), in ms; default 5000. */
    keepAliveTimeout: number;
    /** HTTP/2 for clients that offer it (ALPN), HTTP/1.1 for the others; default true. */
    http2: boolean;
    /** Proxies whose forwarding header is believed; absent (the default): the socket peer is the client. */
    trustedProxies?: { cidrs: string[]; header: 'x-forwarded-for' | 'forwarded' };
    /** For routes with `introspection` in `auth`; default { onDown: deny, cacheSeconds: 30, timeoutMs: 2000 }. */
    introspection?: { onDown: 'deny' | 'allow-reads'; cacheSeconds: number; staleSeconds?: number; timeoutMs: number };
    /** The gateway's public origins (`https://api.example.com`) a DPoP proof may name; absent: the request's Host. */
    publicOrigins?: string[];
    /** Exact-origin CORS; absent (the default): no cross-origin requests. */
    cors?: { origins: string[]; methods?: string[]; headers?: string[]; credentials: boolean; maxAgeSec: number };
    /** Plain HTTP listener (host:port) serving GET /metrics; absent (the default) = no metrics listener. */
    metricsListen?: string;
  };
  /** At least one; names, spiffeIds and listen addresses are unique. */
  services: ServiceConfig[];
  /** Public routes of the gateway; default []. No two share a method and a path shape. */
  routes: RouteConfig[];
  /** Service-to-service calls allowed; default []. */
  calls: CallRuleConfig[];
  /** People (docs/people.md). */
  users: {
    /** Roles whose members must sign in with a second factor (TOTP); default []. */
    privilegedRoles: string[];
  };
  /** Rate limits at the gateway (docs/rate-limits.md). */
  limits: {
    /** Default memory; redis uses REDIS_URL. */
    store: 'memory' | 'redis';
    /** Default local. */
    onStoreDown: 'deny' | 'allow' | 'local';
    /** Default []. */
    rules: LimitRuleConfig[];
  };
  policies: PoliciesConfig;
  detection: DetectionSettings;
  audit: {
    /** Refuse requests (503) while the audit log cannot write, instead of serving unrecorded. */
    failClosed: boolean;
    /** Where audit events are shipped when NATS_URL is set (JetStream). */
    nats: AuditNatsConfig;
  };
  /** Key management: keyrings with per-service grants, and secret access rules. */
  kms: {
    /** Default []. Names are unique; `secrets` is reserved for the secrets store. */
    keyrings: KeyringConfig[];
    /** Default []. Prefixes are unique. */
    secrets: SecretRuleConfig[];
  };
}

/** JetStream names for audit shipping; only used when the NATS_URL environment variable is set. */
export interface AuditNatsConfig {
  /** Stream holding every component's events; default PORTCULLIS_AUDIT. */
  stream: string;
  /** Each component publishes on `<subjectPrefix>.<component>`; default portcullis.audit. */
  subjectPrefix: string;
  /** Durable consumer name of the control plane's audit store; default portcullis-control. */
  durable: string;
}

export interface TemplateLinkConfig {
  template: string;
  id: string;
  /** `Type::"id"` for ?principal. */
  principal?: string;
  /** `Type::"id"` for ?resource. */
  resource?: string;
}

/** Cedar policies (docs/policy.md); file paths are absolute, resolved against the config file. */
export interface PoliciesConfig {
  files: string[];
  schema?: string;
  links: TemplateLinkConfig[];
  tests: string[];
  /** IANA zone of context.time; default UTC. */
  timeZone: string;
  /** Candidate set evaluated beside the live one, never enforced. */
  shadow?: { files: string[] };
}

/** One detection rule (the shapes of src/detect/types.ts; core cannot import detect). */
export interface DetectionRuleConfig {
  id: string;
  kind: 'brute-force' | 'enumeration' | 'refusal-spike' | 'workload-refused' | 'new-network' | 'new-call-edge' | 'attack-signature' | 'expiry';
  severity: 'low' | 'medium' | 'high' | 'critical';
  threshold?: number;
  windowSeconds?: number;
  learningSeconds?: number;
  days?: number;
  block?: { seconds: number };
}

export interface DetectionSettings {
  /** Default true. */
  enabled: boolean;
  /** Undefined: the default rules of src/detect/config.ts. */
  rules?: DetectionRuleConfig[];
  webhook?: { url: string; secretEnv: string };
}
