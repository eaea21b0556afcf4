// `portcullis apikey create | list | rotate | revoke`: API keys, through the control plane's admin
// API. A key is printed once, on stdout alone (so it can be piped into a secret store), with a
// warning on stderr that it cannot be shown again.
import type { Command } from 'commander';
import { PortcullisError } from '../core/errors.js';
import type { ApiKeyInfo } from '../identity/api-keys.js';
import { withAdminClient } from './admin-client.js';

interface Opts { config: string; dataDir?: string }

const UNITS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86_400 };

/** `90d`, `24h`, `30m`, `45s` or a plain number of seconds → seconds; throws PCL_ERR_INVALID_ARGUMENT. */
export function parseDurationSeconds(text: string, option: string): number {
  const m = /^(\d{1,9})([smhd]?)$/.exec(text.trim());
  if (!m?.[1]) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `${option} must be a whole number with s, m, h or d (e.g. 90d, 24h)`);
  return Number(m[1]) * (UNITS[m[2] || 's'] ?? 1);
}

/** `a,b,c` → ['a', 'b', 'c'] (blank items dropped; the control plane checks each). */
export function parseList(text: string): string[] {
  return text.split(',').map((s) => s.trim()).filter((s) => s.length > 0);
}

function describe(k: ApiKeyInfo): string {
  const scope = `roles ${k.roles.join(',')}${k.routes ? `; routes ${k.routes.join(',')}` : ''}`;
  const until = k.status === 'rotating' ? `works until ${k.overlapUntil ?? '?'} (rotated to ${k.rotatedTo ?? '?'})` : k.expiresAt ? `expires ${k.expiresAt}` : 'no expiry';
  return `${k.id}  ${k.status.padEnd(8)} ${JSON.stringify(k.name)} owner ${k.owner}; ${scope}; ${until}; last used ${k.lastUsedAt ?? 'never'}`;
}

/** Prints a new key: the key alone on stdout, the warning and the details on stderr. */
function printKey(key: string, what: string): void {
  console.error(`${what}. The key below is shown ONCE and cannot be shown again: store it now.`);
  console.log(key);
}

export function registerApiKeyCommands(cli: Command, defaultConfig: string): void {
  const apikey = cli.command('apikey').description('API keys (pcl_…): scoped to roles and routes, expiring, rotated with an overlap, revoked at every gateway within seconds');
  const common = (c: Command): Command => c.option('-c, --config <file>', 'config file', defaultConfig).option('--data-dir <dir>', 'data directory holding the admin token');

  common(apikey.command('create')).description('create a key; it is printed once')
    .requiredOption('--name <name>', 'what the key is for (shown in lists and audit entries)')
    .requiredOption('--owner <owner>', 'the user or client the key acts as')
    .requiredOption('--roles <roles>', 'comma-separated roles, e.g. reader,reporting')
    .option('--routes <routes>', 'comma-separated route ids the key is limited to (default: any route its roles allow)')
    .option('--ttl <duration>', 'lifetime, e.g. 90d, 12h (default: no expiry)')
    .action(async (o: Opts & { name: string; owner: string; roles: string; routes?: string; ttl?: string }) => {
      // Arguments are checked before the config is read or the control plane called.
      const body = {
        name: o.name, owner: o.owner, roles: parseList(o.roles),
        ...(o.routes === undefined ? {} : { routes: parseList(o.routes) }),
        ...(o.ttl === undefined ? {} : { ttlSeconds: parseDurationSeconds(o.ttl, '--ttl') }),
      };
      const k = await withAdminClient(o, (c) => c.call<ApiKeyInfo & { key: string }>('POST', '/v1/admin/apikeys', body));
      printKey(k.key, `created API key ${k.id} (${k.expiresAt ? `expires ${k.expiresAt}` : 'no expiry'})`);
    });

  common(apikey.command('list')).description('every key: id, status, scopes, expiry, last use (never the key)')
    .action(async (o: Opts) => {
      const { apiKeys } = await withAdminClient(o, (c) => c.call<{ apiKeys: ApiKeyInfo[] }>('GET', '/v1/admin/apikeys'));
      if (apiKeys.length === 0) console.log('no API keys');
      for (const k of apiKeys) console.log(describe(k));
    });

  common(apikey.command('rotate')).description('issue a replacement with the same scopes; the old key keeps working during the overlap')
    .argument('<id>', 'key id (ak_…)')
    .option('--overlap <duration>', 'how long the old key keeps working, e.g. 24h, 0 to stop it now', '24h')
    .action(async (id: string, o: Opts & { overlap: string }) => {
      const overlapSeconds = parseDurationSeconds(o.overlap, '--overlap');
      const k = await withAdminClient(o, (c) => c.call<ApiKeyInfo & { key: string; previous: { id: string; overlapUntil: string } }>('POST', `/v1/admin/apikeys/${encodeURIComponent(id)}/rotate`, { overlapSeconds }));
      printKey(k.key, `rotated ${k.previous.id} to ${k.id}; ${k.previous.id} keeps working until ${k.previous.overlapUntil}`);
    });

  common(apikey.command('revoke')).description('revoke a key now; gateways refuse it within seconds')
    .argument('<id>', 'key id (ak_…)')
    .action(async (id: string, o: Opts) => {
      const r = await withAdminClient(o, (c) => c.call<{ revoked: boolean }>('DELETE', `/v1/admin/apikeys/${encodeURIComponent(id)}`));
      console.log(r.revoked ? `revoked ${id}` : `${id} was already revoked`);
    });
}
