// In front of one service. Inbound: mTLS only from certificates of our CA, the caller's SPIFFE ID
// checked against the call rules, then plain HTTP to the service on loopback. Outbound: the
// service's own calls (plain HTTP on loopback, target named by the Host header) leave over mTLS
// with our identity, to the target's sidecar, whose SPIFFE ID we verify.
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http';
import type { TLSSocket } from 'node:tls';
import type { Duplex } from 'node:stream';
import type { PortcullisConfig, ServiceConfig } from '../core/config/types.js';
import { asPortcullisError, PortcullisError } from '../core/errors.js';
import { publishAudit, publishTlsFailure, type DecisionEvent } from '../core/events.js';
import { newRequestId } from '../core/ids.js';
import { silentLogger, type Logger } from '../core/log.js';
import { systemClock, type Clock } from '../core/clock.js';
import { mtlsClientOptions, mtlsServerOptions, peerSpiffeId } from '../identity/tls-options.js';
import type { ShadowResult } from '../policy/policy-set.js';
import type { ActivePolicies } from './policies.js';
import type { RevokedWorkloads } from '../identity/workload-revocations.js';
import type { ActiveBlocks } from './blocks.js';
import { recordDecision } from './record-decision.js';
import { decodeServiceDecisions } from '../core/service-decision.js';
import { httpsOrigin, isLoopback, parseHostPort } from './addr.js';
import { Upstream } from './forward.js';
import { forwardableRequestHeaders, PEER_HEADER, PRINCIPAL_HEADER, REQUEST_ID_HEADER } from './headers.js';
import { CONTROL_HOST, DECISION_HEADER } from '../core/principal.js';
import { PrincipalAssertionVerifier } from '../identity/principal-assertion.js';
import { forwardTarget, normalizeTarget, type PathAdmission } from './normalize.js';
import { RequestSpan } from './request-span.js';
import { sendError } from './respond.js';
import { continueTrace, setTraceHeaders } from './traceparent.js';
import type { WorkloadCredentials, WorkloadIdentity } from './workload-identity.js';
import { handleUpgrade, type UpgradeContext, type UpgradeDecision, type UpgradeOptions } from './upgrade.js';

/** Headers the gateway vouches for; from any other caller they are dropped. */
const FROM_GATEWAY_ONLY = [PRINCIPAL_HEADER, 'x-forwarded-for', 'x-forwarded-proto'] as const;

interface OutboundPeer {
  name: string;
  spiffeId: string;
  upstream: Upstream;
  authorize(callerSpiffeId: string, method: string, path: string): ShadowResult;
}

export interface SidecarOptions {
  config: PortcullisConfig;
  service: string;
  identity: WorkloadIdentity;
  policies: ActivePolicies;
  /** Temporary blocks (detection's automatic response); none when absent. */
  blocks?: ActiveBlocks;
  /** Revoked workloads from the snapshot; a revoked caller is refused even with a live certificate. */
  revokedWorkloads?: RevokedWorkloads;
  /** Whether the audit log can write; with `audit.failClosed`, calls are refused while it cannot. */
  auditHealthy?: () => boolean;
  clock?: Clock;
  logger?: Logger;
}

export class Sidecar {
  private readonly self: ServiceConfig;
  private readonly inbound: HttpsServer;
  private readonly outbound: HttpServer;
  private readonly local: Upstream;
  /** Where the service's own calls may go, by Host header: other services, and the control plane. */
  private readonly peers = new Map<string, OutboundPeer>();
  private readonly logger: Logger;
  private readonly clock: Clock;
  private readonly inboundAdmits: PathAdmission;
  private readonly assertions: PrincipalAssertionVerifier;

  constructor(private readonly o: SidecarOptions) {
    const { config } = o;
    const self = config.services.find((s) => s.name === o.service);
    if (!self) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `service "${o.service}" is not in ${config.source}`);
    this.self = self;
    this.logger = o.logger ?? silentLogger;
    this.clock = o.clock ?? systemClock;
    const upstreamUrl = new URL(self.upstream);
    if (!isLoopback(upstreamUrl.hostname)) this.logger.warn({ upstream: self.upstream }, 'service upstream is not on loopback: the hop from sidecar to service is plaintext');
    this.local = new Upstream(upstreamUrl.origin, undefined, config.gateway.upstreamTimeout);
    // A gateway route to this service that allows %2F or ";" forwards such paths here: admit them
    // inbound too (only for this service's routes; everything else stays strict).
    const mine = config.routes.filter((r) => r.service === self.name);
    this.inboundAdmits = { encodedSlash: mine.some((r) => r.pathRules.allowEncodedSlash), semicolon: mine.some((r) => r.pathRules.allowSemicolon) };

    const creds = o.identity.current();
    this.assertions = new PrincipalAssertionVerifier({
      audience: self.spiffeId, issuer: config.gateway.spiffeId, trustBundlePem: () => o.identity.current().trustBundlePem, clock: this.clock,
    });
    for (const s of config.services) {
      if (s.name === self.name) continue;
      this.peers.set(s.name, {
        name: s.name, spiffeId: s.spiffeId,
        upstream: new Upstream(httpsOrigin(s.sidecar.listen), this.clientTls(creds, s.spiffeId), config.gateway.upstreamTimeout),
        authorize: (caller, method, path) => o.policies.current().decideCall({ service: s.name, caller, method, path }),
      });
    }
    // The service reaches the transit and secrets APIs as `Host: portcullis.control`; the control
    // plane authorizes each call by our identity.
    const controlId = `spiffe://${config.trustDomain}/control`;
    this.peers.set(CONTROL_HOST, {
      name: CONTROL_HOST, spiffeId: controlId,
      upstream: new Upstream(new URL(config.control.url).origin, this.clientTls(creds, controlId), config.gateway.upstreamTimeout),
      // The control plane authorizes each call itself; what a service may reach there is fixed.
      authorize: (_caller, _method, path) => ({ live: (/^\/v1\/(transit|secrets|policies|workload\/identity)(\/|$)/.test(path)
        ? { decision: 'allow', reasons: ['control:workload-api'], errors: [] }
        : { decision: 'deny', reasons: [], errors: [] }) }),
    });
    this.inbound = createHttpsServer(this.serverTls(creds), (req, res) => void this.handleInbound(req, res));
    this.inbound.on('tlsClientError', (err: NodeJS.ErrnoException) => {
      this.logger.debug({ err: err.message }, 'inbound TLS handshake refused');
      publishTlsFailure({ component: `sidecar:${self.name}:inbound`, code: err.code ?? 'unknown' });
    });
    // WebSocket from the gateway (or a permitted peer) to the service; none outbound (yet): refused, never left hanging.
    const upgrades = (decide: UpgradeOptions['decide']): UpgradeOptions => ({
      decide, timeoutMs: config.gateway.upstreamTimeout, clock: this.clock,
      onRefused: (err, phase, ctx) => {
        if (phase === 'upstream') this.logger.warn({ requestId: ctx.requestId, code: err.code, err: err.message }, 'service failed (WebSocket)');
        else if (phase === 'handshake') publishAudit({ ...this.newEvent(ctx.requestId, 'inbound', 'GET', ''), status: err.status, code: err.code, why: err.message });
      },
    });
    this.inbound.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => void handleUpgrade(req, socket, head, upgrades((r, ctx) => this.decideInboundUpgrade(r, ctx))));
    this.outbound = createHttpServer((req, res) => void this.handleOutbound(req, res));
    this.outbound.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => void handleUpgrade(req, socket, head, upgrades(async () => {
      throw new PortcullisError('PCL_ERR_UPGRADE_UNSUPPORTED', 'WebSocket calls from the service are not proxied');
    })));
    o.identity.on('rotated', (c) => this.rotate(c));
  }

  async listen(): Promise<{ inbound: number; outbound: number }> {
    const inb = parseHostPort(this.self.sidecar.listen);
    const out = parseHostPort(this.self.sidecar.outbound);
    // The outbound side is plaintext: it must never be reachable from the network.
    if (!isLoopback(out.host)) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `sidecar outbound ${this.self.sidecar.outbound} must be a loopback address`);
    const listen = (srv: HttpServer | HttpsServer, port: number, host: string): Promise<number> => new Promise((resolve, reject) => {
      srv.once('error', reject);
      srv.listen(port, host, () => {
        const a = srv.address();
        resolve(typeof a === 'object' && a ? a.port : port);
      });
    });
    return { inbound: await listen(this.inbound, inb.port, inb.host), outbound: await listen(this.outbound, out.port, out.host) };
  }

  async close(): Promise<void> {
    const stop = (srv: HttpServer | HttpsServer): Promise<void> => new Promise((resolve) => { srv.close(() => resolve()); srv.closeIdleConnections(); });
    await Promise.all([stop(this.inbound), stop(this.outbound)]);
    await Promise.all([this.local.close(), ...[...this.peers.values()].map((p) => p.upstream.close())]);
  }

  private serverTls(c: WorkloadCredentials): ReturnType<typeof mtlsServerOptions> {
    return mtlsServerOptions({ keyPem: c.keyPem, chainPem: c.chainPem, trustBundlePem: c.trustBundlePem });
  }

  private clientTls(c: WorkloadCredentials, expectedSpiffeId: string): ReturnType<typeof mtlsClientOptions> {
    return mtlsClientOptions({ keyPem: c.keyPem, chainPem: c.chainPem, trustBundlePem: c.trustBundlePem, expectedSpiffeId });
  }

  private rotate(c: WorkloadCredentials): void {
    this.inbound.setSecureContext(this.serverTls(c));
    for (const p of this.peers.values()) p.upstream.setTls(this.clientTls(c, p.spiffeId));
  }

  private newEvent(requestId: string, direction: 'inbound' | 'outbound', method: string, path: string): DecisionEvent {
    return {
      type: 'decision', time: new Date(this.clock.now()).toISOString(), requestId, component: `sidecar:${this.self.name}:${direction}`,
      decision: 'deny', status: 0, who: {}, what: { method, path, service: this.self.name }, reasons: [], why: '',
    };
  }

  private async handleInbound(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const method = req.method ?? 'GET';
    const requestId = typeof req.headers[REQUEST_ID_HEADER] === 'string' && /^[\w-]{1,64}$/.test(req.headers[REQUEST_ID_HEADER]) ? req.headers[REQUEST_ID_HEADER] : newRequestId();
    const event = this.newEvent(requestId, 'inbound', method, req.url ?? '');
    // The caller is an authenticated workload: its trace is continued to the service.
    const span = new RequestSpan(res, event.component, requestId, method, continueTrace(req.headers, 'server'));
    event.traceId = span.trace.traceId;
    span.service = this.self.name;
    try {
      const { target, headers, user } = this.admitInbound(req, event, method, requestId);
      span.path = target.path;
      event.status = 200;
      setTraceHeaders(headers, span.trace);
      publishAudit({ ...event });
      await this.local.forward(req, res, { method, pathAndQuery: forwardTarget(target), headers }, requestId, (h) => this.recordServiceDecision(event, h, user));
    } catch (e) {
      this.refuse(e, event, res, req, requestId, span);
    }
  }

  /** handleInbound's checks for a WebSocket upgrade; upgrade.ts then forwards it to the service on loopback. */
  private async decideInboundUpgrade(req: IncomingMessage, ctx: UpgradeContext): Promise<UpgradeDecision> {
    const id = req.headers[REQUEST_ID_HEADER];
    if (typeof id === 'string' && /^[\w-]{1,64}$/.test(id)) ctx.requestId = id;
    const event = this.newEvent(ctx.requestId, 'inbound', 'GET', req.url ?? '');
    try {
      const { target, headers } = this.admitInbound(req, event, 'GET', ctx.requestId);
      Object.assign(event, { status: 101, why: `${event.why} (WebSocket)` });
      publishAudit({ ...event });
      return { target: { origin: this.local.origin }, path: forwardTarget(target), headers };
    } catch (e) {
      const err = asPortcullisError(e);
      if (event.decision !== 'allow') publishAudit({ ...event, status: err.status, code: err.code, why: err.message });
      throw err;
    }
  }

  /**
   * Everything an inbound call must pass, for requests and WebSocket upgrades alike: the caller's
   * identity (not blocked, not revoked), a canonical path, the user the gateway vouched for (its
   * signed assertion checked), and the call rules. Fills `event`; throws the refusal. Returns the
   * headers the service receives.
   */
  private admitInbound(req: IncomingMessage, event: DecisionEvent, method: string, requestId: string) {
    this.checkAuditable();
    const socket = req.socket as TLSSocket; // the inbound server is TLS-only
    const caller = peerSpiffeId(socket);
    event.who.spiffeId = caller;
    if (this.o.blocks?.has('workload', caller)) throw new PortcullisError('PCL_ERR_BLOCKED', `workload ${caller} is blocked`);
    if (this.o.revokedWorkloads?.isWorkloadRevoked(caller, socket.getPeerCertificate().serialNumber)) {
      throw new PortcullisError('PCL_ERR_WORKLOAD_REVOKED', `workload ${caller} is revoked`);
    }
    const target = normalizeTarget(req.url ?? '', this.inboundAdmits);
    event.what.path = target.path;
    // Only the gateway vouches for an end user, with an assertion signed by its own key; from anyone else the header is dropped.
    const fromGateway = caller === this.o.config.gateway.spiffeId;
    const assertion = req.headers[PRINCIPAL_HEADER];
    const principal = fromGateway && assertion !== undefined ? this.assertions.verify(String(assertion)) : undefined;
    const user = principal?.sub;
    // The end user the gateway vouched for, so detection and queries see who is behind the call.
    if (principal) {
      event.who.sub = principal.sub;
      event.who.roles = principal.roles;
      if (principal.clientId) event.who.clientId = principal.clientId;
      if (this.o.blocks?.has('principal', principal.sub)) throw new PortcullisError('PCL_ERR_BLOCKED', `user ${principal.sub} is blocked`);
    }
    const policies = this.o.policies.current();
    const decided = policies.decideCall({ service: this.self.name, caller, method, path: target.path, ...(user !== undefined ? { user } : {}) });
    recordDecision(event, policies.version, decided);
    if (decided.live.decision !== 'allow') {
      throw new PortcullisError('PCL_ERR_FORBIDDEN', `${caller} may not call ${method} ${target.path} on ${this.self.name}${decided.live.reasons.length ? ` (forbidden by ${decided.live.reasons.join(', ')})` : ''}`);
    }
    event.decision = 'allow';
    event.why = `caller permitted by ${decided.live.reasons.join(', ')}`;
    const headers = forwardableRequestHeaders(req.headers, [], fromGateway ? FROM_GATEWAY_ONLY : []);
    headers[PEER_HEADER] = caller;
    headers[REQUEST_ID_HEADER] = requestId;
    return { target, headers, user };
  }

  private async handleOutbound(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const method = req.method ?? 'GET';
    const requestId = newRequestId();
    const event = this.newEvent(requestId, 'outbound', method, req.url ?? '');
    event.who.spiffeId = this.self.spiffeId;
    // The service's own call: a child of the trace it passed on, or the root of a new one.
    const span = new RequestSpan(res, event.component, requestId, method, continueTrace(req.headers, 'client'));
    event.traceId = span.trace.traceId;
    try {
      this.checkAuditable();
      if (this.o.blocks?.has('workload', this.self.spiffeId)) throw new PortcullisError('PCL_ERR_BLOCKED', `this workload (${this.self.spiffeId}) is blocked`);
      const host = (req.headers.host ?? '').replace(/:\d+$/, '').toLowerCase();
      const peer = this.peers.get(host);
      if (!peer) throw new PortcullisError('PCL_ERR_ROUTE_NOT_FOUND', `outbound call to unknown service "${host}"`);
      event.what.service = span.service = peer.name;
      const target = normalizeTarget(req.url ?? '');
      event.what.path = span.path = target.path;
      // Checked here too so a forbidden call fails fast; the target's sidecar decides again.
      const decided = peer.authorize(this.self.spiffeId, method, target.path);
      recordDecision(event, this.o.policies.current().version, decided);
      if (decided.live.decision !== 'allow') {
        throw new PortcullisError('PCL_ERR_FORBIDDEN', `${this.self.name} may not call ${method} ${target.path} on ${peer.name}${decided.live.reasons.length ? ` (forbidden by ${decided.live.reasons.join(', ')})` : ''}`);
      }
      event.decision = 'allow';
      event.status = 200;
      event.why = `call permitted by ${decided.live.reasons.join(', ')}`;
      const headers = forwardableRequestHeaders(req.headers);
      headers[REQUEST_ID_HEADER] = requestId;
      setTraceHeaders(headers, span.trace);
      publishAudit({ ...event });
      await peer.upstream.forward(req, res, { method, pathAndQuery: forwardTarget(target), headers }, requestId);
    } catch (e) {
      this.refuse(e, event, res, req, requestId, span);
    }
  }

  /** The service decided on resources itself (SDK): each decision becomes an audit event of its own. */
  private recordServiceDecision(inbound: DecisionEvent, headers: Record<string, string | string[] | undefined>, user: string | undefined): void {
    const raw = headers[DECISION_HEADER];
    if (raw === undefined) return;
    const list = decodeServiceDecisions(raw);
    if (!list) {
      this.logger.warn({ requestId: inbound.requestId }, 'service sent a malformed decision header; not recorded');
      return;
    }
    for (const d of list) publishAudit({
      // Who: the end user the service decided about, as the gateway vouched for them.
      ...inbound, who: { ...inbound.who, ...(user !== undefined ? { sub: user } : {}) }, time: new Date(this.clock.now()).toISOString(), component: `service:${this.self.name}`,
      decision: d.decision, status: d.decision === 'allow' ? 200 : 403, reasons: d.reasons, resourceDecision: d,
      why: `${d.action} on ${d.resource}: ${d.decision}${d.reasons.length ? ` by ${d.reasons.join(', ')}` : ' (no policy permits)'}`,
    });
  }

  /** Fail closed: no call is served that cannot be recorded. */
  private checkAuditable(): void {
    if (this.o.config.audit.failClosed && this.o.auditHealthy && !this.o.auditHealthy()) {
      throw new PortcullisError('PCL_ERR_AUDIT_UNAVAILABLE', 'the audit log cannot write and audit.failClosed is set');
    }
  }

  private refuse(e: unknown, event: DecisionEvent, res: ServerResponse, req: IncomingMessage, requestId: string, span: RequestSpan): void {
    const err = asPortcullisError(e);
    span.fail(err.code, event.decision === 'allow');
    if (event.decision !== 'allow') {
      event.status = err.status;
      event.code = err.code;
      event.why = err.message;
      publishAudit(event);
    } else {
      this.logger.warn({ requestId, code: err.code, err: err.message }, 'upstream failed');
    }
    sendError(res, err, requestId);
    req.resume();
  }
}
