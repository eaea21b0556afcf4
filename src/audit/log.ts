// The tamper-evident audit log: append-only, hash-chained, segmented JSON lines (format.ts), with
// periodic signed checkpoints (CloudTrail digests, kept inside the chain itself).
//
// Durability: append() resolves only once its entry is on disk. Appends are group-committed: the
// first one into an idle log opens a batch, which is written with one write and one fdatasync at
// the first event-loop turn with no new append, after groupCommitMs at the latest, or at once when
// it is large. Appends that arrive while a batch is being written form the next batch. Sequence
// numbers and hashes are assigned when a batch is written, in arrival order.
//
// Failure: a failed write or fdatasync rejects every append of its batch (PCL_ERR_AUDIT_UNAVAILABLE)
// and makes healthy() false. The writer then re-reads the segment to find where the valid entries
// end and continues in a new segment whose first entry is a `gap` naming the abandoned bytes —
// retried every second, and before the next batch. healthy() is true again once that write works.
// Entries of a failed batch that did reach the disk intact stay in the chain: a rejected append
// may still be recorded (at least once), never the other way round.
//
// Start: the last segment is read; an unfinished last line (crash mid-write) or a bad entry is
// reported (openReport, and a warning in the log) with its file and byte offset, the valid prefix
// stays as it is, and appending continues in a new segment chained from the last valid entry.
//
// One writer per directory: `audit.lock` holds the writer's pid; a lock whose process is gone is
// taken over (a crash leaves it behind).
import { mkdir, open, readFile, unlink, type FileHandle } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { isoTime, systemClock, type Clock, type Timer } from '../core/clock.js';
import { PortcullisError } from '../core/errors.js';
import type { AuditEvent } from '../core/events.js';
import { silentLogger, type Logger } from '../core/log.js';
import { CanonicalJsonError, canonicalJson } from './canonical.js';
import {
  checkpointStatement, entryHash, entryLine, GENESIS_HASH, LOCK_FILE, MAX_EVENT_BYTES, segmentName,
  type ChainHead, type CheckpointBody, type GapBody,
} from './format.js';
import { listSegments, scanSegment } from './segments.js';
import type { CheckpointSigner } from './signers.js';

/** Defaults, documented where they are set. */
export const AUDIT_LOG_DEFAULTS = {
  /** A segment is closed and the next one started once it would grow past this. */
  segmentBytes: 64 * 1024 * 1024,
  /** A checkpoint after this many events … */
  checkpointEvery: 1000,
  /** … or this long after the last one, if anything was appended since (on the injected clock). */
  checkpointIntervalMs: 10_000,
  /** Longest wait (real time) for more appends before a batch is written. */
  groupCommitMs: 2,
} as const;

/** A batch is written without waiting once it holds this many events or bytes. */
const LARGE_BATCH_EVENTS = 4096;
const LARGE_BATCH_BYTES = 1024 * 1024;
/** Appends are refused beyond this many unwritten bytes, so a stuck disk cannot exhaust memory. */
const MAX_BACKLOG_BYTES = 64 * 1024 * 1024;
/** A signer that does not answer (a KMS far away) must not hold the log up for longer. */
const SIGN_TIMEOUT_MS = 5_000;
const REPAIR_RETRY_MS = 1_000;
const EVENT_TYPE = /^[A-Za-z][A-Za-z0-9_.:-]{0,63}$/;

/** How the log reaches its segment files; replaceable so tests can make writes fail. */
export interface SegmentFile {
  /** Writes all of `data` at the end of the file, or throws. */
  append(data: Buffer): Promise<void>;
  datasync(): Promise<void>;
  close(): Promise<void>;
}
export type OpenSegment = (path: string, create: boolean) => Promise<SegmentFile>;

export interface AuditLogOptions {
  /** The log's directory (created 0700); one writer per directory. */
  dir: string;
  /** Signs checkpoints. Without one there are none, and a warning says what that costs. */
  signer?: CheckpointSigner;
  /** Entry and checkpoint times, and the checkpoint interval. Default: the system clock. */
  clock?: Clock;
  segmentBytes?: number;
  checkpointEvery?: number;
  checkpointIntervalMs?: number;
  groupCommitMs?: number;
  logger?: Logger;
  /** Called after each checkpoint is durable: publish it elsewhere (a witness) to make tail truncation detectable. */
  onCheckpoint?: (c: CheckpointRecord) => void;
  /** For tests: how segment files are opened. */
  openSegment?: OpenSegment;
}

export interface AppendResult {
  seq: number;
  hash: string;
}

export interface CheckpointRecord {
  /** The entry the checkpoint signs, and its hash. */
  seq: number;
  hash: string;
  time: string;
  signer: string;
  signature: string;
  final: boolean;
}

/** What the start-up scan found wrong with the last segment. */
export interface OpenReport {
  code: 'PCL_ERR_AUDIT_CORRUPT';
  file: string;
  offset: number;
  line: number;
  bytes: number;
  torn: boolean;
  reason: string;
  /** The segment appending continues in, and the entry it chains from. */
  continuedIn: string;
  resumedAfter: ChainHead;
}

export interface AuditLogStats {
  /** Events durably appended by this writer. */
  appended: number;
  /** Malformed events refused (never stored). */
  refused: number;
  /** Appends rejected because the log could not record (write errors, backlog, closed). */
  failed: number;
  checkpoints: number;
  checkpointFailures: number;
  batches: number;
  writeErrors: number;
  /** The last durable entry. */
  head: ChainHead;
  segment: string;
  healthy: boolean;
}

const noop = (): void => {};

type Item =
  | { kind: 'event'; json: string; time: string; resolve: (r: AppendResult) => void; reject: (e: Error) => void }
  | { kind: 'checkpoint'; final: boolean }
  | { kind: 'barrier'; done: () => void };

interface Ack { resolve: (r: AppendResult) => void; result: AppendResult }

/** Directories open for writing in this process (the lock file holds our pid for all of them). */
const openHere = new Set<string>();

export class AuditLog {
  /** Set when the start-up scan found a damaged tail. */
  readonly openReport: OpenReport | undefined;

  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly signer: CheckpointSigner | undefined;
  private readonly onCheckpoint: AuditLogOptions['onCheckpoint'];
  private readonly segmentBytes: number;
  private readonly checkpointEvery: number;
  private readonly checkpointIntervalMs: number;
  private readonly groupCommitMs: number;
  private readonly openFile: OpenSegment;

  private file: SegmentFile | undefined;
  private segmentNo: number;
  private size: number;
  private head: ChainHead;
  private lastWasFinal: boolean;
  /** Entries written since the last checkpoint. */
  private sinceCheckpoint: number;
  /** Events queued since the last checkpoint was queued. */
  private sinceCheckpointRequest = 0;

  private pending: Item[] = [];
  private pendingEvents = 0;
  private pendingBytes = 0;
  private flushing: Promise<void> | undefined;
  private gate: { handle: NodeJS.Immediate; start: number; count: number } | undefined;
  private broken = false;
  private isHealthy = true;
  private repairTimer: NodeJS.Timeout | undefined;
  private checkpointTimer: Timer | undefined;
  private closing: Promise<void> | undefined;
  private readonly counters = { appended: 0, refused: 0, failed: 0, checkpoints: 0, checkpointFailures: 0, batches: 0, writeErrors: 0 };

  private constructor(
    readonly dir: string,
    settings: Settings,
    state: { segmentNo: number; size: number; head: ChainHead; lastWasFinal: boolean; sinceCheckpoint: number; file?: SegmentFile },
  ) {
    this.clock = settings.clock;
    this.logger = settings.logger;
    this.signer = settings.signer;
    this.onCheckpoint = settings.onCheckpoint;
    this.segmentBytes = settings.segmentBytes;
    this.checkpointEvery = settings.checkpointEvery;
    this.checkpointIntervalMs = settings.checkpointIntervalMs;
    this.groupCommitMs = settings.groupCommitMs;
    this.openFile = settings.openFile;
    this.segmentNo = state.segmentNo;
    this.size = state.size;
    this.head = state.head;
    this.lastWasFinal = state.lastWasFinal;
    this.sinceCheckpoint = state.sinceCheckpoint;
    this.file = state.file;
    this.openReport = undefined;
  }

  static async open(o: AuditLogOptions): Promise<AuditLog> {
    // Options are checked before anything touches the disk.
    const settings = settingsOf(o);
    const dir = resolve(o.dir);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await acquireLock(dir);
    try {
      const log = await AuditLog.start(dir, settings);
      if (!o.signer) {
        log.logger.warn({ dir }, 'audit log has no checkpoint signer: a rewritten chain or a truncated tail cannot be detected; configure a workload or KMS signer');
      }
      log.armCheckpointTimer();
      return log;
    } catch (err) {
      await releaseLock(dir);
      throw err;
    }
  }

  private static async start(dir: string, settings: Settings): Promise<AuditLog> {
    const numbers = await listSegments(dir);
    const newest = numbers.at(-1);
    if (newest === undefined) {
      const file = await createSegment(dir, 1, settings.openFile);
      return new AuditLog(dir, settings, { segmentNo: 1, size: 0, head: { seq: 0, hash: GENESIS_HASH }, lastWasFinal: false, sinceCheckpoint: 0, file });
    }
    const tail = await findTail(dir, numbers);
    const head = tail.last ? { seq: tail.last.seq, hash: tail.last.hash } : { seq: 0, hash: GENESIS_HASH };
    const log = new AuditLog(dir, settings, {
      segmentNo: newest, size: tail.newestSize, head, lastWasFinal: tail.last?.final ?? false, sinceCheckpoint: tail.sinceCheckpoint,
    });
    const worst = tail.damaged.at(-1);
    if (!worst) {
      log.file = await settings.openFile(join(dir, segmentName(newest)), false);
      return log;
    }
    const continuedIn = await log.continueAfterGaps(tail.damaged);
    const report: OpenReport = {
      code: 'PCL_ERR_AUDIT_CORRUPT', file: join(dir, worst.file), offset: worst.offset, line: worst.line, bytes: worst.bytes,
      torn: worst.torn, reason: worst.reason, continuedIn, resumedAfter: head,
    };
    // Set once here, before anyone sees the instance; readonly for everyone else.
    (log as { openReport: OpenReport | undefined }).openReport = report;
    log.logger.warn(report, `audit log damaged at ${report.file} byte ${worst.offset} (line ${worst.line}): ${worst.reason}; valid prefix kept, continuing in ${continuedIn}`);
    return log;
  }

  /**
   * Appends one event; resolves once it is durable. Malformed events are refused at once with
   * PCL_ERR_AUDIT_EVENT_INVALID (and counted); PCL_ERR_AUDIT_UNAVAILABLE when it cannot be recorded.
   */
  append(event: AuditEvent): Promise<AppendResult> {
    return new Promise<AppendResult>((resolve, reject) => this.enqueue(event, resolve, reject));
  }

  /**
   * append() for a recorder that does not wait: no promise per event (the data plane records one per
   * request). `onFailure` hears of a refusal or a failed write, as append() would reject.
   */
  record(event: AuditEvent, onFailure: (err: Error) => void): void {
    this.enqueue(event, noop, onFailure);
  }

  private enqueue(event: AuditEvent, resolve: (r: AppendResult) => void, reject: (e: Error) => void): void {
    if (this.closing) {
      this.counters.failed++;
      reject(new PortcullisError('PCL_ERR_AUDIT_UNAVAILABLE', 'audit log is closed'));
      return;
    }
    let json: string;
    try {
      json = serializeEvent(event);
    } catch (err) {
      this.counters.refused++;
      reject(err as Error);
      return;
    }
    if (this.pendingBytes + json.length > MAX_BACKLOG_BYTES) {
      this.counters.failed++;
      reject(new PortcullisError('PCL_ERR_AUDIT_UNAVAILABLE', 'audit log backlog is full (the disk is not keeping up)'));
      return;
    }
    this.pending.push({ kind: 'event', json, time: isoTime(this.clock.now()), resolve, reject });
    this.pendingEvents++;
    this.pendingBytes += json.length;
    if (this.signer && ++this.sinceCheckpointRequest >= this.checkpointEvery) this.queueCheckpoint(false);
    this.schedule();
  }

  /** Resolves when everything queued before the call has been written (or has failed). */
  flush(): Promise<void> {
    return new Promise((done) => {
      this.pending.push({ kind: 'barrier', done });
      this.schedule();
    });
  }

  /** Queues a checkpoint now (if a signer is set and anything is uncovered) and waits for it. */
  async checkpoint(): Promise<void> {
    this.queueCheckpoint(false);
    await this.flush();
  }

  /** False after a failed write or fdatasync, until a later write succeeds. Fail-closed callers refuse requests meanwhile. */
  healthy(): boolean {
    return this.isHealthy && !this.closing;
  }

  stats(): AuditLogStats {
    return { ...this.counters, head: { ...this.head }, segment: segmentName(this.segmentNo), healthy: this.healthy() };
  }

  /** Writes what is queued, then a final checkpoint (with a signer), and releases the directory. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.checkpointTimer?.cancel();
      if (this.signer) this.pending.push({ kind: 'checkpoint', final: true });
      await this.flush();
      await this.flushing;
      if (this.repairTimer) clearTimeout(this.repairTimer);
      try {
        await this.file?.close();
      } finally {
        this.file = undefined;
        await releaseLock(this.dir);
      }
    })();
    return this.closing;
  }

  // ---- batching ----

  private queueCheckpoint(final: boolean): void {
    if (!this.signer) return;
    this.sinceCheckpointRequest = 0;
    this.pending.push({ kind: 'checkpoint', final });
    this.schedule();
  }

  private armCheckpointTimer(): void {
    if (!this.signer) return;
    this.checkpointTimer = this.clock.setTimer(this.checkpointIntervalMs, () => {
      if (this.closing) return;
      if (this.sinceCheckpoint > 0 || this.pendingEvents > 0) this.queueCheckpoint(false);
      this.armCheckpointTimer();
    });
  }

  /** Starts a batch window, or writes at once when the batch is large. */
  private schedule(): void {
    if (this.flushing || this.pending.length === 0) return;
    const large = this.pendingEvents >= LARGE_BATCH_EVENTS || this.pendingBytes >= LARGE_BATCH_BYTES;
    if (large) {
      if (this.gate) clearImmediate(this.gate.handle);
      this.gate = undefined;
      this.startFlush();
      return;
    }
    if (this.gate) return;
    this.gate = { handle: setImmediate(() => this.gateTick()), start: performance.now(), count: this.pending.length };
  }

  /** One event-loop turn later: wait another turn while appends keep arriving, up to groupCommitMs. */
  private gateTick(): void {
    const gate = this.gate;
    if (!gate) return;
    if (this.pending.length > gate.count && performance.now() - gate.start < this.groupCommitMs) {
      gate.count = this.pending.length;
      gate.handle = setImmediate(() => this.gateTick());
      return;
    }
    this.gate = undefined;
    this.startFlush();
  }

  private startFlush(): void {
    if (this.flushing) return;
    const drain = async (): Promise<void> => {
      try {
        // Whatever arrived while a batch was written has waited long enough: write it next.
        while (this.pending.length > 0) await this.commit(this.takeBatch());
      } catch (err) {
        // commit() settles its own items; anything reaching here is a bug, logged rather than left unhandled.
        this.logger.error({ err, dir: this.dir }, 'audit log flush failed unexpectedly');
      }
    };
    // finally() runs after this assignment even if drain() finishes at once; anything queued
    // between the loop's last check and now found `flushing` set, so it is scheduled here.
    this.flushing = drain().finally(() => {
      this.flushing = undefined;
      this.schedule();
    });
  }

  private takeBatch(): Item[] {
    let n = 0;
    let events = 0;
    let bytes = 0;
    for (const it of this.pending) {
      if (it.kind === 'event') {
        if (events >= LARGE_BATCH_EVENTS) break;
        events++;
        bytes += it.json.length;
      }
      n++;
    }
    const items = this.pending.splice(0, n);
    this.pendingEvents -= events;
    this.pendingBytes -= bytes;
    return items;
  }

  /** Sequences, writes and syncs one batch, then settles its appends. */
  private async commit(items: Item[]): Promise<void> {
    const barriers: (() => void)[] = [];
    const acks: Ack[] = [];
    const events = items.filter((it) => it.kind === 'event');
    try {
      if (this.broken) await this.repair();
      const lines: string[] = [];
      const checkpoints: CheckpointRecord[] = [];
      let head = this.head;
      let since = this.sinceCheckpoint;
      let lastWasFinal = this.lastWasFinal;
      for (const it of items) {
        if (it.kind === 'barrier') {
          barriers.push(it.done);
        } else if (it.kind === 'event') {
          const seq = head.seq + 1;
          const hash = entryHash('event', it.json, seq, it.time, head.hash);
          lines.push(entryLine('event', it.json, seq, it.time, head.hash, hash));
          acks.push({ resolve: it.resolve, result: { seq, hash } });
          head = { seq, hash };
          since++;
          lastWasFinal = false;
        } else if (since > 0 || (it.final && !lastWasFinal)) {
          const cp = await this.signCheckpoint(head, it.final);
          if (cp) {
            const bodyJson = canonicalJson(cp);
            const seq = head.seq + 1;
            const hash = entryHash('checkpoint', bodyJson, seq, cp.time, head.hash);
            lines.push(entryLine('checkpoint', bodyJson, seq, cp.time, head.hash, hash));
            checkpoints.push({ seq: cp.seq, hash: cp.hash, time: cp.time, signer: cp.signer.id, signature: cp.signature, final: it.final });
            head = { seq, hash };
            since = 0;
            lastWasFinal = it.final;
          }
        }
      }
      if (lines.length > 0) {
        await this.writeLines(lines);
        this.counters.batches++;
      }
      this.head = head;
      this.sinceCheckpoint = since;
      this.lastWasFinal = lastWasFinal;
      this.isHealthy = true;
      this.counters.appended += acks.length;
      this.counters.checkpoints += checkpoints.length;
      for (const a of acks) a.resolve(a.result);
      for (const c of checkpoints) this.published(c);
    } catch (err) {
      this.fail(err, events);
    } finally {
      for (const done of barriers) done();
    }
  }

  private fail(err: unknown, events: { reject: (e: Error) => void }[]): void {
    this.counters.writeErrors++;
    this.counters.failed += events.length;
    this.isHealthy = false;
    this.broken = true;
    this.logger.error({ err, dir: this.dir, segment: segmentName(this.segmentNo), lost: events.length }, 'audit log write failed; appends refused until a write succeeds');
    const refusal = new PortcullisError('PCL_ERR_AUDIT_UNAVAILABLE', 'audit log cannot write', { cause: err });
    for (const e of events) e.reject(refusal);
    this.scheduleRepair();
  }

  private scheduleRepair(): void {
    if (this.repairTimer || this.closing) return;
    this.repairTimer = setTimeout(() => {
      this.repairTimer = undefined;
      // An empty batch: commit() repairs first, and reschedules on failure.
      if (this.broken && !this.closing) void this.flush();
    }, REPAIR_RETRY_MS);
    this.repairTimer.unref();
  }

  private async signCheckpoint(head: ChainHead, final: boolean): Promise<CheckpointBody | undefined> {
    const signer = this.signer;
    if (!signer) return undefined;
    try {
      const time = new Date(this.clock.now()).toISOString();
      const unsigned = { seq: head.seq, hash: head.hash, time, signer: signer.describe(), ...(final ? { final: true as const } : {}) };
      const signature = await withTimeout(signer.sign(checkpointStatement(unsigned)), SIGN_TIMEOUT_MS);
      if (typeof signature !== 'string' || signature === '') throw new Error('signer returned no signature');
      return { ...unsigned, signature };
    } catch (err) {
      // The entries stay uncovered until a later checkpoint succeeds; appending goes on.
      this.counters.checkpointFailures++;
      this.logger.warn({ err, dir: this.dir, seq: head.seq }, 'audit checkpoint could not be signed');
      return undefined;
    }
  }

  private published(c: CheckpointRecord): void {
    if (!this.onCheckpoint) return;
    try {
      this.onCheckpoint(c);
    } catch (err) {
      this.logger.warn({ err }, 'onCheckpoint callback failed');
    }
  }

  // ---- files ----

  /** Writes the lines, starting new segments at the size limit, then makes them durable. */
  private async writeLines(lines: string[]): Promise<void> {
    let chunk: string[] = [];
    let chunkBytes = 0;
    for (const line of lines) {
      const n = Buffer.byteLength(line, 'utf8');
      if (this.size + chunkBytes > 0 && this.size + chunkBytes + n > this.segmentBytes) {
        await this.writeChunk(chunk, chunkBytes);
        chunk = [];
        chunkBytes = 0;
        await this.rotate();
      }
      chunk.push(line);
      chunkBytes += n;
    }
    await this.writeChunk(chunk, chunkBytes);
  }

  private async writeChunk(chunk: string[], bytes: number): Promise<void> {
    if (chunk.length === 0) return;
    const file = this.file;
    if (!file) throw new Error('no segment open');
    await file.append(Buffer.from(chunk.join(''), 'utf8'));
    this.size += bytes;
    await file.datasync();
  }

  private async rotate(): Promise<void> {
    const old = this.file;
    this.file = undefined;
    await old?.close();
    this.file = await createSegment(this.dir, this.segmentNo + 1, this.openFile);
    this.segmentNo++;
    this.size = 0;
  }

  /** After a write error: find where the valid entries end and continue after gap entries. */
  private async repair(): Promise<void> {
    const old = this.file;
    this.file = undefined;
    try {
      await old?.close();
    } catch {
      // The handle is being replaced; a failing close changes nothing about what is on disk.
    }
    const numbers = (await listSegments(this.dir)).filter((n) => n <= this.segmentNo);
    const tail = await findTail(this.dir, numbers);
    this.head = tail.last ? { seq: tail.last.seq, hash: tail.last.hash } : { seq: 0, hash: GENESIS_HASH };
    const gaps = tail.damaged.map((d) => ({ ...d, reason: `write error; ${d.reason}` }));
    const current = segmentName(this.segmentNo);
    if (gaps.length === 0) gaps.push({ file: current, offset: tail.newestSize, line: 0, bytes: 0, torn: false, reason: 'write error; nothing abandoned' });
    await this.continueAfterGaps(gaps);
    this.broken = false;
    this.isHealthy = true;
    this.logger.warn({ dir: this.dir, gaps, continuedIn: segmentName(this.segmentNo) }, 'audit log recovered from a write error');
  }

  /** Starts the next segment with one gap entry per damaged tail, chained from this.head; returns its name. */
  private async continueAfterGaps(damaged: Damaged[]): Promise<string> {
    const no = this.segmentNo + 1;
    this.file = await createSegment(this.dir, no, this.openFile);
    // From here on the new segment is the current one, so a failed write below is repaired there.
    this.segmentNo = no;
    this.size = 0;
    const time = new Date(this.clock.now()).toISOString();
    const lines: string[] = [];
    let head = this.head;
    for (const d of damaged) {
      const gap: GapBody = { file: d.file, offset: d.offset, line: d.line, bytes: d.bytes, reason: d.reason };
      const bodyJson = canonicalJson(gap);
      const seq = head.seq + 1;
      const hash = entryHash('gap', bodyJson, seq, time, head.hash);
      lines.push(entryLine('gap', bodyJson, seq, time, head.hash, hash));
      head = { seq, hash };
    }
    await this.writeChunk(lines, Buffer.byteLength(lines.join(''), 'utf8'));
    this.head = head;
    this.sinceCheckpoint += lines.length;
    this.lastWasFinal = false;
    return segmentName(no);
  }
}

/** Canonical JSON of a well-formed event, or PCL_ERR_AUDIT_EVENT_INVALID. Never echoes the event. */
export function serializeEvent(event: unknown): string {
  const refuse = (why: string, cause?: unknown): PortcullisError =>
    new PortcullisError('PCL_ERR_AUDIT_EVENT_INVALID', `audit event refused: ${why}`, cause === undefined ? undefined : { cause });
  if (typeof event !== 'object' || event === null || Array.isArray(event)) throw refuse('not an object');
  // An object, per the check above; reading `type` from it is all this does.
  const type = (event as { type?: unknown }).type;
  if (typeof type !== 'string' || !EVENT_TYPE.test(type)) throw refuse('missing or malformed type');
  let json: string;
  try {
    json = canonicalJson(event);
  } catch (err) {
    if (err instanceof CanonicalJsonError) throw refuse(err.message, err);
    throw err;
  }
  // Length in UTF-16 units is at most the UTF-8 length; count bytes only when it could matter.
  if (json.length * 3 > MAX_EVENT_BYTES && Buffer.byteLength(json, 'utf8') > MAX_EVENT_BYTES) {
    throw refuse(`larger than ${MAX_EVENT_BYTES} bytes`);
  }
  return json;
}

async function openSegmentFile(path: string, create: boolean): Promise<SegmentFile> {
  const fh: FileHandle = await open(path, create ? 'ax' : 'a', 0o600);
  return {
    async append(data) {
      // A regular file takes all of it unless the disk is full; a short write is then an error.
      let off = 0;
      while (off < data.length) {
        const { bytesWritten } = await fh.write(data, off, data.length - off);
        if (bytesWritten === 0) throw new Error('short write');
        off += bytesWritten;
      }
    },
    datasync: () => fh.datasync(),
    close: () => fh.close(),
  };
}

/** Creates segment `no` (never overwriting) and makes its directory entry durable. */
async function createSegment(dir: string, no: number, openFile: OpenSegment): Promise<SegmentFile> {
  const file = await openFile(join(dir, segmentName(no)), true);
  try {
    const d = await open(dir, 'r');
    try {
      await d.sync();
    } finally {
      await d.close();
    }
  } catch (err) {
    await file.close().catch(() => undefined);
    throw err;
  }
  return file;
}

interface Damaged { file: string; offset: number; line: number; bytes: number; torn: boolean; reason: string }

interface Tail {
  /** The last valid entry, wherever it is. */
  last?: ChainHead & { final: boolean };
  /** Entries after the last checkpoint, at least 1 when that is unknown (so a checkpoint follows). */
  sinceCheckpoint: number;
  /** Damaged tails after `last`, oldest first: each needs a gap entry before anything is appended. */
  damaged: Damaged[];
  newestSize: number;
}

/** Walks back from the newest segment to the last valid entry, collecting damaged tails on the way. */
async function findTail(dir: string, numbers: number[]): Promise<Tail> {
  const damaged: Damaged[] = [];
  let newestSize = 0;
  for (let i = numbers.length - 1; i >= 0; i--) {
    const no = numbers[i];
    if (no === undefined) continue;
    const file = segmentName(no);
    const scan = await scanSegment(join(dir, file));
    if (i === numbers.length - 1) newestSize = scan.size;
    if (scan.problem) damaged.unshift({ file, ...scan.problem });
    if (scan.last) {
      const sinceCheckpoint = scan.last.final ? 0 : Math.max(1, scan.sinceCheckpoint);
      return { last: scan.last, sinceCheckpoint, damaged, newestSize };
    }
  }
  return { sinceCheckpoint: 0, damaged, newestSize };
}

async function acquireLock(dir: string): Promise<void> {
  const path = join(dir, LOCK_FILE);
  if (openHere.has(dir)) throw new PortcullisError('PCL_ERR_AUDIT_UNAVAILABLE', `audit log ${dir} is already open in this process`);
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const fh = await open(path, 'wx', 0o600);
      try {
        await fh.writeFile(`${process.pid}\n`);
      } finally {
        await fh.close();
      }
      openHere.add(dir);
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err; // fs errors are ErrnoExceptions
    }
    const pid = Number((await readFile(path, 'utf8').catch(() => '')).trim());
    // Our own pid here means a writer of an earlier run that had it; this process has none open.
    if (Number.isSafeInteger(pid) && pid > 0 && pid !== process.pid && isAlive(pid)) {
      throw new PortcullisError('PCL_ERR_AUDIT_UNAVAILABLE', `audit log ${dir} is locked by process ${pid}`);
    }
    await unlink(path).catch(() => undefined);
  }
  throw new PortcullisError('PCL_ERR_AUDIT_UNAVAILABLE', `audit log ${dir}: cannot take ${LOCK_FILE}`);
}

async function releaseLock(dir: string): Promise<void> {
  if (!openHere.delete(dir)) return;
  await unlink(join(dir, LOCK_FILE)).catch(() => undefined);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'; // exists, owned by someone else
  }
}

interface Settings {
  clock: Clock;
  logger: Logger;
  signer: CheckpointSigner | undefined;
  onCheckpoint: AuditLogOptions['onCheckpoint'];
  segmentBytes: number;
  checkpointEvery: number;
  checkpointIntervalMs: number;
  groupCommitMs: number;
  openFile: OpenSegment;
}

function settingsOf(o: AuditLogOptions): Settings {
  if (typeof o.dir !== 'string' || o.dir === '') throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', 'dir must be a directory path');
  const groupCommitMs = o.groupCommitMs ?? AUDIT_LOG_DEFAULTS.groupCommitMs;
  if (!(Number.isFinite(groupCommitMs) && groupCommitMs >= 0)) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', 'groupCommitMs must be a number ≥ 0');
  return {
    clock: o.clock ?? systemClock,
    logger: o.logger ?? silentLogger,
    signer: o.signer,
    onCheckpoint: o.onCheckpoint,
    segmentBytes: positive(o.segmentBytes, AUDIT_LOG_DEFAULTS.segmentBytes, 'segmentBytes'),
    checkpointEvery: positive(o.checkpointEvery, AUDIT_LOG_DEFAULTS.checkpointEvery, 'checkpointEvery'),
    checkpointIntervalMs: positive(o.checkpointIntervalMs, AUDIT_LOG_DEFAULTS.checkpointIntervalMs, 'checkpointIntervalMs'),
    groupCommitMs,
    openFile: o.openSegment ?? openSegmentFile,
  };
}

function positive(v: number | undefined, dflt: number, name: string): number {
  if (v === undefined) return dflt;
  if (!Number.isSafeInteger(v) || v <= 0) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `${name} must be a positive integer`);
  return v;
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
    timer.unref();
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}
