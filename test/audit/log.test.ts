// The writer: round trip, chain across segments, checkpoints by count and by (fake) time, group
// commit, refusal of malformed events, fail-closed health after write errors, the directory lock.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { FakeClock } from '../../src/core/clock.js';
import type { AuditEvent } from '../../src/core/events.js';
import { AuditLog, type OpenSegment, type SegmentFile } from '../../src/audit/log.js';
import { GENESIS_HASH } from '../../src/audit/format.js';
import { verifyAuditLog } from '../../src/audit/verify.js';
import type { CheckpointSigner } from '../../src/audit/signers.js';
import { codeOf, decision, linesOf, parseLine, removeTempDirs, segments, tempDir, workloadFixture } from './helpers.js';

after(removeTempDirs);

test('append and verify: consecutive seqs, linked hashes, a final checkpoint at close', async () => {
  const dir = tempDir();
  const w = await workloadFixture();
  const log = await AuditLog.open({ dir, signer: w.signer });
  const results = await Promise.all(Array.from({ length: 50 }, (_, i) => log.append(decision(i))));
  assert.deepEqual(results.map((r) => r.seq).sort((a, b) => a - b), Array.from({ length: 50 }, (_, i) => i + 1));
  assert.equal(log.stats().appended, 50);
  await log.close();

  const lines = linesOf(join(dir, 'audit-000001.jsonl')).map(parseLine);
  assert.equal(lines.length, 51);
  assert.equal(lines[0]?.prev, GENESIS_HASH);
  lines.forEach((l, i) => {
    assert.equal(l.seq, i + 1);
    if (i > 0) assert.equal(l.prev, lines[i - 1]?.hash);
  });
  // Appends resolve with the seq and hash their line carries, in arrival order.
  assert.deepEqual(results.map((r) => r.seq), lines.slice(0, 50).map((l) => l.seq));
  assert.equal(results[7]?.hash, lines[7]?.hash);
  assert.deepEqual(lines[7]?.event, JSON.parse(JSON.stringify(decision(7))));
  const last = lines.at(-1);
  assert.equal(last?.checkpoint?.final, true);
  assert.equal(last?.checkpoint?.seq, 50);

  const v = await verifyAuditLog(dir, { caPem: w.caPem });
  assert.equal(v.ok, true, JSON.stringify(v.firstBad));
  assert.equal(v.entries, 50);
  assert.equal(v.segments, 1);
  assert.equal(v.closed, true);
  assert.equal(v.uncovered, 0);
  assert.deepEqual(v.lastCheckpoint && { seq: v.lastCheckpoint.seq, signer: v.lastCheckpoint.signer }, { seq: 50, signer: w.spiffeId });
});

test('reopening continues the chain in the same segment', async () => {
  const dir = tempDir();
  const w = await workloadFixture();
  for (let round = 0; round < 3; round++) {
    const log = await AuditLog.open({ dir, signer: w.signer });
    assert.equal(log.openReport, undefined);
    for (let i = 0; i < 5; i++) await log.append(decision(i));
    await log.close();
  }
  assert.deepEqual(segments(dir), ['audit-000001.jsonl']);
  const v = await verifyAuditLog(dir, { caPem: w.caPem });
  assert.equal(v.ok, true, JSON.stringify(v.firstBad));
  assert.equal(v.entries, 15);
  assert.equal(v.checkpoints, 3);
  assert.equal(v.head?.seq, 18);
});

test('segments rotate by size and the chain runs on from one into the next', async () => {
  const dir = tempDir();
  const log = await AuditLog.open({ dir, segmentBytes: 4096 });
  for (let i = 0; i < 60; i++) await log.append(decision(i));
  await log.close();
  const files = segments(dir);
  assert.ok(files.length >= 5, `expected several segments, got ${files.length}`);
  for (let i = 1; i < files.length; i++) {
    const before = linesOf(join(dir, files[i - 1] ?? '')).map(parseLine).at(-1);
    const first = parseLine(linesOf(join(dir, files[i] ?? ''))[0] ?? '');
    assert.equal(first.prev, before?.hash, `${files[i]} starts from the last hash of ${files[i - 1]}`);
    assert.equal(first.seq, (before?.seq ?? 0) + 1);
  }
  const v = await verifyAuditLog(dir);
  assert.equal(v.ok, true, JSON.stringify(v.firstBad));
  assert.equal(v.entries, 60);
  assert.equal(v.segments, files.length);
});

test('checkpoints every N entries and every interval of the (fake) clock, only when something is new', async () => {
  const dir = tempDir();
  const clock = new FakeClock(Date.parse('2025-03-01T00:00:00Z'));
  const w = await workloadFixture({ clock });
  const seen: number[] = [];
  const log = await AuditLog.open({ dir, signer: w.signer, clock, checkpointEvery: 10, checkpointIntervalMs: 10_000, onCheckpoint: (c) => seen.push(c.seq) });
  for (let i = 0; i < 25; i++) await log.append(decision(i));
  await log.flush();
  assert.equal(log.stats().checkpoints, 2);
  await clock.advance(10_000);
  await log.flush();
  assert.equal(log.stats().checkpoints, 3, 'the interval covers the 5 entries after the last one');
  await clock.advance(30_000);
  await log.flush();
  assert.equal(log.stats().checkpoints, 3, 'nothing new: no checkpoint');
  await log.close();
  // 10 events + cp (11), 10 events + cp (22), 5 events + timed cp (28); close adds the final one (29).
  assert.deepEqual(seen, [10, 21, 27, 28]);
  const cps = linesOf(join(dir, 'audit-000001.jsonl')).map(parseLine).filter((l) => l.checkpoint);
  assert.equal(cps[2]?.time, '2025-03-01T00:00:10.000Z');
  const v = await verifyAuditLog(dir, { caPem: w.caPem });
  assert.equal(v.ok, true, JSON.stringify(v.firstBad));
  assert.equal(v.checkpoints, 4);
});

test('group commit: concurrent appends share writes', async () => {
  const dir = tempDir();
  const log = await AuditLog.open({ dir });
  await Promise.all(Array.from({ length: 500 }, (_, i) => log.append(decision(i))));
  const { batches, appended } = log.stats();
  assert.equal(appended, 500);
  assert.ok(batches <= 5, `500 concurrent appends took ${batches} writes`);
  await log.close();
});

test('record(): no promise per event; the events are durable after flush, a refusal reaches onFailure', async () => {
  const dir = tempDir();
  const log = await AuditLog.open({ dir });
  const failures: string[] = [];
  for (let i = 0; i < 20; i++) log.record(decision(i), (err) => failures.push((err as { code?: string }).code ?? err.message));
  log.record({ type: 'decision', status: Number.NaN } as unknown as AuditEvent, (err) => failures.push((err as { code?: string }).code ?? err.message)); // malformed on purpose
  await log.flush();
  assert.deepEqual(failures, ['PCL_ERR_AUDIT_EVENT_INVALID']);
  assert.equal(log.stats().appended, 20);
  assert.equal(linesOf(join(dir, 'audit-000001.jsonl')).length, 20);
  await log.close();
  log.record(decision(99), (err) => failures.push((err as { code?: string }).code ?? err.message));
  assert.deepEqual(failures, ['PCL_ERR_AUDIT_EVENT_INVALID', 'PCL_ERR_AUDIT_UNAVAILABLE'], 'a closed log refuses at once');
});

test('malformed events are refused with a code, counted and never stored', async () => {
  const dir = tempDir();
  const log = await AuditLog.open({ dir });
  const cyclic: Record<string, unknown> = { type: 'decision' };
  cyclic.self = cyclic;
  const bad: unknown[] = [
    null, 'decision', 42, [], [{ type: 'decision' }],
    { component: 'gateway' }, { type: '' }, { type: 7 },
    { type: 'decision', why: 'x'.repeat(70 * 1024) },
    { type: 'decision', status: Number.NaN },
    { type: 'decision', when: new Date() },
    { type: 'decision', n: 10n },
    cyclic,
  ];
  for (const e of bad) {
    assert.equal(await codeOf(log.append(e as AuditEvent)), 'PCL_ERR_AUDIT_EVENT_INVALID'); // deliberately malformed
  }
  await log.append(decision(1));
  assert.equal(log.stats().refused, bad.length);
  assert.equal(log.stats().appended, 1);
  await log.close();
  assert.equal(linesOf(join(dir, 'audit-000001.jsonl')).length, 1);
  // An event at the size limit is stored; undefined members are left out like JSON does.
  const log2 = await AuditLog.open({ dir });
  await log2.append(decision(2, { why: 'y'.repeat(60 * 1024), code: undefined }));
  await log2.close();
  assert.equal(parseLine(linesOf(join(dir, 'audit-000001.jsonl'))[1] ?? '').event?.code, undefined);
});

/** Segment files whose writes fail on demand, after writing `partial` bytes of the data. */
function faultyFiles(): { open: OpenSegment; failNext: (n: number, partial?: number) => void } {
  let failures = 0;
  let partial = 0;
  return {
    failNext(n, p = 0) { failures = n; partial = p; },
    open: async (path, create) => {
      const { open } = await import('node:fs/promises');
      const fh = await open(path, create ? 'ax' : 'a', 0o600);
      const file: SegmentFile = {
        async append(data) {
          if (failures > 0) {
            failures--;
            if (partial > 0) await fh.write(data.subarray(0, Math.min(partial, data.length)));
            throw Object.assign(new Error('ENOSPC: no space left on device (injected)'), { code: 'ENOSPC' });
          }
          await fh.write(data);
        },
        datasync: () => fh.datasync(),
        close: () => fh.close(),
      };
      return file;
    },
  };
}

test('a failed write rejects its appends and makes healthy() false until a write succeeds; a torn write becomes a gap', async () => {
  const dir = tempDir();
  const files = faultyFiles();
  const log = await AuditLog.open({ dir, openSegment: files.open });
  for (let i = 0; i < 5; i++) await log.append(decision(i));
  assert.equal(log.healthy(), true);

  files.failNext(1, 50);
  const failed = await Promise.allSettled([log.append(decision(5)), log.append(decision(6))]);
  for (const f of failed) {
    assert.equal(f.status, 'rejected');
    assert.equal((f as PromiseRejectedResult).reason.code, 'PCL_ERR_AUDIT_UNAVAILABLE'); // settled as rejected just above
  }
  assert.equal(log.healthy(), false);
  assert.equal(log.stats().writeErrors, 1);

  // The next append repairs first: new segment, a gap entry naming the torn bytes, then the event.
  const r = await log.append(decision(7));
  assert.equal(log.healthy(), true);
  assert.equal(r.seq, 7, 'seq 6 (gap) follows the last durable entry 5');
  assert.deepEqual(segments(dir), ['audit-000001.jsonl', 'audit-000002.jsonl']);
  const gap = parseLine(linesOf(join(dir, 'audit-000002.jsonl'))[0] ?? '').gap;
  assert.equal(gap?.file, 'audit-000001.jsonl');
  assert.equal(gap?.bytes, 50);

  // A write error where nothing reached the disk: the gap names the clean end of the segment.
  files.failNext(1);
  await assert.rejects(log.append(decision(8)));
  await log.append(decision(9));
  await log.close();
  const v = await verifyAuditLog(dir);
  assert.equal(v.ok, true, JSON.stringify(v.firstBad));
  assert.equal(v.entries, 7);
  assert.deepEqual(v.gaps.map((g) => ({ file: g.file, bytes: g.bytes, torn: g.torn, accounted: g.accounted })), [
    { file: 'audit-000001.jsonl', bytes: 50, torn: true, accounted: true },
    { file: 'audit-000002.jsonl', bytes: 0, torn: false, accounted: true },
  ]);
});

test('without traffic, the log repairs itself within a second of a write error', async () => {
  const dir = tempDir();
  const files = faultyFiles();
  const log = await AuditLog.open({ dir, openSegment: files.open });
  await log.append(decision(0));
  files.failNext(2);
  await assert.rejects(log.append(decision(1)));
  assert.equal(log.healthy(), false);
  // The first retry fails too (second injected failure); the next one, a second later, succeeds.
  const deadline = Date.now() + 5000;
  while (!log.healthy() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  assert.equal(log.healthy(), true);
  await log.close();
  assert.equal((await verifyAuditLog(dir)).ok, true);
});

test('a failing signer leaves entries uncovered but never stops appends', async () => {
  const dir = tempDir();
  const broken: CheckpointSigner = {
    describe: () => ({ kind: 'kms', id: 'kms:audit', keyring: 'audit' }),
    sign: () => Promise.reject(new Error('KMS sealed')),
  };
  const log = await AuditLog.open({ dir, signer: broken, checkpointEvery: 3 });
  for (let i = 0; i < 7; i++) await log.append(decision(i));
  await log.close();
  assert.equal(log.stats().appended, 7);
  assert.ok(log.stats().checkpointFailures >= 2);
  const v = await verifyAuditLog(dir);
  assert.equal(v.ok, true);
  assert.equal(v.uncovered, 7);
  assert.equal(v.closed, false);
});

test('one writer per directory: a second open is refused; a stale lock is taken over', async () => {
  const dir = tempDir();
  const log = await AuditLog.open({ dir });
  assert.equal(await codeOf(AuditLog.open({ dir })), 'PCL_ERR_AUDIT_UNAVAILABLE');
  await log.close();
  assert.equal(await codeOf(log.append(decision(0))), 'PCL_ERR_AUDIT_UNAVAILABLE');
  assert.equal(log.healthy(), false);
  // A lock left by a process that no longer exists (pid 2^22 + 1 is above Linux's pid_max default range).
  writeFileSync(join(dir, 'audit.lock'), `${2 ** 22 + 1}\n`);
  const again = await AuditLog.open({ dir });
  await again.close();
  // A lock held by a live process (our parent) is respected.
  writeFileSync(join(dir, 'audit.lock'), `${process.ppid}\n`);
  assert.equal(await codeOf(AuditLog.open({ dir })), 'PCL_ERR_AUDIT_UNAVAILABLE');
});
