// The edge: TLS termination, then the pipeline, each step a module of its own:
//   0. fail closed (audit) · client address (socket, or trusted proxies) · blocks · CORS
//   1. normalize   one canonical path (normalize.ts), refused when ambiguous
//   2. route       method + canonical path → route (router.ts), then the route's own path rules
//   3. authenticate JWT access token (verified-token cache)
//   4. authorize   the Cedar policy set, deny by default
//   5. limit       rate limits (GCRA, in-process or Redis) — before the body is read, so a flood costs no buffering
//   6. validate    body size, content type, strict JSON, JSON Schema / OpenAPI, injection screen
//   7. forward     over mTLS to the service's sidecars (balancing, retries, breaker), security headers on the answer
//   8. record      exactly one audit decision per request, allowed or refused
// A refused request never reaches a service. (DESIGN.md lists validate before limit; limiting first
// keeps a flood of large bodies from being read at all.)
import { createSecureServer, type Http2SecureServer, type ServerHttp2Session, type ServerHttp2Stream } from 'node:http2';
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { ConnectionOptions } from 'node:tls';
import type { PortcullisConfig, RouteConfig, ServiceConfig } from '../core/config/types.js';
import { asPortcullisError, PortcullisError } from '../core/errors.js';
import { publishAudit, publishTlsFailure, type DecisionEvent } from '../core/events.js';
import { newRequestId } from '../core/ids.js';
import { matchSignatures } from '../core/attack-signatures.js';
import { silentLogger, type Logger } from '../core/log.js';
import { isoTime, systemClock, type Clock } from '../core/clock.js';
import { mtlsClientOptions } from '../identity/tls-options.js';
import { PrincipalAssertionSigner } from '../identity/principal-assertion.js';
import type { Principal } from '../core/principal.js';
import { createAccessTokenVerifier } from '../tokens/verify.js';
import { RevokedJtis } from '../tokens/revocations.js';
import type { AccessTokenClaims } from '../tokens/verify.js';
import { httpsOrigin, parseHostPort } from './addr.js';
import { API_KEY_HEADER, type ApiKeyAuthenticator } from './api-key-auth.js';
import { RequestAuthenticator, type Authenticated } from './auth/authenticate.js';
import { createGatewayTokenVerifier, type Jwks } from './auth/token-verifier.js';
import { DpopVerifier } from './auth/dpop.js';
import { IntrospectionClient } from './auth/introspection.js';
import { gatewayClientCertOptions } from './auth/mtls-client.js';
import { authChallenge } from './auth/sender-constraint.js';
import { canonicalAddress, clientAddress, compileTrustedProxies } from './client-address.js';
import { compileCorsPolicy, handleCors } from './cors.js';
import { assertSingleHeaders, forwardableRequestHeaders, POLICY_HEADERS, PRINCIPAL_HEADER, REQUEST_ID_HEADER } from './headers.js';
import { RateLimiter, rateLimitHeaders, type LimitRule } from './limit/limiter.js';
import { MemoryLimitStore, RedisLimitStore, type LimitStore } from './limit/stores.js';
import { RedisReplayCache } from './auth/dpop-replay.js';
import { checkPathRules, forwardTarget, normalizeTarget, type NormalizedTarget } from './normalize.js';
import { sendError } from './respond.js';
import { RequestSpan } from './request-span.js';
import { Router, type RouteMatch } from './router.js';
import { applyResponseSecurity, securityHeaders } from './security-headers.js';
import type { SnapshotSource } from './snapshot.js';
import type { ActivePolicies } from './policies.js';
import type { ActiveBlocks } from './blocks.js';
import { recordDecision } from './record-decision.js';
import { continueTrace, setTraceHeaders } from './traceparent.js';
import { UpstreamCluster, type ClusterState } from './upstream/cluster.js';
import { planValidation, validateRequest, type OpenApiCache, type ValidationPlan } from './validate/route-validation.js';
import { validationError } from './validate/schema.js';
import type { WorkloadCredentials, WorkloadIdentity } from './workload-identity.js';
import { adoptProtocolBearer, checkUpgradeOrigin, handleUpgrade, type UpgradeContext, type UpgradeDecision } from './upgrade.js';

export interface GatewayOptions {
  config: PortcullisConfig;
  identity: WorkloadIdentity;
  snapshot: SnapshotSource;
  policies: ActivePolicies;
  /** Temporary blocks (detection's automatic response); none when absent. */
  blocks?: ActiveBlocks;
  /** Overrides config.gateway.listen. */
  listen?: string;
  /** Whether the audit log can write; with `audit.failClosed`, requests are refused while it cannot. */
  auditHealthy?: () => boolean;
  /** API keys from the snapshot (the gateway's part); without it, routes take JWTs only. */
  apiKeys?: ApiKeyAuthenticator;
  /** Rate-limit counters; default from `limits.store` (redis: REDIS_URL, else in-process). */
  limitStore?: LimitStore;
  /**
   * Tokens of another issuer (the proxy benchmark's, say) instead of the control plane's from the
   * snapshot, and TLS to upstreams that are not Portcullis sidecars (verified by DNS name, not
   * SPIFFE ID). Both default to the zero-trust setup: our tokens, sidecars' SPIFFE IDs.
   */
  tokenVerifier?: ReturnType<typeof createAccessTokenVerifier>;
  upstreamTls?: (service: ServiceConfig, creds: WorkloadCredentials) => ConnectionOptions;
  clock?: Clock;
  logger?: Logger;
}

export class Gateway {
  private readonly server: Server | Http2SecureServer;
  private readonly router: Router;
  private readonly upstreams = new Map<string, UpstreamCluster>();
  private readonly plans = new Map<string, ValidationPlan>();
  private readonly verifier: ReturnType<typeof createAccessTokenVerifier>;
  private readonly auth: RequestAuthenticator;
  private readonly introspection: IntrospectionClient | undefined;
  private readonly limiter: RateLimiter | undefined;
  private readonly limitRules: LimitRule[];
  private readonly logger: Logger;
  private readonly clock: Clock;
  private readonly policyHeaders: readonly string[];
  private readonly assertions: PrincipalAssertionSigner;
  /** Service name → SPIFFE ID: the audience of the user assertion it receives. */
  private readonly serviceIds = new Map<string, string>();
  private readonly principals = new WeakMap<AccessTokenClaims, Principal>();
  private readonly dpopReplay: RedisReplayCache | undefined;

  constructor(private readonly o: GatewayOptions) {
    const { config } = o;
    this.logger = o.logger ?? silentLogger;
    this.clock = o.clock ?? systemClock;
    this.router = new Router(config.routes);
    // Everything a request could trip over is compiled now: a bad schema, proxy list or origin fails the start.
    const openapi: OpenApiCache = new Map();
    for (const r of config.routes) this.plans.set(r.id, planValidation(r, config.gateway.maxBodyBytes, openapi));
    if (config.gateway.trustedProxies) compileTrustedProxies(config.gateway.trustedProxies);
    if (config.gateway.cors) compileCorsPolicy(config.gateway.cors);
    this.policyHeaders = config.gateway.trustedProxies ? [...POLICY_HEADERS, config.gateway.trustedProxies.header] : POLICY_HEADERS;
    this.limitRules = config.limits.rules.map((r) => ({ ...r, ...(r.routes ? { routes: [...r.routes] } : {}) }));
    this.limiter = this.limitRules.length === 0 ? undefined : new RateLimiter({
      rules: this.limitRules,
      store: o.limitStore ?? (config.limits.store === 'redis' ? new RedisLimitStore({ url: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379' }) : new MemoryLimitStore({ clock: this.clock })),
      onStoreDown: config.limits.onStoreDown,
      clock: this.clock,
      onDegraded: (err) => this.logger.warn({ err: err.message, onStoreDown: config.limits.onStoreDown }, 'rate-limit store unreachable'),
    });
    const snap = o.snapshot.current();
    // Revoked access tokens (RFC 7009 at the control plane) travel in the snapshot; the verifier asks on every call.
    const revoked = new RevokedJtis();
    revoked.load(snap.revokedTokens, snap.revokedGrants);
    // tokens.algorithms decides which signatures count (ES256 and/or EdDSA).
    this.verifier = o.tokenVerifier ?? createGatewayTokenVerifier(config, snap.jwks as Jwks, { clock: this.clock, isRevoked: revoked.isRevoked }); // the control plane's public JWKS document
    if (!o.tokenVerifier) {
      o.snapshot.on('updated', (doc) => {
        revoked.load(doc.revokedTokens, doc.revokedGrants);
        this.verifier.setJwks(doc.jwks as Parameters<typeof createAccessTokenVerifier>[0]['jwks']);
      });
    }

    const creds = o.identity.current();
    this.assertions = new PrincipalAssertionSigner(() => o.identity.current(), this.clock);
    for (const s of config.services) this.serviceIds.set(s.name, s.spiffeId);
    const hsts = config.gateway.hsts;
    const controlId = `spiffe://${config.trustDomain}/control`;
    const intro = config.gateway.introspection;
    this.introspection = config.routes.some((r) => r.auth.includes('introspection')) ? new IntrospectionClient({
      endpoint: new URL('/oauth2/introspect', config.control.url).href,
      tls: { keyPem: creds.keyPem, chainPem: creds.chainPem, trustBundlePem: creds.trustBundlePem, expectedSpiffeId: controlId },
      audience: config.tokens.audience, issuer: config.tokens.issuer, onDown: intro?.onDown ?? 'deny',
      cacheTtlMs: (intro?.cacheSeconds ?? 30) * 1000, staleGraceMs: (intro?.staleSeconds ?? intro?.cacheSeconds ?? 30) * 1000,
      timeoutMs: intro?.timeoutMs ?? 2000, isRevoked: revoked.isRevoked, clock: this.clock, logger: this.logger,
    }) : undefined;
    // Replicas that share rate limits through Redis share DPoP proof ids too: a proof is used once across all of them.
    this.dpopReplay = config.limits.store === 'redis' ? new RedisReplayCache({
      url: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379', onDown: config.limits.onStoreDown === 'deny' ? 'deny' : 'local', clock: this.clock,
      onFallback: (err) => this.logger.warn({ err: err.message, onDown: config.limits.onStoreDown }, 'DPoP replay cache: Redis unavailable'),
    }) : undefined;
    this.auth = new RequestAuthenticator({
      trustDomain: config.trustDomain, audience: config.tokens.audience, verifier: this.verifier,
      ...(o.apiKeys ? { apiKeys: o.apiKeys } : {}), ...(this.introspection ? { introspection: this.introspection } : {}),
      dpop: new DpopVerifier({ clock: this.clock, ...(this.dpopReplay ? { replay: this.dpopReplay } : {}) }), ...(config.gateway.publicOrigins ? { publicOrigins: config.gateway.publicOrigins } : {}),
    });
    for (const s of config.services) {
      this.upstreams.set(s.name, new UpstreamCluster({
        origins: [s.sidecar.listen, ...s.replicas].map(httpsOrigin),
        tls: this.upstreamTls(creds, s),
        timeoutMs: config.gateway.upstreamTimeout,
        balance: s.balance, retries: s.retries, breaker: s.breaker, outlier: s.outlier,
        ...(s.healthCheck ? { healthCheck: s.healthCheck } : {}),
        ...(s.maxConcurrent !== undefined ? { maxConcurrent: s.maxConcurrent } : {}),
        clock: this.clock,
        shapeResponse: (h, status) => applyResponseSecurity(h, { hsts, status }),
      }));
    }
    // Client certificates are asked for, never required: only `mtls` routes need one (checked per route).
    const tls = { key: creds.keyPem, cert: creds.chainPem, minVersion: 'TLSv1.2' as const, ...gatewayClientCertOptions(creds.trustBundlePem) };
    // HTTP/2 where the client offers it (ALPN), HTTP/1.1 otherwise. The compatibility API gives the
    // pipeline request and response objects with the members it uses; pseudo-headers are never forwarded.
    this.server = config.gateway.http2
      ? createSecureServer({ ...tls, allowHTTP1: true, noDelay: true }, (req, res) => void this.handle(req as unknown as IncomingMessage, res as unknown as ServerResponse)) // see above
      : createServer(tls, (req, res) => void this.handle(req, res)); // node:https: noDelay and Host required by default
    // Node serves HTTP/1.1 on an HTTP/2 server with its HTTP/1.1 code reading these settings from the
    // HTTP/2 server object, which has none of http.Server's defaults: without them an idle keep-alive
    // connection was never closed and a request without Host was served (test/dataplane/edge-connections.test.ts).
    Object.assign(this.server, { keepAliveTimeout: config.gateway.keepAliveTimeout, requireHostHeader: true } satisfies Http1Settings);
    if (config.gateway.http2) (this.server as Http2SecureServer).on('session', (s) => closeWhenIdle(s, config.gateway.keepAliveTimeout));
    // WebSocket (HTTP/1.1 Upgrade): decided like a GET by decideUpgrade, then tunnelled by upgrade.ts.
    this.server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => void handleUpgrade(req, socket, head, {
      decide: (r, ctx) => this.decideUpgrade(r, ctx),
      onRefused: (err, phase, ctx) => {
        if (phase === 'handshake') refuse(this.newEvent(req, ctx.requestId), err); // decideUpgrade records its own
        else if (phase === 'upstream') this.logger.warn({ requestId: ctx.requestId, code: err.code, err: err.message }, 'upstream failed (WebSocket)');
      },
      timeoutMs: config.gateway.upstreamTimeout,
      clock: this.clock,
    }));
    this.server.on('tlsClientError', (err: NodeJS.ErrnoException) => {
      this.logger.debug({ err: err.message }, 'TLS handshake refused');
      publishTlsFailure({ component: 'gateway', code: err.code ?? 'unknown' });
    });
    o.identity.on('rotated', (c) => this.rotate(c));
  }

  async listen(): Promise<{ host: string; port: number }> {
    const { host, port } = parseHostPort(this.o.listen ?? this.o.config.gateway.listen);
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => resolve());
    });
    const addr = this.server.address();
    return { host, port: typeof addr === 'object' && addr ? addr.port : port };
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      if ('closeIdleConnections' in this.server) this.server.closeIdleConnections();
    });
    await Promise.all([...this.upstreams.values()].map((u) => u.close()));
    await this.limiter?.close();
    this.dpopReplay?.close();
    this.introspection?.close();
  }

  /** Per service: breaker, replicas and requests in flight (for /metrics). */
  upstreamState(): Record<string, ClusterState> {
    return Object.fromEntries([...this.upstreams].map(([name, c]) => [name, c.state()]));
  }

  private upstreamTls(c: WorkloadCredentials, s: ServiceConfig): ConnectionOptions {
    if (this.o.upstreamTls) return this.o.upstreamTls(s, c);
    return mtlsClientOptions({ keyPem: c.keyPem, chainPem: c.chainPem, trustBundlePem: c.trustBundlePem, expectedSpiffeId: s.spiffeId });
  }

  private rotate(c: WorkloadCredentials): void {
    this.server.setSecureContext({ key: c.keyPem, cert: c.chainPem, minVersion: 'TLSv1.2', ca: c.trustBundlePem });
    this.introspection?.setTls({ keyPem: c.keyPem, chainPem: c.chainPem, trustBundlePem: c.trustBundlePem, expectedSpiffeId: `spiffe://${this.o.config.trustDomain}/control` });
    for (const s of this.o.config.services) this.upstreams.get(s.name)?.setTls(this.upstreamTls(c, s));
  }

  /**
   * The audit event of one request, before anything is decided: the raw path until normalization
   * succeeds (never the query: it may carry secrets), and the names of the probes sent in the
   * query and the raw path (whose canonical form may no longer show the `..` that was sent).
   */
  private newEvent(req: IncomingMessage, requestId: string, traceId?: string): DecisionEvent {
    const rawUrl = req.url ?? '';
    const q = rawUrl.indexOf('?');
    // Every member this pipeline may set, in sorted order (unset ones undefined, which JSON leaves
    // out): the audit log's canonical JSON then spells the event as it is, without a sorted copy.
    const event: DecisionEvent = {
      code: undefined, component: 'gateway', decision: 'deny', errors: undefined, policyVersion: undefined, reasons: [], requestId,
      shadow: undefined, status: 0, time: isoTime(this.clock.now()), traceId, type: 'decision',
      what: { method: req.method ?? 'GET', path: q === -1 ? rawUrl : rawUrl.slice(0, q), route: undefined, service: undefined, signatures: undefined },
      who: { clientId: undefined, roles: undefined, sourceAddress: canonicalAddress(req.socket.remoteAddress ?? ''), sub: undefined },
      why: '',
    };
    addSignatures(event, q === -1 ? [] : matchSignatures(rawUrl.slice(q)));
    addSignatures(event, matchSignatures(event.what.path));
    return event;
  }

  /** Step 0: fail closed, headers policy reads given once, the client address (recorded), address blocks. */
  private admitClient(req: IncomingMessage, event: DecisionEvent): string {
    const { config } = this.o;
    // No request is served that cannot be recorded.
    if (config.audit.failClosed && this.o.auditHealthy && !this.o.auditHealthy()) {
      throw new PortcullisError('PCL_ERR_AUDIT_UNAVAILABLE', 'the audit log cannot write and audit.failClosed is set');
    }
    assertSingleHeaders(req.rawHeaders, this.policyHeaders);
    const sourceAddress = event.who.sourceAddress = clientAddress(req.socket.remoteAddress ?? '', req.headers, req.rawHeaders, config.gateway.trustedProxies);
    if (this.o.blocks?.has('address', sourceAddress)) throw new PortcullisError('PCL_ERR_BLOCKED', `source address ${sourceAddress} is blocked`);
    return sourceAddress;
  }

  /**
   * Steps 1–5, the same for a request and a WebSocket upgrade: canonical path, route and its path
   * rules, credential, principal blocks, policy, rate limits. Each finding is recorded in `event`
   * (and `span`); any refusal throws.
   */
  private async admitRoute(req: IncomingMessage, event: DecisionEvent, sourceAddress: string, o: {
    method: string; headers: HeaderSink; span?: RequestSpan; beforeAuthenticate?: (route: RouteConfig) => void;
  }): Promise<Admitted> {
    // 1. normalize
    const target = normalizeTarget(req.url ?? '', this.router.admits);
    event.what.path = target.path;
    if (o.span) o.span.path = target.path;
    // 2. route, then the route's own path rules
    const match = this.router.match(o.method, target.path);
    if (!match) throw new PortcullisError('PCL_ERR_ROUTE_NOT_FOUND', `no route for ${o.method} ${target.path}`);
    const route = match.route;
    event.what.route = route.id;
    event.what.service = route.service;
    if (o.span) { o.span.route = route.id; o.span.service = route.service; }
    checkPathRules(target, match.rules);
    const path = event.what.path = match.canonicalPath;
    if (o.span) o.span.path = path;
    // 3. authenticate
    o.beforeAuthenticate?.(route);
    const { claims, apiKeyId } = await this.authenticate(req, route);
    event.who.sub = claims.sub;
    event.who.roles = claims.roles;
    if (claims.client_id) event.who.clientId = claims.client_id;
    if (this.o.blocks?.has('principal', claims.sub)) throw new PortcullisError('PCL_ERR_BLOCKED', `user ${claims.sub} is blocked`);
    // 4. authorize
    const policies = this.o.policies.current();
    const decided = policies.decideRoute({ route, principal: this.principalOf(claims), method: o.method, path, params: match.params, sourceIp: sourceAddress, nowMs: this.clock.now() });
    recordDecision(event, policies.version, decided);
    if (decided.live.decision !== 'allow') {
      throw new PortcullisError('PCL_ERR_FORBIDDEN', decided.live.reasons.length > 0
        ? `route ${route.id} forbidden by ${decided.live.reasons.join(', ')}`
        : `no policy permits ${claims.sub} (roles [${claims.roles.join(', ')}]) to call route ${route.id}${route.roles.length ? ` (route roles: ${route.roles.join(', ')})` : ''}`);
    }
    // 5. limit
    await this.limit(o.headers, route, claims, sourceAddress, apiKeyId);
    return { target, match, path, claims, reasons: decided.live.reasons };
  }

  /** The user as policy and services see it; one object per verified claims (cached tokens reuse theirs). */
  private principalOf(claims: AccessTokenClaims): Principal {
    let p = this.principals.get(claims);
    if (!p) {
      p = { sub: claims.sub, roles: claims.roles, ...(claims.attrs ? { attrs: claims.attrs } : {}), ...(claims.client_id ? { clientId: claims.client_id } : {}), iss: claims.iss };
      this.principals.set(claims, p);
    }
    return p;
  }

  /** The headers a service receives: the client's, less credentials and spoofable names, plus the verified principal. */
  private upstreamHeaders(req: IncomingMessage, claims: AccessTokenClaims, requestId: string, sourceAddress: string, service: string): Record<string, string | string[]> {
    const headers = forwardableRequestHeaders(req.headers, ['authorization', API_KEY_HEADER, 'dpop']); // credentials end here
    const audience = this.serviceIds.get(service);
    if (!audience) throw new PortcullisError('PCL_ERR_INTERNAL', `no service ${service}`);
    // Signed, so the sidecar and the service can check that the gateway vouched for this user.
    headers[PRINCIPAL_HEADER] = this.assertions.sign(this.principalOf(claims), audience);
    headers[REQUEST_ID_HEADER] = requestId;
    headers['x-forwarded-for'] = sourceAddress;
    headers['x-forwarded-proto'] = 'https';
    return headers;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const { config } = this.o;
    const requestId = newRequestId();
    const method = req.method ?? 'GET';
    // The client's trace is continued when its traceparent is valid; a bad one starts a new trace.
    const span = new RequestSpan(res, 'gateway', requestId, method, continueTrace(req.headers, 'server'));
    const event = this.newEvent(req, requestId, span.trace.traceId);
    try {
      const sourceAddress = this.admitClient(req, event);
      const cors = handleCors(method, req.headers, config.gateway.cors);
      for (const [k, v] of Object.entries(cors.responseHeaders)) res.setHeader(k, v);
      if (cors.preflight) return this.answerPreflight(res, event);
      const { target, match, path, claims, reasons } = await this.admitRoute(req, event, sourceAddress, { method, headers: res, span });
      const route = match.route;
      // 6. validate
      const plan = this.plans.get(route.id);
      if (!plan) throw new PortcullisError('PCL_ERR_INTERNAL', `no validation plan for route ${route.id}`);
      const checked = await validateRequest(req, plan, match.params, new URLSearchParams(target.query));
      addSignatures(event, checked.findings.map((f) => f.signature));
      if (checked.issues.length > 0) {
        const err = validationError(checked.issues);
        if (plan.mode === 'enforce') throw err;
        event.why = `validation (report mode): ${err.message}`; // shadow mode: recorded, not refused
      }
      if (plan.screen === 'block' && checked.findings.length > 0) {
        throw new PortcullisError('PCL_ERR_INJECTION', `injection signatures at ${checked.findings.map((f) => `${f.location}${f.pointer}`).join(', ')}`);
      }
      event.decision = 'allow';
      event.why = `route ${route.id} permitted by ${reasons.join(', ')}${event.why ? `; ${event.why}` : ''}`;
      // 7. forward, with the verified principal and nothing the client claimed
      const headers = this.upstreamHeaders(req, claims, requestId, sourceAddress, route.service);
      if (checked.body) headers['content-length'] = String(checked.body.length);
      setTraceHeaders(headers, span.trace);
      const upstream = this.upstreams.get(route.service);
      if (!upstream) throw new PortcullisError('PCL_ERR_INTERNAL', `no upstream for service ${route.service}`);
      // 8. record before the upstream answers: the decision is made, whatever happens next
      event.status = 200;
      publishAudit({ ...event });
      await upstream.forward(req, res, { method, pathAndQuery: forwardTarget(target, path), headers, ...(checked.body ? { body: checked.body } : {}) }, requestId);
    } catch (e) {
      const err = asPortcullisError(e);
      span.fail(err.code, event.decision === 'allow');
      if (event.decision === 'allow') {
        // Allowed and already recorded; the upstream failed.
        this.logger.warn({ requestId, code: err.code, err: err.message }, 'upstream failed');
      } else {
        refuse(event, err);
        if (err.code === 'PCL_ERR_INTERNAL') this.logger.error({ requestId, err: err.message }, 'internal error');
      }
      if (!res.headersSent) {
        for (const [k, v] of Object.entries(securityHeaders({ hsts: config.gateway.hsts }))) res.setHeader(k, v);
        const challenge = authChallenge(err, /^dpop\s/i.test(req.headers.authorization ?? '') ? 'DPoP' : 'Bearer', this.auth.dpop.acceptedAlgorithms);
        if (challenge) res.setHeader('www-authenticate', challenge);
      }
      sendError(res, err, requestId);
      req.resume(); // discard any unread body
    }
  }

  /** A CORS preflight the policy allows: answered here, recorded, never forwarded. */
  private answerPreflight(res: ServerResponse, event: DecisionEvent): void {
    event.decision = 'allow';
    event.status = 204;
    event.why = 'CORS preflight allowed by gateway.cors';
    publishAudit(event);
    res.writeHead(204, securityHeaders({ hsts: this.o.config.gateway.hsts }));
    res.end();
  }

  /**
   * Steps 0–5 for a WebSocket upgrade (a GET that must match a GET route), recorded like any
   * request; upgrade.ts then forwards the handshake over mTLS to the service's sidecar and pipes.
   * No body, so no step 6. Throws the refusal (recorded here).
   */
  private async decideUpgrade(req: IncomingMessage, ctx: UpgradeContext): Promise<UpgradeDecision> {
    const { config } = this.o;
    const event = this.newEvent(req, ctx.requestId);
    Object.assign(ctx.responseHeaders, securityHeaders({ hsts: config.gateway.hsts }));
    try {
      const sourceAddress = this.admitClient(req, event);
      checkUpgradeOrigin(req.headers, config.gateway.cors);
      const { target, match, path, claims, reasons } = await this.admitRoute(req, event, sourceAddress, {
        method: 'GET',
        headers: { setHeader: (k, v) => { ctx.responseHeaders[k] = String(v); } },
        beforeAuthenticate: (route) => { if (route.websocket?.protocolToken) adoptProtocolBearer(req); },
      });
      const route = match.route;
      const service = config.services.find((s) => s.name === route.service);
      const upstream = this.upstreams.get(route.service);
      if (!service || !upstream) throw new PortcullisError('PCL_ERR_INTERNAL', `no service ${route.service}`);
      const origin = upstream.tunnelOrigin(); // before the decision is recorded as allowed: an open breaker refuses
      event.decision = 'allow';
      event.status = 101;
      event.why = `route ${route.id} permitted by ${reasons.join(', ')} (WebSocket)`;
      publishAudit({ ...event });
      return {
        target: { origin, tls: this.upstreamTls(this.o.identity.current(), service) },
        path: forwardTarget(target, path), headers: this.upstreamHeaders(req, claims, ctx.requestId, sourceAddress, route.service),
      };
    } catch (e) {
      const err = asPortcullisError(e);
      if (event.decision !== 'allow') refuse(event, err);
      throw err;
    }
  }

  /** Step 5: every applicable rate limit; the RateLimit headers go on the answer either way. */
  private async limit(res: HeaderSink, route: RouteConfig, claims: AccessTokenClaims, address: string, apiKeyId: string | undefined): Promise<void> {
    if (!this.limiter) return;
    const d = await this.limiter.check({ routeId: route.id, principal: claims.sub, ...(claims.client_id ? { client: claims.client_id } : {}), ...(apiKeyId ? { apiKey: apiKeyId } : {}), address });
    if (!d) return;
    for (const [k, v] of Object.entries(rateLimitHeaders(d, this.limitRules))) res.setHeader(k, v);
    if (!d.allowed) throw new PortcullisError('PCL_ERR_RATE_LIMITED', `rate limit ${d.rule} exceeded on route ${route.id}`);
  }

  /** Step 3: the route's accepted credentials (dataplane/auth): API key, client certificate, JWT (Bearer or DPoP, bound or not), or introspection. */
  private authenticate(req: IncomingMessage, route: RouteConfig): Promise<Authenticated> {
    return this.auth.authenticate(req, route);
  }
}

/**
 * Closes an HTTP/2 session (GOAWAY) once it has had no open stream for `ms`: Node's HTTP/2 server
 * keeps an idle session open for ever, the HTTP/2 form of a hoarded keep-alive connection.
 */
function closeWhenIdle(session: ServerHttp2Session, ms: number): void {
  let open = 0;
  let timer: NodeJS.Timeout | undefined;
  const arm = (): void => { timer = setTimeout(() => session.close(), ms).unref(); };
  arm();
  session.on('stream', (stream: ServerHttp2Stream) => {
    open++;
    clearTimeout(timer);
    stream.once('close', () => { if (--open === 0 && !session.closed) arm(); });
  });
  session.once('close', () => clearTimeout(timer));
}

/** The settings Node's HTTP/1.1 connection handling reads from the server that accepted the connection. */
interface Http1Settings { keepAliveTimeout: number; requireHostHeader: boolean }

/** Where response headers go: the response itself, or the 101 of an upgrade. */
interface HeaderSink { setHeader(name: string, value: string | number | readonly string[]): unknown }

/** What steps 1–5 established about an admitted request. */
interface Admitted {
  target: NormalizedTarget;
  match: RouteMatch;
  /** The canonical path, as authorized and forwarded. */
  path: string;
  claims: AccessTokenClaims;
  /** The policies that allowed it. */
  reasons: string[];
}

/** Adds probe names to the event, each once, at most 16. */
function addSignatures(event: DecisionEvent, found: readonly string[]): void {
  if (found.length > 0) event.what.signatures = [...new Set([...(event.what.signatures ?? []), ...found])].slice(0, 16);
}

/** Records a refusal in its event and publishes it. */
function refuse(event: DecisionEvent, err: PortcullisError): void {
  event.status = err.status;
  event.code = err.code;
  event.why = err.message;
  publishAudit(event);
}
