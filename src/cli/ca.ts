// `portcullis ca status | rotate`: the CA's roots and their rotation (docs/workload-identity.md).
import type { Command } from 'commander';
import type { CaGenerationInfo, CaRotationResult } from '../identity/ca.js';
import { withAdmin } from './workload.js';

interface Opts { config: string; dataDir?: string }

/** One line per root: generation, state, and the times that matter for that state. */
export function formatGeneration(g: CaGenerationInfo): string {
  const when = g.state === 'published' ? `signs from ${g.activateAt}`
    : g.state === 'signing' ? `signing since ${g.activateAt}, valid until ${g.notAfter}${g.successorDueAt ? `, successor due ${g.successorDueAt}` : ''}`
      : g.state === 'retiring' ? `no longer signs; leaves the bundle at ${g.dropAt}`
        : `left the bundle at ${g.dropAt}`;
  return `gen ${g.generation}  ${g.state.padEnd(9)} ${g.keyId}  ${when}`;
}

export function registerCaCommands(cli: Command, defaultConfig: string): void {
  const ca = cli.command('ca').description('the workload certificate authority: roots and rotation');
  const common = (c: Command): Command => c.option('-c, --config <file>', 'config file', defaultConfig).option('--data-dir <dir>', 'data directory holding the admin token');

  common(ca.command('status')).description('the CA\'s roots, which one signs, and when the next rotation is due')
    .action(async (o: Opts) => {
      const s = await withAdmin(o, (c) => c.call<{ trustDomain: string; generations: CaGenerationInfo[] }>('GET', '/v1/admin/ca'));
      console.log(`trust domain ${s.trustDomain}`);
      for (const g of s.generations) console.log(formatGeneration(g));
    });

  common(ca.command('rotate')).description('start a rotation now: a new root is published at once and signs after the publish lead')
    .action(async (o: Opts) => {
      const r = await withAdmin(o, (c) => c.call<CaRotationResult>('POST', '/v1/admin/ca/rotate'));
      const s = r.successor;
      console.log(r.created
        ? `new root gen ${s.generation} published; it signs from ${s.activateAt}`
        : `a rotation is already under way: gen ${s.generation} signs from ${s.activateAt}`);
    });
}
