// In front of one service. Inbound: mTLS only from certificates of our CA, the caller's SPIFFE ID
// checked against the call rules, then plain HTTP to the service on loopback. Outbound: the
// service's own calls (plain HTTP on loopback, target named by the Host header) leave over mTLS
// with our identity, to the target's sidecar, whose SPIFFE ID we verify.
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http';
import type { TLSSocket } from 'node:tls';
import type { PortcullisConfig, ServiceConfig } from '../core/config/types.js';
import { asPortcullisError, PortcullisError } from '../core/errors.js';
import { publishAudit, publishTlsFailure, type DecisionEvent } from '../core/events.js';
import { newRequestId } from '../core/ids.js';
import { silentLogger, type Logger } from '../core/log.js';
import { systemClock, type Clock } from '../core/clock.js';
import { mtlsClientOptions, mtlsServerOptions, peerSpiffeId } from '../identity/tls-options.js';
import { CallPolicy } from '../policy/route-policy.js';
import type { Decision } from '../policy/decision.js';
import { httpsOrigin, isLoopback, parseHostPort } from './addr.js';
import { Upstream } from './forward.js';
import { forwardableRequestHeaders, PEER_HEADER, PRINCIPAL_HEADER, REQUEST_ID_HEADER } from './headers.js';
import { CONTROL_HOST } from '../core/principal.js';
import { forwardTarget, normalizeTarget } from './normalize.js';
import { RequestSpan } from './request-span.js';
import { sendError } from './respond.js';
import { continueTrace, setTraceHeaders } from './traceparent.js';
import type { WorkloadCredentials, WorkloadIdentity } from './workload-identity.js';

/** Headers the gateway vouches for; from any other caller they are dropped. */
const FROM_GATEWAY_ONLY = [PRINCIPAL_HEADER, 'x-forwarded-for', 'x-forwarded-proto'] as const;

interface OutboundPeer {
  name: string;
  spiffeId: string;
  upstream: Upstream;
  authorize(callerSpiffeId: string, method: string, path: string): Decision;
}

export interface SidecarOptions {
  config: PortcullisConfig;
  service: string;
  identity: WorkloadIdentity;
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
  private readonly policy: CallPolicy;
  private readonly logger: Logger;
  private readonly clock: Clock;

  constructor(private readonly o: SidecarOptions) {
    const { config } = o;
    const self = config.services.find((s) => s.name === o.service);
    if (!self) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `service "${o.service}" is not in ${config.source}`);
    this.self = self;
    this.logger = o.logger ?? silentLogger;
    this.clock = o.clock ?? systemClock;
    this.policy = new CallPolicy(config, self.name);
    const upstreamUrl = new URL(self.upstream);
    if (!isLoopback(upstreamUrl.hostname)) this.logger.warn({ upstream: self.upstream }, 'service upstream is not on loopback: the hop from sidecar to service is plaintext');
    this.local = new Upstream(upstreamUrl.origin, undefined, config.gateway.upstreamTimeout);

    const creds = o.identity.current();
    for (const s of config.services) {
      if (s.name === self.name) continue;
      const policy = new CallPolicy(config, s.name);
      this.peers.set(s.name, {
        name: s.name, spiffeId: s.spiffeId,
        upstream: new Upstream(httpsOrigin(s.sidecar.listen), this.clientTls(creds, s.spiffeId), config.gateway.upstreamTimeout),
        authorize: (caller, method, path) => policy.authorize(caller, method, path),
      });
    }
    // The service reaches the transit and secrets APIs as `Host: portcullis.control`; the control
    // plane authorizes each call by our identity.
    const controlId = `spiffe://${config.trustDomain}/control`;
    this.peers.set(CONTROL_HOST, {
      name: CONTROL_HOST, spiffeId: controlId,
      upstream: new Upstream(new URL(config.control.url).origin, this.clientTls(creds, controlId), config.gateway.upstreamTimeout),
      authorize: (_caller, _method, path) => (/^\/v1\/(transit|secrets)(\/|$)/.test(path)
        ? { decision: 'allow', reasons: ['control:kms-api'], errors: [] }
        : { decision: 'deny', reasons: [], errors: [] }),
    });
    this.inbound = createHttpsServer(this.serverTls(creds), (req, res) => void this.handleInbound(req, res));
    this.inbound.on('tlsClientError', (err: NodeJS.ErrnoException) => {
      this.logger.debug({ err: err.message }, 'inbound TLS handshake refused');
      publishTlsFailure({ component: `sidecar:${self.name}:inbound`, code: err.code ?? 'unknown' });
    });
    this.outbound = createHttpServer((req, res) => void this.handleOutbound(req, res));
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
      this.checkAuditable();
      const caller = peerSpiffeId(req.socket as TLSSocket); // the inbound server is TLS-only
      event.who.spiffeId = caller;
      const target = normalizeTarget(req.url ?? '');
      event.what.path = span.path = target.path;
      const decision = this.policy.authorize(caller, method, target.path);
      event.reasons = decision.reasons;
      if (decision.decision !== 'allow') throw new PortcullisError('PCL_ERR_FORBIDDEN', `${caller} may not call ${method} ${target.path} on ${this.self.name}`);
      event.decision = 'allow';
      event.status = 200;
      event.why = `caller permitted by ${decision.reasons.join(', ')}`;
      // Only the gateway vouches for an end user; from anyone else a principal header is dropped.
      const fromGateway = caller === this.o.config.gateway.spiffeId;
      const headers = forwardableRequestHeaders(req.headers, [], fromGateway ? FROM_GATEWAY_ONLY : []);
      headers[PEER_HEADER] = caller;
      headers[REQUEST_ID_HEADER] = requestId;
      setTraceHeaders(headers, span.trace);
      publishAudit({ ...event });
      await this.local.forward(req, res, { method, pathAndQuery: forwardTarget(target), headers }, requestId);
    } catch (e) {
      this.refuse(e, event, res, req, requestId, span);
    }
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
      const host = (req.headers.host ?? '').replace(/:\d+$/, '').toLowerCase();
      const peer = this.peers.get(host);
      if (!peer) throw new PortcullisError('PCL_ERR_ROUTE_NOT_FOUND', `outbound call to unknown service "${host}"`);
      event.what.service = span.service = peer.name;
      const target = normalizeTarget(req.url ?? '');
      event.what.path = span.path = target.path;
      // Checked here too so a forbidden call fails fast; the target's sidecar decides again.
      const decision = peer.authorize(this.self.spiffeId, method, target.path);
      event.reasons = decision.reasons;
      if (decision.decision !== 'allow') throw new PortcullisError('PCL_ERR_FORBIDDEN', `${this.self.name} may not call ${method} ${target.path} on ${peer.name}`);
      event.decision = 'allow';
      event.status = 200;
      event.why = `call permitted by ${decision.reasons.join(', ')}`;
      const headers = forwardableRequestHeaders(req.headers);
      headers[REQUEST_ID_HEADER] = requestId;
      setTraceHeaders(headers, span.trace);
      publishAudit({ ...event });
      await peer.upstream.forward(req, res, { method, pathAndQuery: forwardTarget(target), headers }, requestId);
    } catch (e) {
      this.refuse(e, event, res, req, requestId, span);
    }
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
