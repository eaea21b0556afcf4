// Concurrency limit, TLS swaps with requests in flight (plain and real mTLS), and option checks.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { PortcullisError } from '../../../src/core/errors.js';
import { CertificateAuthority } from '../../../src/identity/ca.js';
import { mtlsClientOptions, mtlsServerOptions } from '../../../src/identity/tls-options.js';
import { createWorkloadKeyAndCsr } from '../../../src/identity/workload-key.js';
import { KeyWrapper } from '../../../src/kms/wrap.js';
import { MemoryStore } from '../../../src/store/memory.js';
import { UpstreamCluster, type ClusterOptions } from '../../../src/dataplane/upstream/cluster.js';
import { call, codeOf } from '../../helpers/net.js';
import { gate, startFront, startUpstream, until } from './harness.js';

test('over maxConcurrent requests in flight, the next is refused at once with PCL_ERR_CONCURRENCY_LIMIT', async () => {
  const held = gate();
  const up = await startUpstream('svc', (req, res) => {
    if (req.url === '/slow') void held.wait.then(() => res.end('slow'));
    else res.end('fast');
  });
  const cluster = new UpstreamCluster({ origins: [up.origin], tls: undefined, timeoutMs: 5000, maxConcurrent: 2 });
  const front = await startFront(cluster);
  try {
    const slow = [call(`${front.url}/slow`), call(`${front.url}/slow`)];
    await up.reached(2);
    const refused = await call(`${front.url}/fast`);
    assert.equal(refused.status, 503);
    assert.equal(codeOf(refused), 'PCL_ERR_CONCURRENCY_LIMIT');
    assert.equal(up.hits, 2, 'the refused request never reached the upstream');
    assert.equal(cluster.state().inFlight, 2);
    held.open();
    for (const r of await Promise.all(slow)) assert.equal(r.status, 200);
    assert.equal((await call(`${front.url}/fast`)).text, 'fast', 'slots are given back');
    assert.equal(cluster.state().inFlight, 0);
    assert.equal(cluster.state().breaker, 'closed', 'refusals are not upstream failures');
  } finally {
    held.open();
    await front.close();
    await cluster.close();
    await up.close();
  }
});

test('setTls swaps the pools without failing requests in flight', async () => {
  const held = gate();
  const up = await startUpstream('svc', (req, res) => {
    if (req.url === '/slow') void held.wait.then(() => res.end('slow'));
    else res.end('fast');
  });
  const cluster = new UpstreamCluster({ origins: [up.origin], tls: undefined, timeoutMs: 5000 });
  const front = await startFront(cluster);
  try {
    const slow = call(`${front.url}/slow`);
    await up.reached(1);
    cluster.setTls({});
    assert.equal((await call(`${front.url}/fast`)).status, 200, 'new requests go through the new pool');
    held.open();
    const r = await slow;
    assert.equal(r.status, 200);
    assert.equal(r.text, 'slow', 'the in-flight request finished on the old pool');
  } finally {
    held.open();
    await front.close();
    await cluster.close();
    await up.close();
  }
});

test('over mTLS: a wrong expected identity fails closed, and setTls to the right one heals without a restart', async () => {
  const td = 'upstream.test';
  const ca = await CertificateAuthority.loadOrCreate({ store: new MemoryStore(), wrapper: new KeyWrapper(randomBytes(32)), trustDomain: td });
  const creds = async (id: string): Promise<{ keyPem: string; chainPem: string; trustBundlePem: string }> => {
    const { keyPem, csrPem } = await createWorkloadKeyAndCsr(id);
    return { keyPem, chainPem: (await ca.issue({ csrPem, spiffeId: id })).chainPem, trustBundlePem: ca.trustBundlePem() };
  };
  const serverId = `spiffe://${td}/orders`;
  const held = gate();
  let hits = 0;
  const server = createServer(mtlsServerOptions(await creds(serverId)), (req, res) => {
    hits++;
    if (req.url === '/slow') void held.wait.then(() => res.end('slow'));
    else res.end('ok');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const origin = `https://127.0.0.1:${(server.address() as AddressInfo).port}`; // a TCP listener's address is an AddressInfo
  const client = await creds(`spiffe://${td}/gateway`);
  const cluster = new UpstreamCluster({ origins: [origin], tls: mtlsClientOptions({ ...client, expectedSpiffeId: `spiffe://${td}/impostor` }), timeoutMs: 5000, retries: { attempts: 0 } });
  const front = await startFront(cluster);
  try {
    const wrong = await call(`${front.url}/x`);
    assert.equal(wrong.status, 502);
    assert.equal(codeOf(wrong), 'PCL_ERR_UPSTREAM_UNAVAILABLE');
    assert.equal(hits, 0, 'no request is sent to a server with the wrong identity');

    cluster.setTls(mtlsClientOptions({ ...client, expectedSpiffeId: serverId }));
    const slow = call(`${front.url}/slow`);
    await until(() => hits === 1, 'slow request at the upstream');
    cluster.setTls(mtlsClientOptions({ ...(await creds(`spiffe://${td}/gateway`)), expectedSpiffeId: serverId })); // rotation
    assert.equal((await call(`${front.url}/x`)).text, 'ok');
    held.open();
    assert.equal((await slow).text, 'slow');
  } finally {
    held.open();
    await front.close();
    await cluster.close();
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  }
});

test('invalid options are refused with PCL_ERR_INVALID_ARGUMENT', () => {
  const base: ClusterOptions = { origins: ['http://127.0.0.1:1'], tls: undefined, timeoutMs: 1000 };
  const bad: Partial<ClusterOptions>[] = [
    { origins: [] },
    { timeoutMs: 0 },
    { maxConcurrent: 0 },
    { retries: { attempts: -1 } },
    { breaker: { failureThreshold: 0 } },
    { outlier: { ejectMs: Number.NaN } },
    { healthCheck: { path: 'healthz' } },
  ];
  for (const b of bad) {
    assert.throws(() => new UpstreamCluster({ ...base, ...b }), (e: unknown) => e instanceof PortcullisError && e.code === 'PCL_ERR_INVALID_ARGUMENT', JSON.stringify(b));
  }
});
