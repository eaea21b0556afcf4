// Starts a whole system from one config as real processes on loopback: the control plane, each
// service and its sidecar, and the gateway. `portcullis demo` runs the shop with it, and the
// end-to-end tests run it on free ports. Children log to <dataDir>/logs/<name>.log.
import { fork, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createWriteStream, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse, parseDocument } from 'yaml';
import { loadConfig } from '../core/config/load.js';
import type { PortcullisConfig } from '../core/config/types.js';
import { PortcullisError } from '../core/errors.js';
import { checkUserAttributes, type UserAttributes } from '../core/principal.js';
import { AdminClient } from './admin-client.js';

/** The package root, found from this compiled file (dist/src/cli/system.js). */
export const packageRoot = fileURLToPath(new URL('../../../', import.meta.url));
const CLI = join(packageRoot, 'bin', 'portcullis.js');

export interface DemoUser {
  roles: string[];
  attrs?: UserAttributes;
}

/** The demo users of an example system (examples/<system>/users.yaml: `name: { roles, attrs }`). */
export function loadDemoUsers(file: string): Record<string, DemoUser> {
  const raw = parse(readFileSync(file, 'utf8')) as unknown;
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `${file}: not a map of users`);
  const out: Record<string, DemoUser> = {};
  for (const [name, v] of Object.entries(raw as Record<string, unknown>)) {
    const u = v as Partial<DemoUser> | null;
    const bad = !u || !Array.isArray(u.roles) || !u.roles.every((r) => typeof r === 'string') ? 'roles must be a list of names'
      : u.attrs !== undefined ? checkUserAttributes(u.attrs) : undefined;
    if (bad) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `${file}: user ${name}: ${bad}`);
    out[name] = { roles: (u as DemoUser).roles, ...((u as DemoUser).attrs ? { attrs: (u as DemoUser).attrs } : {}) }; // shapes checked just above
  }
  return out;
}

export interface SystemOptions {
  /** The config to start from (e.g. examples/shop/portcullis.yaml). */
  template: string;
  dataDir: string;
  controlListen?: string;
  gatewayListen?: string;
  /**
   * When set, every service, sidecar and outbound port is renumbered from here (3 per service), and
   * the template's fixed metrics listeners are dropped unless the options below give new ones.
   */
  portBase?: number;
  /** gateway.metricsListen of the effective config. */
  gatewayMetricsListen?: string;
  /** control.metricsListen of the effective config. */
  controlMetricsListen?: string;
  /** When set, each sidecar serves /metrics on 127.0.0.1:<sidecarMetricsPortBase + i> (1 per service). */
  sidecarMetricsPortBase?: number;
  /** Extra environment for every child (e.g. OTEL_EXPORTER_OTLP_ENDPOINT), over this process's own. */
  env?: Record<string, string>;
  /** Top-level sections replaced in the effective config (e.g. `audit`), the template left as it is. */
  overrides?: Record<string, unknown>;
  /** Users to create on first start. Passwords are generated and kept in dataDir. */
  users?: Record<string, DemoUser>;
  /** More gateway replicas (`gateway --instance <name> --listen <addr>`), sharing the config and the limits. */
  extraGateways?: { instance: string; listen: string }[];
  onLog?: (line: string) => void;
}

export interface RunningSystem {
  config: PortcullisConfig;
  configFile: string;
  caFile: string;
  gatewayUrl: string;
  controlUrl: string;
  passwords: Record<string, string>;
  /** URLs of the extra gateway replicas, in the order asked. */
  extraGatewayUrls: string[];
  stop(): Promise<void>;
}

/** Writes the effective config: the template with listen addresses and data dir replaced. */
function writeEffectiveConfig(o: SystemOptions): string {
  const doc = parseDocument(readFileSync(o.template, 'utf8'));
  for (const [key, value] of Object.entries(o.overrides ?? {})) doc.set(key, doc.createNode(value));
  const dataDir = resolve(o.dataDir);
  doc.setIn(['control', 'dataDir'], dataDir);
  if (o.controlListen) {
    doc.setIn(['control', 'listen'], o.controlListen);
    doc.setIn(['control', 'url'], `https://${o.controlListen}`);
    doc.deleteIn(['tokens', 'issuer']);
  }
  if (o.gatewayListen) {
    doc.setIn(['gateway', 'listen'], o.gatewayListen);
    doc.setIn(['tokens', 'audience'], `https://${o.gatewayListen}`);
  }
  const base = o.portBase;
  const services = doc.getIn(['services']) as { items: unknown[] } | undefined; // a YAML sequence in every valid config
  const serviceCount = services?.items.length ?? 0;
  if (base !== undefined) {
    // Renumbered systems run side by side (the tests): the template's fixed metrics ports would collide.
    doc.deleteIn(['gateway', 'metricsListen']);
    doc.deleteIn(['control', 'metricsListen']);
    for (let i = 0; i < serviceCount; i++) {
      const p = base + i * 3;
      doc.setIn(['services', i, 'upstream'], `http://127.0.0.1:${p}`);
      doc.setIn(['services', i, 'sidecar', 'listen'], `127.0.0.1:${p + 1}`);
      doc.setIn(['services', i, 'sidecar', 'outbound'], `127.0.0.1:${p + 2}`);
      doc.deleteIn(['services', i, 'sidecar', 'metricsListen']);
    }
  }
  if (o.gatewayMetricsListen) doc.setIn(['gateway', 'metricsListen'], o.gatewayMetricsListen);
  if (o.controlMetricsListen) doc.setIn(['control', 'metricsListen'], o.controlMetricsListen);
  const metricsBase = o.sidecarMetricsPortBase;
  if (metricsBase !== undefined) {
    for (let i = 0; i < serviceCount; i++) doc.setIn(['services', i, 'sidecar', 'metricsListen'], `127.0.0.1:${metricsBase + i}`);
  }
  // The effective config lives in the data directory: paths of the template's policy files must
  // stay pointing beside the template.
  const templateDir = dirname(resolve(o.template));
  const abs = (v: unknown): unknown => (typeof v === 'string' ? resolve(templateDir, v) : v);
  for (const key of ['files', 'tests'] as const) {
    const list = doc.getIn(['policies', key]) as { items: { value: unknown }[] } | undefined;
    list?.items.forEach((item, i) => doc.setIn(['policies', key, i], abs(item.value)));
  }
  const shadow = doc.getIn(['policies', 'shadow', 'files']) as { items: { value: unknown }[] } | undefined;
  shadow?.items.forEach((item, i) => doc.setIn(['policies', 'shadow', 'files', i], abs(item.value)));
  if (doc.hasIn(['policies', 'schema'])) doc.setIn(['policies', 'schema'], abs(doc.getIn(['policies', 'schema'])));
  const routes = doc.getIn(['routes']) as { items: unknown[] } | undefined;
  routes?.items.forEach((_r, i) => {
    if (doc.hasIn(['routes', i, 'validate', 'openapi', 'file'])) doc.setIn(['routes', i, 'validate', 'openapi', 'file'], abs(doc.getIn(['routes', i, 'validate', 'openapi', 'file'])));
  });
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const file = join(dataDir, 'system.yaml');
  writeFileSync(file, `# Written by portcullis from ${o.template}; edit that file instead.\n` + doc.toString());
  return file;
}

export async function startSystem(o: SystemOptions): Promise<RunningSystem> {
  const configFile = writeEffectiveConfig(o);
  // Each example system keeps its services beside its config: examples/<system>/service.ts.
  const serviceModule = join(packageRoot, 'dist', 'examples', basename(dirname(resolve(o.template))), 'service.js');
  const config = loadConfig(configFile);
  const dataDir = config.control.dataDir;
  const logDir = join(dataDir, 'logs');
  mkdirSync(logDir, { recursive: true });
  mkdirSync(join(dataDir, 'services'), { recursive: true, mode: 0o700 });
  const children: { name: string; child: ChildProcess }[] = [];

  const start = (name: string, module: string, args: string[], env: Record<string, string> = {}): Promise<Record<string, unknown>> => {
    const log = createWriteStream(join(logDir, `${name}.log`), { flags: 'a' });
    const child = fork(module, args, { env: { ...process.env, ...o.env, ...env }, stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
    child.stdout?.pipe(log);
    child.stderr?.on('data', (d: Buffer) => { log.write(d); o.onLog?.(`[${name}] ${d.toString().trimEnd()}`); });
    children.push({ name, child });
    return new Promise((resolveReady, reject) => {
      child.once('message', (m) => resolveReady(m as Record<string, unknown>)); // our own children's ready report
      child.once('exit', (code) => reject(new PortcullisError('PCL_ERR_INTERNAL', `${name} exited with code ${code} before it was ready; see ${join(logDir, `${name}.log`)}`)));
    });
  };

  const stop = async (): Promise<void> => {
    // Edge first, control plane last, so nothing is refused for lack of a dependency while stopping.
    for (const { child } of [...children].reverse()) {
      if (child.exitCode !== null || child.signalCode !== null) continue;
      const exited = new Promise<void>((r) => child.once('exit', () => r()));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    }
  };

  try {
    await start('control', CLI, ['control', '--config', configFile]);
    const caFile = join(dataDir, 'ca.pem');
    // One admin client for the whole start: users, then a join token per workload.
    const admin = AdminClient.fromDataDir(config.control.url, dataDir);
    try {
      const passwords = await ensureUsers(admin, dataDir, o.users ?? {});
      const token = (spiffeId: string): Promise<string> => admin.joinToken(spiffeId);

      await Promise.all(config.services.map(async (s) => {
        await start(`service-${s.name}`, serviceModule, [s.name], { PORT: String(new URL(s.upstream).port), PORTCULLIS_OUTBOUND: `http://${s.sidecar.outbound}`, DATA_FILE: join(dataDir, 'services', `${s.name}.jsonl`) });
        await start(`sidecar-${s.name}`, CLI, ['sidecar', '--config', configFile, '--service', s.name], { PORTCULLIS_JOIN_TOKEN: await token(s.spiffeId) });
      }));
      await start('gateway', CLI, ['gateway', '--config', configFile], { PORTCULLIS_JOIN_TOKEN: await token(config.gateway.spiffeId) });
      for (const g of o.extraGateways ?? []) {
        await start(`gateway-${g.instance}`, CLI, ['gateway', '--config', configFile, '--instance', g.instance, '--listen', g.listen], { PORTCULLIS_JOIN_TOKEN: await token(config.gateway.spiffeId) });
      }
      const extraGatewayUrls = (o.extraGateways ?? []).map((g) => `https://${g.listen}`);
      return { config, configFile, caFile, gatewayUrl: `https://${config.gateway.listen}`, controlUrl: config.control.url, passwords, extraGatewayUrls, stop };
    } finally {
      await admin.close();
    }
  } catch (err) {
    await stop();
    throw err;
  }
}

/** Creates the demo users once; their generated passwords stay in <dataDir>/users.json (0600). */
async function ensureUsers(admin: AdminClient, dataDir: string, users: Record<string, DemoUser>): Promise<Record<string, string>> {
  const file = join(dataDir, 'users.json');
  let saved: Record<string, string> = {};
  try { saved = JSON.parse(readFileSync(file, 'utf8')) as Record<string, string>; } catch { /* first start */ }
  for (const [username, { roles, attrs }] of Object.entries(users)) {
    if (saved[username]) continue;
    const password = randomBytes(18).toString('base64url');
    await admin.call('POST', '/v1/admin/users', { username, password, roles, ...(attrs ? { attributes: attrs } : {}) });
    saved[username] = password;
    writeFileSync(file, JSON.stringify(saved, null, 2), { mode: 0o600 });
  }
  return saved;
}
