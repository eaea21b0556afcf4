// Bad input at start: a torn last line or a corrupt entry is reported with file and byte offset,
// the valid prefix stays readable, appending continues in a new segment chained from the last valid
// entry, and verify reports the gap exactly.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { AuditLog } from '../../src/audit/log.js';
import { verifyAuditLog } from '../../src/audit/verify.js';
import { decision, linesOf, parseLine, removeTempDirs, segments, tempDir, workloadFixture, type WorkloadFixture } from './helpers.js';

after(removeTempDirs);

async function logOf(n: number, w?: WorkloadFixture, segmentBytes?: number): Promise<string> {
  const dir = tempDir();
  const log = await AuditLog.open({ dir, ...(w ? { signer: w.signer } : {}), ...(segmentBytes ? { segmentBytes } : {}) });
  for (let i = 0; i < n; i++) await log.append(decision(i));
  await log.close();
  return dir;
}

test('a torn last line: reported, kept, and the chain goes on in a new segment', async () => {
  const w = await workloadFixture();
  const dir = await logOf(10, w);
  const first = join(dir, 'audit-000001.jsonl');
  const validBytes = statSync(first).size;
  const torn = '{"seq":12,"time":"2025-01-01T00:00:00.000Z","prev":"ab'; // a write cut short by a crash
  appendFileSync(first, torn);
  const warnings: unknown[] = [];
  const logger = { warn: (o: unknown) => warnings.push(o) } as unknown as import('../../src/core/log.js').Logger; // only warn is called here

  const log = await AuditLog.open({ dir, signer: w.signer, logger });
  assert.deepEqual(log.openReport && { offset: log.openReport.offset, line: log.openReport.line, torn: log.openReport.torn, continuedIn: log.openReport.continuedIn, resumedAfter: log.openReport.resumedAfter.seq },
    { offset: validBytes, line: 12, torn: true, continuedIn: 'audit-000002.jsonl', resumedAfter: 11 });
  assert.equal(log.openReport?.file, first);
  assert.equal(warnings.length, 1);
  const r = await log.append(decision(10));
  assert.equal(r.seq, 13, 'seq 12 is the gap entry');
  await log.close();

  // The damaged segment is left exactly as it was.
  assert.equal(statSync(first).size, validBytes + torn.length);
  const v = await verifyAuditLog(dir, { caPem: w.caPem });
  assert.equal(v.ok, true, JSON.stringify(v.firstBad));
  assert.equal(v.entries, 11);
  assert.equal(v.closed, true);
  assert.deepEqual(v.gaps, [{ file: 'audit-000001.jsonl', offset: validBytes, line: 12, bytes: torn.length, reason: 'unfinished last line (crash mid-write)', torn: true, accounted: true }]);
});

test('a corrupt entry in the last segment: new segment from the last valid entry; verify names the entry and the gap', async () => {
  const w = await workloadFixture();
  const dir = await logOf(20, w);
  const first = join(dir, 'audit-000001.jsonl');
  const lines = linesOf(first);
  const offset = lines.slice(0, 9).reduce((n, l) => n + Buffer.byteLength(l) + 1, 0);
  lines[9] = (lines[9] ?? '').replace('"req-9"', '"req-X"');
  writeFileSync(first, lines.map((l) => `${l}\n`).join(''));
  const size = statSync(first).size;

  const log = await AuditLog.open({ dir, signer: w.signer });
  const report = log.openReport;
  assert.ok(report);
  assert.deepEqual({ file: report.file, offset: report.offset, line: report.line, torn: report.torn, bytes: report.bytes }, { file: first, offset, line: 10, torn: false, bytes: size - offset });
  assert.match(report.reason, /does not match its hash/);
  assert.equal(report.resumedAfter.seq, 9);
  for (let i = 0; i < 3; i++) await log.append(decision(100 + i));
  await log.close();

  // The valid prefix still reads as it was.
  assert.deepEqual(linesOf(first).slice(0, 9), lines.slice(0, 9));
  const second = linesOf(join(dir, 'audit-000002.jsonl')).map(parseLine);
  assert.deepEqual(second[0]?.gap, { file: 'audit-000001.jsonl', offset, line: 10, bytes: size - offset, reason: report.reason });
  assert.equal(second[0]?.seq, 10);
  assert.equal(second[0]?.prev, parseLine(lines[8] ?? '').hash);

  const v = await verifyAuditLog(dir, { caPem: w.caPem });
  assert.equal(v.ok, false, 'an entry was damaged');
  assert.deepEqual({ line: v.firstBad?.line, seq: v.firstBad?.seq, offset: v.firstBad?.offset }, { line: 10, seq: 10, offset });
  assert.match(v.firstBad?.file ?? '', /audit-000001\.jsonl$/);
  assert.deepEqual(v.gaps.map((g) => ({ file: g.file, offset: g.offset, line: g.line, bytes: g.bytes, torn: g.torn, accounted: g.accounted })),
    [{ file: 'audit-000001.jsonl', offset, line: 10, bytes: size - offset, torn: false, accounted: true }]);
  // Verification went on past the gap: 9 events before it, 3 after; the new part is checkpointed.
  assert.equal(v.entries, 12);
  assert.equal(v.closed, true);
  assert.equal(v.head?.seq, 14);
});

test('a corrupt first line of the last segment chains from the segment before', async () => {
  const dir = await logOf(40, undefined, 4096);
  const files = segments(dir);
  const lastFile = join(dir, files.at(-1) ?? '');
  const before = linesOf(join(dir, files.at(-2) ?? '')).map(parseLine).at(-1);
  writeFileSync(lastFile, readFileSync(lastFile, 'utf8').replace('"seq":', '"seq":9'));
  const log = await AuditLog.open({ dir });
  assert.equal(log.openReport?.offset, 0);
  assert.equal(log.openReport?.resumedAfter.hash, before?.hash);
  await log.append(decision(99));
  await log.close();
  const v = await verifyAuditLog(dir);
  assert.equal(v.ok, false);
  assert.equal(v.firstBad?.line, 1);
  assert.equal(v.gaps[0]?.accounted, true);
});

test('an empty newest segment (crash right after it was created) is written into', async () => {
  const dir = await logOf(5);
  writeFileSync(join(dir, 'audit-000002.jsonl'), '');
  const log = await AuditLog.open({ dir });
  assert.equal(log.openReport, undefined);
  assert.equal((await log.append(decision(5))).seq, 6);
  await log.close();
  assert.deepEqual(segments(dir), ['audit-000001.jsonl', 'audit-000002.jsonl']);
  assert.equal((await verifyAuditLog(dir)).ok, true);
});

test('a torn segment followed by an empty one (crash while starting the gap): both accounted for', async () => {
  const dir = await logOf(5);
  appendFileSync(join(dir, 'audit-000001.jsonl'), '{"seq":6,');
  writeFileSync(join(dir, 'audit-000002.jsonl'), '{"seq":6,"ti'); // the gap entry's write was cut short too
  const log = await AuditLog.open({ dir });
  assert.equal(log.openReport?.continuedIn, 'audit-000003.jsonl');
  await log.append(decision(5));
  await log.close();
  const v = await verifyAuditLog(dir);
  assert.equal(v.ok, true, JSON.stringify(v.firstBad));
  assert.deepEqual(v.gaps.map((g) => [g.file, g.torn, g.accounted]), [['audit-000001.jsonl', true, true], ['audit-000002.jsonl', true, true]]);
  assert.equal(v.entries, 6);
});
