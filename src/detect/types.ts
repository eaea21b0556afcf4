// The shapes detection is configured with and produces: rules in, alerts and block requests out.

export const RULE_KINDS = [
  'brute-force', 'enumeration', 'refusal-spike', 'workload-refused', 'new-network', 'new-call-edge', 'attack-signature', 'expiry',
] as const;
export type RuleKind = (typeof RULE_KINDS)[number];

export const SEVERITIES = ['low', 'medium', 'high', 'critical'] as const;
export type Severity = (typeof SEVERITIES)[number];

/** One rule as written in the config; defaults per kind are in config.ts. */
export interface RuleConfig {
  id: string;
  kind: RuleKind;
  severity: Severity;
  /** Hits (or distinct values) in one window that raise the alert. */
  threshold?: number;
  windowSeconds?: number;
  /** new-call-edge: how long edges are learned before a new one alerts. */
  learningSeconds?: number;
  /** expiry: alert when an item expires within this many days. */
  days?: number;
  /** Ask for a temporary block of the alert's subject. */
  block?: { seconds: number };
}

export interface DetectionConfig {
  rules: RuleConfig[];
}

export interface AlertSubject {
  /** User name, client id or (for a workload with no user) nothing: see `workload`. */
  principal?: string;
  /** Source IP address. */
  address?: string;
  /** SPIFFE ID of a workload, or the name of an expiring certificate or key. */
  workload?: string;
  /** Route id, or "<service> <METHOD> <path shape>" for a call between workloads. */
  route?: string;
}

export interface Alert {
  /** Random, unique per alert; block requests and audit entries refer to it. */
  id: string;
  /** ISO 8601, when it was raised. */
  time: string;
  /** Id of the rule that raised it. */
  rule: string;
  kind: RuleKind;
  severity: Severity;
  /** For a human; names subjects but never a secret, token, password or raw request path. */
  summary: string;
  subject: AlertSubject;
  /** Hits (or distinct values) counted in the window; for expiry, whole days left (0: expired). */
  count: number;
  window: { seconds: number; start: string; end: string };
  /** Request ids of the events that made the alert, most recent last (at most 20). */
  evidence: { requestIds: string[] };
}

export interface BlockRequest {
  kind: 'principal' | 'address' | 'workload';
  value: string;
  seconds: number;
  rule: string;
  alertId: string;
}
