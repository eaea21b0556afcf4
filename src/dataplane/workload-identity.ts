// The workload's certificate: obtained once with a join token (the key is made here and never
// leaves), kept on disk so a restart needs no new token, and renewed at half its lifetime.
// Listeners on 'rotated' swap TLS contexts and connection pools without dropping requests.
import { EventEmitter } from 'node:events';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { systemClock, type Clock, type Timer } from '../core/clock.js';
import { PortcullisError } from '../core/errors.js';
import { silentLogger, type Logger } from '../core/log.js';
import { createWorkloadKeyAndCsr } from '../identity/workload-key.js';
import { spiffeIdFromCertificate } from '../identity/spiffe.js';
import type { ControlClient } from './control-client.js';

export interface WorkloadCredentials {
  spiffeId: string;
  keyPem: string;
  /** Leaf first, then any intermediates. */
  chainPem: string;
  trustBundlePem: string;
  serial: string;
  notBefore: number;
  notAfter: number;
}

export interface WorkloadIdentityOptions {
  spiffeId: string;
  control: ControlClient;
  /** Where the key, certificate and bundle are kept across restarts (created 0700). */
  stateDir: string;
  joinToken?: string;
  clock?: Clock;
  logger?: Logger;
}

const MIN_RETRY_MS = 1_000;
const FIRST_RETRY_MS = 5_000;

export class WorkloadIdentity extends EventEmitter<{ rotated: [WorkloadCredentials] }> {
  private creds: WorkloadCredentials;
  private timer: Timer | undefined;
  private failures = 0;
  private stopped = false;

  private constructor(private readonly o: WorkloadIdentityOptions & { clock: Clock; logger: Logger }, creds: WorkloadCredentials) {
    super();
    this.creds = creds;
  }

  static async obtain(options: WorkloadIdentityOptions): Promise<WorkloadIdentity> {
    const o = { ...options, clock: options.clock ?? systemClock, logger: options.logger ?? silentLogger };
    const saved = loadSaved(o.stateDir, o.spiffeId, o.clock.now());
    if (saved) {
      o.control.setTrustBundle(saved.trustBundlePem);
      const id = new WorkloadIdentity(o, saved);
      o.logger.info({ spiffeId: saved.spiffeId, serial: saved.serial, notAfter: new Date(saved.notAfter).toISOString() }, 'workload certificate loaded from state');
      return id;
    }
    if (!o.joinToken) {
      throw new PortcullisError('PCL_ERR_JOIN_TOKEN_INVALID', `no valid certificate in ${o.stateDir} and no join token given for ${o.spiffeId}`);
    }
    const { keyPem, csrPem } = await createWorkloadKeyAndCsr(o.spiffeId);
    const issued = await o.control.attest(o.joinToken, csrPem);
    const creds = toCredentials(keyPem, issued.chainPem, issued.trustBundlePem, o.spiffeId);
    o.control.setTrustBundle(creds.trustBundlePem);
    save(o.stateDir, creds);
    o.logger.info({ spiffeId: creds.spiffeId, serial: creds.serial, notAfter: new Date(creds.notAfter).toISOString() }, 'workload certificate obtained with join token');
    return new WorkloadIdentity(o, creds);
  }

  current(): WorkloadCredentials {
    return this.creds;
  }

  /** Starts the renewal schedule (half-life, retries with back-off that never waits past expiry). */
  start(): void {
    this.stopped = false;
    this.schedule();
  }

  stop(): void {
    this.stopped = true;
    this.timer?.cancel();
    this.timer = undefined;
  }

  /** When the next renewal is due, in clock milliseconds. */
  renewalDue(): number {
    const c = this.creds;
    return c.notBefore + Math.floor((c.notAfter - c.notBefore) / 2);
  }

  async renewNow(): Promise<WorkloadCredentials> {
    const { keyPem, csrPem } = await createWorkloadKeyAndCsr(this.o.spiffeId);
    const issued = await this.o.control.renew({ keyPem: this.creds.keyPem, chainPem: this.creds.chainPem }, csrPem);
    const next = toCredentials(keyPem, issued.chainPem, issued.trustBundlePem, this.o.spiffeId);
    this.creds = next;
    this.o.control.setTrustBundle(next.trustBundlePem);
    save(this.o.stateDir, next);
    this.o.logger.info({ spiffeId: next.spiffeId, serial: next.serial, notAfter: new Date(next.notAfter).toISOString() }, 'workload certificate renewed');
    this.emit('rotated', next);
    return next;
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer?.cancel();
    const now = this.o.clock.now();
    let wait = Math.max(0, this.renewalDue() - now);
    if (this.failures > 0) {
      // Back off, but always try again well before the certificate expires.
      const left = this.creds.notAfter - now;
      wait = Math.max(MIN_RETRY_MS, Math.min(FIRST_RETRY_MS * 2 ** (this.failures - 1), left / 4));
    }
    this.timer = this.o.clock.setTimer(wait, () => {
      this.renewNow().then(
        () => { this.failures = 0; this.schedule(); },
        (err: unknown) => {
          this.failures++;
          this.o.logger.warn({ spiffeId: this.o.spiffeId, failures: this.failures, err: (err as Error).message, notAfter: new Date(this.creds.notAfter).toISOString() }, 'certificate renewal failed; retrying');
          this.schedule();
        },
      );
    });
  }
}

function toCredentials(keyPem: string, chainPem: string, trustBundlePem: string, expected: string): WorkloadCredentials {
  const leaf = new X509Certificate(chainPem);
  const spiffeId = spiffeIdFromCertificate(leaf);
  if (spiffeId !== expected) throw new PortcullisError('PCL_ERR_PEER_IDENTITY', `issued certificate names ${spiffeId}, expected ${expected}`);
  if (!leaf.checkPrivateKey(createPrivateKey(keyPem))) throw new PortcullisError('PCL_ERR_CERT_RENEWAL', 'issued certificate does not match our key');
  return {
    spiffeId, keyPem, chainPem, trustBundlePem, serial: leaf.serialNumber,
    notBefore: Date.parse(leaf.validFrom), notAfter: Date.parse(leaf.validTo),
  };
}

function loadSaved(dir: string, spiffeId: string, now: number): WorkloadCredentials | undefined {
  const file = join(dir, 'identity.json');
  if (!existsSync(file)) return undefined;
  try {
    const s = JSON.parse(readFileSync(file, 'utf8')) as { keyPem: string; chainPem: string; trustBundlePem: string }; // our own file
    const creds = toCredentials(s.keyPem, s.chainPem, s.trustBundlePem, spiffeId);
    return creds.notAfter > now + 60_000 ? creds : undefined;
  } catch {
    return undefined; // unreadable or for another identity: obtain a fresh one
  }
}

function save(dir: string, c: WorkloadCredentials): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const file = join(dir, 'identity.json');
  // Write-then-rename so a crash never leaves a half-written key.
  writeFileSync(file + '.tmp', JSON.stringify({ keyPem: c.keyPem, chainPem: c.chainPem, trustBundlePem: c.trustBundlePem }), { mode: 0o600 });
  renameSync(file + '.tmp', file);
}
