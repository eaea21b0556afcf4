// Workload revocation and the CA's issuance log (docs/workload-identity.md).
// Control plane: WorkloadRevocations plugs into the CA (IssuanceHooks): it logs every certificate
// issued (NS.workloadCerts, one insert-only record per serial) and refuses to issue or renew for a
// revoked SPIFFE ID, read from the store each time so a revocation on one replica binds all of them
// at once. A revocation (NS.workloadRevocations, insert-only, never lifted) names the ID and the
// serials of its certificates still valid then; both go to every data plane in the snapshot.
// Data plane: RevokedWorkloads holds that deny list; sidecars ask isWorkloadRevoked() on inbound peers.
import { systemClock, type Clock, type Timer } from '../core/clock.js';
import { PortcullisError } from '../core/errors.js';
import { publishAudit } from '../core/events.js';
import { NS, type Store } from '../store/store.js';
import type { IssuanceHooks, IssuedCertificateRecord } from './ca.js';
import { parseSpiffeId } from './spiffe.js';

/** Default interval at which a replica re-reads the deny list for its snapshot. */
export const DEFAULT_REVOCATION_RELOAD_MS = 10_000;
/** Issuance records are kept this long after their certificate expired (the newest of each workload always). */
export const ISSUANCE_RETENTION_MS = 24 * 3_600_000;
/** The deny list travels in every snapshot: past this many revoked identities a revocation is refused rather than silently lost. */
export const MAX_REVOKED_WORKLOADS = 10_000;
const MAX_REASON_CHARS = 256;
const PRUNE_EVERY_MS = 3_600_000;
const SERIAL = /^[0-9a-f]{1,64}$/;

/** One issued certificate, as logged (times ISO 8601). */
export interface IssuanceRecord {
  spiffeId: string;
  serial: string;
  notBefore: string;
  notAfter: string;
  /** The CA generation that signed it. */
  generation: number;
  issuedAt: string;
}

/** A revocation as stored; never changed once written. */
export interface WorkloadRevocation {
  spiffeId: string;
  reason: string;
  by: string;
  /** ISO 8601. */
  at: string;
  /** The workload's certificates still valid at revocation, with their expiry. */
  serials: { serial: string; notAfter: string }[];
}

/** What the admin API lists per workload: its newest certificate, and whether it is revoked. */
export interface WorkloadInfo {
  spiffeId: string;
  status: 'active' | 'expired' | 'revoked';
  /** The newest certificate (lowercase hex serial, ISO times); absent for an identity revoked before any issuance. */
  serial?: string;
  notBefore?: string;
  notAfter?: string;
  generation?: number;
  /** Certificates of this workload still valid now. */
  liveCertificates: number;
  revokedAt?: string;
  reason?: string;
}

/** The deny list's snapshot fields (every data plane gets them). */
export interface WorkloadDenyList {
  /** Revoked SPIFFE IDs: refuse every certificate naming one. */
  revokedWorkloads?: string[];
  /** Serials (lowercase hex) of revoked workloads' certificates, until they expire. */
  revokedCertificates?: string[];
}

export interface WorkloadRevocationsOptions {
  store: Store;
  /** Default: the system clock. */
  clock?: Clock;
  /** Only IDs of this trust domain may be revoked. Default: any valid SPIFFE ID. */
  trustDomain?: string;
  /** IDs that must never be revoked (the control plane's own: revoking it ends all issuance). Default none. */
  protectedWorkloads?: Iterable<string>;
}

/** The control plane's side: revocations, the issuance log, the deny list for the snapshot. */
export class WorkloadRevocations implements IssuanceHooks {
  private revoked = new Map<string, WorkloadRevocation>();
  private timer: Timer | undefined;
  private readonly store: Store;
  private readonly clock: Clock;
  private readonly protectedIds: ReadonlySet<string>;

  private constructor(private readonly o: WorkloadRevocationsOptions) {
    this.store = o.store;
    this.clock = o.clock ?? systemClock;
    this.protectedIds = new Set(o.protectedWorkloads ?? []);
  }

  /** Loads the deny list from the store. */
  static async open(o: WorkloadRevocationsOptions): Promise<WorkloadRevocations> {
    const w = new WorkloadRevocations(o);
    await w.reload();
    return w;
  }

  /** Re-reads the deny list (another replica's revocations). */
  async reload(): Promise<void> {
    const rows = await this.store.list<WorkloadRevocation>(NS.workloadRevocations);
    this.revoked = new Map(rows.map(({ key, value }) => [key, value]));
  }

  /**
   * Reloads every `reloadMs` (default 10 s) until stop(), so every replica's snapshot carries every
   * revocation; prunes the issuance log once an hour on the way.
   */
  start(reloadMs = DEFAULT_REVOCATION_RELOAD_MS): void {
    this.stop();
    let lastPrune = this.clock.now();
    const pass = async (): Promise<void> => {
      await this.reload();
      if (this.clock.now() - lastPrune >= PRUNE_EVERY_MS) {
        lastPrune = this.clock.now();
        await this.prune();
      }
    };
    const arm = (): void => {
      this.timer = this.clock.setTimer(reloadMs, () => {
        // A failed pass keeps the last list (which only grows) and is retried at the next one.
        pass().catch(() => undefined).finally(() => { if (this.timer) arm(); });
      });
    };
    arm();
  }

  stop(): void {
    this.timer?.cancel();
    this.timer = undefined;
  }

  /** IssuanceHooks: refuses a revoked ID, reading the store (not the cached list) so no replica lags. */
  async assertIssuable(spiffeId: string): Promise<void> {
    const r = await this.store.get<WorkloadRevocation>(NS.workloadRevocations, spiffeId);
    if (r !== undefined) {
      this.revoked.set(spiffeId, r);
      throw new PortcullisError('PCL_ERR_WORKLOAD_REVOKED', `${spiffeId} was revoked at ${r.at}; no certificate is issued to it`);
    }
  }

  /** IssuanceHooks: logs a certificate. */
  async recordIssued(c: IssuedCertificateRecord): Promise<void> {
    const record: IssuanceRecord = {
      spiffeId: c.spiffeId, serial: c.serial, notBefore: c.notBefore.toISOString(), notAfter: c.notAfter.toISOString(),
      generation: c.generation, issuedAt: new Date(this.clock.now()).toISOString(),
    };
    // 128 random bits do not collide; if they did, withholding the certificate beats an ambiguous log.
    if (!(await this.store.insert(NS.workloadCerts, c.serial, record))) throw new PortcullisError('PCL_ERR_INTERNAL', 'certificate serial collision');
  }

  /** Whether the ID is on the deny list (as last loaded). */
  isRevoked(spiffeId: string): boolean {
    return this.revoked.has(spiffeId);
  }

  /**
   * Revokes a workload: renewal and attestation are refused from now on, and the ID with its live
   * serials joins the deny list data planes enforce. Revoking a revoked ID changes nothing
   * (`alreadyRevoked`: the first revocation's record is returned).
   */
  async revoke(spiffeId: string, o: { reason?: string; by?: string; requestId?: string } = {}): Promise<{ revocation: WorkloadRevocation; alreadyRevoked: boolean }> {
    const id = parseSpiffeId(spiffeId, this.o.trustDomain).id;
    if (this.protectedIds.has(id)) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `${id} cannot be revoked: the control plane runs on it`);
    const reason = o.reason ?? '';
    // Control characters would forge lines in logs and the CLI's output.
    if (reason.length > MAX_REASON_CHARS || [...reason].some((ch) => ch.charCodeAt(0) < 0x20 || ch.charCodeAt(0) === 0x7f)) {
      throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `reason must be at most ${MAX_REASON_CHARS} characters, without control characters`);
    }
    const existing = await this.store.get<WorkloadRevocation>(NS.workloadRevocations, id);
    if (existing) {
      this.revoked.set(id, existing);
      return { revocation: existing, alreadyRevoked: true };
    }
    await this.reload();
    if (this.revoked.size >= MAX_REVOKED_WORKLOADS) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `too many revoked workloads (${MAX_REVOKED_WORKLOADS})`);
    const now = this.clock.now();
    const serials = (await this.issuance())
      .filter((r) => r.spiffeId === id && Date.parse(r.notAfter) > now)
      .map((r) => ({ serial: r.serial, notAfter: r.notAfter }));
    const revocation: WorkloadRevocation = { spiffeId: id, reason, by: o.by ?? 'admin', at: new Date(now).toISOString(), serials };
    if (!(await this.store.insert(NS.workloadRevocations, id, revocation))) {
      // Another replica revoked it between our read and our write: theirs stands.
      const theirs = await this.store.get<WorkloadRevocation>(NS.workloadRevocations, id);
      if (!theirs) throw new PortcullisError('PCL_ERR_STORE', 'revocation record vanished');
      this.revoked.set(id, theirs);
      return { revocation: theirs, alreadyRevoked: true };
    }
    this.revoked.set(id, revocation);
    publishAudit({
      type: 'admin', time: revocation.at, ...(o.requestId ? { requestId: o.requestId } : {}), component: 'control', action: 'workload.revoke', outcome: 'success',
      who: { sub: revocation.by }, detail: { spiffeId: id, serials: serials.map((s) => s.serial).join(','), ...(reason ? { reason } : {}) },
    });
    return { revocation, alreadyRevoked: false };
  }

  /** Every workload the issuance log or the deny list knows, sorted by SPIFFE ID. */
  async list(): Promise<WorkloadInfo[]> {
    await this.reload();
    const now = this.clock.now();
    const byId = new Map<string, IssuanceRecord[]>();
    for (const r of await this.issuance()) byId.set(r.spiffeId, [...(byId.get(r.spiffeId) ?? []), r]);
    for (const id of this.revoked.keys()) if (!byId.has(id)) byId.set(id, []);
    const out: WorkloadInfo[] = [];
    for (const [spiffeId, certs] of byId) {
      const newest = certs.reduce<IssuanceRecord | undefined>((a, b) => (a === undefined || b.notAfter > a.notAfter ? b : a), undefined);
      const live = certs.filter((c) => Date.parse(c.notAfter) > now).length;
      const rev = this.revoked.get(spiffeId);
      const info: WorkloadInfo = { spiffeId, status: rev ? 'revoked' : live > 0 ? 'active' : 'expired', liveCertificates: live };
      if (newest) Object.assign(info, { serial: newest.serial, notBefore: newest.notBefore, notAfter: newest.notAfter, generation: newest.generation });
      if (rev) Object.assign(info, { revokedAt: rev.at, reason: rev.reason });
      out.push(info);
    }
    return out.sort((a, b) => (a.spiffeId < b.spiffeId ? -1 : a.spiffeId > b.spiffeId ? 1 : 0));
  }

  /** Snapshot field: every revoked SPIFFE ID (as last loaded), sorted. */
  revokedWorkloads(): string[] {
    return [...this.revoked.keys()].sort();
  }

  /** Snapshot field: serials of revoked workloads' certificates that have not expired yet, sorted. */
  revokedCertificates(): string[] {
    const now = this.clock.now();
    const out: string[] = [];
    for (const r of this.revoked.values()) for (const s of r.serials) if (Date.parse(s.notAfter) > now) out.push(s.serial);
    return out.sort();
  }

  /** Both snapshot fields at once. */
  denyList(): Required<WorkloadDenyList> {
    return { revokedWorkloads: this.revokedWorkloads(), revokedCertificates: this.revokedCertificates() };
  }

  /**
   * Deletes issuance records that expired more than ISSUANCE_RETENTION_MS ago, except each
   * workload's newest (so `list` still knows it). Returns how many were deleted.
   */
  async prune(): Promise<number> {
    const cutoff = this.clock.now() - ISSUANCE_RETENTION_MS;
    const records = await this.issuance();
    const newest = new Map<string, IssuanceRecord>();
    for (const r of records) {
      const n = newest.get(r.spiffeId);
      if (!n || r.notAfter > n.notAfter) newest.set(r.spiffeId, r);
    }
    let removed = 0;
    for (const r of records) {
      if (newest.get(r.spiffeId) === r || Date.parse(r.notAfter) > cutoff) continue;
      if (await this.store.delete(NS.workloadCerts, r.serial)) removed++;
    }
    return removed;
  }

  private async issuance(): Promise<IssuanceRecord[]> {
    return (await this.store.list<IssuanceRecord>(NS.workloadCerts)).map((r) => r.value);
  }
}

/** Serials compare as numbers: lowercase, without leading zeros (Node prints them upper case, some tools zero-padded). */
export function normalizeSerial(serial: string): string {
  return serial.toLowerCase().replace(/^0+(?=.)/, '');
}

/**
 * The data plane's deny list, from the snapshot's `revokedWorkloads` / `revokedCertificates`.
 * Empty until the first update: a data plane that never got a snapshot has no workloads to trust anyway.
 */
export class RevokedWorkloads {
  private ids = new Set<string>();
  private serials = new Set<string>();

  /** Replaces the list with a snapshot's (absent fields mean an empty list). Malformed entries are skipped. */
  update(doc: WorkloadDenyList): void {
    const strings = (v: unknown): string[] => (Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : []);
    this.ids = new Set(strings(doc.revokedWorkloads));
    this.serials = new Set(strings(doc.revokedCertificates).map(normalizeSerial).filter((s) => SERIAL.test(s)));
  }

  /** Whether an inbound peer must be refused: its SPIFFE ID is revoked, or (given) its certificate's serial is. */
  isWorkloadRevoked(spiffeId: string, serial?: string): boolean {
    if (this.ids.has(spiffeId)) return true;
    return serial !== undefined && this.serials.size > 0 && this.serials.has(normalizeSerial(serial));
  }

  /** How many IDs and serials are listed (for logs and metrics). */
  size(): { workloads: number; certificates: number } {
    return { workloads: this.ids.size, certificates: this.serials.size };
  }
}
