// Connects the audit channel (core/events.ts) to a log: every published event is appended. The
// publisher never waits; a refused or failed append goes to `onError` (log it, count it), and
// fail-closed callers look at log.healthy() before serving.
import { subscribeAudit } from '../core/events.js';
import type { AuditLog } from './log.js';

export function recordAuditChannel(log: AuditLog, onError: (err: unknown) => void): () => void {
  return subscribeAudit((event) => {
    log.append(event).catch(onError);
  });
}
