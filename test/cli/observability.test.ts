// The wiring of one role's metrics and trace export: the expiry gauge follows rotations, the
// exporter's counts appear in /metrics, and nothing is started that was not asked for.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { join } from 'node:path';
import { startObservability } from '../../src/cli/observability.js';
import { loadConfig } from '../../src/core/config/load.js';
import { PortcullisError } from '../../src/core/errors.js';
import { requestChannel } from '../../src/core/events.js';
import { silentLogger } from '../../src/core/log.js';
import type { WorkloadCredentials } from '../../src/dataplane/workload-identity.js';
import { repoRoot } from '../helpers/paths.js';
import { call } from '../helpers/net.js';
import { parseExposition, valueOf } from '../helpers/prometheus.js';

const config = loadConfig(join(repoRoot, 'examples', 'shop', 'portcullis.yaml'));

class FakeIdentity extends EventEmitter<{ rotated: [WorkloadCredentials] }> {
  constructor(public creds: WorkloadCredentials) { super(); }
  current(): WorkloadCredentials { return this.creds; }
}

const creds = (notAfter: number): WorkloadCredentials => ({
  spiffeId: 'spiffe://demo/shop/orders', keyPem: '', chainPem: '', trustBundlePem: '', serial: '01', notBefore: notAfter - 3_600_000, notAfter,
});

test('the certificate expiry gauge is set at start and follows every rotation', async () => {
  const obs = await startObservability({ config, role: 'sidecar-orders', metricsListen: '127.0.0.1:0', logger: silentLogger, env: {} });
  try {
    const url = `http://127.0.0.1:${obs.metricsPort}/metrics`;
    const first = Date.UTC(2031, 5, 1);
    const id = new FakeIdentity(creds(first));
    obs.watchIdentity(id);
    const gauge = async (): Promise<number> => valueOf(parseExposition((await call(url)).text), 'portcullis_workload_certificate_expiry_timestamp_seconds', { spiffe_id: 'spiffe://demo/shop/orders' });
    assert.equal(await gauge(), first / 1000);
    id.emit('rotated', creds(first + 7_200_000));
    assert.equal(await gauge(), first / 1000 + 7200);
  } finally {
    await obs.close();
  }
});

test('with an OTLP endpoint, the exporter runs and its counts are in /metrics', async () => {
  const obs = await startObservability({ config, role: 'gateway', metricsListen: '127.0.0.1:0', logger: silentLogger, env: { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:1' } });
  try {
    assert.ok(obs.exporter);
    const text = (await call(`http://127.0.0.1:${obs.metricsPort}/metrics`)).text;
    assert.match(text, /^portcullis_trace_spans_dropped_total 0$/m);
  } finally {
    await obs.close();
  }
});

test('nothing asked for, nothing started: no listener, no exporter, no subscriber on the hot path', async () => {
  const obs = await startObservability({ config, role: 'gateway', metricsListen: undefined, logger: silentLogger, env: {} });
  assert.equal(obs.metrics, undefined);
  assert.equal(obs.exporter, undefined);
  assert.equal(obs.metricsPort, undefined);
  assert.equal(requestChannel.hasSubscribers, false);
  obs.watchIdentity(new FakeIdentity(creds(Date.now())));
  await obs.close();
});

test('a bad OTEL_* value stops the role before it binds anything', async () => {
  await assert.rejects(
    startObservability({ config, role: 'gateway', metricsListen: '127.0.0.1:0', logger: silentLogger, env: { OTEL_EXPORTER_OTLP_ENDPOINT: 'ftp://x' } }),
    (e: unknown) => e instanceof PortcullisError && e.code === 'PCL_ERR_INVALID_ARGUMENT',
  );
});
