// The policy set a data plane decides with: compiled from the snapshot, replaced in one reference
// swap (requests in flight finish on the set they started with). A staged set (`pendingPolicies`)
// is compiled as soon as it arrives and becomes active at its activation time, the same instant at
// every data plane; a set that will not compile here is refused and the active one kept.
import { systemClock, type Clock } from '../core/clock.js';
import { silentLogger, type Logger } from '../core/log.js';
import { PolicySet, type CompileOptions, type PolicyBundle } from '../policy/policy-set.js';
import type { SnapshotSource } from './snapshot.js';

export class ActivePolicies {
  private set: PolicySet;
  private next: { set: PolicySet; at: number } | undefined;

  constructor(source: SnapshotSource | PolicySet, private readonly logger: Logger = silentLogger, private readonly clock: Clock = systemClock) {
    if (source instanceof PolicySet) {
      this.set = source; // fixed: tests, and embedders that manage their own set
      return;
    }
    const snapshot = source;
    // The first set must compile: a data plane without a policy set would have nothing to decide with.
    this.set = PolicySet.compile(snapshot.current().policies, this.options());
    this.apply(snapshot.current());
    snapshot.on('updated', (doc) => this.apply(doc));
  }

  /** The active set; a staged one takes over at its activation time. */
  current(): PolicySet {
    const n = this.next;
    if (n && this.clock.now() >= n.at) {
      this.next = undefined;
      this.set = n.set;
      this.logger.info({ version: n.set.version }, 'policy set activated');
    }
    return this.set;
  }

  private apply(doc: { policies: PolicyBundle; pendingPolicies?: { bundle: PolicyBundle; activateAt: string } }): void {
    // The control plane's active set wins (a data plane that missed the staging catches up).
    if (doc.policies.version !== this.current().version && doc.policies.version !== this.next?.set.version) {
      const set = this.compile(doc.policies);
      if (set) {
        this.set = set;
        this.logger.info({ version: set.version }, 'policy set activated');
      }
    }
    const p = doc.pendingPolicies;
    if (!p || p.bundle.version === this.next?.set.version || p.bundle.version === this.set.version) return;
    const set = this.compile(p.bundle);
    const at = Date.parse(p.activateAt);
    if (set && Number.isFinite(at)) {
      this.next = { set, at };
      this.logger.info({ version: set.version, activateAt: p.activateAt }, 'policy set staged');
    }
  }

  private options(): CompileOptions {
    return { validated: true, onWarning: (m) => this.logger.warn({ warning: m }, 'policy compiled with a warning') };
  }

  private compile(bundle: PolicyBundle): PolicySet | undefined {
    try {
      return PolicySet.compile(bundle, this.options());
    } catch (err) {
      this.logger.error({ version: bundle.version, err: (err as Error).message, active: this.set?.version }, 'policy set refused; keeping the active one');
      return undefined;
    }
  }
}
