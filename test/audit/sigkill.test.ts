// Durability: a writer process killed with SIGKILL mid-stream loses no acknowledged entry. The
// child prints each seq after append() resolved; after the kill every printed seq must be in the
// log, the log must reopen (a torn last line is allowed and reported) and the chain must verify.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AuditLog } from '../../src/audit/log.js';
import { verifyAuditLog } from '../../src/audit/verify.js';
import { decision, linesOf, parseLine, removeTempDirs, segments, tempDir, workloadFixture } from './helpers.js';

after(removeTempDirs);

const writer = fileURLToPath(new URL('./fixtures/writer.js', import.meta.url));

/** Runs the writer until `acks` seqs were acknowledged, then SIGKILLs it; returns the acknowledged seqs. */
function runAndKill(dir: string, materialFile: string, acks: number): Promise<number[]> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [writer, dir, '16', materialFile], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    let killed = false;
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d: string) => { err += d; });
    child.stdout.on('data', (d: string) => {
      out += d;
      if (!killed && out.split('\n').length > acks) {
        killed = true;
        child.kill('SIGKILL');
      }
    });
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      if (signal !== 'SIGKILL') return reject(new Error(`writer exited with ${code}: ${err}`));
      // Only complete lines are acknowledgements; a seq cut off mid-print was never fully reported.
      const lines = out.split('\n');
      lines.pop();
      resolve(lines.map(Number));
    });
  });
}

test('SIGKILL mid-stream: every acknowledged entry survives and the chain verifies', { timeout: 30_000 }, async () => {
  const w = await workloadFixture();
  const dir = tempDir();
  const materialFile = join(tempDir(), 'material.json');
  writeFileSync(materialFile, JSON.stringify(w.material));

  const acked: number[] = [];
  for (let round = 0; round < 3; round++) {
    acked.push(...(await runAndKill(dir, materialFile, 400 + round * 300)));
  }
  assert.ok(acked.length >= 1900);

  // The killed writer left its lock behind; reopening takes it over and reports any torn line.
  const log = await AuditLog.open({ dir, signer: w.signer });
  if (log.openReport) assert.equal(log.openReport.torn, true, JSON.stringify(log.openReport));
  await log.append(decision(1));
  await log.close();

  const stored = new Set<number>();
  for (const f of segments(dir)) {
    for (const line of linesOf(join(dir, f))) {
      const o = parseLine(line);
      if (o.event) stored.add(o.seq);
    }
  }
  const lost = acked.filter((s) => !stored.has(s));
  assert.deepEqual(lost, [], 'acknowledged entries missing after SIGKILL');

  const v = await verifyAuditLog(dir, { caPem: w.caPem });
  assert.equal(v.ok, true, JSON.stringify(v.firstBad));
  assert.ok(v.entries >= acked.length + 1);
  assert.equal(v.closed, true);
  assert.ok(v.checkpoints >= Math.floor(acked.length / 50));
});
