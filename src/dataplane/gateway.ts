// The edge: TLS termination, then the pipeline normalize → route → authenticate → authorize →
// forward (over mTLS to the service's sidecar) → record. Every request ends in exactly one
// audit decision, allowed or refused, and a refused request never reaches a service.
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { PortcullisConfig, RouteConfig } from '../core/config/types.js';
import { asPortcullisError, PortcullisError } from '../core/errors.js';
import { publishAudit, publishTlsFailure, type DecisionEvent } from '../core/events.js';
import { newRequestId } from '../core/ids.js';
import { matchSignatures } from '../core/attack-signatures.js';
import { silentLogger, type Logger } from '../core/log.js';
import { systemClock, type Clock } from '../core/clock.js';
import { mtlsClientOptions } from '../identity/tls-options.js';
import { createAccessTokenVerifier } from '../tokens/verify.js';
import type { AccessTokenClaims } from '../tokens/verify.js';
import { httpsOrigin, parseHostPort } from './addr.js';
import { Upstream } from './forward.js';
import { encodePrincipal, forwardableRequestHeaders, hasDuplicateHeader, PRINCIPAL_HEADER, REQUEST_ID_HEADER } from './headers.js';
import { forwardTarget, normalizeTarget } from './normalize.js';
import { sendError } from './respond.js';
import { RequestSpan } from './request-span.js';
import { Router } from './router.js';
import type { SnapshotSource } from './snapshot.js';
import type { ActivePolicies } from './policies.js';
import type { ActiveBlocks } from './blocks.js';
import { recordDecision } from './record-decision.js';
import { continueTrace, setTraceHeaders } from './traceparent.js';
import type { WorkloadCredentials, WorkloadIdentity } from './workload-identity.js';

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
  clock?: Clock;
  logger?: Logger;
}

export class Gateway {
  private readonly server: Server;
  private readonly router: Router;
  private readonly upstreams = new Map<string, Upstream>();
  private readonly verifier: ReturnType<typeof createAccessTokenVerifier>;
  private readonly logger: Logger;
  private readonly clock: Clock;

  constructor(private readonly o: GatewayOptions) {
    const { config } = o;
    this.logger = o.logger ?? silentLogger;
    this.clock = o.clock ?? systemClock;
    this.router = new Router(config.routes);
    const snap = o.snapshot.current();
    this.verifier = createAccessTokenVerifier({
      jwks: snap.jwks as Parameters<typeof createAccessTokenVerifier>[0]['jwks'], // the control plane's public JWKS document
      issuer: config.tokens.issuer,
      audience: config.tokens.audience,
      clock: this.clock,
      clockSkewSec: config.tokens.clockSkew,
    });
    o.snapshot.on('updated', (doc) => this.verifier.setJwks(doc.jwks as Parameters<typeof createAccessTokenVerifier>[0]['jwks']));

    const creds = o.identity.current();
    for (const s of config.services) {
      this.upstreams.set(s.name, new Upstream(httpsOrigin(s.sidecar.listen), this.upstreamTls(creds, s.spiffeId), config.gateway.upstreamTimeout));
    }
    this.server = createServer({ key: creds.keyPem, cert: creds.chainPem, minVersion: 'TLSv1.2' }, (req, res) => {
      void this.handle(req, res);
    });
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
      this.server.closeIdleConnections();
    });
    await Promise.all([...this.upstreams.values()].map((u) => u.close()));
  }

  private upstreamTls(c: WorkloadCredentials, expectedSpiffeId: string): ReturnType<typeof mtlsClientOptions> {
    return mtlsClientOptions({ keyPem: c.keyPem, chainPem: c.chainPem, trustBundlePem: c.trustBundlePem, expectedSpiffeId });
  }

  private rotate(c: WorkloadCredentials): void {
    this.server.setSecureContext({ key: c.keyPem, cert: c.chainPem, minVersion: 'TLSv1.2' });
    for (const s of this.o.config.services) this.upstreams.get(s.name)?.setTls(this.upstreamTls(c, s.spiffeId));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const requestId = newRequestId();
    const method = req.method ?? 'GET';
    const sourceAddress = req.socket.remoteAddress ?? '';
    // The client's trace is continued when its traceparent is valid; a bad one starts a new trace.
    const span = new RequestSpan(res, 'gateway', requestId, method, continueTrace(req.headers, 'server'));
    const event: DecisionEvent = {
      type: 'decision', time: new Date(this.clock.now()).toISOString(), requestId, component: 'gateway', decision: 'deny', status: 0,
      who: { sourceAddress }, what: { method, path: req.url ?? '' }, reasons: [], why: '', traceId: span.trace.traceId,
    };
    try {
      // 0. fail closed: no request is served that cannot be recorded
      if (this.o.config.audit.failClosed && this.o.auditHealthy && !this.o.auditHealthy()) {
        throw new PortcullisError('PCL_ERR_AUDIT_UNAVAILABLE', 'the audit log cannot write and audit.failClosed is set');
      }
      if (this.o.blocks?.has('address', sourceAddress)) throw new PortcullisError('PCL_ERR_BLOCKED', `source address ${sourceAddress} is blocked`);
      // 1. normalize
      const target = normalizeTarget(req.url ?? '');
      event.what.path = span.path = target.path;
      // The query is never recorded (it may carry secrets); the names of probes found in it are.
      if (target.query) {
        const found = matchSignatures(`?${target.query}`);
        if (found.length > 0) event.what.signatures = found;
      }
      // 2. route
      const match = this.router.match(method, target.path);
      if (!match) throw new PortcullisError('PCL_ERR_ROUTE_NOT_FOUND', `no route for ${method} ${target.path}`);
      const route = match.route;
      event.what.route = span.route = route.id;
      event.what.service = span.service = route.service;
      // 3. authenticate
      const claims = await this.authenticate(req, route);
      event.who.sub = claims.sub;
      event.who.roles = claims.roles;
      if (claims.client_id) event.who.clientId = claims.client_id;
      if (this.o.blocks?.has('principal', claims.sub)) throw new PortcullisError('PCL_ERR_BLOCKED', `user ${claims.sub} is blocked`);
      // 4. authorize
      const policies = this.o.policies.current();
      const principal = { sub: claims.sub, roles: claims.roles, ...(claims.attrs ? { attrs: claims.attrs } : {}) };
      const decided = policies.decideRoute({ route, principal, method, path: target.path, params: match.params, sourceIp: sourceAddress, nowMs: this.clock.now() });
      recordDecision(event, policies.version, decided);
      if (decided.live.decision !== 'allow') {
        throw new PortcullisError('PCL_ERR_FORBIDDEN', decided.live.reasons.length > 0
          ? `route ${route.id} forbidden by ${decided.live.reasons.join(', ')}`
          : `no policy permits ${claims.sub} (roles [${claims.roles.join(', ')}]) to call route ${route.id}${route.roles.length ? ` (route roles: ${route.roles.join(', ')})` : ''}`);
      }
      event.decision = 'allow';
      event.why = `route ${route.id} permitted by ${decided.live.reasons.join(', ')}`;
      // 7. forward, with the verified principal and nothing the client claimed
      const headers = forwardableRequestHeaders(req.headers, ['authorization']);
      headers[PRINCIPAL_HEADER] = encodePrincipal({ sub: claims.sub, roles: claims.roles, ...(claims.attrs ? { attrs: claims.attrs } : {}), ...(claims.client_id ? { clientId: claims.client_id } : {}), iss: claims.iss });
      headers[REQUEST_ID_HEADER] = requestId;
      headers['x-forwarded-for'] = sourceAddress;
      headers['x-forwarded-proto'] = 'https';
      setTraceHeaders(headers, span.trace);
      const upstream = this.upstreams.get(route.service);
      if (!upstream) throw new PortcullisError('PCL_ERR_INTERNAL', `no upstream for service ${route.service}`);
      // 8. record before the upstream answers: the decision is made, whatever happens next
      event.status = 200;
      publishAudit({ ...event });
      const pathAndQuery = forwardTarget(target);
      await upstream.forward(req, res, { method, pathAndQuery, headers }, requestId);
    } catch (e) {
      const err = asPortcullisError(e);
      span.fail(err.code, event.decision === 'allow');
      if (event.decision === 'allow') {
        // Allowed and already recorded; the upstream failed.
        this.logger.warn({ requestId, code: err.code, err: err.message }, 'upstream failed');
      } else {
        event.status = err.status;
        event.code = err.code;
        event.why = err.message;
        publishAudit(event);
        if (err.code === 'PCL_ERR_INTERNAL') this.logger.error({ requestId, err: err.message }, 'internal error');
      }
      sendError(res, err, requestId);
      req.resume(); // discard any unread body
    }
  }

  /** Step 3: the route's accepted credentials (this cut: JWT access tokens). */
  private async authenticate(req: IncomingMessage, route: RouteConfig): Promise<AccessTokenClaims> {
    if (!route.auth.includes('jwt')) throw new PortcullisError('PCL_ERR_TOKEN_MISSING', `route ${route.id} accepts no credential this gateway supports`);
    if (hasDuplicateHeader(req.rawHeaders, 'authorization')) throw new PortcullisError('PCL_ERR_TOKEN_MALFORMED', 'more than one Authorization header');
    const h = req.headers.authorization;
    if (!h) throw new PortcullisError('PCL_ERR_TOKEN_MISSING', 'no Authorization header');
    const m = /^Bearer +([A-Za-z0-9\-._~+/]+=*)$/i.exec(h);
    if (!m?.[1]) throw new PortcullisError('PCL_ERR_TOKEN_MALFORMED', 'Authorization header is not a Bearer token');
    return this.verifier.verify(m[1]);
  }
}
