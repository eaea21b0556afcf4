// The audit store of the control plane: its own events, recorded as they are published, and —
// when NATS_URL is set — the events of every data plane, read from the JetStream stream with a
// durable consumer. Events from the wire are untrusted: each is validated (event-shape.ts) and a
// malformed one is refused, counted and terminated in JetStream, never stored. A message is acked
// only once its event is in the store, so nothing acknowledged is lost; ids are content hashes, so
// a redelivery, or the control plane's own event arriving a second time through NATS, is stored once.
import { AckPolicy, DeliverPolicy, nanos, type ConsumerMessages, type JsMsg, type NatsConnection } from 'nats';
import type { AuditNatsConfig } from '../core/config/types.js';
import { subscribeAudit, type AuditEvent } from '../core/events.js';
import type { Logger } from '../core/log.js';
import type { Store, StoredAuditEvent } from '../store/store.js';
import { auditEventId, parseAuditEvent } from './event-shape.js';
import { connectNats, ensureStream } from './nats-sink.js';

/** Events written to the store in one transaction at most. */
const BATCH = 500;
const RETRY_MS = 1000;

export interface StoreSinkOptions {
  store: Store;
  logger: Logger;
  /** Consume the JetStream stream too (control plane with NATS_URL set). */
  nats?: AuditNatsConfig & { url: string };
  /** Record this process's own events from the audit channel; default true. */
  local?: boolean;
}

export interface StoreSinkStats {
  /** New events written to the store. */
  stored: number;
  /** Events received again (same id) and skipped. */
  duplicates: number;
  /** Malformed events from the wire, refused. */
  refused: number;
  /** Store writes that failed (their NATS messages are redelivered; local events are lost to search, not to the log). */
  failures: number;
}

interface Pending {
  item: StoredAuditEvent;
  done: (ok: boolean) => void;
}

export class AuditStoreSink {
  private pending: Pending[] = [];
  private writing: Promise<void> | undefined;
  private readonly counts: StoreSinkStats = { stored: 0, duplicates: 0, refused: 0, failures: 0 };
  private readonly unsubscribe: (() => void) | undefined;
  private nc: NatsConnection | undefined;
  private messages: ConsumerMessages | undefined;
  private consuming: Promise<void> | undefined;
  private closed = false;

  constructor(private readonly o: StoreSinkOptions) {
    if (o.local !== false) this.unsubscribe = subscribeAudit((e) => void this.add(e, JSON.stringify(e)));
    if (o.nats) this.consuming = this.consumeLoop(o.nats);
  }

  stats(): StoreSinkStats {
    return { ...this.counts };
  }

  /**
   * Takes one event as received from the wire: `stored` once it is in the store (or already was),
   * `refused` when malformed, `failed` when the store could not write it.
   */
  async accept(data: Uint8Array | string): Promise<'stored' | 'refused' | 'failed'> {
    const parsed = parseAuditEvent(data);
    if (!parsed.ok) {
      if (this.counts.refused++ % 100 === 0) this.o.logger.warn({ reason: parsed.reason, refused: this.counts.refused }, 'malformed audit event refused');
      return 'refused';
    }
    return (await this.add(parsed.event, typeof data === 'string' ? data : Buffer.from(data).toString('utf8'))) ? 'stored' : 'failed';
  }

  /** Waits until everything accepted so far is written. */
  async flush(): Promise<void> {
    while (this.writing || this.pending.length > 0) await (this.writing ?? this.write());
  }

  async close(): Promise<void> {
    this.closed = true;
    this.unsubscribe?.();
    this.messages?.stop();
    await this.consuming;
    await this.flush();
    await this.nc?.drain().catch(() => undefined);
  }

  private add(event: AuditEvent, json: string): Promise<boolean> {
    return new Promise((done) => {
      this.pending.push({ item: { id: auditEventId(json), event }, done });
      if (!this.writing) {
        const run: Promise<void> = this.write().finally(() => { if (this.writing === run) this.writing = undefined; });
        this.writing = run;
      }
    });
  }

  private async write(): Promise<void> {
    while (this.pending.length > 0) {
      const batch = this.pending.splice(0, BATCH);
      try {
        const added = await this.o.store.addAuditEvents(batch.map((p) => p.item));
        this.counts.stored += added;
        this.counts.duplicates += batch.length - added;
        for (const p of batch) p.done(true);
      } catch (err) {
        this.counts.failures += batch.length;
        this.o.logger.error({ err: (err as Error).message, events: batch.length }, 'audit store write failed'); // store adapters throw Errors
        for (const p of batch) p.done(false);
      }
    }
  }

  private async consumeLoop(cfg: AuditNatsConfig & { url: string }): Promise<void> {
    let warned = false;
    while (!this.closed) {
      try {
        const nc = this.nc ?? (this.nc = await connectNats(cfg.url, 'portcullis-control-audit-store'));
        const jsm = await nc.jetstreamManager();
        await ensureStream(jsm, cfg);
        await jsm.consumers.info(cfg.stream, cfg.durable).catch(() => jsm.consumers.add(cfg.stream, {
          durable_name: cfg.durable, ack_policy: AckPolicy.Explicit, deliver_policy: DeliverPolicy.All, ack_wait: nanos(30_000),
        }));
        const consumer = await nc.jetstream().consumers.get(cfg.stream, cfg.durable);
        if (this.closed) return;
        const messages = await consumer.consume({ max_messages: BATCH });
        this.messages = messages;
        this.o.logger.info({ stream: cfg.stream, durable: cfg.durable }, 'audit store consuming NATS JetStream');
        warned = false;
        for await (const m of messages) this.handle(m);
      } catch (err) {
        if (!warned) this.o.logger.warn({ err: (err as Error).message }, 'audit store cannot consume NATS; retrying'); // nats rejects with Errors
        warned = true;
      }
      if (!this.closed) await new Promise((r) => setTimeout(r, RETRY_MS));
    }
  }

  private handle(m: JsMsg): void {
    void this.accept(m.data).then((r) => {
      if (r === 'stored') m.ack();
      else if (r === 'failed') m.nak(RETRY_MS); // valid but not written: try again later
      else m.term(); // malformed: never redelivered, never stored
    });
  }
}
