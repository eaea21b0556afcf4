// What a policy decision adds to the audit event: the deciding policies, the set's version, the
// policies that errored, and — in a dry run — the candidate set's decision where it differs.
import type { DecisionEvent } from '../core/events.js';
import type { ShadowResult } from '../policy/policy-set.js';

export function recordDecision(event: DecisionEvent, version: string, d: ShadowResult): void {
  event.reasons = d.live.reasons;
  event.policyVersion = version;
  if (d.live.errors.length > 0) event.errors = d.live.errors;
  const s = d.shadow;
  if (s && (s.decision !== d.live.decision || [...s.reasons].sort().join('\n') !== [...d.live.reasons].sort().join('\n'))) {
    event.shadow = { decision: s.decision, reasons: s.reasons };
  }
}
