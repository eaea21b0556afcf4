// Shared wiring for long-running roles: logger, audit sink, readiness report to a parent
// process (the demo), and a clean stop on SIGINT/SIGTERM.
import { join } from 'node:path';
import { JsonlAuditSink } from '../audit/jsonl-sink.js';
import { createLogger, type Logger } from '../core/log.js';

export interface Role {
  logger: Logger;
  audit: JsonlAuditSink;
}

export function startRole(component: string, dataDir: string): Role {
  const logger = createLogger(component);
  const audit = new JsonlAuditSink(join(dataDir, 'audit', `${component.replace(/[^\w.-]/g, '_')}.jsonl`));
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
