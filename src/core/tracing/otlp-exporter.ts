// Trace export without the OpenTelemetry SDK: request events become OTLP spans, queued in memory
// and posted as OTLP/HTTP JSON to the collector in the background. The queue is bounded; when the
// collector is slow or down, spans are dropped and counted. A request never waits for tracing.
import { Agent, request } from 'undici';
import { subscribeRequests, type RequestEvent } from '../events.js';
import { silentLogger, type Logger } from '../log.js';

export interface OtlpExporterOptions {
  /** The full traces URL, e.g. http://127.0.0.1:4318/v1/traces. */
  url: string;
  /** Extra request headers (OTEL_EXPORTER_OTLP_HEADERS), e.g. a collector's API key; never logged. */
  headers?: Record<string, string>;
  /** `service.name` of the resource. */
  serviceName: string;
  /** Spans held at most, waiting for export; more are dropped. */
  maxQueueSize: number;
  /** Spans sent at most per request. */
  maxBatchSize: number;
  /** Milliseconds between exports (an export starts earlier when a batch is full). */
  scheduleDelayMs: number;
  /** Milliseconds an export request may take before it is abandoned. */
  timeoutMs: number;
  logger?: Logger;
}

/** OTLP SpanKind values. */
const SPAN_KIND = { server: 2, client: 3 } as const;
/** OTLP Status codes. */
const STATUS_UNSET = 0;
const STATUS_ERROR = 2;
/** Failures are logged at most this often: a down collector must not flood the log. */
const FAILURE_LOG_INTERVAL_MS = 60_000;

type AnyValue = { stringValue: string } | { intValue: string } | { boolValue: boolean };
interface KeyValue { key: string; value: AnyValue }

const str = (key: string, v: string): KeyValue => ({ key, value: { stringValue: v } });
const int = (key: string, v: number): KeyValue => ({ key, value: { intValue: String(Math.trunc(v)) } });

/** One RequestEvent as an OTLP/JSON span (ids in hex, times as decimal nanosecond strings). */
export function toOtlpSpan(e: RequestEvent): Record<string, unknown> | undefined {
  const t = e.trace;
  if (!t) return undefined;
  const start = BigInt(Math.trunc(e.startTime)) * 1_000_000n;
  const end = start + BigInt(Math.max(0, Math.round(e.durationSeconds * 1e9)));
  const attributes: KeyValue[] = [str('http.request.method', e.method), str('portcullis.component', e.component), str('portcullis.request_id', e.requestId)];
  if (e.status > 0) attributes.push(int('http.response.status_code', e.status));
  if (e.path !== undefined) attributes.push(str('url.path', e.path));
  if (e.route !== undefined) attributes.push(str('portcullis.route', e.route));
  if (e.service !== undefined) attributes.push(str('portcullis.service', e.service));
  if (e.code !== undefined) attributes.push(str('error.type', e.code));
  // HTTP semantic conventions: 5xx (and no answer) are errors; 4xx only for the client side.
  const failed = e.status === 0 || e.status >= 500 || (t.kind === 'client' && e.status >= 400) || e.upstreamError === true;
  return {
    traceId: t.traceId,
    spanId: t.spanId,
    ...(t.parentSpanId ? { parentSpanId: t.parentSpanId } : {}),
    ...(t.tracestate ? { traceState: t.tracestate } : {}),
    name: `${e.method} ${e.route ?? e.service ?? ''}`.trim(),
    kind: SPAN_KIND[t.kind],
    startTimeUnixNano: start.toString(),
    endTimeUnixNano: end.toString(),
    attributes,
    status: failed ? { code: STATUS_ERROR, ...(e.code ? { message: e.code } : {}) } : { code: STATUS_UNSET },
  };
}

export class OtlpTraceExporter {
  private queue: RequestEvent[] = [];
  private inFlight: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private unsubscribe: (() => void) | undefined;
  private readonly agent: Agent;
  private readonly logger: Logger;
  private lastFailureLog = 0;
  private readonly counts = { exported: 0, dropped: 0, failedExports: 0 };

  constructor(private readonly o: OtlpExporterOptions) {
    this.logger = o.logger ?? silentLogger;
    this.agent = new Agent({ connections: 2, headersTimeout: o.timeoutMs, bodyTimeout: o.timeoutMs, connect: { timeout: Math.min(o.timeoutMs, 10_000) } });
  }

  /** Starts listening to request events and exporting on schedule. */
  start(): void {
    if (this.unsubscribe) return;
    this.unsubscribe = subscribeRequests((e) => this.enqueue(e));
    this.timer = setInterval(() => this.kick(), this.o.scheduleDelayMs);
    this.timer.unref(); // tracing never keeps a process alive
  }

  stats(): { exported: number; dropped: number; failedExports: number } {
    return { ...this.counts };
  }

  /** Exports everything queued (one batch after another); resolves when done or failed. */
  async flush(): Promise<void> {
    for (;;) {
      if (this.inFlight) await this.inFlight;
      if (this.queue.length === 0) return;
      this.kick();
    }
  }

  /**
   * Stops listening and exports what is queued, for at most one export timeout in all: a process
   * stopping must not wait on a dead collector. What is left then is dropped (and counted).
   */
  async shutdown(): Promise<void> {
    this.unsubscribe?.();
    this.unsubscribe = undefined;
    if (this.timer) clearInterval(this.timer);
    let deadline: NodeJS.Timeout | undefined;
    const timedOut = new Promise<void>((resolve) => { deadline = setTimeout(resolve, this.o.timeoutMs); });
    await Promise.race([this.flush(), timedOut]);
    clearTimeout(deadline);
    this.counts.dropped += this.queue.length;
    this.queue = [];
    await this.agent.destroy(); // aborts an export still in flight; its catch counts its spans
    await this.inFlight;
  }

  /** Called from the publisher's stack: O(1), never throws, never waits. */
  private enqueue(e: RequestEvent): void {
    if (!e.trace?.sampled) return;
    if (this.queue.length >= this.o.maxQueueSize) {
      this.counts.dropped++;
      return;
    }
    this.queue.push(e);
    if (this.queue.length >= this.o.maxBatchSize && !this.inFlight) setImmediate(() => this.kick());
  }

  /** Starts one export if none is running and there is something to send. */
  private kick(): void {
    if (this.inFlight || this.queue.length === 0) return;
    const batch = this.queue.splice(0, this.o.maxBatchSize);
    this.inFlight = this.send(batch).finally(() => { this.inFlight = undefined; });
  }

  private async send(batch: RequestEvent[]): Promise<void> {
    const spans = batch.map(toOtlpSpan).filter((s) => s !== undefined);
    const body = JSON.stringify({
      resourceSpans: [{
        resource: { attributes: [str('service.name', this.o.serviceName), int('process.pid', process.pid)] },
        scopeSpans: [{ scope: { name: 'portcullis' }, spans }],
      }],
    });
    try {
      const res = await request(this.o.url, {
        method: 'POST',
        dispatcher: this.agent,
        headers: { ...this.o.headers, 'content-type': 'application/json' },
        body,
        signal: AbortSignal.timeout(this.o.timeoutMs),
      });
      await res.body.dump();
      if (res.statusCode < 200 || res.statusCode >= 300) throw new Error(`collector answered ${res.statusCode}`);
      this.counts.exported += batch.length;
    } catch (err) {
      this.counts.failedExports++;
      this.counts.dropped += batch.length;
      const now = Date.now();
      if (now - this.lastFailureLog >= FAILURE_LOG_INTERVAL_MS) {
        this.lastFailureLog = now;
        this.logger.warn({ url: this.o.url, err: err instanceof Error ? err.message : String(err), dropped: this.counts.dropped }, 'trace export failed; spans dropped');
      }
    }
  }
}
