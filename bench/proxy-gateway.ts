// Configuration E of the shared proxy benchmark (../shared/bench/proxy/run-all.sh): the Portcullis
// gateway in the foreground, built from the harness's BENCH_* variables, with the whole pipeline on —
// canonical path, ES256 JWT (the harness's issuer, plain JWT profile, `role` claim), Cedar decision
// (route roles user/admin; `guest` is refused), a rate limit checked on every request, the path
// parameter validated against a JSON Schema, mutual TLS to the upstream from a keep-alive pool,
// security headers on the answer, and one audit event per request in the hash-chained log with group
// commit. The harness has no control plane, so the identity and key set are static here.
//   bash bench/proxy-gateway.sh   (GATEWAY_CMD of run-all.sh; see that script)
import { execFileSync } from 'node:child_process';
import { createPublicKey } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { appendFileSync, readFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exportJWK } from 'jose';
import { AuditRecorder } from '../src/cli/runtime.js';
import { parseConfig } from '../src/core/config/load.js';
import { createLogger } from '../src/core/log.js';
import { Gateway } from '../src/dataplane/gateway.js';
import { ActivePolicies } from '../src/dataplane/policies.js';
import type { SnapshotSource } from '../src/dataplane/snapshot.js';
import type { WorkloadIdentity } from '../src/dataplane/workload-identity.js';
import { PolicySet, type PolicyBundle } from '../src/policy/policy-set.js';
import { createAccessTokenVerifier } from '../src/tokens/verify.js';

const env = (name: string): string => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set (run through ../shared/bench/proxy/run-all.sh)`);
  return v;
};
const read = (name: string): string => readFileSync(env(name), 'utf8');

const upstream = new URL(env('BENCH_UPSTREAM_URL'));
const route = env('BENCH_ROUTE'); // /api/orders/42
const pattern = route.replace(/\/[^/]+$/, '/{id}');
// BENCH_WITHOUT=audit,limit,validate (bench/floors.ts): the same gateway less those stages, to show what each costs.
const without = new Set((process.env.BENCH_WITHOUT ?? '').split(',').filter(Boolean));
const config = parseConfig(`
trustDomain: bench
gateway: { listen: "${env('BENCH_LISTEN_HOST')}:${env('BENCH_LISTEN_PORT')}", upstreamTimeout: 15000, http2: ${process.env.BENCH_HTTP2 !== "0"} }
tokens: { issuer: "${env('BENCH_JWT_ISS')}", audience: "${env('BENCH_JWT_AUD')}" }
services:
  - name: orders
    spiffeId: spiffe://bench/orders
    upstream: http://127.0.0.1:9
    sidecar: { listen: "${upstream.hostname}:${upstream.port}", outbound: 127.0.0.1:10 }
routes:
  - id: bench.orders.get
    method: GET
    path: ${pattern}
    service: orders
    roles: [user, admin]
${without.has('validate') ? '' : `    validate:
      params: { type: object, properties: { id: { type: string, pattern: "^[0-9]{1,12}$" } }, required: [id] }`}
${without.has('limit') ? '' : `limits:
  rules:
    - { id: per-user, key: principal, rate: 100000000, per: second }`}
`, join(tmpdir(), 'portcullis-bench.yaml'));

// As in production, the policy set is parsed elsewhere (there: the control plane; here: a child
// process) and the gateway compiles the parsed bundle without loading cedar-wasm.
if (process.argv.includes('--bundle')) {
  process.stdout.write(JSON.stringify(PolicySet.fromConfig(config).bundle));
  process.exit(0);
}
const bundle = JSON.parse(execFileSync(process.execPath, [fileURLToPath(import.meta.url), '--bundle'], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 })) as PolicyBundle; // our own child's output
const logger = createLogger('gateway');
const creds = { keyPem: read('BENCH_FRONT_KEY'), chainPem: read('BENCH_FRONT_CERT'), trustBundlePem: read('BENCH_CA') };
// No control plane in the harness: a fixed identity and an empty snapshot stand in (never rotated).
const identity = { current: () => creds, on: () => identity } as unknown as WorkloadIdentity; // the two members the gateway uses
const snapshot = { current: () => ({ jwks: { keys: [] } }), on: () => snapshot } as unknown as SnapshotSource; // likewise
const jwk = { ...(await exportJWK(createPublicKey(read('BENCH_JWT_PUBKEY')))), kid: 'bench-es256-1', alg: 'ES256', use: 'sig' };
const tokenVerifier = createAccessTokenVerifier({ jwks: { keys: [jwk] }, issuer: config.tokens.issuer, audience: config.tokens.audience, profile: 'jwt', rolesClaim: 'role' });

const audit = new AuditRecorder(mkdtempSync(join(tmpdir(), 'portcullis-bench-audit-')), logger);
const withoutAudit = without.has('audit'); // the log is never opened; events are published to no one
if (!withoutAudit) await audit.open(undefined); // hash chain and group commit; no checkpoint signer without a workload identity

const gateway = new Gateway({
  config, identity, snapshot, logger, tokenVerifier,
  policies: new ActivePolicies(PolicySet.compile(bundle, { validated: true })),
  auditHealthy: () => withoutAudit || audit.healthy(),
  upstreamTls: () => ({
    key: read('BENCH_CLIENT_KEY'), cert: read('BENCH_CLIENT_CERT'), ca: creds.trustBundlePem,
    servername: env('BENCH_UPSTREAM_SERVERNAME'), rejectUnauthorized: true, minVersion: 'TLSv1.2',
  }),
});
const addr = await gateway.listen();
// The soak (bench/soak.sh): resident and heap memory every 10 s, to show it stays flat under load.
const rssLog = process.env.BENCH_RSS_LOG;
if (rssLog) {
  const t0 = Date.now();
  setInterval(() => {
    const m = process.memoryUsage();
    appendFileSync(rssLog, `${JSON.stringify({ s: Math.round((Date.now() - t0) / 1000), rssMb: Math.round(m.rss / 2 ** 20), heapMb: Math.round(m.heapUsed / 2 ** 20) })}\n`);
  }, 10_000).unref();
}
logger.info({ listen: `${addr.host}:${addr.port}`, route: pattern }, 'bench gateway ready');
const stop = async (): Promise<void> => {
  await gateway.close();
  await audit.close();
  process.exit(0);
};
process.on('SIGTERM', () => void stop());
process.on('SIGINT', () => void stop());
