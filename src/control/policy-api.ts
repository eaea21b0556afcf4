// The policy authority: the control plane compiles its config's policy files, keeps every version
// it activated, and hands the active bundle to data planes in the snapshot. A reload that does not
// compile is refused with its file:line:col and the active version stays; data planes therefore
// only ever receive a set that compiled here, with the same compiler they run.
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

export class PolicyAuthority {
  private active: PolicySet;

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

  current(): PolicySet {
    return this.active;
  }

  bundle(): PolicyBundle {
    return this.active.bundle;
  }

  /** Re-reads and compiles the policy files; activates them only if they compile. */
  async reload(requestId?: string): Promise<{ version: string; changed: boolean }> {
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
    const changed = next.version !== this.active.version;
    if (changed) {
      this.active = next;
      await this.record(next.bundle, 'reload', requestId);
    }
    return { version: next.version, changed };
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
