// Resource rules inside a service: the same Cedar engine and policy set as the gateway and the
// sidecars, asked with the entities only the service has (an order's owner, a patient's
// department). The active set comes from the control plane through the service's own sidecar and
// is refreshed in the background; a refresh that fails keeps the last set.
import type { IncomingHttpHeaders, ServerResponse } from 'node:http';
import { Pool } from 'undici';
import { CONTROL_HOST, DECISION_HEADER, PRINCIPAL_HEADER, type Principal } from '../core/principal.js';
import { PrincipalAssertionVerifier } from '../identity/principal-assertion.js';
import { PortcullisError } from '../core/errors.js';
import { encodeServiceDecisions, type ServiceDecision } from '../core/service-decision.js';
import { PolicySet, type PolicyBundle } from '../policy/policy-set.js';
import { userEntities, uid } from '../policy/request-model.js';
import type { CedarJson, EntityJson, EntityUid } from '../policy/cedar/types.js';
import type { Decision } from '../policy/decision.js';

export type { CedarJson, EntityJson, EntityUid, Decision };

export interface AuthorizerOptions {
  /** The sidecar's outbound address; default: env PORTCULLIS_OUTBOUND. */
  outbound?: string;
  /** How often to look for a new policy version, in ms (default 10 s). */
  refreshMs?: number;
}

/** A decision about one resource, carrying what it was about (for the audit record). */
export interface ResourceDecision extends Decision {
  action: string;
  resource: string;
}

const entityRef = (u: EntityUid): string => `${u.type}::${JSON.stringify(u.id)}`;
/** Decisions already reported on a response, so a second report() adds to them. */
const reported = new WeakMap<ServerResponse, ServiceDecision[]>();

/** Who this service is and who vouches for its users, as the control plane states it (through the sidecar). */
interface WorkloadIdentityDoc {
  spiffeId: string;
  gatewaySpiffeId: string;
  trustBundlePem: string;
}

export class Authorizer {
  private timer: NodeJS.Timeout | undefined;

  private constructor(private set: PolicySet, private readonly pool: Pool | undefined, private readonly assertions: PrincipalAssertionVerifier | undefined) {}

  /** Loads the active policy set and this service's identity through the sidecar; throws when they cannot be had. */
  static async connect(o: AuthorizerOptions = {}): Promise<Authorizer> {
    const outbound = o.outbound ?? process.env.PORTCULLIS_OUTBOUND;
    if (!outbound) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', 'no sidecar outbound address: pass `outbound` or set PORTCULLIS_OUTBOUND');
    const pool = new Pool(new URL(outbound).origin, { connections: 2, headersTimeout: 10_000, bodyTimeout: 10_000 });
    const [bundle, first] = await Promise.all([fetchBundle(pool), fetchIdentity(pool)]);
    let identity = first;
    const assertions = new PrincipalAssertionVerifier({ audience: identity.spiffeId, issuer: identity.gatewaySpiffeId, trustBundlePem: () => identity.trustBundlePem });
    // Validated by the control plane before it was published: only parse and compile here.
    const a = new Authorizer(PolicySet.compile(bundle, { validated: true }), pool, assertions);
    a.timer = setInterval(() => {
      fetchBundle(pool).then((b) => { if (b.version !== a.set.version) a.set = PolicySet.compile(b, { validated: true }); }).catch(() => { /* keep the last set */ });
      // The trust bundle changes on CA rotation; the service's and the gateway's names never do.
      fetchIdentity(pool).then((d) => { if (d.spiffeId === identity.spiffeId && d.gatewaySpiffeId === identity.gatewaySpiffeId) identity = d; }).catch(() => { /* keep the last bundle */ });
    }, o.refreshMs ?? 10_000);
    a.timer.unref();
    return a;
  }

  /** An authorizer over a set the caller compiled (tests, tools); `assertions` checks users if given. */
  static of(set: PolicySet, assertions?: PrincipalAssertionVerifier): Authorizer {
    return new Authorizer(set, undefined, assertions);
  }

  /**
   * The end user the gateway authenticated for this request, or undefined for a call not made for
   * a user (service to service). The gateway's signed assertion is checked here again, so a
   * process that reaches the service's port directly cannot name a user: a forged or replayed
   * one throws `PCL_ERR_PRINCIPAL_ASSERTION` (status 401).
   */
  principalOf(headers: IncomingHttpHeaders): Principal | undefined {
    const raw = headers[PRINCIPAL_HEADER];
    if (raw === undefined) return undefined;
    if (!this.assertions) throw new PortcullisError('PCL_ERR_PRINCIPAL_ASSERTION', 'this authorizer cannot check user assertions (made without an identity)');
    if (typeof raw !== 'string') throw new PortcullisError('PCL_ERR_PRINCIPAL_ASSERTION', 'principal assertion refused: sent more than once');
    return this.assertions.verify(raw);
  }

  get version(): string {
    return this.set.version;
  }

  /**
   * May this user take `action` on `resource`? `entities` are the ones the service loaded (the
   * resource and whatever its attributes refer to); the user is built as at the gateway. No
   * principal (a call not from a user) is a deny.
   */
  authorize(principal: Principal | undefined, action: string, resource: EntityUid, o: { context?: Record<string, CedarJson>; entities?: EntityJson[] } = {}): ResourceDecision {
    const about = { action, resource: entityRef(resource) };
    if (!principal) return { ...about, decision: 'deny', reasons: [], errors: ['no authenticated user'] };
    const entities = [...userEntities(principal), ...(o.entities ?? [])];
    const d = this.set.authorize({ principal: uid('User', principal.sub), action: uid('Action', action), resource, context: o.context ?? {} }, entities);
    return { ...about, ...d };
  }

  /**
   * Hands decisions to the sidecar, which records each in the audit log and strips the header.
   * Call it before the response's headers are sent; repeated calls add to the same response.
   */
  report(res: ServerResponse, d: ResourceDecision | readonly ResourceDecision[]): void {
    if (res.headersSent) return;
    const list = (reported.get(res) ?? []).concat((Array.isArray(d) ? d : [d]).map((x: ResourceDecision): ServiceDecision => ({ action: x.action, resource: x.resource, decision: x.decision, reasons: x.reasons })));
    reported.set(res, list);
    res.setHeader(DECISION_HEADER, encodeServiceDecisions(list));
  }

  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.pool?.close();
  }
}

async function fetchBundle(pool: Pool): Promise<PolicyBundle> {
  const r = await pool.request({ method: 'GET', path: '/v1/policies', headers: { host: CONTROL_HOST } });
  if (r.statusCode !== 200) {
    await r.body.dump();
    throw new PortcullisError('PCL_ERR_UPSTREAM_UNAVAILABLE', `policy set not available (HTTP ${r.statusCode})`);
  }
  return (await r.body.json()) as PolicyBundle; // compiled (and so checked) by PolicySet.compile
}

async function fetchIdentity(pool: Pool): Promise<WorkloadIdentityDoc> {
  const r = await pool.request({ method: 'GET', path: '/v1/workload/identity', headers: { host: CONTROL_HOST } });
  if (r.statusCode !== 200) {
    await r.body.dump();
    throw new PortcullisError('PCL_ERR_UPSTREAM_UNAVAILABLE', `workload identity not available (HTTP ${r.statusCode})`);
  }
  const d = (await r.body.json()) as Partial<WorkloadIdentityDoc>; // shape checked below
  if (typeof d.spiffeId !== 'string' || typeof d.gatewaySpiffeId !== 'string' || typeof d.trustBundlePem !== 'string') {
    throw new PortcullisError('PCL_ERR_UPSTREAM_UNAVAILABLE', 'workload identity answer is malformed');
  }
  return { spiffeId: d.spiffeId, gatewaySpiffeId: d.gatewaySpiffeId, trustBundlePem: d.trustBundlePem };
}
