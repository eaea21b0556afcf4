// First audit sink: every event on the audit channel appended as one JSON line. A later issue
// makes this log hash-chained and searchable; the event schema stays.
import { createWriteStream, mkdirSync, type WriteStream } from 'node:fs';
import { dirname } from 'node:path';
import { subscribeAudit, type AuditEvent } from '../core/events.js';

export class JsonlAuditSink {
  private readonly out: WriteStream;
  private readonly unsubscribe: () => void;

  constructor(readonly file: string) {
    mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
    this.out = createWriteStream(file, { flags: 'a', mode: 0o600 });
    this.unsubscribe = subscribeAudit((e) => this.write(e));
  }

  write(event: AuditEvent): void {
    this.out.write(JSON.stringify(event) + '\n');
  }

  /** Stops listening and flushes what was written. */
  close(): Promise<void> {
    this.unsubscribe();
    return new Promise((resolve) => this.out.end(() => resolve()));
  }
}
