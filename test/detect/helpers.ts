// Recorded traffic for the detection tests: events shaped exactly as the gateway, the sidecars,
// the SDK hop and the login form publish them (src/dataplane/*.ts, src/tokens/oauth/authorize.ts).
import { randomUUID } from 'node:crypto';
import { FakeClock } from '../../src/core/clock.js';
import type { AdminEvent, AuditEvent, DecisionEvent } from '../../src/core/events.js';
import { Detector, type DetectorDeps } from '../../src/detect/detector.js';
import type { AlertSink } from '../../src/detect/sinks.js';
import type { Alert, BlockRequest, RuleConfig } from '../../src/detect/types.js';

export const T0 = Date.parse('2025-03-03T09:00:00Z');
export const GATEWAY = 'spiffe://demo/gateway';
const TRACE = () => randomUUID().replace(/-/g, '');

export function gw(o: {
  sub?: string; roles?: string[]; clientId?: string; address?: string; method?: string; path: string;
  route?: string; service?: string; deny?: boolean; status?: number; code?: string; requestId?: string;
}): DecisionEvent {
  const deny = o.deny ?? false;
  return {
    type: 'decision', time: new Date().toISOString(), requestId: o.requestId ?? randomUUID(), component: 'gateway',
    decision: deny ? 'deny' : 'allow', status: o.status ?? (deny ? 403 : 200), ...(deny ? { code: o.code ?? 'PCL_ERR_FORBIDDEN' } : {}),
    who: { sourceAddress: o.address ?? '203.0.113.7', ...(o.sub ? { sub: o.sub, roles: o.roles ?? ['customer'] } : {}), ...(o.clientId ? { clientId: o.clientId } : {}) },
    what: { method: o.method ?? 'GET', path: o.path, ...(o.route ? { route: o.route } : {}), ...(o.service ? { service: o.service } : {}) },
    reasons: [], why: deny ? 'refused' : 'permitted', traceId: TRACE(),
  };
}

/** A sidecar's decision: inbound at `svc` (caller = `peer`), or outbound from `svc` to `target`. */
export function sidecar(o: {
  svc: string; direction: 'inbound' | 'outbound'; peer?: string; target?: string; method?: string; path: string;
  deny?: boolean; requestId?: string; system?: string;
}): DecisionEvent {
  const deny = o.deny ?? false;
  const self = `spiffe://demo/${o.system ?? 'school'}/${o.svc}`;
  return {
    type: 'decision', time: new Date().toISOString(), requestId: o.requestId ?? randomUUID(), component: `sidecar:${o.svc}:${o.direction}`,
    decision: deny ? 'deny' : 'allow', status: deny ? 403 : 200, ...(deny ? { code: 'PCL_ERR_FORBIDDEN' } : {}),
    who: { spiffeId: o.direction === 'inbound' ? (o.peer ?? GATEWAY) : self },
    what: { method: o.method ?? 'GET', path: o.path, service: o.direction === 'inbound' ? o.svc : (o.target ?? 'unknown') },
    reasons: deny ? [] : ['call'], why: deny ? 'refused' : 'permitted', traceId: TRACE(),
  };
}

/** The service's own (SDK) decision, as the sidecar records it: `who` copied from its inbound event. */
export function service(o: { svc: string; path: string; resource: string; action: string; deny?: boolean; requestId: string; sub?: string }): DecisionEvent {
  const deny = o.deny ?? false;
  return {
    type: 'decision', time: new Date().toISOString(), requestId: o.requestId, component: `service:${o.svc}`,
    decision: deny ? 'deny' : 'allow', status: deny ? 403 : 200,
    who: { spiffeId: GATEWAY, ...(o.sub ? { sub: o.sub } : {}) }, what: { method: 'GET', path: o.path, service: o.svc },
    reasons: deny ? [] : ['p'], why: '', traceId: TRACE(),
    resourceDecision: { action: o.action, resource: o.resource, decision: deny ? 'deny' : 'allow', reasons: deny ? [] : ['p'] },
  };
}

export function login(o: { username: string; ok: boolean; address?: string; clientId?: string }): AdminEvent {
  return {
    type: 'admin', time: new Date().toISOString(), requestId: randomUUID(), component: 'tokens', action: 'oauth.login',
    outcome: o.ok ? 'success' : 'failure',
    who: { sub: o.username, clientId: o.clientId ?? 'shop-web', sourceAddress: o.address ?? '198.51.100.20' },
    detail: o.ok ? {} : { code: 'PCL_ERR_LOGIN_FAILED', reason: 'wrong password' },
  };
}

/** A detector on a fake clock whose alerts and block requests are collected. */
export class Harness {
  readonly clock = new FakeClock(T0);
  readonly alerts: Alert[] = [];
  readonly blocks: BlockRequest[] = [];
  readonly detector: Detector;

  constructor(rules: RuleConfig[], deps: Partial<DetectorDeps> = {}) {
    const sink: AlertSink = { name: 'test', send: (a) => { this.alerts.push(a); } };
    this.detector = new Detector({ rules }, {
      clock: this.clock, sinks: [sink], block: (b) => { this.blocks.push(b); }, gatewaySpiffeId: GATEWAY, ...deps,
    });
  }

  /** Observes each event, moving the clock `stepMs` after each. */
  async feed(events: AuditEvent[], stepMs = 1000): Promise<void> {
    for (const e of events) {
      this.detector.observe(e);
      await this.clock.advance(stepMs);
    }
  }
}

export const times = <T>(n: number, f: (i: number) => T): T[] => Array.from({ length: n }, (_, i) => f(i));
