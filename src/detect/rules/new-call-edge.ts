// A new edge in the call graph: a workload calling an operation (service, method, path shape)
// it never called while the graph was learned. Only allowed calls count (refused ones are the
// workload-refused rule's), and the gateway's calls are users' traffic, not a workload's habits.
// One alert per calling workload per window: edges new during the suppression are not learned,
// so they alert once the window has passed, instead of all at once.
import type { AuditEvent } from '../../core/events.js';
import { BoundedMap, MAX_KEYS } from '../bounded.js';
import type { ResolvedRule } from '../config.js';
import { callerWorkloadOf, operationOf } from '../subject.js';
import type { Alert } from '../types.js';
import { makeAlert, q, type Rule, type RuleContext } from './rule.js';

export class NewCallEdgeRule implements Rule {
  /** Known edges; the least recently used is forgotten past the bound (and would alert again). */
  private readonly known: BoundedMap<true>;
  private readonly alertedUntil: BoundedMap<number>;
  private readonly learnUntil: number;
  private readonly windowMs: number;
  /** New edges seen while their caller's alert was in force (they alert in a later window). */
  deferred = 0;

  constructor(readonly config: ResolvedRule, private readonly ctx: RuleContext) {
    this.windowMs = config.windowSeconds * 1000;
    this.learnUntil = ctx.startedAt + config.learningSeconds * 1000;
    this.known = new BoundedMap(ctx.maxKeys ?? MAX_KEYS);
    this.alertedUntil = new BoundedMap(ctx.maxKeys ?? MAX_KEYS);
  }

  observe(e: AuditEvent, now: number): Alert[] {
    if (e.type !== 'decision' || e.decision !== 'allow') return [];
    const caller = callerWorkloadOf(e);
    if (!caller || caller === this.ctx.gatewaySpiffeId) return [];
    const op = operationOf(e);
    const edge = `${caller} ${op}`;
    if (this.known.refresh(edge, now)) return [];
    if (now < this.learnUntil) {
      this.known.set(edge, true, now);
      return [];
    }
    this.alertedUntil.prune(now, this.windowMs);
    if (now < (this.alertedUntil.get(caller) ?? 0)) {
      this.deferred++;
      return [];
    }
    this.alertedUntil.set(caller, now + this.windowMs, now);
    this.known.set(edge, true, now);
    return [makeAlert(this.config, now, {
      summary: `workload ${q(caller)} made a call it never made before: ${op}`,
      subject: { workload: caller, route: op },
      count: 1,
      requestIds: [e.requestId],
    })];
  }

  tick(now: number): Alert[] {
    this.alertedUntil.prune(now, this.windowMs);
    return [];
  }

  size(): number {
    return this.known.size + this.alertedUntil.size;
  }

  /** The learned edges ("<caller> <operation>"), e.g. to review what was learned. */
  edges(): string[] {
    return [...this.known.keys()];
  }
}
