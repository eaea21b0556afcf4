// Fixtures for the audit log tests: temporary directories, sample events, signers made at test
// start (a CA and a workload certificate, a KMS with an `audit` keyring), and line-level file edits.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Clock } from '../../src/core/clock.js';
import { PortcullisError } from '../../src/core/errors.js';
import type { AuditEvent } from '../../src/core/events.js';
import { CertificateAuthority } from '../../src/identity/ca.js';
import { createWorkloadKeyAndCsr } from '../../src/identity/workload-key.js';
import { KeyManager } from '../../src/kms/key-manager.js';
import { KeyWrapper } from '../../src/kms/wrap.js';
import { MemoryStore } from '../../src/store/memory.js';
import { KmsSigner, WorkloadSigner, type WorkloadKeyMaterial } from '../../src/audit/signers.js';
import type { KmsPublicKey } from '../../src/audit/trust.js';

export const TD = 'audit.test';

const dirs: string[] = [];
export function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'pcl-audit-'));
  dirs.push(d);
  return d;
}
export function removeTempDirs(): void {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
}

export function decision(i: number, extra: Partial<AuditEvent> = {}): AuditEvent {
  return {
    type: 'decision',
    time: new Date(Date.UTC(2025, 0, 1) + i).toISOString(),
    requestId: `req-${i}`,
    component: 'gateway',
    decision: i % 3 === 0 ? 'deny' : 'allow',
    status: i % 3 === 0 ? 403 : 200,
    who: { sub: `user-${i % 7}`, roles: ['customer'], sourceAddress: '127.0.0.1' },
    what: { method: 'GET', path: `/orders/${i}`, route: 'orders.get', service: 'shop' },
    reasons: i % 3 === 0 ? [] : ['route:orders.get'],
    why: i % 3 === 0 ? 'no rule allows it' : 'role customer may read orders',
    ...extra,
  } as AuditEvent; // a DecisionEvent; `extra` only overrides its fields in tests
}

export interface WorkloadFixture {
  ca: CertificateAuthority;
  caPem: string;
  material: WorkloadKeyMaterial;
  signer: WorkloadSigner;
  spiffeId: string;
}

/** A CA of trust domain `td` over an in-memory store, and one workload certificate it issued. */
export async function workloadFixture(o: { td?: string; name?: string; clock?: Clock; ttlMs?: number } = {}): Promise<WorkloadFixture> {
  const td = o.td ?? TD;
  const ca = await CertificateAuthority.loadOrCreate({ store: new MemoryStore(), wrapper: new KeyWrapper(randomBytes(32)), trustDomain: td, ...(o.clock ? { clock: o.clock } : {}) });
  const material = await issue(ca, o.name ?? 'gateway', o.ttlMs);
  return { ca, caPem: ca.rootPem, material, signer: new WorkloadSigner(material), spiffeId: `spiffe://${td}/${o.name ?? 'gateway'}` };
}

export async function issue(ca: CertificateAuthority, name: string, ttlMs?: number): Promise<WorkloadKeyMaterial> {
  const spiffeId = `spiffe://${ca.trustDomain}/${name}`;
  const { keyPem, csrPem } = await createWorkloadKeyAndCsr(spiffeId);
  const cert = await ca.issue({ csrPem, spiffeId, ...(ttlMs ? { ttlMs } : {}) });
  return { keyPem, chainPem: cert.chainPem };
}

export interface KmsFixture {
  kms: KeyManager;
  signer: KmsSigner;
  publicKeys(): Promise<KmsPublicKey[]>;
}

export async function kmsFixture(keyring = 'audit'): Promise<KmsFixture> {
  const kms = await KeyManager.open({ store: new MemoryStore(), wrapper: new KeyWrapper(randomBytes(32)) });
  await kms.ensureKeyring(keyring, { type: 'ecdsa-p256' });
  return {
    kms,
    signer: new KmsSigner(kms, keyring),
    publicKeys: async () => (await kms.publicKeys(keyring)).map((k) => ({ keyring, ...k })),
  };
}

export function segments(dir: string): string[] {
  return readdirSync(dir).filter((f) => /^audit-\d{6}\.jsonl$/.test(f)).sort();
}

/** The lines of a segment, without the final newline's empty string. */
export function linesOf(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const lines = text.split('\n');
  if (lines.at(-1) === '') lines.pop();
  return lines;
}

export function writeLines(file: string, lines: string[]): void {
  writeFileSync(file, lines.map((l) => `${l}\n`).join(''));
}

export interface LineObject {
  seq: number;
  time: string;
  prev: string;
  hash: string;
  event?: Record<string, unknown>;
  checkpoint?: Record<string, unknown>;
  gap?: Record<string, unknown>;
}

export function parseLine(line: string): LineObject {
  return JSON.parse(line) as LineObject; // lines the log wrote; the tests check their shape where it matters
}

/** The code of a rejected PortcullisError. */
export async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    if (err instanceof PortcullisError) return err.code;
    throw err;
  }
  throw new Error('expected a rejection');
}
