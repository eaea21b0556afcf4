// Spikes of refusals: one actor (principal, else source address) refused `threshold` times in a
// window, or one route refused that often to several actors. The route needs at least
// ROUTE_MIN_ACTORS actors so that one attacker raises one alert (as an actor), not two.
import type { AuditEvent } from '../../core/events.js';
import { armAlert, BoundedMap, DistinctWindow, HitWindow, keysFor } from '../bounded.js';
import type { ResolvedRule } from '../config.js';
import { addressOf, callerWorkloadOf, isRefusal, principalOf } from '../subject.js';
import type { Alert } from '../types.js';
import { makeAlert, q, type Rule, type RuleContext } from './rule.js';

const ROUTE_MIN_ACTORS = 3;

interface ActorState { hits: HitWindow; alertedUntil: number }
interface RouteState { hits: HitWindow; actors: DistinctWindow; alertedUntil: number }

export class RefusalSpikeRule implements Rule {
  private readonly byActor: BoundedMap<ActorState>;
  private readonly byRoute: BoundedMap<RouteState>;
  private readonly windowMs: number;

  constructor(readonly config: ResolvedRule, private readonly ctx: RuleContext) {
    this.windowMs = config.windowSeconds * 1000;
    this.byActor = new BoundedMap(keysFor(config.threshold, ctx.maxKeys));
    this.byRoute = new BoundedMap(keysFor(config.threshold, ctx.maxKeys));
  }

  observe(e: AuditEvent, now: number): Alert[] {
    if (!isRefusal(e)) return [];
    const principal = principalOf(e);
    const address = addressOf(e);
    const workload = callerWorkloadOf(e);
    // Who is refused: the user, else the address, else the calling workload (never the gateway).
    const actor = principal ?? address ?? (workload !== this.ctx.gatewaySpiffeId ? workload : undefined);
    const route = e.what.route ?? (e.what.service ? `service:${e.what.service}` : undefined);
    this.tick(now);
    const alerts: Alert[] = [];
    const { threshold, windowSeconds } = this.config;
    if (actor) {
      const s = this.byActor.touch(actor, now, () => ({ hits: new HitWindow(threshold), alertedUntil: 0 }));
      s.hits.add(now, e.requestId);
      const n = s.hits.count(now, this.windowMs);
      if (n >= threshold && armAlert(s, now, this.windowMs)) {
        const subject = actor === principal ? { principal, address } : actor === address ? { address } : { workload: actor };
        alerts.push(makeAlert(this.config, now, {
          summary: `${n} refusals for ${q(actor)} within ${windowSeconds}s`,
          subject, count: n, requestIds: s.hits.evidence(now, this.windowMs),
        }));
      }
    }
    if (route) {
      const s = this.byRoute.touch(route, now, () => ({ hits: new HitWindow(threshold), actors: new DistinctWindow(ROUTE_MIN_ACTORS), alertedUntil: 0 }));
      s.hits.add(now, e.requestId);
      if (actor) s.actors.add(actor, now, undefined);
      const n = s.hits.count(now, this.windowMs);
      if (n >= threshold && s.actors.count(now, this.windowMs) >= ROUTE_MIN_ACTORS && armAlert(s, now, this.windowMs)) {
        alerts.push(makeAlert(this.config, now, {
          summary: `${n} refusals on ${q(route)} from ${ROUTE_MIN_ACTORS} or more callers within ${windowSeconds}s`,
          subject: { route }, count: n, requestIds: s.hits.evidence(now, this.windowMs),
        }));
      }
    }
    return alerts;
  }

  tick(now: number): Alert[] {
    this.byActor.prune(now, this.windowMs);
    this.byRoute.prune(now, this.windowMs);
    return [];
  }

  size(): number {
    return this.byActor.size + this.byRoute.size;
  }
}
