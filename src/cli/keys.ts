// `portcullis keys list | rotate [--force]`: the token signing keys through the control plane's
// admin API (docs/keys.md).
import type { Command } from 'commander';
import type { KeysListReply, KeysRotateReply } from '../control/keys-api.js';
import { KEYS_PATH, KEYS_ROTATE_PATH } from '../control/keys-api.js';
import { withAdminClient } from './admin-client.js';

interface Opts { config: string; dataDir?: string }

/**
 * Adds `keys list` and `keys rotate [--force]` to `cli`; `defaultConfig` is the config file used
 * without `-c`. `print` receives each output line (default: console.log).
 */
export function registerKeysCommands(cli: Command, defaultConfig: string, print: (line: string) => void = (l) => console.log(l)): void {
  const keys = cli.command('keys').description('the signing keys of access tokens: next, current, retired (docs/keys.md)');
  const common = (c: Command): Command => c.option('-c, --config <file>', 'config file', defaultConfig).option('--data-dir <dir>', 'data directory holding the admin token');

  common(keys.command('list')).description('every key still held, with its state and when it started signing and leaves the JWKS')
    .action(async (o: Opts) => {
      const reply = await withAdminClient(o, (c) => c.call<KeysListReply>('GET', KEYS_PATH));
      print(`${'STATE'.padEnd(8)} ${'ALG'.padEnd(6)} ${'KID'.padEnd(43)} ${'PUBLISHED'.padEnd(24)} ${'SIGNING FROM'.padEnd(24)} LEAVES JWKS`);
      for (const k of reply.keys) {
        print(`${k.state.padEnd(8)} ${k.alg.padEnd(6)} ${k.kid.padEnd(43)} ${k.publishedAt.padEnd(24)} ${(k.activatedAt ?? '-').padEnd(24)} ${k.retireAt ?? '-'}`);
      }
    });

  common(keys.command('rotate')).description('promote the next key to signing, publish a new next key, retire the current one')
    .option('--force', 'emergency (compromised key): rotate even if the next key is newly published, and remove the old key from the JWKS at once; tokens it signed are refused')
    .action(async (o: Opts & { force?: boolean }) => {
      const force = o.force === true;
      const r = await withAdminClient(o, (c) => c.call<KeysRotateReply>('POST', KEYS_ROTATE_PATH, { force }));
      if (!r.rotated) print(`another control-plane replica rotated this key first, at ${r.at}:`);
      print(`signing with ${r.to} (was ${r.from}); next key ${r.next} published`);
      print(r.force
        ? `${r.from} removed from the JWKS: tokens it signed are refused from the data planes' next snapshot refresh`
        : `${r.from} stays in the JWKS until ${r.retireAt}, when the last token it signed has expired`);
    });
}
