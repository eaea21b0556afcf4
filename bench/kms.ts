// npm run bench:kms — field encryption beside raw node:crypto AES-256-GCM, in one run, on the same
// payloads (64 B, 1 KiB, 64 KiB): the in-process SDK (FieldEncryptor with its data key cached),
// and the transit API over HTTP on loopback. Reported as operations/s, MB/s and ratios to raw.
import { createCipheriv, createDecipheriv, createSecretKey, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Pool } from 'undici';
import { KeyManager } from '../src/kms/key-manager.js';
import { KeyWrapper } from '../src/kms/wrap.js';
import { SecretStore } from '../src/kms/secrets.js';
import { MemoryStore } from '../src/store/memory.js';
import { FieldEncryptor } from '../src/sdk/fields.js';
import { createKmsApi } from '../src/control/kms-api.js';
import { AdminToken } from '../src/control/admin-token.js';
import { parseConfig } from '../src/core/config/load.js';
import { newRequestId } from '../src/core/ids.js';

const SIZES = [64, 1024, 65536];
const SECONDS = Number(process.env.BENCH_SECONDS ?? 1.5);

/** Runs `op` in a loop (with `concurrency` in flight) for SECONDS; returns operations per second. */
async function measure(op: () => Promise<unknown> | unknown, concurrency = 1): Promise<number> {
  for (let i = 0; i < 200; i++) await op(); // warm-up
  let count = 0;
  const end = performance.now() + SECONDS * 1000;
  const worker = async (): Promise<void> => {
    while (performance.now() < end) { await op(); count++; }
  };
  const start = performance.now();
  await Promise.all(Array.from({ length: concurrency }, worker));
  return count / ((performance.now() - start) / 1000);
}

async function main(): Promise<void> {
  const store = new MemoryStore();
  const kms = await KeyManager.open({ store, wrapper: new KeyWrapper(randomBytes(32)) });
  await kms.ensureKeyring('cards');
  const sdk = new FieldEncryptor({ kms: { dataKey: (k, c) => kms.generateDataKey(k, c), decrypt: (k, ct, c) => kms.decrypt(ct, c, k) }, keyring: 'cards' });

  // The transit API, served by the real handler on loopback HTTP (authorization: the admin token).
  const config = parseConfig('trustDomain: bench\nservices:\n  - name: app\n    spiffeId: spiffe://bench/app\n    upstream: http://127.0.0.1:1\n    sidecar: { listen: 127.0.0.1:2, outbound: 127.0.0.1:3 }\nkms:\n  keyrings:\n    - name: cards\n', 'bench.yaml');
  const dir = mkdtempSync(join(tmpdir(), 'pcl-bench-'));
  const { admin } = await AdminToken.loadOrCreate(store, dir);
  const adminToken = readFileSync(join(dir, 'admin.token'), 'utf8').trim();
  const api = createKmsApi({ config, kms, secrets: new SecretStore({ store, kms }), admin });
  const server = createServer((req, res) => void api(req, res, { requestId: newRequestId() }));
  server.keepAliveTimeout = 60_000; // longer than the pool's, so the client always closes first
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const addr = server.address();
  const pool = new Pool(`http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`, { connections: 16, keepAliveTimeout: 10_000 });
  const transit = async (op: 'encrypt' | 'decrypt', body: unknown): Promise<Record<string, string>> => {
    const r = await pool.request({ method: 'POST', path: `/v1/transit/${op}/cards`, headers: { 'content-type': 'application/json', authorization: `Bearer ${adminToken}` }, body: JSON.stringify(body) });
    return (await r.body.json()) as Record<string, string>; // our API's reply
  };

  const key = createSecretKey(randomBytes(32));
  const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
  const median = (xs: number[]): number => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)] ?? 0;
  const rows: string[][] = [];
  for (const size of SIZES) {
    const payload = randomBytes(size);
    const ctx = { field: 'card', record: 'r-1' };
    const nonce0 = randomBytes(12);
    const c0 = createCipheriv('aes-256-gcm', key, nonce0);
    const sealed = Buffer.concat([nonce0, c0.update(payload), c0.final(), c0.getAuthTag()]);
    const field = await sdk.encryptField(payload, ctx);
    const blob = await sdk.encryptBytes(payload, ctx);
    const tct = (await transit('encrypt', { plaintext: payload.toString('base64') })).ciphertext;
    const cells: Record<string, [() => unknown, number]> = {
      rawEnc: [() => {
        const nonce = randomBytes(12);
        const c = createCipheriv('aes-256-gcm', key, nonce);
        return Buffer.concat([nonce, c.update(payload), c.final(), c.getAuthTag()]);
      }, 1],
      rawDec: [() => {
        const d = createDecipheriv('aes-256-gcm', key, sealed.subarray(0, 12));
        d.setAuthTag(sealed.subarray(sealed.length - 16));
        return Buffer.concat([d.update(sealed.subarray(12, sealed.length - 16)), d.final()]);
      }, 1],
      sdkEnc: [() => sdk.encryptBytes(payload, ctx), 1],
      sdkDec: [() => sdk.decryptBytes(blob, ctx), 1],
      fieldEnc: [() => sdk.encryptField(payload, ctx), 1],
      fieldDec: [() => sdk.decryptField(field, ctx), 1],
      trEnc: [() => transit('encrypt', { plaintext: payload.toString('base64') }), 16],
      trDec: [() => transit('decrypt', { ciphertext: tct }), 16],
    };
    // Rounds interleave the systems, so the VM's drift between minutes hits all of them alike.
    const runs: Record<string, number[]> = {};
    for (let round = 0; round < ROUNDS; round++) {
      for (const [name, [op, conc]] of Object.entries(cells)) (runs[name] ??= []).push(await measure(op, conc));
    }
    const m = (name: string): number => median(runs[name] ?? []);
    const mbs = (ops: number): string => ((ops * size) / 1e6).toFixed(1);
    const fmt = (ops: number): string => Math.round(ops).toLocaleString('en-US');
    for (const [op, raw, bytes, text, tr] of [['encrypt', 'rawEnc', 'sdkEnc', 'fieldEnc', 'trEnc'], ['decrypt', 'rawDec', 'sdkDec', 'fieldDec', 'trDec']] as const) {
      rows.push([`${size} B`, op, fmt(m(raw)), fmt(m(bytes)), (m(bytes) / m(raw)).toFixed(2), fmt(m(text)), (m(text) / m(raw)).toFixed(2), fmt(m(tr)), (m(tr) / m(raw)).toFixed(3), mbs(m(bytes))]);
    }
  }
  const head = ['payload', 'op', 'raw node:crypto ops/s', 'SDK bytes ops/s', 'SDK bytes / raw', 'SDK text field ops/s', 'field / raw', 'transit ops/s', 'transit / raw', 'SDK bytes MB/s'];
  console.log(`\nField encryption, AES-256-GCM, one process; medians of ${ROUNDS} interleaved rounds of ${SECONDS}s per cell (node ${process.version})\n`);
  console.log('| ' + head.join(' | ') + ' |');
  console.log('|' + head.map(() => '---').join('|') + '|');
  for (const r of rows) console.log('| ' + r.join(' | ') + ' |');
  await pool.close();
  server.close();
  kms.stop();
  rmSync(dir, { recursive: true, force: true });
}

void main();
