// `portcullis kms …` and `portcullis secret …`: against the running control plane (admin token,
// HTTPS), or with --data-dir directly on a stopped control plane's embedded store.
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { loadConfig } from '../core/config/load.js';
import { PortcullisError } from '../core/errors.js';
import { parseCiphertext } from '../kms/ciphertext.js';
import { KeyManager } from '../kms/key-manager.js';
import { loadMasterKey } from '../kms/master-key.js';
import { initSealedRoot, unsealRoot } from '../kms/root-key.js';
import { SecretStore } from '../kms/secrets.js';
import type { KeyringInfo, KmsContext } from '../kms/types.js';
import { KeyWrapper } from '../kms/wrap.js';
import { PgliteStore } from '../store/pglite.js';
import { askLocalSocket } from '../control/local-socket.js';
import { AdminClient } from './admin-client.js';
import { progress } from './progress.js';

type SecretList = { path: string; latest: number; versions: { version: number; createdAt: string; deleted: boolean; destroyed: boolean }[] }[];
type RewrapResult = { ciphertext: string } | { error: { code: string } };

/** The operations the commands need, from the API or from the store directly. */
interface Backend {
  encrypt(keyring: string, plaintext: Buffer, context?: KmsContext): Promise<string>;
  decrypt(keyring: string, ciphertext: string, context?: KmsContext): Promise<Buffer>;
  rewrap(keyring: string, ciphertexts: string[], context?: KmsContext): Promise<RewrapResult[]>;
  datakey(keyring: string, context?: KmsContext): Promise<{ plaintext: Buffer; ciphertext: string }>;
  rotate(keyring: string): Promise<KeyringInfo>;
  retire(keyring: string, minDecryptionVersion: number): Promise<KeyringInfo>;
  keyrings(): Promise<KeyringInfo[]>;
  secretPut(path: string, data: Record<string, string>, cas?: number): Promise<number>;
  secretGet(path: string, version?: number): Promise<{ data: Record<string, string>; version: number }>;
  secretList(prefix: string): Promise<SecretList>;
  secretDelete(path: string, versions?: number[]): Promise<void>;
  secretDestroy(path: string, versions: number[]): Promise<void>;
  close(): Promise<void>;
}

const ctxBody = (context?: KmsContext): { context?: KmsContext } => (context && Object.keys(context).length > 0 ? { context } : {});
const secretUrl = (path: string): string => `/v1/secrets/${path.split('/').map(encodeURIComponent).join('/')}`;

function remoteBackend(client: AdminClient): Backend {
  const k = encodeURIComponent;
  return {
    encrypt: async (keyring, plaintext, context) => (await client.call<{ ciphertext: string }>('POST', `/v1/transit/encrypt/${k(keyring)}`, { plaintext: plaintext.toString('base64'), ...ctxBody(context) })).ciphertext,
    decrypt: async (keyring, ciphertext, context) => Buffer.from((await client.call<{ plaintext: string }>('POST', `/v1/transit/decrypt/${k(keyring)}`, { ciphertext, ...ctxBody(context) })).plaintext, 'base64'),
    rewrap: async (keyring, cts, context) => (await client.call<{ items: RewrapResult[] }>('POST', `/v1/transit/rewrap/${k(keyring)}`, { items: cts.map((ciphertext) => ({ ciphertext, ...ctxBody(context) })) })).items,
    datakey: async (keyring, context) => {
      const r = await client.call<{ plaintext: string; ciphertext: string }>('POST', `/v1/transit/datakey/${k(keyring)}`, ctxBody(context));
      return { plaintext: Buffer.from(r.plaintext, 'base64'), ciphertext: r.ciphertext };
    },
    rotate: async (keyring) => (await client.call<{ keyring: KeyringInfo }>('POST', `/v1/kms/keyrings/${k(keyring)}/rotate`, {})).keyring,
    retire: async (keyring, min) => (await client.call<{ keyring: KeyringInfo }>('POST', `/v1/kms/keyrings/${k(keyring)}/config`, { minDecryptionVersion: min })).keyring,
    keyrings: async () => (await client.call<{ keyrings: KeyringInfo[] }>('GET', '/v1/kms/keyrings')).keyrings,
    secretPut: async (path, data, cas) => (await client.call<{ version: number }>('PUT', secretUrl(path), { data, ...(cas === undefined ? {} : { cas }) })).version,
    secretGet: (path, version) => client.call('GET', secretUrl(path) + (version ? `?version=${version}` : '')),
    secretList: async (prefix) => (await client.call<{ secrets: SecretList }>('GET', `/v1/secrets?prefix=${encodeURIComponent(prefix)}`)).secrets,
    secretDelete: async (path, versions) => { await client.call('DELETE', secretUrl(path) + (versions ? `?versions=${versions.join(',')}` : '')); },
    secretDestroy: async (path, versions) => { await client.call('POST', `${secretUrl(path)}/destroy`, { versions }); },
    close: () => client.close(),
  };
}

/** The root key of a data directory, as the control plane would get it. */
async function rootKeyOf(dataDir: string): Promise<Buffer> {
  const sealed = join(dataDir, 'root.sealed');
  if (existsSync(sealed)) {
    const pass = process.env.PORTCULLIS_UNSEAL_PASSPHRASE;
    if (!pass) throw new PortcullisError('PCL_ERR_KMS_SEALED', `${sealed} is sealed: set PORTCULLIS_UNSEAL_PASSPHRASE to use --data-dir`);
    return unsealRoot(sealed, pass);
  }
  return loadMasterKey(dataDir).key;
}

async function localBackend(dataDir: string): Promise<Backend> {
  if (existsSync(join(dataDir, 'control.sock'))) {
    const up = await askLocalSocket(join(dataDir, 'control.sock'), { op: 'status' }, 2000).then(() => true, () => false);
    if (up) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `a control plane is running on ${dataDir}: drop --data-dir to go through it`);
  }
  if (!existsSync(join(dataDir, 'store'))) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `no embedded store in ${dataDir}`);
  const root = await rootKeyOf(dataDir);
  const store = await PgliteStore.open(join(dataDir, 'store'));
  const kms = await KeyManager.open({ store, wrapper: new KeyWrapper(root) });
  const secrets = new SecretStore({ store, kms });
  return {
    encrypt: (keyring, plaintext, context) => kms.encrypt(keyring, plaintext, context),
    decrypt: (keyring, ciphertext, context) => kms.decrypt(ciphertext, context, keyring),
    rewrap: (keyring, cts, context) => Promise.all(cts.map((ct) => kms.rewrap(ct, context, keyring).then(
      (ciphertext) => ({ ciphertext }),
      (err: unknown) => ({ error: { code: err instanceof PortcullisError ? err.code : 'PCL_ERR_INTERNAL' } }),
    ))),
    datakey: (keyring, context) => kms.generateDataKey(keyring, context),
    rotate: (keyring) => kms.rotate(keyring),
    retire: (keyring, min) => kms.setMinDecryptionVersion(keyring, min),
    keyrings: () => kms.listKeyrings(),
    secretPut: async (path, data, cas) => (await secrets.put(path, data, cas === undefined ? {} : { cas })).version,
    secretGet: (path, version) => secrets.get(path, version),
    secretList: (prefix) => secrets.list(prefix),
    secretDelete: (path, versions) => secrets.delete(path, versions),
    secretDestroy: (path, versions) => secrets.destroy(path, versions),
    close: async () => { await kms.close(); await store.close(); root.fill(0); },
  };
}

interface Target { config: string; dataDir?: string }

async function withBackend<T>(o: Target, fn: (b: Backend) => Promise<T>): Promise<T> {
  let b: Backend;
  if (o.dataDir) {
    b = await localBackend(resolve(o.dataDir));
  } else {
    const c = loadConfig(o.config);
    b = remoteBackend(AdminClient.fromDataDir(c.control.url, c.control.dataDir));
  }
  try {
    return await fn(b);
  } finally {
    await b.close();
  }
}

function parseContext(pairs: string[] = []): KmsContext {
  const out: Record<string, string> = {};
  for (const p of pairs) {
    const eq = p.indexOf('=');
    if (eq < 1) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `context entries are key=value, got "${p.slice(0, 40)}"`);
    out[p.slice(0, eq)] = p.slice(eq + 1);
  }
  return out;
}

function versionsOf(list?: string): number[] | undefined {
  if (list === undefined) return undefined;
  const vs = list.split(',').map(Number);
  if (vs.some((v) => !Number.isSafeInteger(v) || v < 1)) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', '--versions is a comma-separated list of positive integers');
  return vs;
}

const stdin = (): Buffer => readFileSync(0);
const passphraseFrom = (o: { passphraseStdin?: boolean }): string => {
  const p = o.passphraseStdin ? stdin().toString('utf8').replace(/\r?\n$/, '') : process.env.PORTCULLIS_UNSEAL_PASSPHRASE;
  if (!p) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', 'give the passphrase on stdin (--passphrase-stdin) or in PORTCULLIS_UNSEAL_PASSPHRASE');
  return p;
};

export function registerKmsCommands(cli: Command, defaultConfig: string): void {
  const target = (c: Command): Command => c
    .option('-c, --config <file>', 'config file (the control plane is reached at control.url)', defaultConfig)
    .option('--data-dir <dir>', 'work directly on this stopped control plane\'s embedded store');
  const dataDirOf = (o: { config: string }): string => loadConfig(o.config).control.dataDir;

  const kms = cli.command('kms').description('key management: the root key, keyrings, encryption');

  kms.command('init')
    .description('seal the root key under a passphrase (argon2id); the existing master.key, if any, is sealed and removed')
    .option('-c, --config <file>', 'config file', defaultConfig)
    .option('--passphrase-stdin', 'read the passphrase from standard input (otherwise PORTCULLIS_UNSEAL_PASSPHRASE)')
    .action(async (o: { config: string; passphraseStdin?: boolean }) => {
      const dataDir = dataDirOf(o);
      mkdirSync(dataDir, { recursive: true, mode: 0o700 });
      const sealed = join(dataDir, 'root.sealed');
      const keyFile = join(dataDir, 'master.key');
      const existing = existsSync(keyFile) ? loadMasterKey(dataDir).key : undefined;
      if (!existing && existsSync(join(dataDir, 'store'))) {
        throw new PortcullisError('PCL_ERR_MASTER_KEY', `${dataDir} has a store but no master.key: its root key comes from elsewhere (PORTCULLIS_MASTER_KEY?)`);
      }
      await initSealedRoot(sealed, passphraseFrom(o), existing);
      if (existing) { existing.fill(0); rmSync(keyFile); }
      console.log(`root key sealed in ${sealed}${existing ? ' (the existing key; master.key removed)' : ''}; start the control plane, then run \`portcullis kms unseal\``);
    });

  kms.command('unseal')
    .description('unseal a running control plane (through its local socket)')
    .option('-c, --config <file>', 'config file', defaultConfig)
    .option('--passphrase-stdin', 'read the passphrase from standard input (otherwise PORTCULLIS_UNSEAL_PASSPHRASE)')
    .action(async (o: { config: string; passphraseStdin?: boolean }) => {
      const reply = await askLocalSocket(join(dataDirOf(o), 'control.sock'), { op: 'unseal', passphrase: passphraseFrom(o) }, 120_000);
      if (!reply.ok) throw new PortcullisError(reply.code as 'PCL_ERR_KMS_PASSPHRASE', reply.message); // a code of our catalogue, from our server
      console.log('unsealed');
    });

  kms.command('seal')
    .description('seal a running control plane: it drops every key from memory and stops serving until unsealed')
    .option('-c, --config <file>', 'config file', defaultConfig)
    .action(async (o: { config: string }) => {
      const reply = await askLocalSocket(join(dataDirOf(o), 'control.sock'), { op: 'seal' });
      if (!reply.ok) throw new PortcullisError(reply.code as 'PCL_ERR_INVALID_ARGUMENT', reply.message); // a code of our catalogue, from our server
      console.log('sealed');
    });

  kms.command('status')
    .description('is the running control plane sealed?')
    .option('-c, --config <file>', 'config file', defaultConfig)
    .action(async (o: { config: string }) => {
      const reply = await askLocalSocket(join(dataDirOf(o), 'control.sock'), { op: 'status' });
      console.log(reply.ok ? (reply.sealed ? 'sealed' : 'unsealed') : reply.message);
    });

  target(kms.command('keyrings').description('list keyrings and their versions'))
    .option('--json', 'JSON output')
    .action((o: Target & { json?: boolean }) => withBackend(o, async (b) => {
      const list = await b.keyrings();
      if (o.json) return void console.log(JSON.stringify(list, null, 2));
      for (const k of list) console.log(`${k.name.padEnd(24)} ${k.type.padEnd(12)} v${k.latestVersion} (decrypts from v${k.minDecryptionVersion})${k.nextRotationAt ? `, next rotation ${k.nextRotationAt}` : ''}`);
    }));

  target(kms.command('encrypt').description('encrypt standard input; prints the ciphertext (with its keyring version prefix)'))
    .requiredOption('-k, --keyring <name>', 'keyring')
    .option('--context <k=v...>', 'associated data the ciphertext is bound to')
    .action((o: Target & { keyring: string; context?: string[] }) => withBackend(o, async (b) => {
      console.log(await b.encrypt(o.keyring, stdin(), parseContext(o.context)));
    }));

  target(kms.command('decrypt').description('decrypt a ciphertext from standard input; writes the plaintext to standard output'))
    .option('--context <k=v...>', 'the context it was encrypted with')
    .action((o: Target & { context?: string[] }) => withBackend(o, async (b) => {
      const ct = stdin().toString('utf8').trim();
      process.stdout.write(await b.decrypt(parseCiphertext(ct).keyring, ct, parseContext(o.context)));
    }));

  target(kms.command('rotate').description('add a new version to a keyring; old versions keep decrypting').argument('<keyring>'))
    .action((name: string, o: Target) => withBackend(o, async (b) => {
      const k = await b.rotate(name);
      console.log(`${k.name}: now v${k.latestVersion}`);
    }));

  target(kms.command('retire').description('stop old versions from decrypting: versions below --below are refused').argument('<keyring>'))
    .requiredOption('--below <version>', 'the new minimum decryption version')
    .action((name: string, o: Target & { below: string }) => withBackend(o, async (b) => {
      const k = await b.retire(name, Number(o.below));
      console.log(`${k.name}: decrypts from v${k.minDecryptionVersion} (latest v${k.latestVersion})`);
    }));

  target(kms.command('rewrap').description('re-encrypt ciphertexts (one per line on stdin) under the latest version, in batches; plaintext never leaves the KMS'))
    .requiredOption('-k, --keyring <name>', 'keyring')
    .option('--context <k=v...>', 'the context they were encrypted with')
    .option('--batch <n>', 'ciphertexts per request', '500')
    .action((o: Target & { keyring: string; context?: string[]; batch: string }) => withBackend(o, async (b) => {
      const lines = stdin().toString('utf8').split('\n').map((l) => l.trim()).filter(Boolean);
      const size = Math.max(1, Math.min(1000, Number(o.batch) || 500));
      const bar = progress('rewrap', lines.length);
      let failed = 0;
      for (let i = 0; i < lines.length; i += size) {
        const results = await b.rewrap(o.keyring, lines.slice(i, i + size), parseContext(o.context));
        for (const r of results) {
          if ('ciphertext' in r) console.log(r.ciphertext);
          else { failed++; console.log(`error ${r.error.code}`); }
        }
        bar.tick(results.length);
      }
      bar.done();
      if (failed > 0) { console.error(`${failed} of ${lines.length} could not be rewrapped (their lines say why)`); process.exitCode = 1; }
    }));

  target(kms.command('datakey').description('generate a data key for envelope encryption: prints JSON { plaintext (base64), ciphertext }'))
    .requiredOption('-k, --keyring <name>', 'keyring')
    .option('--context <k=v...>', 'associated data for the wrapped key')
    .action((o: Target & { keyring: string; context?: string[] }) => withBackend(o, async (b) => {
      const dk = await b.datakey(o.keyring, parseContext(o.context));
      console.log(JSON.stringify({ plaintext: dk.plaintext.toString('base64'), ciphertext: dk.ciphertext }));
      dk.plaintext.fill(0);
    }));

  const secret = cli.command('secret').description('versioned, encrypted secrets that services fetch over mTLS');
  target(secret.command('put').description('write a new version: KEY=VALUE pairs, or a JSON object on stdin with --stdin').argument('<path>').argument('[pairs...]'))
    .option('--stdin', 'read a JSON object of strings from standard input')
    .option('--cas <version>', 'only if the latest version is this one (0: only if new)')
    .action((path: string, pairs: string[], o: Target & { stdin?: boolean; cas?: string }) => withBackend(o, async (b) => {
      const data = o.stdin ? JSON.parse(stdin().toString('utf8')) as Record<string, string> : parseContext(pairs); // shape checked by the store
      const v = await b.secretPut(path, data, o.cas === undefined ? undefined : Number(o.cas));
      console.log(`${path}: version ${v}`);
    }));
  target(secret.command('get').description('print a secret (latest version, or --version) as JSON').argument('<path>'))
    .option('--version <n>', 'a given version')
    .option('--field <key>', 'print one value only, raw')
    .action((path: string, o: Target & { version?: string; field?: string }) => withBackend(o, async (b) => {
      const s = await b.secretGet(path, o.version ? Number(o.version) : undefined);
      if (o.field !== undefined) {
        const v = s.data[o.field];
        if (v === undefined) throw new PortcullisError('PCL_ERR_SECRET_NOT_FOUND', `no key "${o.field}" in ${path}`);
        return void process.stdout.write(v);
      }
      console.log(JSON.stringify(s, null, 2));
    }));
  target(secret.command('list').description('list secrets and their versions (metadata only)'))
    .option('--prefix <prefix>', 'only paths under this prefix', '')
    .action((o: Target & { prefix: string }) => withBackend(o, async (b) => {
      for (const s of await b.secretList(o.prefix)) {
        const live = s.versions.filter((v) => !v.deleted && !v.destroyed).map((v) => v.version);
        console.log(`${s.path}  latest v${s.latest}  live [${live.join(', ')}]`);
      }
    }));
  target(secret.command('delete').description('soft-delete the latest version (or --versions); undeletable until destroyed').argument('<path>'))
    .option('--versions <list>', 'comma-separated versions')
    .action((path: string, o: Target & { versions?: string }) => withBackend(o, async (b) => {
      await b.secretDelete(path, versionsOf(o.versions));
      console.log(`${path}: deleted`);
    }));
  target(secret.command('destroy').description('erase versions for good').argument('<path>'))
    .requiredOption('--versions <list>', 'comma-separated versions')
    .action((path: string, o: Target & { versions: string }) => withBackend(o, async (b) => {
      await b.secretDestroy(path, versionsOf(o.versions) ?? []);
      console.log(`${path}: destroyed`);
    }));
}
