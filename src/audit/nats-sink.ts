// Ships a process's audit events to NATS JetStream (NATS_URL), so that many data planes feed one
// audit store and any SIEM. The local hash-chained log stays the source of durability: this sink
// never blocks or fails a request. Events wait in a bounded in-memory queue until JetStream acks
// them; when NATS is away the queue is retried every second and, once full, the oldest events are
// dropped and counted. Each message carries the event's content id as Nats-Msg-Id, so a retry
// after a lost ack is stored once by JetStream's duplicate window.
import { connect, nanos, type JetStreamClient, type JetStreamManager, type NatsConnection } from 'nats';
import type { AuditNatsConfig } from '../core/config/types.js';
import type { AuditEvent } from '../core/events.js';
import type { Logger } from '../core/log.js';
import { auditEventId } from './event-shape.js';

/** Events held while NATS cannot take them; beyond this the oldest are dropped (and counted). */
export const DEFAULT_QUEUE_LIMIT = 10_000;
/** Publishes in flight at once; each waits for its JetStream ack. */
const BATCH = 1024;
const RETRY_MS = 1000;
const ACK_TIMEOUT_MS = 2000;
/** How long events are kept in the stream (the audit store keeps them for search). */
const STREAM_MAX_AGE_MS = 7 * 24 * 3600_000;

/** A subject token from a component name: NATS subjects may not contain dots, spaces or wildcards. */
export const subjectToken = (component: string): string => component.replace(/[^\w-]/g, '_') || '_';

/** Connects with endless reconnects; resolves once the first connection is up. */
export async function connectNats(url: string, name: string): Promise<NatsConnection> {
  return connect({ servers: url, name, maxReconnectAttempts: -1, reconnectTimeWait: RETRY_MS, timeout: ACK_TIMEOUT_MS });
}

/** Creates the audit stream when it does not exist (every process may; the first one wins). */
export async function ensureStream(jsm: JetStreamManager, cfg: Pick<AuditNatsConfig, 'stream' | 'subjectPrefix'>): Promise<void> {
  try {
    await jsm.streams.info(cfg.stream);
    return;
  } catch { /* not there yet */ }
  try {
    await jsm.streams.add({ name: cfg.stream, subjects: [`${cfg.subjectPrefix}.>`], max_age: nanos(STREAM_MAX_AGE_MS) });
  } catch (err) {
    await jsm.streams.info(cfg.stream).catch(() => { throw err; }); // another process created it meanwhile
  }
}

export interface NatsPublisherOptions extends Pick<AuditNatsConfig, 'stream' | 'subjectPrefix'> {
  url: string;
  /** The recording component (gateway, control, sidecar-orders): the subject's last token. */
  component: string;
  logger: Logger;
  queueLimit?: number;
}

interface Queued {
  id: string;
  data: Uint8Array;
}

export interface PublisherStats {
  /** Acked by JetStream. */
  published: number;
  /** Lost: the queue was full, or events were still unsent at close. */
  dropped: number;
  /** Publish attempts that failed (NATS down, no ack in time); their events were retried. */
  failures: number;
  queued: number;
}

export class NatsAuditPublisher {
  private nc: NatsConnection | undefined;
  private js: JetStreamClient | undefined;
  private queue: Queued[] = [];
  private flushing: Promise<void> | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly counts = { published: 0, dropped: 0, failures: 0 };
  private readonly subject: string;
  private readonly limit: number;
  private readonly encoder = new TextEncoder();

  /** Starts connecting in the background; events published meanwhile are queued. */
  constructor(private readonly o: NatsPublisherOptions) {
    this.subject = `${o.subjectPrefix}.${subjectToken(o.component)}`;
    this.limit = o.queueLimit ?? DEFAULT_QUEUE_LIMIT;
    void this.connectLoop();
  }

  stats(): PublisherStats {
    return { ...this.counts, queued: this.queue.length };
  }

  /** Queues one event; never throws, never waits. */
  publish(event: AuditEvent): void {
    if (this.closed) return;
    const json = JSON.stringify(event);
    if (this.queue.length >= this.limit) {
      this.queue.shift();
      if (this.counts.dropped++ % 1000 === 0) this.o.logger.warn({ dropped: this.counts.dropped, queueLimit: this.limit }, 'NATS audit queue full: dropping the oldest events (the local audit log keeps them)');
    }
    this.queue.push({ id: auditEventId(json), data: this.encoder.encode(json) });
    this.kick();
  }

  /** Tries to send what is queued for up to `timeoutMs`, then closes; what is left counts as dropped. */
  async close(timeoutMs = 2000): Promise<void> {
    if (this.closed) return;
    const deadline = Date.now() + timeoutMs;
    while (this.js && this.queue.length > 0 && Date.now() < deadline) {
      clearTimeout(this.retryTimer);
      this.retryTimer = undefined;
      this.kick();
      await this.flushing;
      if (this.queue.length > 0) await new Promise((r) => setTimeout(r, 50));
    }
    clearTimeout(this.retryTimer);
    this.closed = true;
    if (this.queue.length > 0) {
      this.counts.dropped += this.queue.length;
      this.o.logger.warn({ unsent: this.queue.length }, 'NATS audit events unsent at close (the local audit log keeps them)');
      this.queue = [];
    }
    await this.nc?.close().catch(() => undefined);
  }

  private async connectLoop(): Promise<void> {
    let warned = false;
    while (!this.closed) {
      try {
        const nc = await connectNats(this.o.url, `portcullis-${this.o.component}`);
        if (this.closed) { await nc.close(); return; }
        await ensureStream(await nc.jetstreamManager(), this.o);
        this.nc = nc;
        this.js = nc.jetstream();
        this.o.logger.info({ subject: this.subject, stream: this.o.stream }, 'shipping audit events to NATS JetStream');
        this.kick();
        return;
      } catch (err) {
        if (!warned) this.o.logger.warn({ err: (err as Error).message }, 'NATS unreachable; audit events are queued and retried'); // connect rejects with Errors
        warned = true;
        await new Promise((r) => setTimeout(r, RETRY_MS));
      }
    }
  }

  private kick(): void {
    if (this.flushing || this.retryTimer || !this.js) return;
    const run: Promise<void> = this.flush().finally(() => { if (this.flushing === run) this.flushing = undefined; });
    this.flushing = run;
  }

  private async flush(): Promise<void> {
    const js = this.js;
    while (js && !this.closed && this.queue.length > 0) {
      const batch = this.queue.slice(0, BATCH);
      const results = await Promise.allSettled(batch.map((m) => js.publish(this.subject, m.data, { msgID: m.id, timeout: ACK_TIMEOUT_MS })));
      const acked = new Set(batch.filter((_, i) => results[i]?.status === 'fulfilled'));
      this.counts.published += acked.size;
      this.queue = this.queue.filter((m) => !acked.has(m));
      if (acked.size < batch.length) {
        this.counts.failures += batch.length - acked.size;
        this.retryTimer = setTimeout(() => { this.retryTimer = undefined; this.kick(); }, RETRY_MS);
        this.retryTimer.unref();
        return;
      }
    }
  }
}
