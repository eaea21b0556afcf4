// The data plane's view of the control plane: JWKS, issuer and trust bundle, versioned, refreshed
// in the background and kept on disk, so requests never wait on the control plane and a restart
// during a control-plane outage still serves.
import { EventEmitter } from 'node:events';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { systemClock, type Clock, type Timer } from '../core/clock.js';
import { silentLogger, type Logger } from '../core/log.js';
import type { ControlClient, SnapshotDocument } from './control-client.js';
import type { WorkloadIdentity } from './workload-identity.js';

export interface JsonWebKeySet {
  keys: Array<Record<string, unknown>>;
}

export interface SnapshotSourceOptions {
  control: ControlClient;
  identity: WorkloadIdentity;
  stateDir: string;
  /** Refresh period in milliseconds (default 30 s). */
  refreshMs?: number;
  clock?: Clock;
  logger?: Logger;
}

export class SnapshotSource extends EventEmitter<{ updated: [SnapshotDocument] }> {
  private doc: SnapshotDocument | undefined;
  private timer: Timer | undefined;
  private readonly clock: Clock;
  private readonly logger: Logger;

  constructor(private readonly o: SnapshotSourceOptions) {
    super();
    this.clock = o.clock ?? systemClock;
    this.logger = o.logger ?? silentLogger;
  }

  /** Loads the first snapshot: from the control plane, else from disk; throws when neither has one. */
  async init(): Promise<SnapshotDocument> {
    try {
      await this.refresh();
    } catch (err) {
      const saved = this.loadSaved();
      if (!saved) throw err;
      this.logger.warn({ err: (err as Error).message, version: saved.version }, 'control plane unreachable; serving on the snapshot saved on disk');
      this.doc = saved;
    }
    return this.current();
  }

  current(): SnapshotDocument {
    if (!this.doc) throw new Error('snapshot not initialised'); // init() runs before any listener starts
    return this.doc;
  }

  start(): void {
    const tick = (): void => {
      this.timer = this.clock.setTimer(this.o.refreshMs ?? 30_000, () => {
        this.refresh().catch((err: unknown) => this.logger.warn({ err: (err as Error).message }, 'snapshot refresh failed; keeping the last one'))
          .finally(tick);
      });
    };
    tick();
  }

  stop(): void {
    this.timer?.cancel();
  }

  async refresh(): Promise<void> {
    const c = this.o.identity.current();
    const doc = await this.o.control.snapshot({ keyPem: c.keyPem, chainPem: c.chainPem }, this.doc?.version);
    if (!doc || this.doc?.version === doc.version) return; // 304: unchanged
    this.doc = doc;
    this.save(doc);
    this.logger.info({ version: doc.version, keys: doc.jwks.keys.length }, 'snapshot updated');
    this.emit('updated', doc);
  }

  private file(): string {
    return join(this.o.stateDir, 'snapshot.json');
  }

  private loadSaved(): SnapshotDocument | undefined {
    if (!existsSync(this.file())) return undefined;
    try {
      return JSON.parse(readFileSync(this.file(), 'utf8')) as SnapshotDocument; // written by save()
    } catch {
      return undefined;
    }
  }

  private save(doc: SnapshotDocument): void {
    mkdirSync(this.o.stateDir, { recursive: true, mode: 0o700 });
    writeFileSync(this.file() + '.tmp', JSON.stringify(doc), { mode: 0o600 });
    renameSync(this.file() + '.tmp', this.file());
  }
}
