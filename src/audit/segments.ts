// Finding segments and the valid prefix of one: what the writer needs at start and after a write
// error to know where the chain ends and whether the last segment has a damaged tail.
import { readdir } from 'node:fs/promises';
import { linkProblem, parseEntry, SEGMENT_FILE, type ChainHead, type CheckpointBody } from './format.js';
import { scanLines } from './lines.js';

/** Segment numbers present in `dir`, ascending. */
export async function listSegments(dir: string): Promise<number[]> {
  const names = await readdir(dir);
  const numbers: number[] = [];
  for (const name of names) {
    const m = SEGMENT_FILE.exec(name);
    if (m?.[1] !== undefined) numbers.push(Number(m[1]));
  }
  return numbers.sort((a, b) => a - b);
}

export interface TailProblem {
  /** Byte offset of the first bad line: where the valid prefix ends. */
  offset: number;
  line: number;
  /** Bytes from `offset` to the end of the file. */
  bytes: number;
  /** True for an unfinished last line (a crash mid-write); false for a complete line that is bad. */
  torn: boolean;
  reason: string;
}

export interface SegmentScan {
  size: number;
  /** Valid entries in the prefix. */
  entries: number;
  /** The last valid entry, if any. */
  last?: ChainHead & { final: boolean; kind: string };
  /** Entries after the last checkpoint of this segment (all of them when it has none). */
  sinceCheckpoint: number;
  problem?: TailProblem;
}

/**
 * Reads a segment up to its first bad line. The first entry is taken as it is (linking it to the
 * previous segment is the verifier's job); every later one must link to the one before.
 */
export async function scanSegment(path: string): Promise<SegmentScan> {
  let head: (ChainHead & { final: boolean; kind: string }) | undefined;
  let entries = 0;
  let sinceCheckpoint = 0;
  let bad: { reason: string } | undefined;
  const summary = await scanLines(path, (raw) => {
    if (raw === null) { bad = { reason: 'line too long' }; return false; }
    const parsed = parseEntry(raw);
    if (!parsed.ok) { bad = { reason: parsed.reason }; return false; }
    const e = parsed.entry;
    const problem = head ? linkProblem(e, head) : undefined;
    if (problem) { bad = { reason: problem }; return false; }
    // parseEntry checked the checkpoint's shape.
    const final = e.kind === 'checkpoint' && (e.body as CheckpointBody).final === true;
    head = { seq: e.seq, hash: e.hash, final, kind: e.kind };
    entries++;
    sinceCheckpoint = e.kind === 'checkpoint' ? 0 : sinceCheckpoint + 1;
    return true;
  });
  const result: SegmentScan = { size: summary.size, entries, sinceCheckpoint, ...(head ? { last: head } : {}) };
  if (bad && summary.stoppedAt) {
    const { offset, line } = summary.stoppedAt;
    result.problem = { offset, line, bytes: summary.size - offset, torn: false, reason: bad.reason };
  } else if (summary.tail) {
    const { offset, line, bytes } = summary.tail;
    result.problem = { offset, line, bytes, torn: true, reason: 'unfinished last line (crash mid-write)' };
  }
  return result;
}
