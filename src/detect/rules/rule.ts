// What every rule is: a small stateful class fed one event at a time, returning the alerts it
// raises. Rules never throw on odd input by design; the Detector still catches and counts.
import { randomUUID } from 'node:crypto';
import type { AuditEvent } from '../../core/events.js';
import { MAX_EVIDENCE } from '../bounded.js';
import type { ResolvedRule } from '../config.js';
import { printable } from '../subject.js';
import type { Alert, AlertSubject } from '../types.js';

export interface Rule {
  readonly config: ResolvedRule;
  observe(event: AuditEvent, now: number): Alert[];
  /** Periodic work: expiry checks, and dropping state older than the window. */
  tick(now: number): Alert[];
  /** Keys tracked now (for stats and the memory bound). */
  size(): number;
}

/** Facts about the deployment that rules need and events do not carry. */
export interface RuleContext {
  /** The gateway's SPIFFE ID: its calls carry users' requests and are not a workload's own. */
  gatewaySpiffeId?: string;
  /** Epoch ms when detection started (new-call-edge learns from here). */
  startedAt: number;
  /** Override of the per-rule key bound (tests). */
  maxKeys?: number;
}

export function makeAlert(
  rule: ResolvedRule,
  now: number,
  a: { summary: string; subject: AlertSubject; count: number; requestIds: string[]; windowSeconds?: number },
): Alert {
  const seconds = a.windowSeconds ?? rule.windowSeconds;
  const subject: AlertSubject = {};
  for (const k of ['principal', 'address', 'workload', 'route'] as const) {
    const v = a.subject[k];
    if (v !== undefined) subject[k] = printable(v, 256);
  }
  return {
    id: randomUUID(),
    time: new Date(now).toISOString(),
    rule: rule.id,
    kind: rule.kind,
    severity: rule.severity,
    // Event fields end up in summaries; whatever came over the wire, one printable line.
    summary: printable(a.summary, 512),
    subject,
    count: a.count,
    window: { seconds, start: new Date(now - seconds * 1000).toISOString(), end: new Date(now).toISOString() },
    evidence: { requestIds: a.requestIds.slice(-MAX_EVIDENCE) },
  };
}

/** `"name"` for a summary: quoted, escaped, bounded. */
export function q(v: string): string {
  return JSON.stringify(printable(v));
}
