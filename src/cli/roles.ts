// `portcullis control | gateway | sidecar`: each role wired from a config file. This is the only
// place that joins the layers (DESIGN.md): store + kms + identity + tokens → control plane;
// identity + snapshot + pipeline → data planes.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadConfig } from '../core/config/load.js';
import type { PortcullisConfig } from '../core/config/types.js';
import { PortcullisError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { loadMasterKey } from '../kms/master-key.js';
import { KeyWrapper } from '../kms/wrap.js';
import { PgliteStore } from '../store/pglite.js';
import { ControlPlane } from '../control/server.js';
import { ControlClient } from '../dataplane/control-client.js';
import { Gateway } from '../dataplane/gateway.js';
import { Sidecar } from '../dataplane/sidecar.js';
import { SnapshotSource } from '../dataplane/snapshot.js';
import { WorkloadIdentity } from '../dataplane/workload-identity.js';
import { createJoinToken, readAdminToken } from './join.js';
import { reportReady, startRole, stopOnSignal } from './runtime.js';

export async function runControl(opts: { config: string; listen?: string }): Promise<void> {
  const config = loadConfig(opts.config);
  const dataDir = config.control.dataDir;
  const { logger, audit } = startRole('control', dataDir);
  const master = loadMasterKey(dataDir);
  if (master.origin !== 'env') {
    logger.warn({ file: join(dataDir, 'master.key') }, 'DEVELOPMENT MODE: the master key is a file next to the data it protects; set PORTCULLIS_MASTER_KEY in production');
  }
  const store = await PgliteStore.open(join(dataDir, 'store'));
  const cp = await ControlPlane.create({ config, store, wrapper: new KeyWrapper(master.key), logger, ...(opts.listen ? { listen: opts.listen } : {}) });
  if (cp.adminTokenFile) logger.warn({ file: cp.adminTokenFile }, 'admin token created; keep this file private');
  const addr = await cp.listen();
  logger.info({ listen: `${addr.host}:${addr.port}`, caBundle: cp.caBundleFile() }, 'control plane ready');
  reportReady({ role: 'control', port: addr.port, caBundle: cp.caBundleFile() });
  stopOnSignal(logger, async () => {
    await cp.close();
    await store.close();
    await audit.close();
  });
}

interface DataPlaneOpts {
  config: string;
  joinToken?: string;
  stateDir?: string;
}

/** Obtains the workload identity and first snapshot shared by gateway and sidecar. */
async function dataPlaneIdentity(config: PortcullisConfig, spiffeId: string, stateDir: string, joinToken: string | undefined, logger: Logger): Promise<{ identity: WorkloadIdentity; snapshot: SnapshotSource }> {
  const caFile = join(config.control.dataDir, 'ca.pem');
  if (!existsSync(caFile) && !existsSync(join(stateDir, 'identity.json'))) {
    throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `no trust bundle at ${caFile}: start \`portcullis control\` first, or copy its ca.pem there`);
  }
  const control = new ControlClient(config.control.url, existsSync(caFile) ? readFileSync(caFile, 'utf8') : '');
  let token = joinToken ?? process.env.PORTCULLIS_JOIN_TOKEN;
  if (!token && !existsSync(join(stateDir, 'identity.json'))) {
    const admin = readAdminToken(config.control.dataDir);
    if (admin) {
      logger.warn({ spiffeId }, 'DEVELOPMENT MODE: no join token given; minting one with the local admin token');
      token = await createJoinToken(config.control.url, readFileSync(caFile, 'utf8'), admin, spiffeId);
    }
  }
  const identity = await WorkloadIdentity.obtain({ spiffeId, control, stateDir, logger, ...(token ? { joinToken: token } : {}) });
  identity.start();
  const snapshot = new SnapshotSource({ control, identity, stateDir, logger });
  await snapshot.init();
  snapshot.start();
  return { identity, snapshot };
}

export async function runGateway(opts: DataPlaneOpts & { listen?: string }): Promise<void> {
  const config = loadConfig(opts.config);
  const dataDir = config.control.dataDir;
  const { logger, audit } = startRole('gateway', dataDir);
  const stateDir = opts.stateDir ?? join(dataDir, 'workloads', 'gateway');
  const { identity, snapshot } = await dataPlaneIdentity(config, config.gateway.spiffeId, stateDir, opts.joinToken, logger);
  const gateway = new Gateway({ config, identity, snapshot, logger, ...(opts.listen ? { listen: opts.listen } : {}) });
  const addr = await gateway.listen();
  logger.info({ listen: `${addr.host}:${addr.port}`, spiffeId: config.gateway.spiffeId }, 'gateway ready');
  reportReady({ role: 'gateway', port: addr.port });
  stopOnSignal(logger, async () => {
    identity.stop();
    snapshot.stop();
    await gateway.close();
    await audit.close();
  });
}

export async function runSidecar(opts: DataPlaneOpts & { service: string }): Promise<void> {
  const config = loadConfig(opts.config);
  const service = config.services.find((s) => s.name === opts.service);
  if (!service) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `service "${opts.service}" is not in ${config.source} (known: ${config.services.map((s) => s.name).join(', ')})`);
  const dataDir = config.control.dataDir;
  const { logger, audit } = startRole(`sidecar-${service.name}`, dataDir);
  const stateDir = opts.stateDir ?? join(dataDir, 'workloads', service.name);
  const { identity, snapshot } = await dataPlaneIdentity(config, service.spiffeId, stateDir, opts.joinToken, logger);
  const sidecar = new Sidecar({ config, service: service.name, identity, logger });
  const ports = await sidecar.listen();
  logger.info({ service: service.name, inbound: service.sidecar.listen, outbound: service.sidecar.outbound, spiffeId: service.spiffeId }, 'sidecar ready');
  reportReady({ role: 'sidecar', service: service.name, ...ports });
  stopOnSignal(logger, async () => {
    identity.stop();
    snapshot.stop();
    await sidecar.close();
    await audit.close();
  });
}
