// The control plane wires the tokens section of the config: tokens.signingAlg decides the algorithm
// of the keys it creates, and tokens.clients are registered at its token endpoint — here a
// tls_client_auth client getting a token over mutual TLS with its workload certificate, which the
// gateway's verifier (tokens.algorithms: [EdDSA]) accepts.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { Agent, request } from 'undici';
import { systemClock } from '../../src/core/clock.js';
import { loadConfig } from '../../src/core/config/load.js';
import type { PortcullisConfig } from '../../src/core/config/types.js';
import { AdminClient } from '../../src/cli/admin-client.js';
import { ControlPlane } from '../../src/control/server.js';
import { createGatewayTokenVerifier } from '../../src/dataplane/auth/token-verifier.js';
import { ControlClient } from '../../src/dataplane/control-client.js';
import { WorkloadIdentity } from '../../src/dataplane/workload-identity.js';
import { KeyWrapper } from '../../src/kms/wrap.js';
import { MemoryStore } from '../../src/store/memory.js';
import { freePorts } from '../helpers/net.js';
import { repoRoot } from '../helpers/paths.js';

let dir: string;
let config: PortcullisConfig;
let cp: ControlPlane;
let billingId: string;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pcl-token-config-'));
  const base = loadConfig(join(repoRoot, 'examples', 'shop', 'portcullis.yaml'));
  const [control] = await freePorts(1);
  billingId = `spiffe://${base.trustDomain}/billing-batch`;
  config = {
    ...base,
    control: { ...base.control, listen: `127.0.0.1:${control}`, url: `https://127.0.0.1:${control}`, dataDir: join(dir, 'control') },
    tokens: {
      ...base.tokens, signingAlg: 'EdDSA', algorithms: ['EdDSA'],
      clients: [{ clientId: 'billing', authMethod: 'tls_client_auth', spiffeId: billingId, grantTypes: ['client_credentials'], scopes: ['invoices:write'] }],
    },
  };
  cp = await ControlPlane.create({ config, store: new MemoryStore(), wrapper: new KeyWrapper(Buffer.alloc(32, 9)) });
  await cp.listen();
});

after(async () => {
  await cp.close();
  rmSync(dir, { recursive: true, force: true });
});

test('tokens.signingAlg EdDSA: every key the control plane created is Ed25519', () => {
  const keys = cp.keys.jwks().keys;
  assert.ok(keys.length >= 2, 'current and next');
  for (const k of keys) assert.deepEqual([k.kty, k.crv, k.alg], ['OKP', 'Ed25519', 'EdDSA']);
});

test('a tokens.clients entry with tls_client_auth gets a token over mTLS with its certificate, and none without', async () => {
  const control = new ControlClient(config.control.url, cp.ca.trustBundlePem());
  const id = await WorkloadIdentity.obtain({ spiffeId: billingId, control, stateDir: mkdtempSync(join(dir, 'id-')), joinToken: await cp.joinTokens.create(billingId) });
  const creds = id.current();
  const token = async (withCert: boolean): Promise<{ status: number; json: Record<string, unknown> }> => {
    const agent = new Agent({ connect: { ca: creds.trustBundlePem, ...(withCert ? { key: creds.keyPem, cert: creds.chainPem } : {}) } });
    try {
      const r = await request(`${config.control.url}/oauth2/token`, {
        method: 'POST', dispatcher: agent,
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ grant_type: 'client_credentials', client_id: 'billing' }).toString(),
      });
      return { status: r.statusCode, json: (await r.body.json()) as Record<string, unknown> }; // the token endpoint answers JSON
    } finally {
      await agent.close();
    }
  };
  const ok = await token(true);
  assert.equal(ok.status, 200, JSON.stringify(ok.json));
  assert.equal(ok.json.scope, 'invoices:write');
  const verifier = createGatewayTokenVerifier(config, cp.keys.jwks(), { clock: systemClock });
  const claims = await verifier.verify(String(ok.json.access_token));
  assert.deepEqual([claims.sub, claims.client_id], ['billing', 'billing']);
  const header = JSON.parse(Buffer.from(String(ok.json.access_token).split('.')[0] ?? '', 'base64url').toString()) as { alg: string };
  assert.equal(header.alg, 'EdDSA');
  const refused = await token(false);
  assert.deepEqual([refused.status, refused.json.error], [401, 'invalid_client']);
});

test('the control plane serves the OAuth client admin API: config clients listed and fixed, API clients known to its token endpoint', async () => {
  const admin = AdminClient.fromDataDir(config.control.url, config.control.dataDir);
  const agent = new Agent({ connect: { ca: cp.ca.trustBundlePem() } });
  try {
    const added = await admin.call<{ source: string }>('POST', '/v1/admin/clients', { clientId: 'tv', type: 'public', redirectUris: [], grantTypes: ['urn:ietf:params:oauth:grant-type:device_code'] });
    assert.equal(added.source, 'api');
    const { clients } = await admin.call<{ clients: { clientId: string; source: string }[] }>('GET', '/v1/admin/clients');
    assert.deepEqual(clients.map((c) => [c.clientId, c.source]), [['portcullis-cli', 'config'], ['billing', 'config'], ['tv', 'api']]);
    await assert.rejects(admin.call('DELETE', '/v1/admin/clients/billing'), { code: 'PCL_ERR_CLIENT_IMMUTABLE' });
    const device = async (): Promise<number> => {
      const r = await request(`${config.control.url}/oauth2/device_authorization`, {
        method: 'POST', dispatcher: agent, headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'client_id=tv',
      });
      await r.body.dump();
      return r.statusCode;
    };
    assert.equal(await device(), 200);
    await admin.call('DELETE', '/v1/admin/clients/tv');
    assert.equal(await device(), 401, 'invalid_client once removed');
  } finally {
    await admin.close();
    await agent.close();
  }
});
