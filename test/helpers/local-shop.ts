// The shop example with its `users` service on local ports: a real control plane, a plain HTTP
// upstream that counts what reaches it, and workloads enrolled with one-time join tokens. For
// data-plane tests that build their own gateway and sidecar around it.
import { createServer, type Server } from 'node:http';
import { mkdtempSync } from 'node:fs';
import { join } from 'node:path';
import { loadConfig } from '../../src/core/config/load.js';
import type { PortcullisConfig } from '../../src/core/config/types.js';
import { ControlPlane } from '../../src/control/server.js';
import { ControlClient } from '../../src/dataplane/control-client.js';
import { WorkloadIdentity } from '../../src/dataplane/workload-identity.js';
import { KeyWrapper } from '../../src/kms/wrap.js';
import { MemoryStore } from '../../src/store/memory.js';
import { repoRoot } from './paths.js';
import { freePorts } from './net.js';

export interface LocalShop {
  config: PortcullisConfig;
  cp: ControlPlane;
  upstream: Server;
  /** Requests the users service has received. */
  reached(): number;
  /** A workload enrolled at the control plane: its identity and its control-plane client. */
  enrol(spiffeId: string): Promise<{ id: WorkloadIdentity; control: ControlClient }>;
  close(): Promise<void>;
}

/** `edit` adjusts the config before the control plane starts (audit, gateway settings). */
export async function startLocalShop(dir: string, edit: (c: PortcullisConfig) => PortcullisConfig = (c) => c): Promise<LocalShop> {
  const base = loadConfig(join(repoRoot, 'examples', 'shop', 'portcullis.yaml'));
  const [control, gw, up, inbound, outbound] = await freePorts(5);
  const config = edit({
    ...base,
    control: { ...base.control, listen: `127.0.0.1:${control}`, url: `https://127.0.0.1:${control}`, dataDir: dir },
    gateway: { ...base.gateway, listen: `127.0.0.1:${gw}` },
    tokens: { ...base.tokens, issuer: `https://127.0.0.1:${control}`, audience: `https://127.0.0.1:${gw}` },
    services: base.services.map((s) => s.name === 'users' ? { ...s, upstream: `http://127.0.0.1:${up}`, sidecar: { listen: `127.0.0.1:${inbound}`, outbound: `127.0.0.1:${outbound}` } } : s),
  });
  const cp = await ControlPlane.create({ config, store: new MemoryStore(), wrapper: new KeyWrapper(Buffer.alloc(32, 3)) });
  await cp.listen();
  let reached = 0;
  const upstream = createServer((req, res) => { reached++; req.resume(); res.end('{"ok":true}'); });
  await new Promise<void>((r) => upstream.listen(up, '127.0.0.1', () => r()));
  const clients: ControlClient[] = [];
  return {
    config, cp, upstream,
    reached: () => reached,
    async enrol(spiffeId) {
      const control = new ControlClient(config.control.url, cp.ca.trustBundlePem());
      clients.push(control);
      const id = await WorkloadIdentity.obtain({ spiffeId, control, stateDir: mkdtempSync(join(dir, 'id-')), joinToken: await cp.joinTokens.create(spiffeId) });
      return { id, control };
    },
    async close() {
      for (const c of clients) await c.close();
      await cp.close();
      await new Promise((r) => upstream.close(r));
    },
  };
}
