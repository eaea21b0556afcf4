// Repeated attack signatures (signatures.ts) from one source: the client address at the gateway
// (else its principal), or the calling workload at a sidecar. One probe can be a stray link;
// `threshold` of them in a window is someone scanning. The summary names signatures, never the
// path itself, which may carry secrets in its query. The gateway records no query, only the names of
// the signatures it found there (`what.signatures`); they count like those of the path.
import type { AuditEvent, DecisionEvent } from '../../core/events.js';
import { armAlert, BoundedMap, HitWindow, keysFor } from '../bounded.js';
import type { ResolvedRule } from '../config.js';
import { matchSignatures } from '../../core/attack-signatures.js';
import { addressOf, callerWorkloadOf, principalOf } from '../subject.js';
import type { Alert, AlertSubject } from '../types.js';
import { makeAlert, q, type Rule, type RuleContext } from './rule.js';

interface State { hits: HitWindow; seen: Set<string>; alertedUntil: number }

export class AttackSignatureRule implements Rule {
  private readonly bySource: BoundedMap<State>;
  private readonly windowMs: number;

  constructor(readonly config: ResolvedRule, private readonly ctx: RuleContext) {
    this.windowMs = config.windowSeconds * 1000;
    this.bySource = new BoundedMap(keysFor(config.threshold, ctx.maxKeys));
  }

  observe(e: AuditEvent, now: number): Alert[] {
    if (e.type !== 'decision') return [];
    const source = this.sourceOf(e);
    if (!source) return [];
    const inPath = matchSignatures(e.what.path);
    const found = e.what.signatures?.length ? [...new Set([...inPath, ...e.what.signatures])] : inPath;
    if (found.length === 0) return [];
    this.tick(now);
    const key = source.address ?? source.principal ?? source.workload ?? '';
    const s = this.bySource.touch(key, now, () => ({ hits: new HitWindow(this.config.threshold), seen: new Set(), alertedUntil: 0 }));
    if (s.hits.includes(e.requestId)) return [];
    s.hits.add(now, e.requestId);
    for (const f of found) s.seen.add(f);
    const n = s.hits.count(now, this.windowMs);
    if (n < this.config.threshold || !armAlert(s, now, this.windowMs)) return [];
    const names = [...s.seen].join(', ');
    s.seen.clear();
    return [makeAlert(this.config, now, {
      summary: `${n} requests with attack signatures (${names}) from ${q(key)} within ${this.config.windowSeconds}s`,
      subject: { ...source, route: e.what.route },
      count: n,
      requestIds: s.hits.evidence(now, this.windowMs),
    })];
  }

  /** The gateway sees the client; a sidecar the calling workload. A request the gateway forwarded is counted there only. */
  private sourceOf(e: DecisionEvent): AlertSubject | undefined {
    if (e.component === 'gateway') {
      const address = addressOf(e);
      const principal = principalOf(e);
      return address || principal ? { address, principal } : undefined;
    }
    const workload = callerWorkloadOf(e);
    return workload && workload !== this.ctx.gatewaySpiffeId ? { workload } : undefined;
  }

  tick(now: number): Alert[] {
    this.bySource.prune(now, this.windowMs);
    return [];
  }

  size(): number {
    return this.bySource.size;
  }
}
