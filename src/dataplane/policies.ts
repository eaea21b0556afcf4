// The policy set a data plane decides with: compiled from the snapshot, replaced in one reference
// swap when a new version arrives (requests in flight finish on the set they started with), kept
// when a new version will not compile here.
import { silentLogger, type Logger } from '../core/log.js';
import { PolicySet } from '../policy/policy-set.js';
import type { SnapshotSource } from './snapshot.js';

export class ActivePolicies {
  private set: PolicySet;

  constructor(source: SnapshotSource | PolicySet, private readonly logger: Logger = silentLogger) {
    if (source instanceof PolicySet) {
      this.set = source; // fixed: tests, and embedders that manage their own set
      return;
    }
    const snapshot = source;
    // The first set must compile: a data plane without a policy set would have nothing to decide with.
    this.set = PolicySet.compile(snapshot.current().policies, (m) => logger.warn({ warning: m }, 'policy compiled with a warning'));
    snapshot.on('updated', (doc) => {
      if (doc.policies.version === this.set.version) return;
      try {
        this.set = PolicySet.compile(doc.policies, (m) => logger.warn({ warning: m }, 'policy compiled with a warning'));
        this.logger.info({ version: this.set.version }, 'policy set activated');
      } catch (err) {
        this.logger.error({ version: doc.policies.version, err: (err as Error).message, active: this.set.version }, 'new policy set refused; keeping the active one');
      }
    });
  }

  current(): PolicySet {
    return this.set;
  }
}
