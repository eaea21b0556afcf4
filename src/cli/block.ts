// `portcullis block list | add | remove`: the temporary blocks every data plane enforces.
import type { Command } from 'commander';
import { PortcullisError } from '../core/errors.js';
import { withAdminClient } from './admin-client.js';

interface Opts { config: string; dataDir?: string }

const KINDS = ['address', 'principal', 'workload'];
const kindOf = (k: string): string => {
  if (!KINDS.includes(k)) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `kind must be one of ${KINDS.join(', ')}`);
  return k;
};

export function registerBlockCommands(cli: Command, defaultConfig: string): void {
  const block = cli.command('block').description('temporary blocks of an address, user or workload, enforced by every data plane');
  const common = (c: Command): Command => c.option('-c, --config <file>', 'config file', defaultConfig).option('--data-dir <dir>', 'data directory holding the admin token');

  common(block.command('list')).description('active blocks, with their expiry and the rule or operator behind them')
    .action(async (o: Opts) => {
      const { blocks } = await withAdminClient(o, (c) => c.call<{ blocks: { kind: string; value: string; until: string; rule: string; by: string }[] }>('GET', '/v1/admin/blocks'));
      if (blocks.length === 0) console.log('no active blocks');
      for (const b of blocks) console.log(`${b.kind.padEnd(9)} ${b.value}  until ${b.until}  (${b.rule}, by ${b.by})`);
    });

  common(block.command('add')).description('block a subject for a while')
    .argument('<kind>', KINDS.join(' | ')).argument('<value>', 'IP address, user name or SPIFFE ID')
    .requiredOption('--for <seconds>', 'how long, in seconds (at most 7 days)')
    .action(async (kind: string, value: string, o: Opts & { for: string }) => {
      const b = await withAdminClient(o, (c) => c.call<{ until: string }>('POST', '/v1/admin/blocks', { kind: kindOf(kind), value, seconds: Number(o.for), rule: 'operator' }));
      console.log(`blocked ${kind} ${value} until ${b.until}; data planes apply it at their next snapshot refresh`);
    });

  common(block.command('remove')).description('lift a block early')
    .argument('<kind>', KINDS.join(' | ')).argument('<value>', 'IP address, user name or SPIFFE ID')
    .action(async (kind: string, value: string, o: Opts) => {
      await withAdminClient(o, (c) => c.call('DELETE', `/v1/admin/blocks/${kindOf(kind)}/${encodeURIComponent(value)}`));
      console.log(`unblocked ${kind} ${value}`);
    });
}
