// A call between workloads refused by policy (the exam service writing a grade): workloads only
// make the calls they were built to make, so even one refusal is an alert. Keyed by caller and
// target service, so the same call refused at both sidecars raises one alert. Calls from the
// gateway are users' requests and left to the user rules.
import type { AuditEvent } from '../../core/events.js';
import { armAlert, BoundedMap, HitWindow, keysFor } from '../bounded.js';
import type { ResolvedRule } from '../config.js';
import { callerWorkloadOf, isRefusal, operationOf } from '../subject.js';
import type { Alert } from '../types.js';
import { makeAlert, q, type Rule, type RuleContext } from './rule.js';

interface State { hits: HitWindow; alertedUntil: number }

export class WorkloadRefusedRule implements Rule {
  private readonly byEdge: BoundedMap<State>;
  private readonly windowMs: number;

  constructor(readonly config: ResolvedRule, private readonly ctx: RuleContext) {
    this.windowMs = config.windowSeconds * 1000;
    this.byEdge = new BoundedMap(keysFor(config.threshold, ctx.maxKeys));
  }

  observe(e: AuditEvent, now: number): Alert[] {
    if (!isRefusal(e)) return [];
    const caller = callerWorkloadOf(e);
    if (!caller || caller === this.ctx.gatewaySpiffeId) return [];
    const target = e.what.service ?? '(unknown service)';
    this.tick(now);
    const s = this.byEdge.touch(`${caller} ${target}`, now, () => ({ hits: new HitWindow(this.config.threshold), alertedUntil: 0 }));
    // The outbound and the inbound sidecar may both refuse one call: it counts once.
    if (!s.hits.includes(e.requestId)) s.hits.add(now, e.requestId);
    const n = s.hits.count(now, this.windowMs);
    if (n < this.config.threshold || !armAlert(s, now, this.windowMs)) return [];
    const op = operationOf(e);
    return [makeAlert(this.config, now, {
      summary: `workload ${q(caller)} was refused ${op}${n > 1 ? ` (${n} refused calls to ${target} within ${this.config.windowSeconds}s)` : ''}`,
      subject: { workload: caller, route: op },
      count: n,
      requestIds: s.hits.evidence(now, this.windowMs),
    })];
  }

  tick(now: number): Alert[] {
    this.byEdge.prune(now, this.windowMs);
    return [];
  }

  size(): number {
    return this.byEdge.size;
  }
}
