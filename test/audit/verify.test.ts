// audit verify catches every tampering and says where: edited, deleted, swapped, inserted and
// truncated entries, a chain rewritten with fresh hashes, missing segments, non-canonical lines.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, rmSync, truncateSync, statSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { AuditLog, type CheckpointRecord } from '../../src/audit/log.js';
import { canonicalJson } from '../../src/audit/canonical.js';
import { entryHash, entryLine, type EntryKind } from '../../src/audit/format.js';
import { verifyAuditLog, type VerifyResult } from '../../src/audit/verify.js';
import { decision, linesOf, parseLine, removeTempDirs, segments, tempDir, workloadFixture, writeLines, type LineObject, type WorkloadFixture } from './helpers.js';

let w: WorkloadFixture;
let base: string;
let cps: CheckpointRecord[];
const SEG = 'audit-000001.jsonl';

// 30 events, a checkpoint after every 10, the final one at close: 34 lines.
//   lines 1-10 events (seq 1-10), 11 checkpoint, 12-21 events, 22 checkpoint, 23-32 events, 33 checkpoint, 34 final.
before(async () => {
  w = await workloadFixture();
  base = tempDir();
  cps = [];
  const log = await AuditLog.open({ dir: base, signer: w.signer, checkpointEvery: 10, onCheckpoint: (c) => cps.push(c) });
  for (let i = 0; i < 30; i++) await log.append(decision(i));
  await log.close();
  assert.equal(linesOf(join(base, SEG)).length, 34);
});
after(removeTempDirs);

/** A copy of the base log with its lines changed by `edit`. */
function tampered(edit: (lines: string[]) => string[]): string {
  const dir = tempDir();
  cpSync(base, dir, { recursive: true });
  writeLines(join(dir, SEG), edit(linesOf(join(dir, SEG))));
  return dir;
}

const verify = (dir: string, extra: Parameters<typeof verifyAuditLog>[1] = {}): Promise<VerifyResult> => verifyAuditLog(dir, { caPem: w.caPem, ...extra });

function assertBad(v: VerifyResult, line: number, seq: number | undefined, reason: RegExp): void {
  assert.equal(v.ok, false);
  assert.ok(v.firstBad, 'firstBad is set');
  assert.equal(v.firstBad.code, 'PCL_ERR_AUDIT_CORRUPT');
  assert.equal(v.firstBad.line, line, `line: ${JSON.stringify(v.firstBad)}`);
  assert.equal(v.firstBad.seq, seq, `seq: ${JSON.stringify(v.firstBad)}`);
  assert.match(v.firstBad.reason, reason);
  assert.match(v.firstBad.file, /audit-000001\.jsonl$/);
}

/** What a forger with the format but no key does: recompute seq, prev and hash of every line from `from` (0-based) on. */
function rechain(lines: string[], from: number): string[] {
  const objs = lines.map(parseLine);
  for (let i = from; i < objs.length; i++) {
    const o = objs[i];
    const p = objs[i - 1];
    if (!o) continue;
    o.seq = p ? p.seq + 1 : 1;
    o.prev = p ? p.hash : '0'.repeat(64);
    if (o.checkpoint) {
      o.checkpoint.seq = o.seq - 1;
      o.checkpoint.hash = o.prev;
    }
    const kind: EntryKind = o.checkpoint ? 'checkpoint' : o.gap ? 'gap' : 'event';
    o.hash = entryHash(kind, canonicalJson(bodyOf(o)), o.seq, o.time, o.prev);
  }
  return objs.map((o) => {
    const kind: EntryKind = o.checkpoint ? 'checkpoint' : o.gap ? 'gap' : 'event';
    return entryLine(kind, canonicalJson(bodyOf(o)), o.seq, o.time, o.prev, o.hash).slice(0, -1);
  });
}
const bodyOf = (o: LineObject): unknown => o.checkpoint ?? o.gap ?? o.event;

test('the untouched log verifies', async () => {
  const v = await verify(base);
  assert.equal(v.ok, true, JSON.stringify(v.firstBad));
  assert.deepEqual({ entries: v.entries, checkpoints: v.checkpoints, uncovered: v.uncovered, closed: v.closed }, { entries: 30, checkpoints: 4, uncovered: 0, closed: true });
  assert.equal(v.lastCheckpoint?.seq, 33);
});

test('edit: an event changed in place fails its hash', async () => {
  const v = await verify(tampered((l) => l.map((x, i) => (i === 4 ? x.replace('"decision":"allow"', '"decision":"deny"').replace('"status":200', '"status":403') : x))));
  assertBad(v, 5, 5, /does not match its hash/);
  assert.equal(v.entries, 4);
});

test('edit with its own hash recomputed breaks the link of the next entry', async () => {
  const v = await verify(tampered((l) => {
    const o = parseLine(l[4] ?? '');
    const event = { ...o.event, why: 'nothing to see' };
    const hash = entryHash('event', canonicalJson(event), o.seq, o.time, o.prev);
    l[4] = entryLine('event', canonicalJson(event), o.seq, o.time, o.prev, hash).slice(0, -1);
    return l;
  }));
  assertBad(v, 6, 6, /does not link to entry 5/);
});

test('delete: a missing entry is named', async () => {
  const v = await verify(tampered((l) => l.filter((_, i) => i !== 4)));
  assertBad(v, 5, 6, /entry 5 is missing/);
});

test('swap: two entries exchanged', async () => {
  const v = await verify(tampered((l) => {
    [l[4], l[5]] = [l[5] ?? '', l[4] ?? ''];
    return l;
  }));
  assertBad(v, 5, 6, /entry 5 is missing \(deleted or reordered\)/);
});

test('insert: a replayed entry', async () => {
  const v = await verify(tampered((l) => [...l.slice(0, 5), l[4] ?? '', ...l.slice(5)]));
  assertBad(v, 6, 5, /repeated or out of order/);
});

test('insert with the whole chain recomputed after it: the next signed checkpoint refuses it', async () => {
  const v = await verify(tampered((l) => {
    const forged = parseLine(l[4] ?? '');
    forged.event = { ...forged.event, requestId: 'forged', decision: 'allow' };
    return rechain([...l.slice(0, 5), JSON.stringify(forged), ...l.slice(5)], 5);
  }));
  // Lines 1-11 verify; the first checkpoint now sits at line 12 and signs another hash.
  assertBad(v, 12, 12, /signature .* does not verify/);
});

test('delete with the chain recomputed: refused at the next checkpoint', async () => {
  const v = await verify(tampered((l) => rechain(l.filter((_, i) => i !== 2), 2)));
  assertBad(v, 10, 10, /does not verify/);
});

test('a checkpoint signature replaced (chain recomputed) does not verify', async () => {
  const v = await verify(tampered((l) => {
    const o = parseLine(l[10] ?? '');
    const sig = String(o.checkpoint?.signature);
    o.checkpoint = { ...o.checkpoint, signature: (sig.startsWith('A') ? 'B' : 'A') + sig.slice(1) };
    l[10] = JSON.stringify(o);
    return rechain(l, 10);
  }));
  assertBad(v, 11, 11, /does not verify/);
});

test('a line re-spelt (whitespace) with the same content is refused', async () => {
  const v = await verify(tampered((l) => l.map((x, i) => (i === 2 ? x.replace('"seq":3,', '"seq": 3,') : x))));
  assertBad(v, 3, 3, /canonical form/);
});

test('truncate after the last checkpoint: consistent, but says what is uncovered; requireClosed and a witness catch it', async () => {
  const dir = tampered((l) => l.slice(0, 30));
  const v = await verify(dir);
  assert.equal(v.ok, true);
  assert.equal(v.closed, false);
  assert.equal(v.uncovered, 8, 'events 23-30 follow the checkpoint at line 22');
  assert.equal(v.lastCheckpoint?.seq, 21);
  assert.equal(v.head?.seq, 30);

  const closed = await verify(dir, { requireClosed: true });
  assert.equal(closed.ok, false);
  assert.match(closed.firstBad?.reason ?? '', /without its closing checkpoint: 8 entries/);

  // The last checkpoint published to a witness (onCheckpoint) is gone from the log.
  const witnessed = cps.at(-1);
  assert.ok(witnessed);
  const w2 = await verify(dir, { expect: { seq: witnessed.seq, hash: witnessed.hash } });
  assert.equal(w2.ok, false);
  assert.match(w2.firstBad?.reason ?? '', /ends at seq 30, before the witnessed entry 33 \(truncated\)/);
  // The untouched log contains the witnessed entry.
  assert.equal((await verify(base, { expect: { seq: witnessed.seq, hash: witnessed.hash } })).ok, true);
});

test('truncate in the middle of a line: a torn tail, reported with its offset', async () => {
  const dir = tampered((l) => l);
  const file = join(dir, SEG);
  const size = statSync(file).size;
  truncateSync(file, size - 40);
  const v = await verify(dir);
  assert.equal(v.ok, true, 'a torn last line is what a crash leaves');
  assert.equal(v.closed, false);
  assert.equal(v.gaps.length, 1);
  assert.equal(v.gaps[0]?.torn, true);
  assert.equal(v.gaps[0]?.line, 34);
  const lastLine = linesOf(join(base, SEG))[33] ?? '';
  assert.equal(v.gaps[0]?.bytes, Buffer.byteLength(lastLine) + 1 - 40);
  assert.equal((await verify(dir, { requireClosed: true })).ok, false);
});

test('missing segments: a deleted tail segment leaves entries uncovered; a deleted middle one is named', async () => {
  const dir = tempDir();
  const log = await AuditLog.open({ dir, signer: w.signer, segmentBytes: 8 * 1024, checkpointEvery: 7 });
  for (let i = 0; i < 60; i++) await log.append(decision(i));
  await log.close();
  const files = segments(dir);
  assert.ok(files.length >= 4);
  assert.equal((await verify(dir)).ok, true);

  const noTail = tempDir();
  cpSync(dir, noTail, { recursive: true });
  rmSync(join(noTail, files.at(-1) ?? ''));
  const t = await verify(noTail);
  assert.equal(t.closed, false, 'the closing checkpoint went with the segment');
  assert.equal((await verify(noTail, { requireClosed: true })).ok, false);

  const noMiddle = tempDir();
  cpSync(dir, noMiddle, { recursive: true });
  rmSync(join(noMiddle, 'audit-000002.jsonl'));
  const m = await verify(noMiddle);
  assert.equal(m.ok, false);
  assert.match(m.firstBad?.reason ?? '', /segment audit-000002\.jsonl is missing/);
});

test('an overlong line is refused without being buffered whole', async () => {
  const v = await verify(tampered((l) => [...l.slice(0, 7), 'x'.repeat(300 * 1024), ...l.slice(7)]));
  assertBad(v, 8, undefined, /line too long/);
  const offset = linesOf(join(base, SEG)).slice(0, 7).reduce((n, x) => n + Buffer.byteLength(x) + 1, 0);
  assert.equal(v.firstBad?.offset, offset);
});

test('no log at all is not ok', async () => {
  const empty = tempDir();
  assert.equal((await verifyAuditLog(empty)).ok, false);
  assert.equal((await verifyAuditLog(join(empty, 'absent'))).ok, false);
  mkdirSync(join(empty, 'x'));
  assert.match((await verifyAuditLog(join(empty, 'x'))).firstBad?.reason ?? '', /no audit segments/);
});
