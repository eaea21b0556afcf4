// Audit log appends per second with the hash chain and group commit on (every append resolved only
// after its batch's fdatasync), checkpoints signed by a workload key every 1000 entries, default
// options otherwise. 1, 16 and 256 concurrent appenders, rounds interleaved, median reported; then
// how fast `verify` reads the largest log back. The log lives in BENCH_DIR (default: the OS temp
// directory) — put it on the disk you care about.
//   node dist/bench/audit.js        BENCH_SECONDS (1.5), BENCH_ROUNDS (3), BENCH_DIR
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AuditEvent } from '../src/core/events.js';
import { CertificateAuthority } from '../src/identity/ca.js';
import { createWorkloadKeyAndCsr } from '../src/identity/workload-key.js';
import { KeyWrapper } from '../src/kms/wrap.js';
import { MemoryStore } from '../src/store/memory.js';
import { AuditLog } from '../src/audit/log.js';
import { WorkloadSigner } from '../src/audit/signers.js';
import { verifyAuditLog } from '../src/audit/verify.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 1.5);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const BASE = process.env.BENCH_DIR ?? tmpdir();
const CONCURRENCY = [1, 16, 256];

/** A decision event of typical size (~450 bytes as a line). */
function event(i: number): AuditEvent {
  return {
    type: 'decision', time: new Date().toISOString(), requestId: `01J${i.toString(36).padStart(10, '0')}`, component: 'gateway',
    decision: i % 5 === 0 ? 'deny' : 'allow', status: i % 5 === 0 ? 403 : 200,
    who: { sub: `user-${i % 1000}`, roles: ['customer'], clientId: 'shop-web', sourceAddress: '10.0.3.17' },
    what: { method: 'GET', path: `/orders/${i}`, route: 'orders.get', service: 'shop' },
    reasons: ['route:orders.get'], why: 'role customer may read own orders',
  };
}

interface Run { rate: number; perBatch: number; dir: string; entries: number }

async function run(concurrency: number, signer: WorkloadSigner): Promise<Run> {
  const dir = mkdtempSync(join(BASE, 'pcl-bench-audit-'));
  const log = await AuditLog.open({ dir, signer });
  for (let i = 0; i < 200; i++) await log.append(event(i)); // warm-up
  const before = log.stats();
  let n = 0;
  const end = performance.now() + SECONDS * 1000;
  const start = performance.now();
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (performance.now() < end) await log.append(event(n++));
  }));
  const seconds = (performance.now() - start) / 1000;
  const after = log.stats();
  await log.close();
  return { rate: n / seconds, perBatch: (after.appended - before.appended) / Math.max(1, after.batches - before.batches), dir, entries: after.appended };
}

async function main(): Promise<void> {
  const ca = await CertificateAuthority.loadOrCreate({ store: new MemoryStore(), wrapper: new KeyWrapper(randomBytes(32)), trustDomain: 'bench.test' });
  const { keyPem, csrPem } = await createWorkloadKeyAndCsr('spiffe://bench.test/gateway');
  const { chainPem } = await ca.issue({ csrPem, spiffeId: 'spiffe://bench.test/gateway' });
  const signer = new WorkloadSigner({ keyPem, chainPem });

  const results = new Map<number, Run[]>(CONCURRENCY.map((c) => [c, []]));
  const keep: Run[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    for (const c of CONCURRENCY) {
      const res = await run(c, signer);
      results.get(c)?.push(res);
      keep.push(res);
    }
  }
  const median = (xs: number[]): number => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)] ?? 0;
  const fmt = (x: number): string => Math.round(x).toLocaleString('en-US');

  console.log(`\n### Audit log appends (hash chain, group commit with fdatasync, signed checkpoints every 1000; ${SECONDS}s × ${ROUNDS} rounds, median)\n`);
  console.log('| appenders | events/s | events per write+fdatasync |');
  console.log('|---:|---:|---:|');
  for (const c of CONCURRENCY) {
    const runs = results.get(c) ?? [];
    console.log(`| ${c} | ${fmt(median(runs.map((x) => x.rate)))} | ${median(runs.map((x) => x.perBatch)).toFixed(1)} |`);
  }

  // Verification speed on the largest log written.
  const largest = keep.reduce((a, b) => (b.entries > a.entries ? b : a));
  const t = performance.now();
  const v = await verifyAuditLog(largest.dir, { caPem: ca.rootPem });
  const s = (performance.now() - t) / 1000;
  console.log(`\nverify: ${fmt(v.entries)} entries, ${v.checkpoints} checkpoints, ok=${v.ok}, in ${s.toFixed(2)} s (${fmt(v.entries / s)} entries/s)`);
  for (const r of keep) rmSync(r.dir, { recursive: true, force: true });
}

await main();
