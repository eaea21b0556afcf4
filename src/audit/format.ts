// The audit log's on-disk format, shared by the writer and the verifier.
//
// A log is a directory of segments `audit-000001.jsonl`, `audit-000002.jsonl`, …; each line is one
// entry, a JSON object with exactly five members, always written in this order:
//
//   {"seq":N,"time":"<ISO 8601>","prev":"<64 hex>","hash":"<64 hex>","<kind>":<body>}
//
// where <kind> is one of
//   event       an AuditEvent;
//   checkpoint  { seq, hash, time, signer, signature, final? }: a signature over the head of the
//               chain, which is the entry just before (checkpoint.seq = seq - 1, checkpoint.hash = prev);
//   gap         { file, offset, line, bytes, reason }: the first entry of a segment started after a
//               damaged tail (crash mid-write, corrupt line, write error), naming the abandoned bytes.
//
// seq counts every entry from 1 with no holes, across segments. prev is the hash of entry seq - 1
// (64 zeros for seq 1), so the chain runs on from one segment into the next.
//
// hash = SHA-256 (lowercase hex) of the UTF-8 canonical JSON (canonical.ts: sorted keys, no
// whitespace) of the entry without its `hash` member, i.e. of {"<kind>":…,"prev":…,"seq":…,"time":…}.
// Each line must also be byte-for-byte the canonical spelling above (body canonical too), so no two
// files with the same entries differ, and a reader grepping the text sees exactly what was hashed.
//
// The checkpoint signature covers the bytes "portcullis-audit-checkpoint-v1\n" followed by the
// canonical JSON of the checkpoint body without its `signature` member.
import { hash as digest } from 'node:crypto';
import { CanonicalJsonError, canonicalJson } from './canonical.js';
import type { SignerInfo } from './signers.js';

export const GENESIS_HASH = '0'.repeat(64);
export const SEGMENT_FILE = /^audit-(\d{6,})\.jsonl$/;
export const LOCK_FILE = 'audit.lock';
/** Largest serialized event accepted. */
export const MAX_EVENT_BYTES = 64 * 1024;
/** Longest line a reader buffers: an event at the limit plus its envelope, or a checkpoint with a chain. */
export const MAX_LINE_BYTES = 256 * 1024;
const CHECKPOINT_DOMAIN = 'portcullis-audit-checkpoint-v1\n';
const HEX64 = /^[0-9a-f]{64}$/;
const ISO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?Z$/;

export type EntryKind = 'event' | 'checkpoint' | 'gap';
const KINDS: readonly EntryKind[] = ['event', 'checkpoint', 'gap'];

export interface ChainHead {
  seq: number;
  hash: string;
}

export interface CheckpointBody {
  /** The entry signed: the one just before this checkpoint. */
  seq: number;
  hash: string;
  time: string;
  signer: SignerInfo;
  signature: string;
  /** Written by close(): nothing followed when the writer stopped. */
  final?: true;
}

export interface GapBody {
  /** Segment holding the abandoned bytes. */
  file: string;
  /** Byte offset where the valid prefix of `file` ends. */
  offset: number;
  /** 1-based line number at `offset`. */
  line: number;
  /** Bytes abandoned from `offset` to the end of `file` when the writer moved on. */
  bytes: number;
  reason: string;
}

export interface Entry {
  seq: number;
  time: string;
  prev: string;
  hash: string;
  kind: EntryKind;
  /** The body as parsed (event object, CheckpointBody or GapBody). */
  body: unknown;
}

export function segmentName(n: number): string {
  return `audit-${String(n).padStart(6, '0')}.jsonl`;
}

/** SHA-256 of the canonical entry without `hash`; `bodyJson` must already be canonical. */
export function entryHash(kind: EntryKind, bodyJson: string, seq: number, time: string, prev: string): string {
  // Members in sorted order: every kind sorts before "prev".
  // One-shot crypto.hash: half the cost of createHash() for inputs this small.
  return digest('sha256', `{"${kind}":${bodyJson},"prev":"${prev}","seq":${seq},"time":${JSON.stringify(time)}}`, 'hex');
}

/** The line as written (with its newline); `bodyJson` must already be canonical. */
export function entryLine(kind: EntryKind, bodyJson: string, seq: number, time: string, prev: string, hash: string): string {
  return `{"seq":${seq},"time":${JSON.stringify(time)},"prev":"${prev}","hash":"${hash}","${kind}":${bodyJson}}\n`;
}

/** The bytes a checkpoint signature covers. */
export function checkpointStatement(body: Omit<CheckpointBody, 'signature'>): Buffer {
  const { seq, hash, time, signer, final } = body;
  return Buffer.from(CHECKPOINT_DOMAIN + canonicalJson({ seq, hash, time, signer, final }), 'utf8');
}

export type ParseResult = { ok: true; entry: Entry } | { ok: false; reason: string; seq?: number };

/** Parses one line (without its newline) and checks its shape, canonical spelling and hash. */
export function parseEntry(raw: Buffer): ParseResult {
  let obj: unknown;
  try {
    obj = JSON.parse(raw.toString('utf8'));
  } catch {
    return { ok: false, reason: 'not valid JSON' };
  }
  if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) return { ok: false, reason: 'not a JSON object' };
  // A parsed JSON object: reading its members by name is all that follows.
  const o = obj as Record<string, unknown>;
  const seq = Number.isSafeInteger(o.seq) && (o.seq as number) >= 1 ? (o.seq as number) : undefined; // checked integer just before
  const keys = Object.keys(o);
  const kind = KINDS.find((k) => k in o);
  if (seq === undefined) return { ok: false, reason: 'no valid seq' };
  if (keys.length !== 5 || kind === undefined || typeof o.time !== 'string' || typeof o.prev !== 'string' || typeof o.hash !== 'string') {
    return { ok: false, reason: 'not an audit entry (members seq, time, prev, hash and one of event, checkpoint, gap)', seq };
  }
  const { time, prev, hash } = o;
  if (!ISO_TIME.test(time)) return { ok: false, reason: 'time is not an ISO 8601 UTC time', seq };
  if (!HEX64.test(prev) || !HEX64.test(hash)) return { ok: false, reason: 'prev or hash is not 64 lowercase hex digits', seq };
  const body = o[kind];
  const shape = kind === 'event' ? eventShape(body) : kind === 'checkpoint' ? checkpointShape(body) : gapShape(body);
  if (shape) return { ok: false, reason: shape, seq };
  let bodyJson: string;
  try {
    bodyJson = canonicalJson(body);
  } catch (err) {
    if (err instanceof CanonicalJsonError) return { ok: false, reason: `body cannot be encoded: ${err.message}`, seq };
    throw err;
  }
  if (entryHash(kind, bodyJson, seq, time, prev) !== hash) return { ok: false, reason: 'content does not match its hash (edited)', seq };
  // Same hash yet other bytes: whitespace, member order, escapes or duplicate members were changed.
  if (!raw.equals(Buffer.from(entryLine(kind, bodyJson, seq, time, prev, hash).slice(0, -1), 'utf8'))) {
    return { ok: false, reason: 'line is not in canonical form (edited)', seq };
  }
  return { ok: true, entry: { seq, time, prev, hash, kind, body } };
}

/** Why `entry` cannot follow `head`, or undefined when it links. */
export function linkProblem(entry: Entry, head: ChainHead): string | undefined {
  const expected = head.seq + 1;
  if (entry.seq > expected) {
    const missing = entry.seq === expected + 1 ? `entry ${expected} is` : `entries ${expected}..${entry.seq - 1} are`;
    return `seq ${entry.seq} follows seq ${head.seq}: ${missing} missing (deleted or reordered)`;
  }
  if (entry.seq < expected) return `seq ${entry.seq} follows seq ${head.seq}: repeated or out of order (inserted or reordered)`;
  if (entry.prev !== head.hash) return `does not link to entry ${head.seq} (inserted, replaced or reordered)`;
  return undefined;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function eventShape(v: unknown): string | undefined {
  if (!isPlainObject(v) || typeof v.type !== 'string' || v.type === '') return 'event is not an object with a type';
  return undefined;
}

function checkpointShape(v: unknown): string | undefined {
  const bad = 'checkpoint is malformed';
  if (!isPlainObject(v)) return bad;
  const allowed = ['seq', 'hash', 'time', 'signer', 'signature', 'final'];
  if (Object.keys(v).some((k) => !allowed.includes(k))) return bad;
  if (!Number.isSafeInteger(v.seq) || typeof v.hash !== 'string' || typeof v.time !== 'string' || typeof v.signature !== 'string') return bad;
  if (v.final !== undefined && v.final !== true) return bad;
  const s = v.signer;
  if (!isPlainObject(s) || typeof s.id !== 'string') return bad;
  if (s.kind === 'workload') {
    if (typeof s.chainPem !== 'string' || Object.keys(s).length !== 3) return bad;
  } else if (s.kind === 'kms') {
    if (typeof s.keyring !== 'string' || Object.keys(s).length !== 3) return bad;
  } else {
    return bad;
  }
  return undefined;
}

function gapShape(v: unknown): string | undefined {
  const bad = 'gap is malformed';
  if (!isPlainObject(v) || Object.keys(v).length !== 5) return bad;
  if (typeof v.file !== 'string' || !SEGMENT_FILE.test(v.file) || typeof v.reason !== 'string') return bad;
  for (const n of [v.offset, v.line, v.bytes]) if (!Number.isSafeInteger(n) || (n as number) < 0) return bad; // n is a checked integer on the right
  return undefined;
}
