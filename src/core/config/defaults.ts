// Every default of portcullis.yaml, set here and documented here (STYLE.md habit 6). The schema's
// `default` annotations repeat the static ones for editors; a test keeps the two in agreement.
import { isAbsolute, resolve, dirname } from 'node:path';
import type { CallRuleConfig, KeyringConfig, OAuthClientConfig, PathRulesConfig, PortcullisConfig, RouteConfig, RouteValidateConfig, SecretRuleConfig, ServiceConfig, TemplateLinkConfig, DetectionRuleConfig, TokenAlg } from './types.js';

export const DEFAULTS = {
  /** Loopback only: exposing the control plane is a deliberate act. */
  controlListen: '127.0.0.1:8444',
  /** Relative to the config file's directory. */
  dataDir: '.portcullis',
  /** Loopback only, like the control plane. */
  gatewayListen: '127.0.0.1:8443',
  gatewayServerNames: ['localhost', '127.0.0.1'],
  /** Milliseconds; long enough for slow upstreams, short enough to free sockets. */
  upstreamTimeout: 15_000,
  /** Milliseconds (Node's own default): room for a client's next request, too short for idle connections to pile up. */
  keepAliveTimeout: 5_000,
  /** Bytes (1 MiB): room for any JSON API request, too small to exhaust memory at high concurrency. */
  maxBodyBytes: 1_048_576,
  /** Seconds. Short, because a bearer token cannot be recalled before it expires except by revocation. */
  accessTokenTtl: 900,
  snapshotRefreshSeconds: 30,
  /** Seconds of exp/nbf tolerance for clocks that drift. */
  clockSkew: 30,
  /** ES256 (P-256): what every JOSE library verifies; EdDSA (Ed25519) is faster to verify, by choice. */
  signingAlg: 'ES256' as TokenAlg, // names the union, not the literal
  /** What the gateway accepts: the default signing algorithm only (never `none` or HMAC). */
  tokenAlgorithms: ['ES256'] as TokenAlg[],
  /** The only grant a confidential client has. */
  clientGrantTypes: ['client_credentials'] as OAuthClientConfig['grantTypes'],
  // Both casts only name the element type of a literal array (`as const` would make it a tuple).
  routeAuth: ['jwt'] as RouteConfig['auth'],
  routeRoles: [] as string[],
  /** The keyring type for encryption, the common case; signing and MAC keyrings say so. */
  keyringType: 'aes256-gcm' as KeyringConfig['type'], // names the union, not the literal
  /** No grant: a keyring nobody is allowed to use is reachable with the admin token only (deny by default). */
  keyringAllow: [] as KeyringConfig['allow'],
  /** No keyring and no secret rule: no service reaches the KMS until the file grants it. */
  // The array casts name element types of empty literals, as routeAuth's above.
  kmsKeyrings: [] as KeyringConfig[],
  kmsSecrets: [] as SecretRuleConfig[],
  secretRead: [] as string[],
  secretWrite: [] as string[],
} as const;

/**
 * The keyring the secrets store encrypts under. Reserved: a config keyring of that name could grant
 * a service `decrypt` on every stored secret (the context, path and version, is guessable).
 */
export const SECRETS_KEYRING = 'secrets';

/** Defaults that derive from other values, computed in one place so checks and loading agree. */
export const derived = {
  /** control.url: the control plane's own listener over HTTPS. */
  controlUrl: (controlListen: string): string => `https://${controlListen}`,
  /** gateway.spiffeId: the conventional gateway workload path in the trust domain. */
  gatewaySpiffeId: (trustDomain: string): string => `spiffe://${trustDomain}/gateway`,
  /** tokens.issuer: the control plane that issues them. */
  issuer: (controlUrl: string): string => controlUrl,
  /** tokens.audience: the gateway's public URL. */
  audience: (gatewayListen: string): string => `https://${gatewayListen}`,
};

/** Shape of a file after schema validation: optional sections and keys may be absent. */
export interface RawConfig {
  trustDomain: string;
  control?: Partial<PortcullisConfig['control']>;
  gateway?: Partial<PortcullisConfig['gateway']>;
  tokens?: Partial<Omit<PortcullisConfig['tokens'], 'clients'>> & {
    clients?: (Pick<OAuthClientConfig, 'clientId' | 'jwks' | 'spiffeId' | 'audience'> & Partial<Pick<OAuthClientConfig, 'authMethod' | 'grantTypes' | 'scopes'>>)[];
  };
  services: (Pick<ServiceConfig, 'name' | 'spiffeId' | 'upstream' | 'sidecar' | 'maxConcurrent'> & {
    replicas?: string[]; balance?: ServiceConfig['balance']; retries?: Partial<ServiceConfig['retries']>; breaker?: Partial<ServiceConfig['breaker']>;
    outlier?: Partial<ServiceConfig['outlier']>; healthCheck?: Partial<NonNullable<ServiceConfig['healthCheck']>> & { path: string };
  })[];
  routes?: (Omit<RouteConfig, 'auth' | 'roles' | 'pathRules' | 'validate' | 'mtls' | 'websocket'> & Partial<Pick<RouteConfig, 'auth' | 'roles'>> & {
    pathRules?: Partial<PathRulesConfig>; validate?: Partial<RouteValidateConfig>; mtls?: { allow?: string[] }; websocket?: { protocolToken?: boolean };
  })[];
  limits?: Partial<PortcullisConfig['limits']>;
  users?: { privilegedRoles?: string[] };
  calls?: CallRuleConfig[];
  detection?: { enabled?: boolean; rules?: DetectionRuleConfig[]; webhook?: { url: string; secretEnv: string } };
  policies?: { files?: string[]; schema?: string; links?: TemplateLinkConfig[]; tests?: string[]; timeZone?: string; shadow?: { files: string[] } };
  audit?: { failClosed?: boolean; nats?: Partial<PortcullisConfig['audit']['nats']> };
  kms?: {
    keyrings?: (Omit<KeyringConfig, 'type' | 'allow'> & Partial<Pick<KeyringConfig, 'type' | 'allow'>>)[];
    secrets?: (Omit<SecretRuleConfig, 'read' | 'write'> & Partial<Pick<SecretRuleConfig, 'read' | 'write'>>)[];
  };
}

/**
 * Fills every default into schema-valid data and resolves control.dataDir against the config
 * file's directory. Returns fresh objects (the input is not modified or shared).
 */
export function applyDefaults(raw: RawConfig, file: string): PortcullisConfig {
  const controlListen = raw.control?.listen ?? DEFAULTS.controlListen;
  const controlUrl = raw.control?.url ?? derived.controlUrl(controlListen);
  const gatewayListen = raw.gateway?.listen ?? DEFAULTS.gatewayListen;
  const dataDir = raw.control?.dataDir ?? DEFAULTS.dataDir;
  return {
    source: file,
    trustDomain: raw.trustDomain,
    control: {
      listen: controlListen,
      url: controlUrl,
      dataDir: isAbsolute(dataDir) ? resolve(dataDir) : resolve(dirname(resolve(file)), dataDir),
      // No default: metrics are served only where the file asks for them.
      ...(raw.control?.metricsListen !== undefined ? { metricsListen: raw.control.metricsListen } : {}),
      snapshotRefreshSeconds: raw.control?.snapshotRefreshSeconds ?? DEFAULTS.snapshotRefreshSeconds,
    },
    tokens: {
      issuer: raw.tokens?.issuer ?? derived.issuer(controlUrl),
      audience: raw.tokens?.audience ?? derived.audience(gatewayListen),
      accessTokenTtl: raw.tokens?.accessTokenTtl ?? DEFAULTS.accessTokenTtl,
      clockSkew: raw.tokens?.clockSkew ?? DEFAULTS.clockSkew,
      signingAlg: raw.tokens?.signingAlg ?? DEFAULTS.signingAlg,
      algorithms: [...(raw.tokens?.algorithms ?? DEFAULTS.tokenAlgorithms)],
      clients: (raw.tokens?.clients ?? []).map((c) => ({
        clientId: c.clientId,
        authMethod: c.authMethod ?? 'private_key_jwt',
        ...(c.jwks ? { jwks: { keys: c.jwks.keys.map((k) => ({ ...k })) } } : {}),
        ...(c.spiffeId !== undefined ? { spiffeId: c.spiffeId } : {}),
        grantTypes: [...(c.grantTypes ?? DEFAULTS.clientGrantTypes)],
        scopes: [...(c.scopes ?? [])],
        ...(c.audience !== undefined ? { audience: c.audience } : {}),
      })),
    },
    gateway: {
      listen: gatewayListen,
      spiffeId: raw.gateway?.spiffeId ?? derived.gatewaySpiffeId(raw.trustDomain),
      serverNames: [...(raw.gateway?.serverNames ?? DEFAULTS.gatewayServerNames)],
      upstreamTimeout: raw.gateway?.upstreamTimeout ?? DEFAULTS.upstreamTimeout,
      maxBodyBytes: raw.gateway?.maxBodyBytes ?? DEFAULTS.maxBodyBytes,
      hsts: raw.gateway?.hsts ?? true,
      keepAliveTimeout: raw.gateway?.keepAliveTimeout ?? DEFAULTS.keepAliveTimeout,
      http2: raw.gateway?.http2 ?? true,
      ...(raw.gateway?.trustedProxies ? { trustedProxies: { cidrs: [...raw.gateway.trustedProxies.cidrs], header: raw.gateway.trustedProxies.header ?? 'x-forwarded-for' } } : {}),
      ...(raw.gateway?.introspection ? { introspection: {
        onDown: raw.gateway.introspection.onDown ?? 'deny', cacheSeconds: raw.gateway.introspection.cacheSeconds ?? 30,
        ...(raw.gateway.introspection.staleSeconds !== undefined ? { staleSeconds: raw.gateway.introspection.staleSeconds } : {}),
        timeoutMs: raw.gateway.introspection.timeoutMs ?? 2000,
      } } : {}),
      ...(raw.gateway?.publicOrigins ? { publicOrigins: [...raw.gateway.publicOrigins] } : {}),
      ...(raw.gateway?.cors ? { cors: {
        origins: [...raw.gateway.cors.origins],
        ...(raw.gateway.cors.methods ? { methods: [...raw.gateway.cors.methods] } : {}),
        ...(raw.gateway.cors.headers ? { headers: [...raw.gateway.cors.headers] } : {}),
        credentials: raw.gateway.cors.credentials ?? false,
        maxAgeSec: raw.gateway.cors.maxAgeSec ?? 600,
      } } : {}),
      ...(raw.gateway?.metricsListen !== undefined ? { metricsListen: raw.gateway.metricsListen } : {}),
    },
    services: raw.services.map((s) => ({
      name: s.name,
      spiffeId: s.spiffeId,
      upstream: s.upstream,
      sidecar: { listen: s.sidecar.listen, outbound: s.sidecar.outbound, ...(s.sidecar.metricsListen !== undefined ? { metricsListen: s.sidecar.metricsListen } : {}) },
      replicas: [...(s.replicas ?? [])],
      balance: s.balance ?? 'least-request',
      retries: { attempts: s.retries?.attempts ?? 1, backoffMs: s.retries?.backoffMs ?? 25 },
      breaker: { failureThreshold: s.breaker?.failureThreshold ?? 5, openMs: s.breaker?.openMs ?? 10_000 },
      outlier: { consecutiveFailures: s.outlier?.consecutiveFailures ?? 5, ejectMs: s.outlier?.ejectMs ?? 30_000, maxEjectedPercent: s.outlier?.maxEjectedPercent ?? 50 },
      ...(s.healthCheck ? { healthCheck: {
        path: s.healthCheck.path, intervalMs: s.healthCheck.intervalMs ?? 5000, timeoutMs: s.healthCheck.timeoutMs ?? 1000,
        unhealthyAfter: s.healthCheck.unhealthyAfter ?? 2, healthyAfter: s.healthCheck.healthyAfter ?? 2,
      } } : {}),
      ...(s.maxConcurrent !== undefined ? { maxConcurrent: s.maxConcurrent } : {}),
    })),
    routes: (raw.routes ?? []).map((r) => ({
      id: r.id,
      method: r.method,
      path: r.path,
      service: r.service,
      auth: [...(r.auth ?? DEFAULTS.routeAuth)],
      roles: [...(r.roles ?? DEFAULTS.routeRoles)],
      ...(r.mtls ? { mtls: { ...(r.mtls.allow ? { allow: [...r.mtls.allow] } : {}) } } : {}),
      ...(r.websocket ? { websocket: { protocolToken: r.websocket.protocolToken ?? false } } : {}),
      pathRules: {
        allowEncodedSlash: r.pathRules?.allowEncodedSlash ?? false,
        allowSemicolon: r.pathRules?.allowSemicolon ?? false,
        caseSensitive: r.pathRules?.caseSensitive ?? true,
        trailingSlash: r.pathRules?.trailingSlash ?? 'strict',
      },
      ...(r.validate ? { validate: validateOf(r.validate, raw.gateway?.maxBodyBytes ?? DEFAULTS.maxBodyBytes, dirname(resolve(file))) } : {}),
    })),
    users: { privilegedRoles: [...(raw.users?.privilegedRoles ?? [])] },
    limits: {
      store: raw.limits?.store ?? 'memory',
      onStoreDown: raw.limits?.onStoreDown ?? 'local',
      rules: (raw.limits?.rules ?? []).map((l) => ({ ...l, ...(l.routes ? { routes: [...l.routes] } : {}) })),
    },
    calls: (raw.calls ?? []).map((c) => ({ from: c.from, to: c.to, operations: [...c.operations] })),
    policies: policiesOf(raw.policies, dirname(resolve(file))),
    detection: {
      enabled: raw.detection?.enabled ?? true,
      ...(raw.detection?.rules ? { rules: raw.detection.rules.map((r) => structuredClone(r)) } : {}),
      ...(raw.detection?.webhook ? { webhook: { ...raw.detection.webhook } } : {}),
    },
    audit: {
      failClosed: raw.audit?.failClosed ?? false,
      // JetStream names: one stream for all components, one durable consumer for the audit store.
      nats: {
        stream: raw.audit?.nats?.stream ?? 'PORTCULLIS_AUDIT',
        subjectPrefix: raw.audit?.nats?.subjectPrefix ?? 'portcullis.audit',
        durable: raw.audit?.nats?.durable ?? 'portcullis-control',
      },
    },
    kms: {
      keyrings: (raw.kms?.keyrings ?? DEFAULTS.kmsKeyrings).map((k) => ({
        name: k.name,
        type: k.type ?? DEFAULTS.keyringType,
        ...(k.rotationPeriod !== undefined ? { rotationPeriod: k.rotationPeriod } : {}),
        allow: (k.allow ?? DEFAULTS.keyringAllow).map((g) => ({ service: g.service, operations: [...g.operations] })),
      })),
      secrets: (raw.kms?.secrets ?? DEFAULTS.kmsSecrets).map((r) => ({
        prefix: r.prefix,
        read: [...(r.read ?? DEFAULTS.secretRead)],
        write: [...(r.write ?? DEFAULTS.secretWrite)],
      })),
    },
  };
}

function validateOf(v: Partial<RouteValidateConfig>, maxBodyBytes: number, dir: string): RouteValidateConfig {
  return {
    ...(v.body ? { body: structuredClone(v.body) } : {}),
    ...(v.params ? { params: structuredClone(v.params) } : {}),
    ...(v.query ? { query: structuredClone(v.query) } : {}),
    ...(v.openapi ? { openapi: { file: isAbsolute(v.openapi.file) ? resolve(v.openapi.file) : resolve(dir, v.openapi.file), operation: v.openapi.operation } } : {}),
    maxBodyBytes: v.maxBodyBytes ?? maxBodyBytes,
    contentTypes: [...(v.contentTypes ?? ['application/json'])],
    strictProperties: v.strictProperties ?? true,
    mode: v.mode ?? 'enforce',
    screen: v.screen ?? 'report',
  };
}

function policiesOf(raw: RawConfig['policies'], dir: string): PortcullisConfig['policies'] {
  const at = (f: string): string => (isAbsolute(f) ? resolve(f) : resolve(dir, f));
  return {
    files: (raw?.files ?? []).map(at),
    ...(raw?.schema !== undefined ? { schema: at(raw.schema) } : {}),
    links: (raw?.links ?? []).map((l) => ({ ...l })),
    tests: (raw?.tests ?? []).map(at),
    timeZone: raw?.timeZone ?? 'UTC',
    ...(raw?.shadow ? { shadow: { files: raw.shadow.files.map(at) } } : {}),
  };
}

/** Freezes a value and everything reachable from it, so no part of a loaded config can change. */
export function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const key of Object.keys(value)) deepFreeze((value as Record<string, unknown>)[key] /* own key of this object */);
  }
  return value;
}
