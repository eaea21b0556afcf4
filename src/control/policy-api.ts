// The policy authority: the control plane compiles its config's policy files, keeps every version
// it activated, and hands the active bundle to data planes in the snapshot. A reload that does not
// compile is refused with its file:line:col and the active version stays; data planes therefore
// only ever receive a set that compiled here, with the same compiler they run.
//
// A new version is staged, not switched: the snapshot carries it as `pending` with an activation
// time two snapshot refreshes ahead, every data plane compiles it on arrival and switches at that
// instant, and the control plane promotes it at the same instant. So all data planes change
// policy together rather than one refresh apart.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { PortcullisConfig } from '../core/config/types.js';
import type { Clock } from '../core/clock.js';
import { publishAudit } from '../core/events.js';
import type { Logger } from '../core/log.js';
import { NS, type Store } from '../store/store.js';
import { PolicySet, type PolicyBundle } from '../policy/policy-set.js';
import { PortcullisError } from '../core/errors.js';
import type { AdminToken } from './admin-token.js';
import { sendJson } from './http.js';

interface ActiveRecord {
  version: string;
  activatedAt: string;
}

/** Two snapshot refreshes (30 s each): every running data plane has the pending set before it counts. */
export const POLICY_ACTIVATION_DELAY_MS = 60_000;

export interface PendingPolicies {
  bundle: PolicyBundle;
  /** ISO 8601: when every data plane switches to it. */
  activateAt: string;
}

export class PolicyAuthority {
  private active: PolicySet;
  private pending: { set: PolicySet; at: number } | undefined;

  private constructor(
    private readonly o: { config: PortcullisConfig; store: Store; clock: Clock; logger: Logger },
    first: PolicySet,
  ) {
    this.active = first;
  }

  /** Compiles the config's policies; a control plane with an invalid policy set does not start. */
  static async open(o: { config: PortcullisConfig; store: Store; clock: Clock; logger: Logger }): Promise<PolicyAuthority> {
    const set = PolicySet.fromConfig(o.config, (m) => o.logger.warn({ warning: m }, 'policy compiled with a warning'));
    const authority = new PolicyAuthority(o, set);
    await authority.record(set.bundle, 'start');
    return authority;
  }

  /** The active set; a pending one becomes active at its activation time. */
  current(): PolicySet {
    const p = this.pending;
    if (p && this.o.clock.now() >= p.at) {
      this.pending = undefined;
      this.active = p.set;
      void this.record(p.set.bundle, 'reload').catch((err: unknown) => this.o.logger.error({ err: (err as Error).message }, 'policy activation not recorded'));
    }
    return this.active;
  }

  bundle(): PolicyBundle {
    return this.current().bundle;
  }

  /** The staged version, for the snapshot: data planes compile it now and switch at `activateAt`. */
  pendingBundle(): PendingPolicies | undefined {
    this.current();
    const p = this.pending;
    return p ? { bundle: p.set.bundle, activateAt: new Date(p.at).toISOString() } : undefined;
  }

  /** Re-reads and compiles the policy files; stages them for activation only if they compile. */
  async reload(requestId?: string): Promise<{ version: string; changed: boolean; activateAt?: string }> {
    let next: PolicySet;
    try {
      next = PolicySet.fromConfig(this.o.config, (m) => this.o.logger.warn({ warning: m }, 'policy compiled with a warning'));
    } catch (err) {
      publishAudit({
        type: 'admin', time: new Date(this.o.clock.now()).toISOString(), ...(requestId ? { requestId } : {}), component: 'control', action: 'policy.reload', outcome: 'failure',
        who: { sub: 'admin' }, detail: { active: this.active.version, error: (err as Error).message.slice(0, 1024) },
      });
      throw err;
    }
    const latest = this.pending?.set ?? this.current();
    if (next.version === latest.version) return { version: next.version, changed: false, ...(this.pending ? { activateAt: new Date(this.pending.at).toISOString() } : {}) };
    if (next.version === this.active.version) {
      this.pending = undefined; // the files went back to the active version: nothing to stage
      return { version: next.version, changed: false };
    }
    const at = this.o.clock.now() + POLICY_ACTIVATION_DELAY_MS;
    this.pending = { set: next, at };
    await this.o.store.put(NS.policies, next.version, next.bundle);
    publishAudit({
      type: 'admin', time: new Date(this.o.clock.now()).toISOString(), ...(requestId ? { requestId } : {}), component: 'control', action: 'policy.stage', outcome: 'success',
      who: { sub: 'admin' }, detail: { version: next.version, active: this.active.version, activateAt: new Date(at).toISOString() },
    });
    return { version: next.version, changed: true, activateAt: new Date(at).toISOString() };
  }

  private async record(b: PolicyBundle, how: 'start' | 'reload', requestId?: string): Promise<void> {
    const previous = await this.o.store.get<ActiveRecord>(NS.policies, 'active');
    if (previous?.version === b.version) return;
    await this.o.store.put(NS.policies, b.version, b);
    await this.o.store.put(NS.policies, 'active', { version: b.version, activatedAt: new Date(this.o.clock.now()).toISOString() } satisfies ActiveRecord);
    publishAudit({
      type: 'admin', time: new Date(this.o.clock.now()).toISOString(), ...(requestId ? { requestId } : {}), component: 'control', action: 'policy.activate', outcome: 'success',
      who: { sub: how === 'start' ? 'control' : 'admin' }, detail: { version: b.version, previous: previous?.version ?? '', files: b.files.map((f) => f.name).join(',') },
    });
    this.o.logger.info({ version: b.version, previous: previous?.version }, 'policy set activated');
  }
}

/** GET /v1/policies (workloads: the active bundle, for the SDK); admin: GET/POST /v1/admin/policies[/reload]. */
export function createPolicyApi(o: { authority: PolicyAuthority; admin: AdminToken }) {
  return async (req: IncomingMessage, res: ServerResponse, ctx: { peerSpiffeId: string | undefined; requestId: string }): Promise<boolean> => {
    const path = new URL(req.url ?? '/', 'https://control.invalid').pathname;
    const route = `${req.method} ${path}`;
    if (route === 'GET /v1/policies') {
      if (!ctx.peerSpiffeId) throw new PortcullisError('PCL_ERR_PEER_CERT_REQUIRED', 'the policy set is for workloads only');
      sendJson(res, 200, o.authority.bundle());
      return true;
    }
    if (route === 'GET /v1/admin/policies') {
      o.admin.check(req.headers.authorization);
      const b = o.authority.bundle();
      sendJson(res, 200, { version: b.version, files: b.files.map((f) => f.name), schema: b.schema?.name ?? null, links: b.links.length, shadow: b.shadow?.map((f) => f.name) ?? null });
      return true;
    }
    if (route === 'POST /v1/admin/policies/reload') {
      o.admin.check(req.headers.authorization);
      req.resume();
      sendJson(res, 200, await o.authority.reload(ctx.requestId));
      return true;
    }
    return false;
  };
}
