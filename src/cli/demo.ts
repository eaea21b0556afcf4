// `portcullis demo`: the shop of SCENARIOS.md §1 on loopback, and `portcullis demo token USER`.
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { join, resolve, relative } from 'node:path';
import { loginWithPkce } from '../tokens/client/pkce-login.js';
import { CLI_CLIENT_ID } from '../control/server.js';
import { PortcullisError } from '../core/errors.js';
import { packageRoot, startSystem } from './system.js';

export const SHOP_USERS: Record<string, string[]> = {
  alice: ['customer'],
  bob: ['customer'],
  mallory: ['customer'],
  mia: ['merchant'],
  ada: ['admin'],
};

interface DemoState {
  controlUrl: string;
  caFile: string;
}

export async function runDemo(o: { dataDir: string; controlListen: string; gatewayListen: string }): Promise<void> {
  const dataDir = resolve(o.dataDir);
  console.log('Starting the Portcullis demo (the shop: users, orders, payments) ...');
  const sys = await startSystem({
    template: join(packageRoot, 'examples', 'shop', 'portcullis.yaml'),
    dataDir, controlListen: o.controlListen, gatewayListen: o.gatewayListen, users: SHOP_USERS,
  });
  const state: DemoState = { controlUrl: sys.controlUrl, caFile: sys.caFile };
  writeFileSync(join(dataDir, 'demo.json'), JSON.stringify(state, null, 2));
  const ca = relative(process.cwd(), sys.caFile) || sys.caFile;
  const gw = sys.gatewayUrl;
  const lines = [
    '',
    'WARNING: development defaults in force: a self-signed demo CA, generated demo passwords,',
    `and the master key in ${join(relative(process.cwd(), dataDir) || '.', 'master.key')}. Do not use this data directory in production.`,
    '',
    `  control plane   ${sys.controlUrl}   (OpenID metadata: ${sys.controlUrl}/.well-known/openid-configuration)`,
    `  gateway         ${gw}`,
    ...(sys.config.gateway.metricsListen ? [`  metrics         http://${sys.config.gateway.metricsListen}/metrics   (the gateway's, Prometheus format)`] : []),
    ...sys.config.services.map((s) => `  ${s.name.padEnd(15)} ${s.upstream}  behind sidecar ${s.sidecar.listen}  (${s.spiffeId})`),
    `  CA bundle       ${ca}`,
    `  audit logs      ${join(relative(process.cwd(), dataDir) || '.', 'audit')}/<component>/   (check: npx portcullis audit verify --data-dir ${relative(process.cwd(), dataDir) || '.'})`,
    '',
    'Try it (alice is a customer):',
    `  TOKEN=$(npx portcullis demo token alice)`,
    `  curl --cacert ${ca} -H "Authorization: Bearer $TOKEN" ${gw}/shop/orders              # allowed: 200, her orders`,
    `  curl --cacert ${ca} -H "Authorization: Bearer $TOKEN" -X POST ${gw}/shop/orders/o-1/refund   # refused: 403, customers cannot refund`,
    `  curl --cacert ${ca} ${gw}/shop/orders                                                 # no token: 401`,
    '',
    'Press Ctrl-C to stop.',
  ];
  console.log(lines.join('\n'));
  let stopping = false;
  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    console.log('\nStopping ...');
    sys.stop().then(() => process.exit(0), () => process.exit(1));
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

/** An access token for a demo user, through the real authorization-code + PKCE flow. */
export async function demoToken(o: { dataDir: string; user: string }): Promise<string> {
  const dataDir = resolve(o.dataDir);
  const stateFile = join(dataDir, 'demo.json');
  if (!existsSync(stateFile)) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `no demo running from ${dataDir}: start it with \`npm start\``);
  const state = JSON.parse(readFileSync(stateFile, 'utf8')) as DemoState; // written by runDemo
  const passwords = JSON.parse(readFileSync(join(dataDir, 'users.json'), 'utf8')) as Record<string, string>; // written by startSystem
  const password = passwords[o.user];
  if (!password) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `no demo user "${o.user}" (known: ${Object.keys(passwords).join(', ')})`);
  const { accessToken } = await loginWithPkce({ controlUrl: state.controlUrl, caPem: readFileSync(state.caFile, 'utf8'), clientId: CLI_CLIENT_ID, username: o.user, password });
  return accessToken;
}
