// `portcullis demo`: the four reference systems of SCENARIOS.md (shop, clinic, bank, school) on
// loopback, each with its own control plane and gateway; and `portcullis demo token USER`.
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { join, resolve, relative } from 'node:path';
import { loginWithPkce } from '../tokens/client/pkce-login.js';
import { CLI_CLIENT_ID } from '../control/server.js';
import { PortcullisError } from '../core/errors.js';
import { loadDemoUsers, packageRoot, startSystem, type DemoUser, type RunningSystem } from './system.js';

export const DEMO_SYSTEMS = ['shop', 'clinic', 'bank', 'school'] as const;
export type DemoSystem = (typeof DEMO_SYSTEMS)[number];

/** Each system's gateway and control plane: 8443/8444 for the shop, then +10 per system. */
const PORT_STEP = 10;

export const demoTemplate = (system: DemoSystem): string => join(packageRoot, 'examples', system, 'portcullis.yaml');
export const demoUsers = (system: DemoSystem): Record<string, DemoUser> => loadDemoUsers(join(packageRoot, 'examples', system, 'users.yaml'));

interface DemoState {
  controlUrl: string;
  caFile: string;
  gatewayUrl: string;
}

const TRY: Record<DemoSystem, (gw: string, ca: string) => string[]> = {
  shop: (gw, ca) => [
    `  TOKEN=$(npx portcullis demo token alice)`,
    `  curl --cacert ${ca} -H "Authorization: Bearer $TOKEN" ${gw}/shop/orders/o-1        # allowed: her order`,
    `  curl --cacert ${ca} -H "Authorization: Bearer $TOKEN" ${gw}/shop/orders/o-2        # refused: bob's order, answered as missing`,
  ],
  clinic: (gw, ca) => [
    `  TOKEN=$(npx portcullis demo token nick --system clinic)`,
    `  curl --cacert ${ca} -H "Authorization: Bearer $TOKEN" ${gw}/clinic/patients/pat/labs   # refused: nurses do not read labs`,
  ],
  bank: (gw, ca) => [
    `  TOKEN=$(npx portcullis demo token alice --system bank)`,
    `  curl --cacert ${ca} -H "Authorization: Bearer $TOKEN" ${gw}/bank/accounts/A-1`,
  ],
  school: (gw, ca) => [
    `  TOKEN=$(npx portcullis demo token sam --system school)`,
    `  curl --cacert ${ca} -H "Authorization: Bearer $TOKEN" ${gw}/school/grades/me       # allowed: his own grades`,
  ],
};

export async function runDemo(o: { dataDir: string; controlListen: string; gatewayListen: string; systems: DemoSystem[] }): Promise<void> {
  const dataDir = resolve(o.dataDir);
  const control = o.controlListen.split(':');
  const gateway = o.gatewayListen.split(':');
  const shift = (hp: string[], i: number): string => `${hp[0]}:${Number(hp[1]) + i * PORT_STEP}`;
  console.log(`Starting the Portcullis demo (${o.systems.join(', ')}) ...`);
  const running: RunningSystem[] = [];
  const stopAll = async (): Promise<void> => { for (const s of running.reverse()) await s.stop(); };
  const lines = [
    '',
    'WARNING: development defaults in force: self-signed demo CAs, generated demo passwords, and',
    `master keys in ${relative(process.cwd(), dataDir) || '.'}/<system>/master.key. Do not use these data directories in production.`,
  ];
  try {
    for (const system of o.systems) {
      const dir = join(dataDir, system);
      const sys = await startSystem({
        template: demoTemplate(system), dataDir: dir,
        controlListen: shift(control, DEMO_SYSTEMS.indexOf(system)), gatewayListen: shift(gateway, DEMO_SYSTEMS.indexOf(system)),
        users: demoUsers(system),
      });
      running.push(sys);
      const state: DemoState = { controlUrl: sys.controlUrl, caFile: sys.caFile, gatewayUrl: sys.gatewayUrl };
      writeFileSync(join(dir, 'demo.json'), JSON.stringify(state, null, 2));
      const ca = relative(process.cwd(), sys.caFile) || sys.caFile;
      lines.push(
        '',
        `${system}: gateway ${sys.gatewayUrl}, control plane ${sys.controlUrl}, users ${Object.keys(demoUsers(system)).join(', ')}`,
        ...sys.config.services.map((s) => `  ${s.name.padEnd(12)} ${s.upstream}  behind sidecar ${s.sidecar.listen}  (${s.spiffeId})`),
        ...(sys.config.gateway.metricsListen ? [`  metrics      http://${sys.config.gateway.metricsListen}/metrics (the gateway's, Prometheus format)`] : []),
        `  audit        npx portcullis audit verify --data-dir ${relative(process.cwd(), dir) || '.'}`,
        ...TRY[system](sys.gatewayUrl, ca),
      );
    }
  } catch (err) {
    await stopAll();
    throw err;
  }
  lines.push('', 'Press Ctrl-C to stop.');
  console.log(lines.join('\n'));
  let stopping = false;
  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    console.log('\nStopping ...');
    stopAll().then(() => process.exit(0), () => process.exit(1));
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

/** An access token for a demo user, through the real authorization-code + PKCE flow. */
export async function demoToken(o: { dataDir: string; user: string; system: DemoSystem }): Promise<string> {
  const dataDir = resolve(o.dataDir, o.system);
  const stateFile = join(dataDir, 'demo.json');
  if (!existsSync(stateFile)) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `no ${o.system} demo running from ${dataDir}: start it with \`npm start\``);
  const state = JSON.parse(readFileSync(stateFile, 'utf8')) as DemoState; // written by runDemo
  const passwords = JSON.parse(readFileSync(join(dataDir, 'users.json'), 'utf8')) as Record<string, string>; // written by startSystem
  const password = passwords[o.user];
  if (!password) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `no ${o.system} demo user "${o.user}" (known: ${Object.keys(passwords).join(', ')})`);
  const { accessToken } = await loginWithPkce({ controlUrl: state.controlUrl, caPem: readFileSync(state.caFile, 'utf8'), clientId: CLI_CLIENT_ID, username: o.user, password });
  return accessToken;
}
