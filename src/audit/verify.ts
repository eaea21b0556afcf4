// Verifies an audit log directory: every entry's hash, the chain from entry 1 to the head across
// all segments, every checkpoint's signature and signer, and that each damaged segment tail is
// accounted for by a `gap` entry starting a later segment. Streams line by line: memory does not
// grow with the log (a million entries take about ten seconds on a two-core machine).
//
// What it can and cannot see: an edited, deleted, reordered, inserted or replaced entry breaks its
// hash or the chain; a chain rewritten from some point on (hashes recomputed) fails at the next
// signed checkpoint. Entries after the last checkpoint are not covered by any signature, so cutting
// them off leaves a shorter log that is still consistent: the result says how many entries are
// uncovered and whether the log ends with the checkpoint close() writes (`closed`). Pass
// `requireClosed` for the log of a stopped writer, and `expect` with a checkpoint published
// elsewhere (onCheckpoint) to catch truncation down to a witnessed point.
import { listSegments } from './segments.js';
import { GENESIS_HASH, linkProblem, parseEntry, segmentName, type ChainHead, type CheckpointBody, type Entry, type GapBody } from './format.js';
import { scanLines } from './lines.js';
import { join } from 'node:path';
import { CheckpointTrust, type TrustOptions } from './trust.js';

export interface VerifyOptions extends TrustOptions {
  /** A head known from elsewhere (a published checkpoint): the log must contain exactly this entry. */
  expect?: ChainHead;
  /** The writer has stopped: the log must end with its closing checkpoint. */
  requireClosed?: boolean;
}

export interface VerifyProblem {
  code: 'PCL_ERR_AUDIT_CORRUPT';
  file: string;
  /** 1-based line number (0 when the problem is a missing file). */
  line: number;
  offset: number;
  /** The seq the bad line carries, when it can be read. */
  seq?: number;
  reason: string;
}

export interface VerifyGap {
  file: string;
  offset: number;
  line: number;
  bytes: number;
  reason: string;
  /** An unfinished last line (crash mid-write): expected after a crash, not damage. */
  torn: boolean;
  /** A later segment starts with a gap entry naming exactly these bytes. */
  accounted: boolean;
}

export interface VerifyResult {
  /** No entry is bad, every checkpoint verifies, and the requirements of the options hold. */
  ok: boolean;
  /** Event entries that verified. */
  entries: number;
  segments: number;
  checkpoints: number;
  head?: ChainHead & { file: string; line: number };
  lastCheckpoint?: { seq: number; time: string; signer: string };
  /** Event entries after the last valid checkpoint: no signature covers them. */
  uncovered: number;
  /** The log ends with the checkpoint close() writes. */
  closed: boolean;
  gaps: VerifyGap[];
  firstBad?: VerifyProblem;
}

interface PendingGap { file: string; offset: number; line: number; bytes: number; reason: string; torn: boolean }

export async function verifyAuditLog(dir: string, o: VerifyOptions = {}): Promise<VerifyResult> {
  const trust = new CheckpointTrust(o);
  const r: VerifyResult = { ok: true, entries: 0, segments: 0, checkpoints: 0, uncovered: 0, closed: false, gaps: [] };
  const bad = (p: Omit<VerifyProblem, 'code'>): void => {
    r.ok = false;
    r.firstBad ??= { code: 'PCL_ERR_AUDIT_CORRUPT', ...p };
  };

  let numbers: number[];
  try {
    numbers = await listSegments(dir);
  } catch (err) {
    bad({ file: dir, line: 0, offset: 0, reason: `cannot read the directory: ${(err as Error).message}` }); // fs errors are Errors
    return r;
  }
  r.segments = numbers.length;
  if (numbers.length === 0) {
    bad({ file: dir, line: 0, offset: 0, reason: 'no audit segments (audit-000001.jsonl, …) in this directory' });
    return r;
  }

  let head: ChainHead = { seq: 0, hash: GENESIS_HASH };
  let lastFinal = false;
  let expectFound = false;
  /** Damaged segment tails, oldest first, that the next segment must open with gap entries for. */
  const pending: PendingGap[] = [];
  let prev: { name: string; size: number } | undefined;

  for (let i = 0; i < numbers.length; i++) {
    const name = segmentName(i + 1);
    if (numbers[i] !== i + 1) {
      bad({ file: join(dir, name), line: 0, offset: 0, reason: `segment ${name} is missing` });
      break;
    }
    const path = join(dir, name);
    /** True while reading the gap entries a segment may open with. */
    let leading = true;
    let stopped = false;
    let badHere: PendingGap | undefined;

    const summary = await scanLines(path, (raw, at) => {
      const parsed = raw === null ? { ok: false as const, reason: 'line too long' } : parseEntry(raw);
      let problem: string | undefined = parsed.ok ? undefined : parsed.reason;
      const e = parsed.ok ? parsed.entry : undefined;
      const wasLeading = leading;
      if (e) {
        if (leading && e.kind === 'gap') {
          problem = acceptGap(e, pending, prev, r.gaps);
        } else {
          if (leading && pending[0]) problem = `damaged tail at ${describe(pending[0])} is not accounted for by a gap entry`;
          else if (e.kind === 'gap') problem = 'gap entry in the middle of a segment';
          leading = false;
        }
        problem ??= linkProblem(e, head);
        if (!problem && e.kind === 'checkpoint') {
          const cp = e.body as CheckpointBody; // shape checked by parseEntry
          if (cp.seq !== e.seq - 1 || cp.hash !== e.prev) problem = 'checkpoint does not sign the entry just before it';
        }
      }
      if (problem !== undefined || !e) {
        const reason = problem ?? 'unreadable';
        const seq = e?.seq ?? (parsed.ok ? undefined : parsed.seq);
        bad({ file: path, line: at.line, offset: at.offset, ...(seq !== undefined ? { seq } : {}), reason });
        // A damaged tail before this segment and no gap entry for it: nothing to go on from.
        if (wasLeading && pending.length > 0) stopped = true;
        badHere = { file: name, offset: at.offset, line: at.line, bytes: 0, reason, torn: false };
        return false;
      }
      if (e.kind === 'checkpoint') {
        const cp = e.body as CheckpointBody; // shape checked by parseEntry
        const check = trust.check(cp);
        if (check.ok) {
          r.checkpoints++;
          r.lastCheckpoint = { seq: cp.seq, time: cp.time, signer: check.signer };
          r.uncovered = 0;
        } else {
          // The chain itself is intact, so verification goes on; the log is not ok.
          bad({ file: path, line: at.line, offset: at.offset, seq: e.seq, reason: check.reason });
        }
        lastFinal = cp.final === true && check.ok;
      } else {
        if (e.kind === 'event') {
          r.entries++;
          r.uncovered++;
        }
        lastFinal = false;
      }
      if (o.expect && e.seq === o.expect.seq) {
        if (e.hash === o.expect.hash) expectFound = true;
        else bad({ file: path, line: at.line, offset: at.offset, seq: e.seq, reason: `entry ${e.seq} is not the one witnessed (hash ${o.expect.hash.slice(0, 16)}…): the chain was rewritten` });
      }
      head = { seq: e.seq, hash: e.hash };
      r.head = { ...head, file: path, line: at.line };
      return true;
    });

    if (stopped) break;
    if (badHere) {
      pending.push({ ...badHere, bytes: summary.size - badHere.offset });
    } else if (summary.tail) {
      const t = summary.tail;
      pending.push({ file: name, offset: t.offset, line: t.line, bytes: t.bytes, reason: 'unfinished last line (crash mid-write)', torn: true });
    }
    // An empty segment passes pending gaps on to the next one.
    prev = { name, size: summary.size };
  }

  for (const g of pending) {
    // A torn last line in the last segment is what a crash leaves until the writer starts again.
    const inLast = g.file === segmentName(numbers.length);
    r.gaps.push({ ...g, accounted: false });
    if (!(g.torn && inLast)) bad({ file: join(dir, g.file), line: g.line, offset: g.offset, reason: `damaged tail (${g.reason}) not accounted for by a gap entry` });
  }
  r.closed = lastFinal && pending.length === 0;
  const where = r.head ? { file: r.head.file, line: r.head.line + 1, offset: 0 } : { file: join(dir, segmentName(1)), line: 1, offset: 0 };
  if (o.expect && !expectFound && (r.head?.seq ?? 0) < o.expect.seq) {
    bad({ ...where, reason: `log ends at seq ${r.head?.seq ?? 0}, before the witnessed entry ${o.expect.seq} (truncated)` });
  }
  if (o.requireClosed && !r.closed) {
    bad({ ...where, reason: `log ends at seq ${r.head?.seq ?? 0} without its closing checkpoint: ${r.uncovered} entries after the last checkpoint are not covered (truncated, or the writer crashed)` });
  }
  return r;
}

function describe(g: PendingGap): string {
  return `${g.file} byte ${g.offset} (line ${g.line}, ${g.bytes} bytes)`;
}

/** A gap entry opening a segment must name the oldest pending damaged tail exactly. */
function acceptGap(e: Entry, pending: PendingGap[], prev: { name: string; size: number } | undefined, gaps: VerifyGap[]): string | undefined {
  const g = e.body as GapBody; // shape checked by parseEntry
  const p = pending[0];
  if (p) {
    if (g.file !== p.file || g.offset !== p.offset || g.bytes !== p.bytes) {
      return `gap entry names ${g.file} byte ${g.offset} (${g.bytes} bytes), but the damaged tail is at ${describe(p)}`;
    }
    pending.shift();
    gaps.push({ ...p, accounted: true });
    return undefined;
  }
  // After a write error where nothing reached the disk, the gap names the clean end of the previous segment.
  if (prev && g.file === prev.name && g.offset === prev.size && g.bytes === 0) {
    gaps.push({ file: g.file, offset: g.offset, line: g.line, bytes: 0, reason: g.reason, torn: false, accounted: true });
    return undefined;
  }
  return `gap entry names ${g.file} byte ${g.offset}, where nothing is damaged`;
}
