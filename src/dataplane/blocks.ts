// Temporary blocks a data plane enforces: the control plane's list from the snapshot, plus the
// blocks its own detector just asked for (applied here at once, everywhere else at the next
// snapshot refresh). A block stops applying at its expiry, whatever the snapshot says.
import type { Clock } from '../core/clock.js';
import type { SnapshotSource } from './snapshot.js';

export type BlockKind = 'address' | 'principal' | 'workload';

export class ActiveBlocks {
  private fromSnapshot = new Map<string, number>();
  private readonly local = new Map<string, number>();

  constructor(private readonly clock: Clock, snapshot?: SnapshotSource) {
    if (!snapshot) return;
    const load = (list: { kind: string; value: string; until: string }[] | undefined): void => {
      this.fromSnapshot = new Map((list ?? []).map((b) => [`${b.kind}:${b.value}`, Date.parse(b.until)]));
    };
    load(snapshot.current().blocks);
    snapshot.on('updated', (doc) => load(doc.blocks));
  }

  addLocal(kind: BlockKind, value: string, seconds: number): void {
    const key = `${kind}:${value}`;
    this.local.set(key, Math.max(this.local.get(key) ?? 0, this.clock.now() + seconds * 1000));
  }

  /** Whether the subject is blocked now. */
  has(kind: BlockKind, value: string | undefined): boolean {
    if (value === undefined || (this.fromSnapshot.size === 0 && this.local.size === 0)) return false;
    const key = `${kind}:${value}`;
    const until = Math.max(this.fromSnapshot.get(key) ?? 0, this.local.get(key) ?? 0);
    if (until > this.clock.now()) return true;
    this.local.delete(key);
    return false;
  }
}
