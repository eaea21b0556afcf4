// `portcullis audit verify`: checks every component's hash-chained audit log in a data directory
// against the trust anchors kept there (the CA bundle for workload-signed checkpoints, the
// control plane's published audit keys for KMS-signed ones).
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { verifyAuditLog, type VerifyResult } from '../audit/verify.js';
import { loadConfig } from '../core/config/load.js';
import { PortcullisError } from '../core/errors.js';

export async function verifyDataDir(dataDir: string, o: { component?: string; requireClosed?: boolean } = {}): Promise<{ component: string; result: VerifyResult }[]> {
  const root = join(dataDir, 'audit');
  if (!existsSync(root)) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `no audit logs in ${root}`);
  const caFile = join(dataDir, 'ca.pem');
  const keysFile = join(root, 'control-keys.json');
  const caPem = existsSync(caFile) ? readFileSync(caFile, 'utf8') : undefined;
  const kmsPublicKeys = existsSync(keysFile) ? JSON.parse(readFileSync(keysFile, 'utf8')) as { keyring: string; version: number; pem: string }[] : undefined; // written by the control plane
  const components = readdirSync(root, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name).filter((n) => !o.component || n === o.component).sort();
  if (components.length === 0) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `no audit log${o.component ? ` for ${o.component}` : ''} in ${root}`);
  const out: { component: string; result: VerifyResult }[] = [];
  for (const component of components) {
    out.push({ component, result: await verifyAuditLog(join(root, component), { ...(caPem ? { caPem } : {}), ...(kmsPublicKeys ? { kmsPublicKeys } : {}), ...(o.requireClosed ? { requireClosed: true } : {}) }) });
  }
  return out;
}

export function registerAuditCommands(cli: Command, defaultConfig: string): void {
  const audit = cli.command('audit').description('the tamper-evident audit logs');
  audit.command('verify')
    .description('verify the hash chains and signed checkpoints; exits non-zero naming the first bad entry')
    .option('-c, --config <file>', 'config file (its control.dataDir)', defaultConfig)
    .option('--data-dir <dir>', 'the data directory to verify')
    .option('--component <name>', 'only this component (e.g. gateway, control, sidecar-orders)')
    .option('--require-closed', 'the writers have stopped: each log must end with its closing checkpoint')
    .action(async (o: { config: string; dataDir?: string; component?: string; requireClosed?: boolean }) => {
      const dataDir = o.dataDir ? resolve(o.dataDir) : loadConfig(o.config).control.dataDir;
      let bad = 0;
      for (const { component, result: r } of await verifyDataDir(dataDir, o)) {
        if (!r.ok) {
          bad++;
          const f = r.firstBad;
          console.log(`${component}: TAMPERED${f ? ` at ${f.file}:${f.line}${f.seq !== undefined ? ` (seq ${f.seq})` : ''}: ${f.reason}` : ''}`);
          continue;
        }
        const cp = r.lastCheckpoint;
        console.log(`${component}: ok, ${r.entries} entries in ${r.segments} segment(s)${cp ? `; last checkpoint seq ${cp.seq} at ${cp.time} signed by ${cp.signer}` : '; no checkpoint yet'}`);
        if (r.uncovered > 0) console.log(`  warning: ${r.uncovered} newest entries are not yet covered by a signed checkpoint`);
        for (const g of r.gaps) console.log(`  warning: ${g.torn ? 'torn last line' : 'damaged bytes'} in ${g.file} at offset ${g.offset} (${g.bytes} bytes): ${g.reason}`);
      }
      if (bad > 0) process.exitCode = 1;
    });
}
