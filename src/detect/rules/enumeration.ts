// Object enumeration: one principal collecting refusals on many distinct resources (the service's
// own decision, e.g. Order::"o-2") or paths (a refusal at the gateway or a sidecar). Distinct
// targets, not hits: a user retrying one forbidden page is not sweeping ids.
import type { AuditEvent } from '../../core/events.js';
import { armAlert, BoundedMap, DistinctWindow, keysFor } from '../bounded.js';
import type { ResolvedRule } from '../config.js';
import { addressOf, callerWorkloadOf, isRefusal, operationOf, principalOf } from '../subject.js';
import type { Alert } from '../types.js';
import { makeAlert, q, type Rule, type RuleContext } from './rule.js';

interface State { targets: DistinctWindow; alertedUntil: number; address: string | undefined }

export class EnumerationRule implements Rule {
  private readonly byPrincipal: BoundedMap<State>;
  private readonly windowMs: number;

  constructor(readonly config: ResolvedRule, private readonly ctx: RuleContext) {
    this.windowMs = config.windowSeconds * 1000;
    this.byPrincipal = new BoundedMap(keysFor(config.threshold, ctx.maxKeys));
  }

  observe(e: AuditEvent, now: number): Alert[] {
    if (!isRefusal(e)) return [];
    // A user, else a workload calling on its own; never the gateway, whose calls are users'.
    const workload = callerWorkloadOf(e);
    const principal = principalOf(e) ?? (workload !== this.ctx.gatewaySpiffeId ? workload : undefined);
    if (!principal) return [];
    const target = e.resourceDecision?.resource ?? `${e.what.service ?? ''} ${e.what.method} ${e.what.path}`;
    this.tick(now);
    const s = this.byPrincipal.touch(principal, now, () => ({ targets: new DistinctWindow(this.config.threshold), alertedUntil: 0, address: undefined }));
    s.targets.add(target.slice(0, 512), now, e.requestId);
    s.address = addressOf(e) ?? s.address;
    const n = s.targets.count(now, this.windowMs);
    if (n < this.config.threshold || !armAlert(s, now, this.windowMs)) return [];
    const resources = e.resourceDecision !== undefined;
    return [makeAlert(this.config, now, {
      summary: `${q(principal)} was refused ${n} distinct ${resources ? 'resources' : 'paths'} within ${this.config.windowSeconds}s (last on ${operationOf(e)})`,
      subject: principal === workload ? { workload } : { principal, address: s.address, route: e.what.route },
      count: n,
      requestIds: s.targets.evidence(now, this.windowMs),
    })];
  }

  tick(now: number): Alert[] {
    this.byPrincipal.prune(now, this.windowMs);
    return [];
  }

  size(): number {
    return this.byPrincipal.size;
  }
}
