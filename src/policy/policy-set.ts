// The active policy set of a deployment: the Cedar files of `policies` plus the short forms,
// compiled once, asked by the gateway (routes), the sidecars (calls) and the SDK (resources).
// A bundle is the files' text, versioned by its hash; the control plane distributes it in the
// snapshot, and every data plane compiles the same bundle against the same config.
import { createHash } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { relative, dirname } from 'node:path';
import { PortcullisError } from '../core/errors.js';
import type { PortcullisConfig, TemplateLinkConfig } from '../core/config/types.js';
import type { ParsedPolicy } from './cedar/parse.js';
import { CedarEngine } from './cedar/engine.js';
import { Entities } from './cedar/entities.js';
import type { AuthzRequest, EntityJson, EntityUid, PolicySource, TemplateLink } from './cedar/types.js';
import { denyByDefault, type Decision } from './decision.js';
import { callRequest, routeAuthzRequest, routeEntities, type RouteRequestInput, type CallRequestInput, type UserPrincipal } from './request-model.js';
import { compilePathPattern } from '../core/path-pattern.js';
import { declaredOperations, modelSchema, shortFormPolicies, type DeclaredOperation } from './short-forms.js';

const MAX_FILE_BYTES = 1024 * 1024;

export interface BundleFile {
  /** Path relative to the config file's directory (what errors and explanations show). */
  name: string;
  text: string;
}

export interface PolicyBundle {
  /** sha256 of the bundle's content: equal bundles have equal versions. */
  version: string;
  files: BundleFile[];
  schema?: BundleFile;
  links: TemplateLinkConfig[];
  /** Candidate set for a dry run (`policies.shadow`). */
  shadow?: BundleFile[];
  /**
   * The sources as the control plane parsed them (not part of the version: derived from the text).
   * A data plane compiling a validated bundle uses them and never loads the parser.
   */
  parsed?: { live: ParsedPolicy[]; shadow?: ParsedPolicy[] };
  /** Rendered by the control plane from its config, so every data plane and SDK compiles the same set. */
  generated: {
    /** The short forms as Cedar. */
    policies: BundleFile;
    /** The request model's schema declarations (appended to `schema`). */
    schema: string;
    /** Every declared operation per service, in matching order. */
    operations: Record<string, { method: string; pattern: string }[]>;
    /** Route id → the service it forwards to (the Route entity's attribute). */
    routes: Record<string, { service: string }>;
    /** Workload name (each service, and `gateway`) → SPIFFE ID, for policy tests and explanations. */
    workloads: Record<string, string>;
    timeZone: string;
  };
}

function readPolicyFile(path: string, base: string): BundleFile {
  try {
    const st = statSync(path);
    if (!st.isFile() || st.size > MAX_FILE_BYTES) throw new Error(st.isFile() ? 'larger than 1 MiB' : 'not a regular file');
    return { name: relative(base, path) || path, text: readFileSync(path, 'utf8') };
  } catch (err) {
    throw new PortcullisError('PCL_ERR_POLICY_INVALID', `${path}: cannot read policy file: ${(err as Error).message}`);
  }
}

export function bundleVersion(b: Omit<PolicyBundle, 'version'>): string {
  const h = createHash('sha256');
  h.update(JSON.stringify({ files: b.files, schema: b.schema ?? null, links: b.links, shadow: b.shadow ?? null, generated: b.generated }));
  return h.digest('hex').slice(0, 16);
}

/** Reads the policy files a config names and renders its short forms: what the control plane distributes. */
export function readPolicyBundle(config: PortcullisConfig): PolicyBundle {
  const base = dirname(config.source);
  const p = config.policies;
  const schema = p.schema ? readPolicyFile(p.schema, base) : undefined;
  const operations: PolicyBundle['generated']['operations'] = {};
  for (const [service, ops] of declaredOperations(config)) operations[service] = ops.map((o) => ({ method: o.method, pattern: o.pattern }));
  const b: Omit<PolicyBundle, 'version'> = {
    files: p.files.map((f) => readPolicyFile(f, base)),
    ...(schema ? { schema } : {}),
    links: p.links.map((l) => ({ ...l })),
    ...(p.shadow ? { shadow: p.shadow.files.map((f) => readPolicyFile(f, base)) } : {}),
    generated: {
      policies: { name: `${relative(base, config.source) || config.source} (short forms)`, text: shortFormPolicies(config) },
      schema: modelSchema(config, !(schema && userDeclaresUser(schema.text))),
      operations,
      routes: Object.fromEntries(config.routes.map((r) => [r.id, { service: r.service }])),
      workloads: { gateway: config.gateway.spiffeId, ...Object.fromEntries(config.services.map((s) => [s.name, s.spiffeId])) },
      timeZone: p.timeZone,
    },
  };
  return { version: bundleVersion(b), ...b };
}

/** `Type::"id"` → uid (the form links and policy tests use). */
export function parseEntityRef(ref: string): EntityUid {
  const m = /^([A-Za-z_][A-Za-z0-9_]*(?:::[A-Za-z_][A-Za-z0-9_]*)*)::("(?:[^"\\]|\\.)*")$/.exec(ref.trim());
  if (!m?.[1] || !m[2]) throw new PortcullisError('PCL_ERR_POLICY_INVALID', `not an entity reference: ${JSON.stringify(ref)} (expected Type::"id")`);
  return { type: m[1], id: JSON.parse(m[2]) as string };
}

function userDeclaresUser(schemaText: string): boolean {
  // A cheap look before the real parse: the engine validates the combined schema anyway.
  return /(^|[\s;{}])entity\s+([A-Za-z_][A-Za-z0-9_]*\s*,\s*)*User\b/m.test(schemaText.replace(/\/\/[^\n]*/g, ''));
}

function buildEngine(bundle: PolicyBundle, files: BundleFile[], o: CompileOptions, parsed: ParsedPolicy[] | undefined): CedarEngine {
  const sources: PolicySource[] = [...files, bundle.generated.policies].map((f) => ({ text: f.text, file: f.name }));
  const links: TemplateLink[] = bundle.links.map((l) => ({
    template: l.template, id: l.id,
    ...(l.principal ? { principal: parseEntityRef(l.principal) } : {}),
    ...(l.resource ? { resource: parseEntityRef(l.resource) } : {}),
  }));
  // The user's schema first, so positions in it stay exact; the model's declarations after it.
  const schema = bundle.schema && !o.validated ? { text: `${bundle.schema.text}\n${bundle.generated.schema}`, file: bundle.schema.name } : undefined;
  return CedarEngine.load({ sources, ...(schema ? { schema } : {}), links, ...(o.onWarning ? { onWarning: o.onWarning } : {}), ...(o.validated && parsed ? { parsed } : {}) });
}

export interface CompileOptions {
  onWarning?: (m: string) => void;
  /**
   * The bundle came from the control plane, which validated it against its schema with this same
   * compiler: skip strict validation (the slowest part of a load) on every data plane and SDK.
   */
  validated?: boolean;
}

export interface ShadowResult {
  live: Decision;
  /** The candidate set's decision, present only when a dry run is configured. */
  shadow?: Decision;
}

export class PolicySet {
  private readonly operations: Map<string, DeclaredOperation[]>;
  private readonly routeEntityCache = new WeakMap<UserPrincipal, Map<string, Entities>>();

  private constructor(
    readonly bundle: PolicyBundle,
    readonly engine: CedarEngine,
    readonly shadowEngine: CedarEngine | undefined,
  ) {
    this.operations = new Map(Object.entries(bundle.generated.operations).map(([service, ops]) => [service, ops.map((o) => {
      const compiled = compilePathPattern(o.pattern);
      return { method: o.method, pattern: o.pattern, match: (p: string) => compiled.match(p) };
    })]));
  }

  get version(): string {
    return this.bundle.version;
  }

  /** Compiles a bundle; throws PCL_ERR_POLICY_INVALID (file:line:col) and changes nothing. */
  static compile(bundle: PolicyBundle, o: CompileOptions = {}): PolicySet {
    const engine = buildEngine(bundle, bundle.files, o, bundle.parsed?.live);
    const shadow = bundle.shadow ? buildEngine(bundle, bundle.shadow, o, bundle.parsed?.shadow) : undefined;
    // The bundle handed on carries the parse, so whoever compiles it next skips cedar-wasm.
    const parsed = { live: [...engine.parsed], ...(shadow ? { shadow: [...shadow.parsed] } : {}) };
    return new PolicySet({ ...bundle, parsed }, engine, shadow);
  }

  static fromConfig(config: PortcullisConfig, onWarning?: (m: string) => void): PolicySet {
    return PolicySet.compile(readPolicyBundle(config), onWarning ? { onWarning } : {});
  }

  private decide(q: { request: AuthzRequest; entities: Entities | EntityJson[] }): ShadowResult {
    const live = this.engine.isAuthorized(q.request, q.entities);
    return this.shadowEngine ? { live, shadow: this.shadowEngine.isAuthorized(q.request, q.entities) } : { live };
  }

  /** Gateway: may this user call this route? */
  decideRoute(i: Omit<RouteRequestInput, 'timeZone'>): ShadowResult {
    return this.decide({ request: routeAuthzRequest(i, this.bundle.generated.timeZone), entities: this.routeEntitiesOf(i.route, i.principal) });
  }

  /**
   * The indexed entities of one user's calls to one route, built once per principal object (the
   * gateway keeps one per verified token, and never changes it) and route: most of a decision's
   * cost otherwise. A list the engine refuses is not kept, so the refusal is reported on every call.
   */
  private routeEntitiesOf(route: RouteRequestInput['route'], principal: UserPrincipal): Entities | EntityJson[] {
    let byRoute = this.routeEntityCache.get(principal);
    const hit = byRoute?.get(route.id);
    if (hit) return hit;
    const list = routeEntities(route, principal);
    let store: Entities;
    try {
      store = Entities.fromJson(list);
    } catch {
      return list; // the engine says why
    }
    if (!byRoute) this.routeEntityCache.set(principal, byRoute = new Map());
    byRoute.set(route.id, store);
    return store;
  }

  /** The declared operation of `service` a request matches, with its path parameters. */
  operationOf(service: string, method: string, path: string): { pattern: string; params: Record<string, string> } | undefined {
    for (const op of this.operations.get(service) ?? []) {
      if (op.method !== method) continue;
      const params = op.match(path);
      if (params) return { pattern: op.pattern, params };
    }
    return undefined;
  }

  /** Sidecar: may this workload call this operation of this service? */
  decideCall(i: Omit<CallRequestInput, 'pattern' | 'params'>): ShadowResult {
    const op = this.operationOf(i.service, i.method, i.path);
    return this.decide(callRequest({ ...i, pattern: op?.pattern, params: op?.params ?? {} }));
  }

  /** SDK: any request, with the entities the caller loaded. */
  authorize(request: AuthzRequest, entities: EntityJson[]): Decision {
    try {
      return this.engine.isAuthorized(request, entities);
    } catch (err) {
      // Malformed input from a service: refuse, say why, never throw into its handler.
      return { ...denyByDefault, errors: [(err as Error).message] };
    }
  }
}
