// The Prometheus metrics of one process. Nothing on the request path calls into this module: it
// subscribes to the event channels the pipeline publishes on (STYLE.md habit 12), so a process
// without a metrics listener pays nothing.
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { PortcullisConfig } from '../config/types.js';
import { ERROR_CODES } from '../errors.js';
import { subscribeAudit, subscribeRequests, subscribeTlsFailures, type AuditEvent, type RequestEvent, type TlsFailureEvent } from '../events.js';
import { CONTROL_HOST } from '../principal.js';
import { CappedLabel, KnownLabel, statusClass } from './labels.js';

/** Counts of a span exporter, read when metrics are scraped. */
export interface SpanExportStats {
  exported: number;
  dropped: number;
  failedExports: number;
}

export interface MetricsOptions {
  /** Bounds the label values: route ids, service names and the components the file describes. */
  config: PortcullisConfig;
  /** process_* and nodejs_* metrics of prom-client; default true. */
  defaultMetrics?: boolean;
}

/**
 * Request durations in seconds: fine below 10 ms, where the data plane's own cost lives, and up to
 * 30 s for slow upstreams (longer ones land in +Inf).
 */
export const DURATION_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/** What the upstream gauges read of a cluster (dataplane/upstream's ClusterState; core cannot import it). */
export interface UpstreamMetricsState {
  breaker: 'closed' | 'open' | 'half-open';
  endpoints: { healthy: boolean; ejectedUntil?: number }[];
  inFlight: number;
}

export class PortcullisMetrics {
  readonly registry = new Registry();
  private readonly unsubscribe: (() => void)[] = [];
  private readonly decisions: Counter<'component' | 'decision' | 'code' | 'route'>;
  private readonly durations: Histogram<'component' | 'route' | 'status_class'>;
  private readonly upstreamErrors: Counter<'component' | 'code'>;
  private readonly certificateExpiry: Gauge<'spiffe_id'>;
  private readonly tlsFailures: Counter<'component'>;
  private readonly adminEvents: Counter<'action' | 'outcome'>;
  /** Where the trace counters are read from at scrape time; set by watchSpanExport(). */
  private readonly spanSource: { stats?: () => SpanExportStats } = {};

  private readonly component: KnownLabel;
  private readonly route: KnownLabel;
  private readonly code = new KnownLabel(Object.keys(ERROR_CODES));
  private readonly decision = new KnownLabel(['allow', 'deny']);
  private readonly action = new CappedLabel(200);
  private readonly outcome = new KnownLabel(['success', 'failure']);
  /** A process has one workload identity; a few more allow for a changed config, never thousands. */
  private readonly spiffeId = new CappedLabel(16, /^spiffe:\/\/[\w.-]+(?:\/[\w.-]+)+$/);

  constructor(o: MetricsOptions) {
    const { config } = o;
    const services = config.services.map((s) => s.name);
    this.component = new KnownLabel(['gateway', 'control', 'kms', 'tokens', ...services.flatMap((s) => [`sidecar:${s}:inbound`, `sidecar:${s}:outbound`])]);
    // The gateway labels by route id; a sidecar by the service called (its own, another, or the control plane).
    this.route = new KnownLabel([...config.routes.map((r) => r.id), ...services, CONTROL_HOST]);
    const registers = [this.registry];
    if (o.defaultMetrics ?? true) collectDefaultMetrics({ register: this.registry });

    this.decisions = new Counter({
      name: 'portcullis_decisions_total',
      help: 'Authorization decisions, allowed and refused, by component, decision, error code and route (gateway: route id; sidecar: service called).',
      labelNames: ['component', 'decision', 'code', 'route'], registers,
    });
    this.durations = new Histogram({
      name: 'portcullis_request_duration_seconds',
      help: 'Time from request arrival to the end of the response, by component, route (or service) and status class.',
      labelNames: ['component', 'route', 'status_class'], buckets: DURATION_BUCKETS, registers,
    });
    this.upstreamErrors = new Counter({
      name: 'portcullis_upstream_errors_total',
      help: 'Allowed requests whose upstream failed (unreachable, timed out), by component and error code.',
      labelNames: ['component', 'code'], registers,
    });
    this.certificateExpiry = new Gauge({
      name: 'portcullis_workload_certificate_expiry_timestamp_seconds',
      help: 'notAfter of this process\'s current workload certificate, in seconds since the epoch; renewal is due at half its lifetime.',
      labelNames: ['spiffe_id'], registers,
    });
    this.tlsFailures = new Counter({
      name: 'portcullis_tls_handshake_failures_total',
      help: 'TLS handshakes refused by a listener (no or untrusted client certificate, plaintext, protocol mismatch).',
      labelNames: ['component'], registers,
    });
    this.adminEvents = new Counter({
      name: 'portcullis_admin_events_total',
      help: 'Administrative and identity events of the control plane (issuance, logins, tokens, KMS), by action and outcome.',
      labelNames: ['action', 'outcome'], registers,
    });
    const source = this.spanSource;
    // prom-client calls collect() with `this` bound to the metric, just before each scrape.
    const stats = (pick: (s: SpanExportStats) => number) => function collect(this: Counter): void {
      if (!source.stats) return;
      this.reset();
      this.inc(pick(source.stats()));
    };
    new Counter({ name: 'portcullis_trace_spans_exported_total', help: 'Spans accepted by the OTLP collector.', registers, collect: stats((s) => s.exported) });
    new Counter({ name: 'portcullis_trace_spans_dropped_total', help: 'Spans dropped because the export queue was full or the collector failed; requests are never held for tracing.', registers, collect: stats((s) => s.dropped) });
    new Counter({ name: 'portcullis_trace_export_failures_total', help: 'OTLP export requests that failed or timed out.', registers, collect: stats((s) => s.failedExports) });

    // A subscriber that throws would surface as an uncaught exception in the publisher's process:
    // metrics must never take a request down, so every handler swallows its own errors.
    const safe = <T>(fn: (e: T) => void) => (e: T): void => {
      try { fn(e); } catch { /* a metric lost is better than a request lost */ }
    };
    this.unsubscribe.push(
      subscribeAudit(safe((e: AuditEvent) => this.onAudit(e))),
      subscribeRequests(safe((e: RequestEvent) => this.onRequest(e))),
      subscribeTlsFailures(safe((e: TlsFailureEvent) => this.tlsFailures.inc({ component: this.component.value(e.component) }))),
    );
  }

  /** Sets the expiry gauge; call with the first certificate and again on every rotation. */
  setCertificateExpiry(spiffeId: string, notAfterMs: number): void {
    this.certificateExpiry.set({ spiffe_id: this.spiffeId.value(spiffeId) }, Math.floor(notAfterMs / 1000));
  }

  /**
   * Exposes the gateway's upstream clusters (read at scrape time): breaker state per service,
   * replicas in rotation and requests in flight. `state` returns service → cluster state.
   */
  watchUpstreams(state: () => Record<string, UpstreamMetricsState>): void {
    const registers = [this.registry];
    const each = (fn: (g: Gauge<string>, service: string, s: UpstreamMetricsState) => void) => function collect(this: Gauge<string>): void {
      this.reset();
      for (const [service, s] of Object.entries(state())) fn(this, service, s);
    };
    new Gauge({
      name: 'portcullis_upstream_breaker_open', help: 'Circuit breaker of the service: 0 closed, 0.5 half-open (one probe in flight), 1 open.', labelNames: ['service'], registers,
      collect: each((g, service, s) => g.set({ service }, s.breaker === 'open' ? 1 : s.breaker === 'half-open' ? 0.5 : 0)),
    });
    new Gauge({
      name: 'portcullis_upstream_endpoints_available', help: 'Replicas of the service in rotation (healthy and not ejected).', labelNames: ['service'], registers,
      collect: each((g, service, s) => g.set({ service }, s.endpoints.filter((e) => e.healthy && e.ejectedUntil === undefined).length)),
    });
    new Gauge({
      name: 'portcullis_upstream_in_flight', help: 'Requests in flight to the service from this gateway.', labelNames: ['service'], registers,
      collect: each((g, service, s) => g.set({ service }, s.inFlight)),
    });
  }

  /** Exposes a span exporter's counts (read at scrape time). */
  watchSpanExport(stats: () => SpanExportStats): void {
    this.spanSource.stats = stats;
  }

  /** The exposition text (Prometheus text format 0.0.4). */
  render(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** Stops listening to the channels; the registry keeps its last values. */
  close(): void {
    for (const u of this.unsubscribe.splice(0)) u();
  }

  private onAudit(e: AuditEvent): void {
    if (e.type === 'decision') {
      this.decisions.inc({
        component: this.component.value(e.component),
        decision: this.decision.value(e.decision),
        code: this.code.value(e.code),
        route: this.route.value(e.what.route ?? e.what.service),
      });
    } else {
      this.adminEvents.inc({ action: this.action.value(e.action), outcome: this.outcome.value(e.outcome) });
    }
  }

  private onRequest(e: RequestEvent): void {
    const component = this.component.value(e.component);
    this.durations.observe({ component, route: this.route.value(e.route ?? e.service), status_class: statusClass(e.status) }, e.durationSeconds);
    if (e.upstreamError) this.upstreamErrors.inc({ component, code: this.code.value(e.code) });
  }
}
