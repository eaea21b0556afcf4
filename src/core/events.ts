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
  /**
   * `path` is the canonical path (the raw target when normalization refused it); the query is not
   * recorded (it may carry secrets), only the names of attack signatures found in it (`signatures`).
   */
  what: { method: string; path: string; route?: string; service?: string; signatures?: string[] };
  /** The rules that produced the decision (policy ids); empty when nothing matched (deny by default). */
  reasons: string[];
  /** Human-readable why, never containing secrets. */
  why: string;
  /** W3C trace id (32 hex) of the request, to join the audit record with its trace. */
  traceId?: string;
  /** Version of the policy set that decided. */
  policyVersion?: string;
  /** Policies whose evaluation errored (skipped, never allowing): "<policy id>: <message>". */
  errors?: string[];
  /** Dry run: the candidate policy set's decision, recorded only where it differs from the live one. */
  shadow?: { decision: 'allow' | 'deny'; reasons: string[] };
  /** The service's own resource decision (SDK), reported to its sidecar. */
  resourceDecision?: { action: string; resource: string; decision: 'allow' | 'deny'; reasons: string[] };
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

/**
 * One request handled by a data plane, published when its response ends (or the connection
 * closes): what metrics time and what the trace exporter turns into a span. Labels meant for
 * metrics (component, route, service, code) are bounded by the config; `path` is for spans only.
 */
export interface RequestEvent {
  /** `gateway`, `sidecar:<service>:inbound` or `sidecar:<service>:outbound`, as in DecisionEvent. */
  component: string;
  requestId: string;
  method: string;
  /** Normalized path when it could be normalized (never the query). */
  path?: string;
  /** Route id from the config (gateway), when a route matched. */
  route?: string;
  /** Service the request was for: the routed service, our own (inbound) or the called one (outbound). */
  service?: string;
  /** HTTP status sent; 0 when the connection closed before any response was sent. */
  status: number;
  /** Error code when Portcullis answered with an error (refusal or upstream failure). */
  code?: string;
  /** True when the request was allowed but the upstream failed (connect, timeout). */
  upstreamError?: boolean;
  /** Epoch milliseconds when the request arrived. */
  startTime: number;
  durationSeconds: number;
  /** The span this hop made, when trace context is in use. */
  trace?: RequestTrace;
}

export interface RequestTrace {
  traceId: string;
  spanId: string;
  /** The caller's span, when the request continued a trace. */
  parentSpanId?: string;
  /** The sampled flag of the trace (W3C trace-flags bit 0). */
  sampled: boolean;
  /** Server: a request we received (gateway, sidecar inbound); client: a call made for our service (sidecar outbound). */
  kind: 'server' | 'client';
  tracestate?: string;
}

export const requestChannel = diagnostics_channel.channel('portcullis:request');

export function publishRequest(event: RequestEvent): void {
  if (requestChannel.hasSubscribers) requestChannel.publish(event);
}

export function subscribeRequests(fn: (event: RequestEvent) => void): () => void {
  const handler = (msg: unknown): void => fn(msg as RequestEvent); // only publishRequest publishes here
  requestChannel.subscribe(handler);
  return () => requestChannel.unsubscribe(handler);
}

/** A TLS handshake a listener refused (bad or missing client certificate, plaintext, wrong version). */
export interface TlsFailureEvent {
  component: string;
  /** OpenSSL/Node error code, e.g. ERR_SSL_SSLV3_ALERT_BAD_CERTIFICATE; for logs, not labels. */
  code: string;
}

export const tlsFailureChannel = diagnostics_channel.channel('portcullis:tls-failure');

export function publishTlsFailure(event: TlsFailureEvent): void {
  if (tlsFailureChannel.hasSubscribers) tlsFailureChannel.publish(event);
}

export function subscribeTlsFailures(fn: (event: TlsFailureEvent) => void): () => void {
  const handler = (msg: unknown): void => fn(msg as TlsFailureEvent); // only publishTlsFailure publishes here
  tlsFailureChannel.subscribe(handler);
  return () => tlsFailureChannel.unsubscribe(handler);
}
