// CA rotation under continuous traffic, with a fake clock: two control-plane replicas on one store,
// each with its rotation scheduler; three workloads using the real data-plane renewal (WorkloadIdentity,
// at half-life) against an in-process control plane; mutual-TLS "handshakes" between every pair every
// 30 s of fake time, through two rotations. Zero may fail.
//
// How the handshakes are checked, honestly: OpenSSL checks validity dates against the machine's real
// clock, and there is no way to give it another time through node:tls. So on every step the check
// is done in the fake timeline by chain verification at the fake time (the peer's trust bundle,
// issuer by key id, ECDSA signature, both certificates' validity at that instant, the SPIFFE ID),
// which is what OpenSSL does with these chains. And the fake timeline is anchored so that, at one
// chosen moment (in the middle of a rotation, with certificates of two roots in use at once), fake
// time equals real time: there every pair also does a real node:tls mTLS handshake with the options
// the sidecars use (mtlsServerOptions / mtlsClientOptions). Two runs put that moment in each rotation.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, createServer, type TLSSocket } from 'node:tls';
import type { AddressInfo } from 'node:net';
import { FakeClock } from '../../src/core/clock.js';
import { MemoryStore } from '../../src/store/memory.js';
import { NS } from '../../src/store/store.js';
import { KeyWrapper } from '../../src/kms/wrap.js';
import { CertificateAuthority } from '../../src/identity/ca.js';
import { CaRotationScheduler } from '../../src/identity/ca-rotation.js';
import { JoinTokens } from '../../src/identity/join-tokens.js';
import { spiffeIdFromCertificate } from '../../src/identity/spiffe.js';
import { mtlsClientOptions, mtlsServerOptions, peerSpiffeId } from '../../src/identity/tls-options.js';
import { x509 } from '../../src/identity/x509.js';
import { ControlClient, type ClientCredentials, type IssuedCredentials } from '../../src/dataplane/control-client.js';
import { WorkloadIdentity } from '../../src/dataplane/workload-identity.js';

const TD = 'rotation.test';
const MIN = 60_000;
const HOUR = 60 * MIN;
const STEP_MS = 5_000;
const HANDSHAKE_EVERY_MS = 30_000;
const SNAPSHOT_REFRESH_MS = 30_000;

// ---------------------------------------------------------------------------------------------
// Chain verification at a given time, with parsing and signature checks cached (they do not depend on time).

const parsed = new Map<string, x509.X509Certificate>();
function cert(pem: string): x509.X509Certificate {
  let c = parsed.get(pem);
  if (!c) parsed.set(pem, (c = new x509.X509Certificate(pem)));
  return c;
}
function pems(bundle: string): string[] {
  return bundle.split(/(?<=-----END CERTIFICATE-----\n?)/).map((s) => s.trim()).filter((s) => s.length > 0).map((s) => `${s}\n`);
}
const signatures = new Map<string, boolean>();
async function signedBy(leafPem: string, rootPem: string): Promise<boolean> {
  const key = `${leafPem}|${rootPem}`;
  let ok = signatures.get(key);
  if (ok === undefined) {
    const root = cert(rootPem);
    ok = (await cert(leafPem).verify({ publicKey: root.publicKey, signatureOnly: true })) && (await root.verify({ signatureOnly: true }));
    signatures.set(key, ok);
  }
  return ok;
}
const ids = new Map<string, string>();
function idOf(leafPem: string): string {
  let id = ids.get(leafPem);
  if (id === undefined) ids.set(leafPem, (id = spiffeIdFromCertificate(new X509Certificate(leafPem))));
  return id;
}
const validAt = (c: x509.X509Certificate, t: number): boolean => c.notBefore.getTime() <= t && t < c.notAfter.getTime();

/** What a TLS peer does with a presented leaf: issuer in the bundle, signature, dates, then the identity. Returns why it fails, or undefined. */
async function verifyAt(leafPem: string, bundlePem: string, t: number, expectedId?: string): Promise<string | undefined> {
  const leaf = cert(leafPem);
  const aki = leaf.getExtension(x509.AuthorityKeyIdentifierExtension)?.keyId;
  const root = pems(bundlePem).find((p) => cert(p).getExtension(x509.SubjectKeyIdentifierExtension)?.keyId === aki && cert(p).subject === leaf.issuer);
  if (!root) return 'issuer not in the trust bundle';
  if (!(await signedBy(leafPem, root))) return 'bad signature';
  if (!validAt(leaf, t)) return 'leaf not valid now';
  if (!validAt(cert(root), t)) return 'root not valid now';
  if (expectedId !== undefined) {
    const id = idOf(leafPem);
    if (id !== expectedId) return `identity ${id}, expected ${expectedId}`;
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------

/** The control plane's workload API in process: replicas take turns; renewal authenticates the current certificate as its TLS would. */
class InProcessControl extends ControlClient {
  private turn = 0;
  renewals = 0;
  refusals: string[] = [];

  constructor(private readonly replicas: CertificateAuthority[], private readonly tokens: JoinTokens, private readonly fake: FakeClock) {
    super('https://control.invalid', '');
  }

  private next(): CertificateAuthority {
    const ca = this.replicas[this.turn++ % this.replicas.length];
    assert.ok(ca);
    return ca;
  }

  override async attest(joinToken: string, csrPem: string): Promise<IssuedCredentials> {
    const ca = this.next();
    const { spiffeId } = await this.tokens.consume(joinToken);
    const issued = await ca.issue({ csrPem, spiffeId });
    return { chainPem: issued.chainPem, trustBundlePem: ca.trustBundlePem() };
  }

  override async renew(current: ClientCredentials, csrPem: string): Promise<IssuedCredentials> {
    const ca = this.next();
    // The control plane's TLS checks the client certificate against its own current bundle.
    const why = await verifyAt(current.chainPem, ca.trustBundlePem(), this.fake.now());
    if (why) {
      this.refusals.push(why);
      throw new Error(`renewal refused: ${why}`);
    }
    const spiffeId = spiffeIdFromCertificate(new X509Certificate(current.chainPem));
    const issued = await ca.issue({ csrPem, spiffeId });
    this.renewals++;
    return { chainPem: issued.chainPem, trustBundlePem: ca.trustBundlePem() };
  }
}

interface Workload {
  id: string;
  identity: WorkloadIdentity;
  /** The data plane's snapshot copy of the trust bundle, refreshed every 30 s (each on its own phase). */
  snapshotBundle: string;
  nextRefresh: number;
}

interface RunResult {
  checked: number;
  failures: string[];
  realHandshakes: number;
  realFailures: string[];
  /** Generations of the workload certificates in use at the real-handshake moment. */
  generationsAtAnchor: Set<number>;
  /** Number of roots in the published bundle, consecutive duplicates collapsed. */
  bundleSizes: number[];
  generationsCreated: number;
  renewals: number;
  renewalRefusals: string[];
  issuerOverruns: number;
  storedRoots: number;
}

/** Real mTLS between two workloads with the sidecars' options; returns an error text or undefined. */
async function realHandshake(client: { id: string; keyPem: string; chainPem: string; trustBundlePem: string }, server: { id: string; keyPem: string; chainPem: string; trustBundlePem: string }): Promise<string | undefined> {
  const srv = createServer(mtlsServerOptions(server), (socket: TLSSocket) => socket.end(peerSpiffeId(socket)));
  let serverError: string | undefined;
  srv.on('tlsClientError', (err: Error) => { serverError = err.message; });
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const port = (srv.address() as AddressInfo).port; // a TCP listener always has an AddressInfo
  try {
    return await new Promise<string | undefined>((resolve) => {
      let data = '';
      let error: Error | undefined;
      const socket = connect({ host: '127.0.0.1', port, ...mtlsClientOptions({ ...client, expectedSpiffeId: server.id }) });
      socket.setEncoding('utf8');
      socket.on('data', (chunk: string) => (data += chunk));
      socket.on('error', (err: Error) => (error ??= err));
      socket.on('close', () => {
        if (error || serverError) resolve(`${client.id} -> ${server.id}: ${error?.message ?? ''} ${serverError ?? ''}`);
        else if (data !== client.id) resolve(`${client.id} -> ${server.id}: server saw ${data}`);
        else resolve(undefined);
      });
    });
  } finally {
    srv.close();
  }
}

async function settle(what: () => boolean, label: string): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!what()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${label}`);
    await new Promise((r) => setTimeout(r, 1));
  }
}

/**
 * Runs two rotations (roots of 8 h: successor at 4 h, signing 2 h later, old root dropped once its
 * last 1 h certificate expired), with fake time equal to real time at `anchorMs` after the start.
 */
async function run(anchorMs: number, durationMs: number): Promise<RunResult> {
  const clock = new FakeClock(Date.now() - anchorMs);
  const store = new MemoryStore();
  const wrapper = new KeyWrapper(randomBytes(32));
  const caOptions = { store, wrapper, trustDomain: TD, clock, caTtlMs: 8 * HOUR, maxCertTtlMs: HOUR };
  const replicas = [await CertificateAuthority.loadOrCreate(caOptions), await CertificateAuthority.loadOrCreate(caOptions)];
  const schedulers = replicas.map((ca) => new CaRotationScheduler({ ca, clock }));
  schedulers.forEach((s) => s.start());
  const tokens = new JoinTokens(store, clock);
  const control = new InProcessControl(replicas, tokens, clock);
  const dir = mkdtempSync(join(tmpdir(), 'pcl-ca-rotation-'));
  const result: RunResult = {
    checked: 0, failures: [], realHandshakes: 0, realFailures: [], generationsAtAnchor: new Set(), bundleSizes: [],
    generationsCreated: 0, renewals: 0, renewalRefusals: [], issuerOverruns: 0, storedRoots: 0,
  };
  const workloads: Workload[] = [];
  const rootOf = new Map<string, x509.X509Certificate>();
  const checkIssuer = (chainPem: string, bundlePem: string): void => {
    const leaf = cert(chainPem);
    const aki = leaf.getExtension(x509.AuthorityKeyIdentifierExtension)?.keyId ?? '';
    for (const p of pems(bundlePem)) {
      const ski = cert(p).getExtension(x509.SubjectKeyIdentifierExtension)?.keyId;
      if (ski) rootOf.set(ski, cert(p));
    }
    const root = rootOf.get(aki);
    // Certificates never outlive their issuer.
    if (!root || leaf.notAfter.getTime() > root.notAfter.getTime()) result.issuerOverruns++;
  };
  try {
    for (const [i, name] of ['web', 'orders', 'payments'].entries()) {
      if (i > 0) await clock.advance(10 * MIN);
      const id = `spiffe://${TD}/${name}`;
      const identity = await WorkloadIdentity.obtain({ spiffeId: id, control, stateDir: join(dir, name), joinToken: await tokens.create(id), clock });
      identity.on('rotated', (c) => checkIssuer(c.chainPem, c.trustBundlePem));
      checkIssuer(identity.current().chainPem, identity.current().trustBundlePem);
      identity.start();
      workloads.push({ id, identity, snapshotBundle: identity.current().trustBundlePem, nextRefresh: clock.now() + (i + 1) * 7_000 });
    }
    const end = clock.now() + durationMs;
    let lastHandshake = 0;
    let anchored = false;
    while (clock.now() < end) {
      await clock.advance(STEP_MS);
      const now = clock.now();
      // Renewals run asynchronously off their timers: wait until each one due has landed.
      await settle(() => workloads.every((w) => w.identity.renewalDue() > now), 'renewals');
      await Promise.all(schedulers.map((s) => s.settled()));
      for (const w of workloads) {
        if (now >= w.nextRefresh) {
          w.snapshotBundle = replicas[0]?.trustBundlePem() ?? '';
          w.nextRefresh += SNAPSHOT_REFRESH_MS;
        }
      }
      const size = pems(replicas[0]?.trustBundlePem() ?? '').length;
      if (result.bundleSizes.at(-1) !== size) result.bundleSizes.push(size);
      if (now - lastHandshake < HANDSHAKE_EVERY_MS) continue;
      lastHandshake = now;
      for (const a of workloads) {
        for (const b of workloads) {
          if (a === b) continue;
          const ca = a.identity.current();
          const cb = b.identity.current();
          // Trust as the sidecars hold it today (the bundle of their last renewal), and as the 30 s snapshot has it.
          for (const [mode, aTrust, bTrust] of [['renewal', ca.trustBundlePem, cb.trustBundlePem], ['snapshot', a.snapshotBundle, b.snapshotBundle]] as const) {
            result.checked++;
            const serverSide = await verifyAt(ca.chainPem, bTrust, now);
            const clientSide = await verifyAt(cb.chainPem, aTrust, now, b.id);
            if (serverSide || clientSide) result.failures.push(`${new Date(now).toISOString()} ${mode} ${a.id} -> ${b.id}: ${serverSide ?? ''} ${clientSide ?? ''}`);
          }
        }
      }
      // The anchor: fake time has just caught up with real time, so OpenSSL sees the same instant.
      if (!anchored && now >= Date.now()) {
        anchored = true;
        for (const w of workloads) result.generationsAtAnchor.add(generationOf(w.identity.current().chainPem, replicas[0]));
        for (const a of workloads) {
          for (const b of workloads) {
            if (a === b) continue;
            const why = await realHandshake({ id: a.id, ...a.identity.current() }, { id: b.id, ...b.identity.current() });
            result.realHandshakes++;
            if (why) result.realFailures.push(why);
          }
        }
      }
    }
    result.generationsCreated = (replicas[0]?.generations().at(-1)?.generation ?? 0) + 1;
    result.renewals = control.renewals;
    result.renewalRefusals = control.refusals;
    result.storedRoots = (await store.list(NS.ca)).length;
    return result;
  } finally {
    schedulers.forEach((s) => s.stop());
    workloads.forEach((w) => w.identity.stop());
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The generation of the root that signed a leaf, by key id among the CA's roots. */
function generationOf(chainPem: string, ca: CertificateAuthority | undefined): number {
  const aki = cert(chainPem).getExtension(x509.AuthorityKeyIdentifierExtension)?.keyId;
  return ca?.generations().find((g) => g.keyId === aki)?.generation ?? -1;
}

function assertClean(r: RunResult): void {
  assert.deepEqual(r.failures.slice(0, 5), [], `${r.failures.length} failed handshakes`);
  assert.ok(r.checked > 2000, `handshakes checked: ${r.checked}`);
  assert.deepEqual(r.renewalRefusals, []);
  assert.equal(r.issuerOverruns, 0, 'no certificate outlives its issuer');
  // 1 root, 2 from the successor's publication, 1 once the old one's certificates expired; twice.
  assert.deepEqual(r.bundleSizes, [1, 2, 1, 2, 1]);
  assert.equal(r.generationsCreated, 3, 'two rotations, one successor each although two replicas ran schedulers');
  assert.ok(r.renewals >= 60, `renewals: ${r.renewals}`);
  assert.equal(r.realHandshakes, 6, 'the anchor was reached: every ordered pair did a real handshake');
  assert.deepEqual(r.realFailures, []);
  assert.ok(r.generationsAtAnchor.size > 1, `certificates of two roots in use at the anchor: ${[...r.generationsAtAnchor].join(',')}`);
  // Dropped roots' wrapped keys were deleted: the newest two generations at most remain.
  assert.ok(r.storedRoots <= 2, `stored roots: ${r.storedRoots}`);
}

test('first rotation under traffic: zero failed handshakes; real mTLS with certificates of both roots mid-rotation', async () => {
  // Gen 1 signs from about 6 h; the three workloads move to it over the next 30 minutes.
  const r = await run(6 * HOUR + 12 * MIN, 11.5 * HOUR);
  assertClean(r);
  assert.deepEqual([...r.generationsAtAnchor].sort(), [0, 1]);
});

test('second rotation under traffic: zero failed handshakes; real mTLS with certificates of both roots mid-rotation', async () => {
  // Gen 2 signs from about 10 h.
  const r = await run(10 * HOUR + 15 * MIN, 11.5 * HOUR);
  assertClean(r);
  assert.deepEqual([...r.generationsAtAnchor].sort(), [1, 2]);
});
