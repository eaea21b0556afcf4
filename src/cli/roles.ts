// `portcullis control | gateway | sidecar`: each role wired from a config file. This is the only
// place that joins the layers (DESIGN.md): store + kms + identity + tokens → control plane;
// identity + snapshot + pipeline → data planes.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadConfig } from '../core/config/load.js';
import type { PortcullisConfig } from '../core/config/types.js';
import { PortcullisError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { loadMasterKey } from '../kms/master-key.js';
import { KeyWrapper } from '../kms/wrap.js';
import { unsealRoot } from '../kms/root-key.js';
import { serveLocalSocket } from '../control/local-socket.js';
import { openStore } from '../store/open.js';
import type { Store } from '../store/store.js';
import { ControlPlane } from '../control/server.js';
import { ControlClient } from '../dataplane/control-client.js';
import { Gateway } from '../dataplane/gateway.js';
import { Sidecar } from '../dataplane/sidecar.js';
import { SnapshotSource } from '../dataplane/snapshot.js';
import { ActivePolicies } from '../dataplane/policies.js';
import { ActiveBlocks } from '../dataplane/blocks.js';
import { ApiKeyAuthenticator, ApiKeyRevocationSync } from '../dataplane/api-key-auth.js';
import { RevokedWorkloads } from '../identity/workload-revocations.js';
import { systemClock } from '../core/clock.js';
import { startDetection, type DetectionHandle } from './detection.js';
import { WorkloadIdentity } from '../dataplane/workload-identity.js';
import { AdminClient, readAdminToken } from './admin-client.js';
import { startObservability } from './observability.js';
import { reportReady, startRole, stopOnSignal } from './runtime.js';
import { KmsSigner, WorkloadSigner } from '../audit/signers.js';
import type { CheckpointRecord } from '../audit/log.js';
import { AUDIT_KEYRING } from '../control/server.js';
import { AuditStoreSink } from '../audit/store-sink.js';

/**
 * The control plane's life: obtain the root key (environment, key file, or — when the data
 * directory holds a sealed root — a passphrase through `portcullis kms unseal` on the local
 * socket), open the store and serve; on `portcullis kms seal`, drop every key and wait again.
 */
export async function runControl(opts: { config: string; listen?: string }): Promise<void> {
  const config = loadConfig(opts.config);
  const dataDir = config.control.dataDir;
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const { logger, audit } = startRole('control', dataDir, config.audit.nats);
  // Metrics are served while sealed too: a sealed control plane is exactly when someone should look.
  const obs = await startObservability({ config, role: 'control', metricsListen: config.control.metricsListen, logger });
  const sealedFile = join(dataDir, 'root.sealed');
  let running: { cp: ControlPlane; store: Store; sink: AuditStoreSink; root: Buffer } | undefined;
  // Logins, token requests and admin actions happen here; blocks go straight to the block list.
  const detection = startDetection({
    config, logger,
    block: async (b) => {
      await running?.cp.blocks.add({ kind: b.kind, value: b.value, seconds: b.seconds, rule: b.rule, alertId: b.alertId, by: 'control' })
        .catch((err: unknown) => logger.error({ err: (err as Error).message }, 'block refused'));
    },
    expiring: () => (running ? [{ name: `CA of ${config.trustDomain}`, notAfter: running.cp.ca.notAfter }] : []),
  });

  const open = async (root: Buffer): Promise<void> => {
    // PostgreSQL when DATABASE_URL is set (replicas share it), else the embedded PGlite.
    const store = await openStore({ dataDir, databaseUrl: process.env.DATABASE_URL });
    // The audit store: our own events from now on, and every data plane's through NATS when set.
    const natsUrl = process.env.NATS_URL;
    const sink = new AuditStoreSink({ store, logger, ...(natsUrl ? { nats: { ...config.audit.nats, url: natsUrl } } : {}) });
    let cp: ControlPlane | undefined;
    try {
      cp = await ControlPlane.create({ config, store, wrapper: new KeyWrapper(root), logger, ...(opts.listen ? { listen: opts.listen } : {}) });
      if (cp.adminTokenFile) logger.warn({ file: cp.adminTokenFile }, 'admin token created; keep this file private');
      // Control-plane checkpoints are signed by the KMS; verifiers get the public keys from a file.
      const witness = cp.checkpoints;
      await audit.open(new KmsSigner(cp.kms, AUDIT_KEYRING), (c) => {
        witness.record('control', c, 'control').catch((err: unknown) => logger.warn({ err: (err as Error).message }, 'checkpoint not witnessed'));
      });
      writeFileSync(join(dataDir, 'audit', 'control-keys.json'), JSON.stringify((await cp.kms.publicKeys(AUDIT_KEYRING)).map((k) => ({ keyring: AUDIT_KEYRING, ...k })), null, 2));
      const addr = await cp.listen();
      running = { cp, store, sink, root };
      logger.info({ listen: `${addr.host}:${addr.port}`, caBundle: cp.caBundleFile() }, 'control plane ready');
      reportReady({ role: 'control', port: addr.port, caBundle: cp.caBundleFile() });
    } catch (err) {
      // Nothing half-open stays behind: no listener, no KMS timers, no log holding a dead signer.
      await cp?.close().catch(() => undefined);
      await audit.detach().catch(() => undefined);
      await sink.close().catch(() => undefined);
      await store.close();
      throw err;
    }
  };
  const seal = async (): Promise<void> => {
    const r = running;
    running = undefined;
    if (!r) return;
    await r.cp.close();
    await audit.detach(); // its last checkpoint is signed before the keys go
    await r.sink.close();
    await r.store.close();
    r.root.fill(0);
  };

  const socket = await serveLocalSocket(join(dataDir, 'control.sock'), async (req) => {
    switch (req.op) {
      case 'status': return { ok: true, sealed: !running };
      case 'unseal':
        if (!running) {
          if (!existsSync(sealedFile)) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', 'this control plane has no sealed root key (see `portcullis kms init`)');
          await open(await unsealRoot(sealedFile, req.passphrase));
          logger.info('unsealed');
        }
        return { ok: true, sealed: false };
      case 'seal':
        if (!existsSync(sealedFile)) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', 'the root key is in a file or the environment, so sealing would protect nothing: run `portcullis kms init` first');
        await seal();
        logger.warn('sealed: every key dropped from memory; `portcullis kms unseal` to serve again');
        return { ok: true, sealed: true };
    }
  });

  const shutdown = async (): Promise<void> => {
    await detection?.stop();
    await seal();
    await new Promise((r) => socket.close(r));
    await obs.close();
    await audit.close();
  };
  try {
    if (existsSync(sealedFile)) {
      const pass = process.env.PORTCULLIS_UNSEAL_PASSPHRASE;
      if (pass) await open(await unsealRoot(sealedFile, pass));
      else logger.warn({ socket: join(dataDir, 'control.sock') }, 'sealed: run `portcullis kms unseal` to start serving');
    } else {
      const master = loadMasterKey(dataDir);
      if (master.origin !== 'env') {
        logger.warn({ file: join(dataDir, 'master.key') }, 'DEVELOPMENT MODE: the root key is a file next to the data it protects; use `portcullis kms init` (passphrase) or PORTCULLIS_MASTER_KEY in production');
      }
      await open(master.key);
    }
  } catch (err) {
    await shutdown(); // a failed start exits instead of lingering on the socket
    throw err;
  }
  stopOnSignal(logger, shutdown);
}

interface DataPlaneOpts {
  config: string;
  joinToken?: string;
  stateDir?: string;
}

/** Obtains the workload identity and first snapshot shared by gateway and sidecar. */
async function dataPlaneIdentity(config: PortcullisConfig, spiffeId: string, stateDir: string, joinToken: string | undefined, logger: Logger): Promise<{ identity: WorkloadIdentity; snapshot: SnapshotSource; control: ControlClient }> {
  const caFile = join(config.control.dataDir, 'ca.pem');
  if (!existsSync(caFile) && !existsSync(join(stateDir, 'identity.json'))) {
    throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `no trust bundle at ${caFile}: start \`portcullis control\` first, or copy its ca.pem there`);
  }
  const control = new ControlClient(config.control.url, existsSync(caFile) ? readFileSync(caFile, 'utf8') : '');
  let token = joinToken ?? process.env.PORTCULLIS_JOIN_TOKEN;
  if (!token && !existsSync(join(stateDir, 'identity.json'))) {
    if (readAdminToken(config.control.dataDir)) {
      logger.warn({ spiffeId }, 'DEVELOPMENT MODE: no join token given; minting one with the local admin token');
      const admin = AdminClient.fromDataDir(config.control.url, config.control.dataDir);
      token = await admin.joinToken(spiffeId).finally(() => admin.close());
    }
  }
  const identity = await WorkloadIdentity.obtain({ spiffeId, control, stateDir, logger, ...(token ? { joinToken: token } : {}) });
  identity.start();
  const snapshot = new SnapshotSource({ control, identity, stateDir, logger, refreshMs: config.control.snapshotRefreshSeconds * 1000 });
  await snapshot.init();
  snapshot.start();
  return { identity, snapshot, control };
}

/**
 * Detection over this data plane's own decisions. A block it asks for applies here at once and is
 * sent to the control plane, which hands it to every other data plane in the snapshot.
 */
function dataPlaneDetection(config: PortcullisConfig, logger: Logger, identity: WorkloadIdentity, control: ControlClient, blocks: ActiveBlocks): DetectionHandle | undefined {
  return startDetection({
    config, logger,
    block: async (b) => {
      blocks.addLocal(b.kind, b.value, b.seconds);
      const c = identity.current();
      await control.block({ keyPem: c.keyPem, chainPem: c.chainPem }, { kind: b.kind, value: b.value, seconds: b.seconds, rule: b.rule, alertId: b.alertId })
        .catch((err: unknown) => logger.error({ err: (err as Error).message, kind: b.kind }, 'block not accepted by the control plane; applied here only'));
    },
  });
}

/** Each signed checkpoint goes to the control plane; a failure is logged (the next one covers it). */
function witnessedBy(control: ControlClient, identity: WorkloadIdentity, logger: Logger, log: string): (c: CheckpointRecord) => void {
  return (c) => {
    const { keyPem, chainPem } = identity.current();
    control.publishCheckpoint({ keyPem, chainPem }, { ...c, log }).catch((err: unknown) => logger.warn({ err: (err as Error).message, seq: c.seq }, 'checkpoint not witnessed by the control plane'));
  };
}

export async function runGateway(opts: DataPlaneOpts & { listen?: string; instance?: string }): Promise<void> {
  const config = loadConfig(opts.config);
  const dataDir = config.control.dataDir;
  if (opts.instance !== undefined && !/^[a-z0-9][a-z0-9-]{0,31}$/.test(opts.instance)) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', '--instance must be 1-32 lowercase letters, digits or "-"');
  const name = opts.instance ? `gateway-${opts.instance}` : 'gateway';
  const { logger, audit } = startRole(name, dataDir, config.audit.nats);
  const obs = await startObservability({ config, role: 'gateway', metricsListen: config.gateway.metricsListen, logger });
  const stateDir = opts.stateDir ?? join(dataDir, 'workloads', name);
  const { identity, snapshot, control } = await dataPlaneIdentity(config, config.gateway.spiffeId, stateDir, opts.joinToken, logger);
  await audit.open(new WorkloadSigner(() => identity.current()), witnessedBy(control, identity, logger, name));
  obs.watchIdentity(identity);
  const policies = new ActivePolicies(snapshot, logger);
  const blocks = new ActiveBlocks(systemClock, snapshot);
  const detection = dataPlaneDetection(config, logger, identity, control, blocks);
  // API keys: the snapshot brings hashes and scopes; revocations arrive every 2 s on their own feed.
  const apiKeys = new ApiKeyAuthenticator(systemClock);
  apiKeys.applySnapshot(snapshot.current().apiKeys);
  snapshot.on('updated', (doc) => {
    try { apiKeys.applySnapshot(doc.apiKeys); } catch (err) { logger.error({ err: (err as Error).message }, 'API keys in the snapshot refused'); }
  });
  const creds = (): { keyPem: string; chainPem: string } => { const c = identity.current(); return { keyPem: c.keyPem, chainPem: c.chainPem }; };
  const apiKeySync = new ApiKeyRevocationSync({
    authenticator: apiKeys, logger,
    control: { revokedSince: (since) => control.apiKeyRevocations(creds(), since), reportUsage: (used) => control.reportApiKeyUsage(creds(), used) },
  });
  apiKeySync.start();
  const gateway = new Gateway({ config, identity, snapshot, policies, blocks, apiKeys, logger, auditHealthy: () => audit.healthy(), ...(opts.listen ? { listen: opts.listen } : {}) });
  const shutdown = async (): Promise<void> => {
    apiKeySync.stop();
    await apiKeySync.reportUsage().catch(() => undefined);
    identity.stop();
    snapshot.stop();
    await detection?.stop();
    await gateway.close();
    await obs.close();
    await audit.close();
    await control.close(); // after the audit log's final checkpoint went to it
  };
  obs.metrics?.watchUpstreams(() => gateway.upstreamState());
  const addr = await gateway.listen().catch(async (err: unknown) => { await shutdown(); throw err; });
  logger.info({ listen: `${addr.host}:${addr.port}`, spiffeId: config.gateway.spiffeId }, 'gateway ready');
  reportReady({ role: 'gateway', port: addr.port });
  stopOnSignal(logger, shutdown);
}

export async function runSidecar(opts: DataPlaneOpts & { service: string }): Promise<void> {
  const config = loadConfig(opts.config);
  const service = config.services.find((s) => s.name === opts.service);
  if (!service) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `service "${opts.service}" is not in ${config.source} (known: ${config.services.map((s) => s.name).join(', ')})`);
  const dataDir = config.control.dataDir;
  const { logger, audit } = startRole(`sidecar-${service.name}`, dataDir, config.audit.nats);
  const obs = await startObservability({ config, role: `sidecar-${service.name}`, metricsListen: service.sidecar.metricsListen, logger });
  const stateDir = opts.stateDir ?? join(dataDir, 'workloads', service.name);
  const { identity, snapshot, control } = await dataPlaneIdentity(config, service.spiffeId, stateDir, opts.joinToken, logger);
  await audit.open(new WorkloadSigner(() => identity.current()), witnessedBy(control, identity, logger, `sidecar-${service.name}`));
  obs.watchIdentity(identity);
  const policies = new ActivePolicies(snapshot, logger);
  const blocks = new ActiveBlocks(systemClock, snapshot);
  const detection = dataPlaneDetection(config, logger, identity, control, blocks);
  const revokedWorkloads = new RevokedWorkloads();
  revokedWorkloads.update(snapshot.current());
  snapshot.on('updated', (d) => revokedWorkloads.update(d));
  const sidecar = new Sidecar({ config, service: service.name, identity, policies, blocks, revokedWorkloads, logger, auditHealthy: () => audit.healthy() });
  const shutdown = async (): Promise<void> => {
    identity.stop();
    snapshot.stop();
    await detection?.stop();
    await sidecar.close();
    await obs.close();
    await audit.close();
    await control.close(); // after the audit log's final checkpoint went to it
  };
  const ports = await sidecar.listen().catch(async (err: unknown) => { await shutdown(); throw err; });
  logger.info({ service: service.name, inbound: service.sidecar.listen, outbound: service.sidecar.outbound, spiffeId: service.spiffeId }, 'sidecar ready');
  reportReady({ role: 'sidecar', service: service.name, ...ports });
  stopOnSignal(logger, shutdown);
}
