// Shared wiring for long-running roles: logger, the audit log, readiness report to a parent
// process (the demo), and a clean stop on SIGINT/SIGTERM.
import { join } from 'node:path';
import { AuditLog, type CheckpointRecord } from '../audit/log.js';
import type { CheckpointSigner } from '../audit/signers.js';
import { NatsAuditPublisher } from '../audit/nats-sink.js';
import type { AuditNatsConfig } from '../core/config/types.js';
import { subscribeAudit, type AuditEvent } from '../core/events.js';
import { createLogger, type Logger } from '../core/log.js';

/** Most events kept while the log is not open yet (start-up: keys and identity come first). */
const EARLY_LIMIT = 10_000;

/**
 * Records every audit event of this process in its own hash-chained log, <dataDir>/audit/<name>/.
 * Events published before `open` (while the signer's keys are still being obtained) are held in
 * memory and appended first, so start-up decisions and key creation are recorded too.
 * With a NATS publisher, every event is also shipped to JetStream (never blocking, never failing).
 */
export class AuditRecorder {
  private log: AuditLog | undefined;
  private early: AuditEvent[] = [];
  private dropped = 0;
  private readonly unsubscribe: () => void;

  constructor(private readonly dir: string, private readonly logger: Logger, readonly nats?: NatsAuditPublisher) {
    this.unsubscribe = subscribeAudit((e) => {
      nats?.publish(e);
      if (this.log) this.append(this.log, e);
      else if (this.early.length < EARLY_LIMIT) this.early.push(e);
      else this.dropped++;
    });
  }

  /** `onCheckpoint` publishes each signed checkpoint off this machine (to the control plane, the witness). */
  async open(signer: CheckpointSigner | undefined, onCheckpoint?: (c: CheckpointRecord) => void): Promise<AuditLog> {
    const log = await AuditLog.open({ dir: this.dir, logger: this.logger, ...(signer ? { signer } : {}), ...(onCheckpoint ? { onCheckpoint } : {}) });
    if (log.openReport) this.logger.warn({ report: log.openReport }, 'audit log was damaged; continuing in a new segment');
    for (const e of this.early) this.append(log, e);
    if (this.dropped > 0) this.logger.error({ dropped: this.dropped }, 'audit events lost before the log opened');
    this.early = [];
    this.log = log;
    return log;
  }

  /** False while the log cannot write: a fail-closed data plane refuses requests then. */
  healthy(): boolean {
    return this.log?.healthy() ?? false;
  }

  /** Closes the log (a final signed checkpoint) and holds new events again until the next open. */
  async detach(): Promise<void> {
    const log = this.log;
    this.log = undefined;
    await log?.close();
  }

  async close(): Promise<void> {
    this.unsubscribe();
    await this.detach();
    await this.nats?.close();
    if (this.nats) this.logger.info({ ...this.nats.stats() }, 'NATS audit shipping stopped');
  }

  private append(log: AuditLog, e: AuditEvent): void {
    log.record(e, this.onAppendFailure);
  }

  private readonly onAppendFailure = (err: Error): void => this.logger.warn({ err: err.message }, 'audit append failed');
}

export interface Role {
  logger: Logger;
  audit: AuditRecorder;
}

/** With `nats` and the NATS_URL environment variable set, audit events are shipped to JetStream too. */
export function startRole(component: string, dataDir: string, nats?: AuditNatsConfig): Role {
  const logger = createLogger(component);
  const url = process.env.NATS_URL;
  const publisher = url && nats ? new NatsAuditPublisher({ ...nats, url, component, logger }) : undefined;
  const audit = new AuditRecorder(join(dataDir, 'audit', component.replace(/[^\w.-]/g, '_')), logger, publisher);
  return { logger, audit };
}

/** Tells a parent that spawned us with an IPC channel that we are serving. */
export function reportReady(info: Record<string, unknown>): void {
  process.send?.({ type: 'ready', ...info });
}

/** Runs `stop` once on SIGINT/SIGTERM, then exits; a second signal exits at once. */
export function stopOnSignal(logger: Logger, stop: () => Promise<void>): void {
  let stopping = false;
  const onSignal = (sig: NodeJS.Signals): void => {
    if (stopping) process.exit(130);
    stopping = true;
    logger.info({ signal: sig }, 'stopping');
    stop().then(
      () => process.exit(0),
      (err: unknown) => { logger.error({ err: (err as Error).message }, 'unclean stop'); process.exit(1); },
    );
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('disconnect', () => onSignal('SIGTERM')); // parent (the demo) went away
}
