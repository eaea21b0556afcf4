// `portcullis <noun> <verb>`: the command line, and the only place that wires the parts together.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { Command, CommanderError } from 'commander';
import { checkConfig, loadConfig, readConfigFile } from '../core/config/load.js';
import { starterConfig } from '../core/config/starter.js';
import { PortcullisError } from '../core/errors.js';
import { DEMO_SYSTEMS, demoToken, runDemo, type DemoSystem } from './demo.js';
import { AdminClient } from './admin-client.js';
import { registerKmsCommands } from './kms.js';
import { registerPolicyCommands } from './policy.js';
import { registerBlockCommands } from './block.js';
import { registerAuditCommands } from './audit.js';
import { registerOpenApiCommands } from './openapi.js';
import { registerApiKeyCommands } from './apikey.js';
import { registerClientCommands } from './client.js';
import { registerKeysCommands } from './keys.js';
import { registerWorkloadCommands } from './workload.js';
import { registerCaCommands } from './ca.js';
import { registerUserCommands } from './user.js';
import { runControl, runGateway, runSidecar } from './roles.js';
import { registerLoginCommands } from './login.js';

const DEFAULT_CONFIG = 'portcullis.yaml';

/** The whole command tree (exported for the test that checks every command has its help). */
export function program(): Command {
  const cli = new Command('portcullis')
    .description('Zero-trust security for microservices: gateway, sidecars and the control plane behind them.')
    .version('0.1.0')
    .enablePositionalOptions()
    .showHelpAfterError()
    .exitOverride();

  const demo = cli.command('demo')
    .description('run the reference systems (shop, clinic, bank, school) on loopback: for each, a control plane, a gateway and its services behind sidecars')
    .argument('[systems...]', `which systems: ${DEMO_SYSTEMS.join(', ')} (default: all)`)
    .option('--data-dir <dir>', 'state directory (one subdirectory per system: store, CA, keys, logs)', '.portcullis')
    .option('--control-listen <host:port>', "the shop's control plane address; each further system adds 10 to the port", '127.0.0.1:8444')
    .option('--gateway-listen <host:port>', "the shop's gateway address; each further system adds 10 to the port", '127.0.0.1:8443')
    .action((systems: string[], o: { dataDir: string; controlListen: string; gatewayListen: string }) => runDemo({ ...o, systems: parseSystems(systems) }));
  demo.command('token')
    .description("print an access token for a demo user (authorization code + PKCE against the running demo)")
    .argument('<user>', 'demo user, e.g. alice (examples/<system>/users.yaml lists them)')
    .option('--system <name>', `the system the user belongs to: ${DEMO_SYSTEMS.join(', ')}`, 'shop')
    .option('--data-dir <dir>', 'state directory of the running demo', '.portcullis')
    .action(async (user: string, o: { dataDir: string; system: string }) => {
      console.log(await demoToken({ dataDir: o.dataDir, user, system: parseSystems([o.system])[0] ?? 'shop' }));
    });

  cli.command('control')
    .description('run the control plane: CA, token service, users, admin API')
    .option('-c, --config <file>', 'config file', DEFAULT_CONFIG)
    .option('--listen <host:port>', 'override control.listen')
    .action((o: { config: string; listen?: string }) => runControl(o));

  cli.command('gateway')
    .description('run the gateway: TLS, normalization, authentication, policy, rate limits, validation, mTLS to sidecars')
    .option('-c, --config <file>', 'config file', DEFAULT_CONFIG)
    .option('--listen <host:port>', 'override gateway.listen')
    .option('--join-token <token>', 'one-time join token for the first certificate (or PORTCULLIS_JOIN_TOKEN)')
    .option('--state-dir <dir>', 'where the workload certificate and snapshot are kept')
    .option('--instance <name>', 'replica name when several gateways share one data directory: its audit log is gateway-<name>')
    .action((o: { config: string; listen?: string; joinToken?: string; stateDir?: string; instance?: string }) => runGateway(o));

  cli.command('sidecar')
    .description('run the sidecar of one service: inbound mTLS with caller checks, outbound mTLS')
    .option('-c, --config <file>', 'config file', DEFAULT_CONFIG)
    .requiredOption('-s, --service <name>', 'the service this sidecar fronts')
    .option('--join-token <token>', 'one-time join token for the first certificate (or PORTCULLIS_JOIN_TOKEN)')
    .option('--state-dir <dir>', 'where the workload certificate and snapshot are kept')
    .action((o: { config: string; service: string; joinToken?: string; stateDir?: string }) => runSidecar(o));

  cli.command('init')
    .description('write a commented starter config for one service and one route')
    .option('--service <name>', 'service name', 'api')
    .option('--upstream <url>', 'where the service listens (plain HTTP on loopback)', 'http://127.0.0.1:3000')
    .option('-o, --out <file>', 'file to write', DEFAULT_CONFIG)
    .option('--force', 'overwrite an existing file')
    .action((o: { service: string; upstream: string; out: string; force?: boolean }) => {
      if (existsSync(o.out) && !o.force) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `${o.out} exists (use --force to overwrite)`);
      writeFileSync(o.out, starterConfig({ serviceName: o.service, upstream: o.upstream }));
      console.log(`wrote ${o.out}; check it with: portcullis config check ${o.out}`);
    });

  const config = cli.command('config').description('configuration files');
  config.command('check')
    .description('validate a config file against the schema and its references')
    .argument('[file]', 'config file', DEFAULT_CONFIG)
    .action((file: string) => {
      const { errors, config: c } = checkConfig(readConfigFile(file), file);
      if (errors.length > 0) {
        for (const e of errors) console.error(`${e.message} [${e.code}]`);
        process.exitCode = 1;
        return;
      }
      console.log(`${file}: ok (${c?.services.length ?? 0} services, ${c?.routes.length ?? 0} routes, ${c?.calls.length ?? 0} call rules)`);
    });

  const jt = cli.command('join-token').description('one-time tokens a gateway or sidecar uses for its first certificate');
  jt.command('create')
    .description('create a join token (10 min, single use) for a service, the gateway, or a SPIFFE ID')
    .option('-c, --config <file>', 'config file', DEFAULT_CONFIG)
    .option('--service <name>', 'a service of the config')
    .option('--gateway', 'the gateway of the config')
    .option('--spiffe-id <id>', 'an explicit SPIFFE ID in the trust domain')
    .action(async (o: { config: string; service?: string; gateway?: boolean; spiffeId?: string }) => {
      const c = loadConfig(o.config);
      const spiffeId = o.spiffeId ?? (o.gateway ? c.gateway.spiffeId : c.services.find((s) => s.name === o.service)?.spiffeId);
      if (!spiffeId) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', 'give --service NAME, --gateway or --spiffe-id ID');
      await withAdmin(c.control.url, c.control.dataDir, async (client) => { console.log(await client.joinToken(spiffeId)); });
    });

  registerLoginCommands(cli, DEFAULT_CONFIG); // login, token, logout

  const user = cli.command('user').description('people who sign in to get tokens');
  user.command('add')
    .description('add a user; the password is read from stdin, or generated and printed once')
    .argument('<username>')
    .option('-c, --config <file>', 'config file', DEFAULT_CONFIG)
    .option('-r, --role <role...>', 'roles', [])
    .option('--password-stdin', 'read the password from standard input')
    .action(async (username: string, o: { config: string; role: string[]; passwordStdin?: boolean }) => {
      const c = loadConfig(o.config);
      const password = o.passwordStdin ? readFileSync(0, 'utf8').replace(/\r?\n$/, '') : randomBytes(18).toString('base64url');
      await withAdmin(c.control.url, c.control.dataDir, (client) => client.call('POST', '/v1/admin/users', { username, password, roles: o.role }));
      console.log(o.passwordStdin ? `added ${username}` : `added ${username}; password (shown once): ${password}`);
    });

  registerKmsCommands(cli, DEFAULT_CONFIG);
  registerAuditCommands(cli, DEFAULT_CONFIG);
  registerPolicyCommands(cli, DEFAULT_CONFIG);
  registerBlockCommands(cli, DEFAULT_CONFIG);
  registerOpenApiCommands(cli);
  registerApiKeyCommands(cli, DEFAULT_CONFIG);
  registerClientCommands(cli, DEFAULT_CONFIG);
  registerKeysCommands(cli, DEFAULT_CONFIG);
  registerWorkloadCommands(cli, DEFAULT_CONFIG);
  registerCaCommands(cli, DEFAULT_CONFIG);
  registerUserCommands(cli, DEFAULT_CONFIG); // after `user add` above: adds list, disable, enable, delete, passwd, totp-*
  return cli;
}

async function withAdmin<T>(url: string, dataDir: string, fn: (client: AdminClient) => Promise<T>): Promise<T> {
  const client = AdminClient.fromDataDir(url, dataDir);
  try {
    return await fn(client);
  } finally {
    await client.close();
  }
}

/** Runs the CLI; resolves to the exit code (long-running roles keep the process alive). */
export async function main(argv: string[]): Promise<number> {
  try {
    await program().parseAsync(argv);
    return Number(process.exitCode ?? 0);
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 2;
    if (err instanceof PortcullisError) {
      console.error(`error [${err.code}]: ${err.message}`);
      return 1;
    }
    console.error(`error: ${err instanceof Error ? err.message : String(err)}`);
    return 1;
  }
}

function parseSystems(names: string[]): DemoSystem[] {
  if (names.length === 0) return [...DEMO_SYSTEMS];
  for (const n of names) {
    if (!(DEMO_SYSTEMS as readonly string[]).includes(n)) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `unknown demo system "${n}" (known: ${DEMO_SYSTEMS.join(', ')})`);
  }
  return [...new Set(names)] as DemoSystem[]; // each checked above
}
