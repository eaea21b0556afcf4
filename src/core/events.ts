// Events travel up through diagnostics channels: the pipeline publishes, audit/metrics/detect
// subscribe, and the hot path never imports them (STYLE.md habit 12).
import diagnostics_channel from 'node:diagnostics_channel';

/** One authorization decision of a data plane or the control plane, allowed or refused. */
export interface DecisionEvent {
  type: 'decision';
  time: string;
  requestId: string;
  component: string;
  decision: 'allow' | 'deny';
  /** HTTP status answered (or that will be answered) for this decision. */
  status: number;
  /** Stable error code when refused. */
  code?: string;
  who: { sub?: string; roles?: string[]; clientId?: string; spiffeId?: string; sourceAddress?: string };
  what: { method: string; path: string; route?: string; service?: string };
  /** The rules that produced the decision (policy ids); empty when nothing matched (deny by default). */
  reasons: string[];
  /** Human-readable why, never containing secrets. */
  why: string;
}

/** An administrative or identity event of the control plane (issuance, login, token). */
export interface AdminEvent {
  type: 'admin';
  time: string;
  requestId?: string;
  component: string;
  action: string;
  outcome: 'success' | 'failure';
  who: { sub?: string; clientId?: string; spiffeId?: string; sourceAddress?: string };
  detail: Record<string, string | number | boolean>;
}

export type AuditEvent = DecisionEvent | AdminEvent;

export const auditChannel = diagnostics_channel.channel('portcullis:audit');

export function publishAudit(event: AuditEvent): void {
  if (auditChannel.hasSubscribers) auditChannel.publish(event);
}

export function subscribeAudit(fn: (event: AuditEvent) => void): () => void {
  const handler = (msg: unknown): void => fn(msg as AuditEvent); // only publishAudit publishes here
  auditChannel.subscribe(handler);
  return () => auditChannel.unsubscribe(handler);
}
