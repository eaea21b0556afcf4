// `portcullis workload list | revoke`: the workloads the CA has issued certificates to, and revocation
// (renewal refused, SPIFFE ID on every data plane's deny list). See docs/workload-identity.md.
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { loadConfig } from '../core/config/load.js';
import type { WorkloadInfo } from '../identity/workload-revocations.js';
import { AdminClient } from './admin-client.js';

interface Opts { config: string; dataDir?: string }

/** Runs `fn` with an admin client for the config's control plane. */
export async function withAdmin<T>(o: Opts, fn: (c: AdminClient) => Promise<T>): Promise<T> {
  const config = loadConfig(o.config);
  const client = AdminClient.fromDataDir(config.control.url, o.dataDir ? resolve(o.dataDir) : config.control.dataDir);
  try {
    return await fn(client);
  } finally {
    await client.close();
  }
}

/** One line per workload: ID, status, newest certificate's serial and expiry. */
export function formatWorkload(w: WorkloadInfo): string {
  const cert = w.serial ? `serial ${w.serial}  expires ${w.notAfter ?? '?'}  (${w.liveCertificates} live)` : 'no certificate issued';
  const revoked = w.status === 'revoked' ? `  revoked ${w.revokedAt ?? ''}${w.reason ? `: ${w.reason}` : ''}` : '';
  return `${w.spiffeId}  ${w.status}  ${cert}${revoked}`;
}

export function registerWorkloadCommands(cli: Command, defaultConfig: string): void {
  const workload = cli.command('workload').description('workload identities: issued certificates and revocation');
  const common = (c: Command): Command => c.option('-c, --config <file>', 'config file', defaultConfig).option('--data-dir <dir>', 'data directory holding the admin token');

  common(workload.command('list')).description('workloads the CA issued certificates to, with the newest serial and expiry')
    .action(async (o: Opts) => {
      const { workloads } = await withAdmin(o, (c) => c.call<{ workloads: WorkloadInfo[] }>('GET', '/v1/admin/workloads'));
      if (workloads.length === 0) console.log('no workloads');
      for (const w of workloads) console.log(formatWorkload(w));
    });

  common(workload.command('revoke')).description('revoke a workload for good: no more renewals, refused by every data plane')
    .argument('<spiffeId>', 'the workload\'s SPIFFE ID')
    .option('--reason <text>', 'why, for the audit log')
    .action(async (spiffeId: string, o: Opts & { reason?: string }) => {
      const r = await withAdmin(o, (c) => c.call<{ alreadyRevoked: boolean; at: string; serials: string[] }>('POST', '/v1/admin/workloads/revoke', { spiffeId, ...(o.reason ? { reason: o.reason } : {}) }));
      if (r.alreadyRevoked) console.log(`${spiffeId} was already revoked at ${r.at}`);
      else console.log(`revoked ${spiffeId} (${r.serials.length} live certificate(s)); data planes refuse it at their next snapshot refresh`);
    });
}
