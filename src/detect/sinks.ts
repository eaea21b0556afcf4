// Where alerts go: the log, a signed webhook, and the audit log itself. A sink is handed an alert
// on the publisher's stack, so send() queues and returns; delivery happens later.
import { randomUUID } from 'node:crypto';
import { Agent, request } from 'undici';
import type { Clock, Timer } from '../core/clock.js';
import { PortcullisError } from '../core/errors.js';
import { publishAudit, type AdminEvent } from '../core/events.js';
import { silentLogger, type Logger } from '../core/log.js';
import type { Alert } from './types.js';
import { signWebhook } from './webhook-signature.js';

export { signWebhook, verifyWebhookSignature } from './webhook-signature.js';

export interface AlertSink {
  /** For stats and logs. */
  readonly name: string;
  /** Takes the alert without waiting on delivery; should not throw (the detector counts it if it does). */
  send(alert: Alert): void | Promise<void>;
  close?(): Promise<void>;
}

/** The component of audit events detection publishes; the detector ignores them as input. */
export const DETECT_COMPONENT = 'detect';

/** Each alert as one JSON log line at warn level. */
export class LogAlertSink implements AlertSink {
  readonly name = 'log';

  constructor(private readonly logger: Logger) {}

  send(alert: Alert): void {
    this.logger.warn({ alert }, `security alert: ${alert.summary}`);
  }
}

/**
 * Each alert as an audit entry of its own (action `detect.alert`), so the tamper-evident log
 * holds what was detected beside what happened. The alert id is the entry's request id.
 */
export class AuditAlertSink implements AlertSink {
  readonly name = 'audit';

  send(alert: Alert): void {
    const { principal, address, workload, route } = alert.subject;
    const detail: AdminEvent['detail'] = { rule: alert.rule, kind: alert.kind, severity: alert.severity, count: alert.count };
    if (principal !== undefined) detail.principal = principal;
    if (address !== undefined) detail.address = address;
    if (workload !== undefined) detail.workload = workload;
    if (route !== undefined) detail.route = route;
    const who: AdminEvent['who'] = {};
    // Also as `who`, so a search by principal, address or workload finds the alerts about it.
    if (principal !== undefined) who.sub = principal;
    if (address !== undefined) who.sourceAddress = address;
    if (workload?.startsWith('spiffe://')) who.spiffeId = workload;
    publishAudit({ type: 'admin', time: alert.time, requestId: alert.id, component: DETECT_COMPONENT, action: 'detect.alert', outcome: 'success', who, detail });
  }
}

export interface WebhookAlertSinkOptions {
  url: string;
  /** The shared secret's bytes (a `whsec_…` secret is its base64 part decoded); 24 to 64 bytes. */
  secret: Uint8Array;
  /** Drives retry waits, so tests move time instead of sleeping. */
  clock: Clock;
  /** Alerts waiting at most; more are dropped and counted. Default 1000. */
  maxQueue?: number;
  /** Attempts per alert, the first included. Default 6 (about a minute of retries). */
  maxAttempts?: number;
  /** Wait before the first retry, doubled on each; default 2000 ms, at most maxBackoffMs (default 5 min). */
  backoffMs?: number;
  maxBackoffMs?: number;
  /** One attempt may take this long. Default 10 s. */
  timeoutMs?: number;
  logger?: Logger;
}

export interface WebhookSinkStats {
  queued: number;
  delivered: number;
  /** Attempts that failed and were tried again. */
  retries: number;
  /** Alerts not delivered: queueFull + gaveUp + rejected, and those sent to or left at close. */
  dropped: number;
  queueFull: number;
  /** Failed maxAttempts times (5xx, 408, 429, network errors, timeouts). */
  gaveUp: number;
  /** Refused by the receiver with another 4xx: retrying would not help. */
  rejected: number;
}

interface Message { id: string; body: string; attempts: number }

const FAILURE_LOG_INTERVAL_MS = 60_000;

/**
 * Alerts POSTed as JSON (`{type, timestamp, data}`) to one URL, signed per Standard Webhooks.
 * One delivery at a time, in order; a failed one waits (2 s, 4 s, 8 s …) on the clock and is
 * tried again with the same webhook-id and a fresh timestamp and signature.
 */
export class WebhookAlertSink implements AlertSink {
  readonly name = 'webhook';
  private readonly queue: Message[] = [];
  private readonly agent: Agent;
  private readonly logger: Logger;
  private readonly counts = { delivered: 0, retries: 0, queueFull: 0, gaveUp: 0, rejected: 0, closedDrop: 0 };
  private inFlight: Promise<void> | undefined;
  private waiting: Timer | undefined;
  private closed = false;
  private lastFailureLog = Number.NEGATIVE_INFINITY;
  private readonly o: Required<Omit<WebhookAlertSinkOptions, 'logger'>>;

  constructor(options: WebhookAlertSinkOptions) {
    const url = new URL(options.url); // throws on a malformed URL, at start
    if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', 'alert webhook URL must be http(s)');
    if (options.secret.byteLength < 24 || options.secret.byteLength > 64) {
      throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', 'alert webhook secret must be 24 to 64 bytes');
    }
    this.logger = options.logger ?? silentLogger;
    if (url.protocol === 'http:' && !['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname)) {
      this.logger.warn({ url: url.origin }, 'alert webhook is plain HTTP off this machine: alerts can be read on the way (signatures still detect changes)');
    }
    this.o = {
      url: url.href,
      secret: options.secret,
      clock: options.clock,
      maxQueue: options.maxQueue ?? 1000,
      maxAttempts: options.maxAttempts ?? 6,
      backoffMs: options.backoffMs ?? 2000,
      maxBackoffMs: options.maxBackoffMs ?? 300_000,
      timeoutMs: options.timeoutMs ?? 10_000,
    };
    this.agent = new Agent({ connections: 1, headersTimeout: this.o.timeoutMs, bodyTimeout: this.o.timeoutMs });
  }

  send(alert: Alert): void {
    if (this.closed) {
      this.counts.closedDrop++;
      return;
    }
    if (this.queue.length >= this.o.maxQueue) {
      this.counts.queueFull++;
      return;
    }
    this.queue.push({ id: `msg_${randomUUID()}`, body: JSON.stringify({ type: 'portcullis.alert', timestamp: alert.time, data: alert }), attempts: 0 });
    this.pump();
  }

  stats(): WebhookSinkStats {
    const { delivered, retries, queueFull, gaveUp, rejected, closedDrop } = this.counts;
    return { queued: this.queue.length, delivered, retries, dropped: queueFull + gaveUp + rejected + closedDrop, queueFull, gaveUp, rejected };
  }

  /** Resolves when no attempt is in flight (one may still be waiting for its retry). */
  async idle(): Promise<void> {
    while (this.inFlight) await this.inFlight;
  }

  /** Stops: waits for the attempt in flight, drops (and counts) what is still queued. */
  async close(): Promise<void> {
    this.closed = true;
    this.waiting?.cancel();
    this.waiting = undefined;
    await this.idle();
    this.counts.closedDrop += this.queue.length;
    this.queue.length = 0;
    await this.agent.close();
  }

  private pump(): void {
    const next = this.queue[0];
    if (this.inFlight || this.waiting || this.closed || !next) return;
    this.inFlight = this.deliver(next).finally(() => {
      this.inFlight = undefined;
      this.pump();
    });
  }

  private async deliver(msg: Message): Promise<void> {
    msg.attempts++;
    const timestamp = Math.floor(this.o.clock.now() / 1000);
    let retryable: boolean;
    let why: string;
    try {
      const res = await request(this.o.url, {
        method: 'POST',
        dispatcher: this.agent,
        headers: {
          'content-type': 'application/json',
          'webhook-id': msg.id,
          'webhook-timestamp': String(timestamp),
          'webhook-signature': signWebhook(this.o.secret, msg.id, timestamp, msg.body),
        },
        body: msg.body,
        signal: AbortSignal.timeout(this.o.timeoutMs),
      });
      await res.body.dump();
      if (res.statusCode >= 200 && res.statusCode < 300) {
        this.queue.shift();
        this.counts.delivered++;
        return;
      }
      retryable = res.statusCode >= 500 || res.statusCode === 408 || res.statusCode === 429;
      why = `receiver answered ${res.statusCode}`;
    } catch (err) {
      retryable = true;
      why = err instanceof Error ? err.message : String(err);
    }
    if (!retryable || msg.attempts >= this.o.maxAttempts) {
      this.queue.shift();
      if (retryable) this.counts.gaveUp++;
      else this.counts.rejected++;
      this.logFailure(why, retryable ? `given up after ${msg.attempts} attempts` : 'not retried');
      return;
    }
    this.counts.retries++;
    this.logFailure(why, `attempt ${msg.attempts} of ${this.o.maxAttempts}`);
    const wait = Math.min(this.o.maxBackoffMs, this.o.backoffMs * 2 ** (msg.attempts - 1));
    this.waiting = this.o.clock.setTimer(wait, () => {
      this.waiting = undefined;
      this.pump();
    });
  }

  private logFailure(why: string, what: string): void {
    const now = this.o.clock.now();
    if (now - this.lastFailureLog < FAILURE_LOG_INTERVAL_MS) return;
    this.lastFailureLog = now;
    this.logger.warn({ url: new URL(this.o.url).origin, err: why, ...this.stats() }, `alert webhook delivery failed (${what})`);
  }
}
