// A seeded, deterministic generator of Cedar cases for the differential test against cedar-wasm:
// a policy set (static policies and templates with links, each named by @id), an entity store and
// requests drawn from it. Expressions are generated type-aware most of the time, so most of them
// evaluate to true or false; a configurable share is ill-typed or errs on purpose (overflow,
// missing attributes, absent entities, type mismatches, bad extension strings). Every construct
// emitted is counted in `coverage`, so a test can prove the generator reached all of CONSTRUCTS.
//
// What cedar-wasm 4.13 (Cedar language 4.5) accepts was checked by hand and shapes the choices:
// entity hierarchies must be acyclic (a cycle fails the whole request), Longs in JSON are kept to
// JS safe integers (cedar-wasm reads larger numbers through a double), extension values in entity
// and context JSON are always well formed (a bad one fails the whole request), `\*` is an escape
// only inside `like` patterns, at most four stacked `!` or `-`, relational operators need
// parentheses to nest, and reserved words (`if`, `is`, `in`, `has`, `like`, ...) are attribute
// names only in their string forms (`e["is"]`, `e has "is"`).
import type { AuthzRequest, CedarJson, EntityJson, EntityUid, TemplateLink } from '../../../src/policy/cedar/types.js';

/** Every construct the generator can emit; the coverage test requires each at least once. */
export const CONSTRUCTS = [
  // policy structure
  'effect.permit', 'effect.forbid', 'clause.when', 'clause.unless', 'clause.several', 'annotation.other', 'comment',
  'scope.principal.all', 'scope.principal.eq', 'scope.principal.in', 'scope.principal.is', 'scope.principal.isIn',
  'scope.action.all', 'scope.action.eq', 'scope.action.in', 'scope.action.inSet',
  'scope.resource.all', 'scope.resource.eq', 'scope.resource.in', 'scope.resource.is', 'scope.resource.isIn',
  'template.principal.eq', 'template.principal.in', 'template.principal.isIn',
  'template.resource.eq', 'template.resource.in', 'template.resource.isIn', 'template.link',
  // literals and variables
  'lit.bool', 'lit.long', 'lit.longBound', 'lit.string', 'lit.stringEscape', 'lit.entity', 'lit.entityNamespaced',
  'lit.set', 'lit.record', 'lit.recordStringKey',
  'var.principal', 'var.action', 'var.resource', 'var.context',
  // operators
  'op.eq', 'op.ne', 'op.lt', 'op.le', 'op.gt', 'op.ge', 'op.add', 'op.sub', 'op.mul', 'op.neg', 'op.not',
  'op.unaryStack', 'op.and', 'op.or', 'op.if', 'op.parens',
  'in.entity', 'in.set', 'has.ident', 'has.string', 'has.path', 'has.entity', 'has.record', 'has.context',
  'like.wildcard', 'like.escape', 'like.unicodeStar', 'is', 'is.in',
  'set.contains', 'set.containsAll', 'set.containsAny', 'set.isEmpty', 'tag.get', 'tag.has',
  'attr.dot', 'attr.index', 'attr.chain',
  // extensions
  'ip.ip', 'ip.isIpv4', 'ip.isIpv6', 'ip.isLoopback', 'ip.isMulticast', 'ip.isInRange',
  'decimal.decimal', 'decimal.lessThan', 'decimal.lessThanOrEqual', 'decimal.greaterThan', 'decimal.greaterThanOrEqual',
  'datetime.datetime', 'datetime.offset', 'datetime.durationSince', 'datetime.toDate', 'datetime.toTime', 'datetime.compare',
  'duration.duration', 'duration.toDays', 'duration.toHours', 'duration.toMinutes', 'duration.toSeconds',
  'duration.toMilliseconds', 'duration.compare',
  // errors on purpose
  'err.overflow', 'err.missingAttr', 'err.missingEntity', 'err.typeMismatch', 'err.badExtension', 'err.illTyped',
  // entities and requests
  'entity.parents', 'entity.multiLevel', 'entity.danglingParent', 'entity.actionGroup', 'entity.tags',
  'entity.attrExtn', 'entity.attrEntityRef', 'entity.attrSet', 'entity.attrRecord', 'entity.attrIllTyped',
  'entity.specialId', 'entity.namespaced',
  'request.principalAbsent', 'request.actionAbsent', 'request.resourceAbsent', 'request.context',
  'request.contextExtn', 'request.contextIllTyped', 'data.oddJson', 'data.beyondSafeInteger', 'data.duplicateEntity',
  // input cedar-wasm refuses as a whole (the engine must deny)
  'malformed.cycle', 'malformed.duplicate', 'malformed.typeName', 'malformed.null', 'malformed.fraction',
  'malformed.badExtn', 'malformed.unknownExtn', 'malformed.actionParent', 'malformed.numberRange', 'malformed.loneSurrogate',
] as const;
export type Construct = (typeof CONSTRUCTS)[number];

export interface GeneratedPolicy {
  /** The @id annotation, also the id given to cedar-wasm. */
  id: string;
  kind: 'static' | 'template';
  text: string;
}

/** One policy set with its store and the requests to decide against it. */
export interface DiffCase {
  seed: number;
  index: number;
  policies: GeneratedPolicy[];
  links: TemplateLink[];
  entities: EntityJson[];
  requests: AuthzRequest[];
  /** Stores that replace `entities` for some requests (by index): malformed ones, on purpose. */
  stores: Record<number, EntityJson[]>;
}

export interface GeneratorOptions {
  /** Share of sub-expressions generated with the wrong type, or erring on purpose. */
  illTypedRate: number;
  /** Share of attribute and context values of an unexpected type. */
  illDataRate: number;
  /** Share of attribute accesses and tag reads wrapped in `has` / `hasTag` guards. */
  guardRate: number;
  /** Nesting budget of a clause's expression. */
  maxDepth: number;
  /** Static policies per set, inclusive range. */
  policies: readonly [number, number];
  /** Chance that a set has templates (each with one to three links). */
  templateRate: number;
  /** Chance that an entity has each attribute of its type, and a context each of its fields.
   *  cedar-wasm's cost grows with the store (about 10 µs an attribute), so the default keeps
   *  stores small. */
  attrRate: number;
  /** Share of requests with input cedar-wasm refuses as a whole (a cycle, a `null`, ...). */
  malformedRate: number;
  /** Requests per set. */
  requests: number;
}

export const defaultGeneratorOptions: Readonly<GeneratorOptions> = Object.freeze({
  illTypedRate: 0.01,
  illDataRate: 0.02,
  guardRate: 0.85,
  maxDepth: 3,
  policies: [2, 8] as const,
  templateRate: 0.4,
  attrRate: 0.5,
  malformedRate: 0.01,
  requests: 100,
});

// ---------------------------------------------------------------------------------------------
// Randomness

/** mulberry32: a small, fast 32-bit PRNG; the same seed always gives the same sequence. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Mixes a run seed and a case index into the case's own seed (so any case regenerates alone). */
export function caseSeed(seed: number, index: number): number {
  let h = (Math.imul(seed >>> 0, 0x9e3779b1) ^ Math.imul(index >>> 0, 0x85ebca6b)) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x7feb352d) >>> 0;
  h = Math.imul(h ^ (h >>> 15), 0x846ca68b) >>> 0;
  return (h ^ (h >>> 16)) >>> 0;
}

export class Rng {
  private readonly next: () => number;
  constructor(seed: number) { this.next = mulberry32(seed); }
  float(): number { return this.next(); }
  /** An integer in [lo, hi]. */
  int(lo: number, hi: number): number { return lo + Math.floor(this.next() * (hi - lo + 1)); }
  chance(p: number): boolean { return this.next() < p; }
  pick<T>(xs: readonly T[]): T {
    if (xs.length === 0) throw new Error('pick from an empty list');
    return xs[Math.floor(this.next() * xs.length)] as T; // the index is in range
  }
  /** Picks by weight; entries with weight 0 are never chosen. */
  weighted<T>(choices: readonly (readonly [number, T])[]): T {
    let total = 0;
    for (const [w] of choices) total += w;
    let r = this.next() * total;
    for (const [w, v] of choices) { r -= w; if (r < 0 && w > 0) return v; }
    for (let i = choices.length - 1; i >= 0; i--) { const c = choices[i]; if (c && c[0] > 0) return c[1]; }
    throw new Error('weighted pick with no positive weight');
  }
  shuffle<T>(xs: readonly T[]): T[] {
    const out = [...xs];
    for (let i = out.length - 1; i > 0; i--) {
      const j = Math.floor(this.next() * (i + 1));
      const tmp = out[i] as T; // both indexes are in range
      out[i] = out[j] as T;
      out[j] = tmp;
    }
    return out;
  }
  some<T>(xs: readonly T[], min: number, max: number): T[] {
    return this.shuffle(xs).slice(0, Math.min(xs.length, this.int(min, max)));
  }
}

// ---------------------------------------------------------------------------------------------
// The soft schema: every attribute name has one type wherever it appears, so an access `e.name`
// has a known type whenever it does not err; which entity type carries which attribute decides
// how often it is present.

type EntityTypeName = 'User' | 'Group' | 'Doc' | 'Folder' | 'App::Service';
type Ty =
  | { k: 'Bool' } | { k: 'Long' } | { k: 'String' }
  /** An entity; `of` names the type a reference usually has (in data and for attribute paths). */
  | { k: 'Entity'; of?: EntityTypeName }
  | { k: 'Set'; of: Ty } | { k: 'Record'; name: string; fields: readonly Field[] }
  | { k: 'ip' } | { k: 'decimal' } | { k: 'datetime' } | { k: 'duration' };
interface Field { name: string; ty: Ty; optional: boolean }
type SetTy = Extract<Ty, { k: 'Set' }>;
type RecTy = Extract<Ty, { k: 'Record' }>;

const BOOL: Ty = { k: 'Bool' };
const LONG: Ty = { k: 'Long' };
const STRING: Ty = { k: 'String' };
const ENTITY: Ty = { k: 'Entity' };
const ref = (of: EntityTypeName): Ty => ({ k: 'Entity', of });
const IP: Ty = { k: 'ip' };
const DECIMAL: Ty = { k: 'decimal' };
const DATETIME: Ty = { k: 'datetime' };
const DURATION: Ty = { k: 'duration' };
const SET_STRING: SetTy = { k: 'Set', of: STRING };
const SET_LONG: SetTy = { k: 'Set', of: LONG };
const SET_ENTITY: SetTy = { k: 'Set', of: ENTITY };
const HOME: RecTy = { k: 'Record', name: 'home', fields: [{ name: 'city', ty: STRING, optional: false }, { name: 'zip code', ty: LONG, optional: true }] };
const PROFILE: RecTy = { k: 'Record', name: 'profile', fields: [
  { name: 'level', ty: LONG, optional: false }, { name: 'nick', ty: STRING, optional: true }, { name: 'home', ty: HOME, optional: true },
] };
const META: RecTy = { k: 'Record', name: 'meta', fields: [
  { name: 'content type', ty: STRING, optional: false }, { name: 'version', ty: LONG, optional: false }, { name: 'reviewed', ty: BOOL, optional: true },
] };
const CTX_REC: RecTy = { k: 'Record', name: 'rec', fields: [{ name: 'a', ty: LONG, optional: false }, { name: 'b', ty: STRING, optional: true }] };
const CONTEXT: RecTy = { k: 'Record', name: 'context', fields: [
  { name: 'flag', ty: BOOL, optional: true }, { name: 'n', ty: LONG, optional: true }, { name: 's', ty: STRING, optional: true },
  { name: 'ip', ty: IP, optional: true }, { name: 'amount', ty: DECIMAL, optional: true }, { name: 'when', ty: DATETIME, optional: true },
  { name: 'dur', ty: DURATION, optional: true }, { name: 'tags', ty: SET_STRING, optional: true }, { name: 'nums', ty: SET_LONG, optional: true },
  { name: 'rec', ty: CTX_REC, optional: true }, { name: 'who', ty: ref('User'), optional: true }, { name: 'weird key', ty: STRING, optional: true },
  { name: 'big', ty: LONG, optional: true },
] };

/** The attributes each entity type may carry. A name has the same type on every entity type. */
const TYPES: Readonly<Record<EntityTypeName, Readonly<Record<string, Ty>>>> = {
  User: {
    name: STRING, age: LONG, active: BOOL, roles: SET_STRING, addr: IP, manager: ref('User'), dept: ref('Group'), profile: PROFILE,
    'home dir': STRING, is: LONG, created: DATETIME,
  },
  Group: { name: STRING, level: LONG, members: { k: 'Set', of: ref('User') }, created: DATETIME },
  Doc: {
    owner: ref('User'), size: LONG, public: BOOL, labels: SET_STRING, meta: META, parent: ref('Folder'), expires: DATETIME,
    ttl: DURATION, price: DECIMAL,
  },
  Folder: { name: STRING, level: LONG, owner: ref('User'), net: IP, big: LONG },
  'App::Service': { name: STRING, addr: IP, active: BOOL, score: DECIMAL, session: DURATION },
};
const TYPE_NAMES: readonly EntityTypeName[] = ['User', 'Group', 'Doc', 'Folder', 'App::Service'];
/** Every attribute name with its type, over all entity types. */
const ATTRS: Readonly<Record<string, Ty>> = Object.assign({}, ...TYPE_NAMES.map((t) => TYPES[t]));
const attrsOf = (t: EntityTypeName | undefined): Readonly<Record<string, Ty>> => (t ? TYPES[t] : ATTRS);
const TAGS: Readonly<Record<string, Ty>> = { env: STRING, clearance: LONG, beta: BOOL };
const TAGGED: readonly string[] = ['User', 'Doc', 'App::Service'];

const RESERVED = new Set(['true', 'false', 'if', 'then', 'else', 'in', 'is', 'like', 'has']);
const isIdent = (s: string): boolean => /^[A-Za-z_][A-Za-z0-9_]*$/.test(s) && !RESERVED.has(s) && !s.includes('__cedar');

function tyKey(t: Ty): string {
  if (t.k === 'Set') return `Set<${tyKey(t.of)}>`;
  if (t.k === 'Record') return `Record:${t.name}`;
  return t.k;
}
const BASIC_TYS: readonly Ty[] = [BOOL, LONG, STRING, ENTITY, SET_STRING, SET_LONG, SET_ENTITY, PROFILE, CTX_REC, IP, DECIMAL, DATETIME, DURATION];

// Attribute paths of up to three steps (principal.manager.profile.level) from a root of a given
// entity type (or the context) to a value of a given type; found once by walking the soft schema.
type RootType = EntityTypeName | 'context';
interface Path { steps: string[]; ty: Ty }
const PATHS = new Map<RootType, Map<string, Path[]>>();
{
  const walk = (root: RootType, steps: string[], ty: Ty): void => {
    if (steps.length > 0) {
      const byTy = PATHS.get(root) ?? new Map<string, Path[]>();
      PATHS.set(root, byTy);
      const list = byTy.get(tyKey(ty)) ?? [];
      list.push({ steps, ty });
      byTy.set(tyKey(ty), list);
    }
    if (steps.length >= 3) return;
    if (ty.k === 'Entity') for (const [name, t] of Object.entries(attrsOf(ty.of))) walk(root, [...steps, name], t);
    if (ty.k === 'Record') for (const f of ty.fields) walk(root, [...steps, f.name], f.ty);
  };
  for (const t of TYPE_NAMES) walk(t, [], ref(t));
  walk('context', [], CONTEXT);
}
const PATH_TYS = new Set([...PATHS.values()].flatMap((m) => [...m.keys()]));

// Pools of values, shared by data and policies so that comparisons hit.
const IDS = ['alice', 'bob', 'carol', 'dave', 'erin', 'frank', 'grace', 'heidi', 'zoë', 'o"neil', 'back\\slash', 'a b', '', '😀', 'tab\tid', 'x*y', 'ops', 'root'];
const STRS = ['alice', 'admin', 'a*b', 'x"y', 'tab\there', '', 'é', 'e\u0301', '😀', 'back\\slash', 'ops', 'read', 'line\nbreak', 'AbC', 'a', '*', 'prod', 'dev'];
const SMALL_LONGS = [-3, -1, 0, 1, 2, 3, 5, 7, 10, 18, 21, 42, 100, 255, 1000];
/** Near the i64 bounds, near the square root of i64::MAX, and around 2^53 (where JS numbers stop
 *  being exact, so an engine computing in doubles must switch representation). */
const BOUND_LONGS = [
  '9223372036854775807', '-9223372036854775808', '9223372036854775806', '-9223372036854775807', '4611686018427387904', '3037000500',
  '3037000499', '-3037000500', '4611686018427388000', '1152921504606847000', '9007199254740993',
  '9007199254740991', '-9007199254740991', '9007199254740990', '4503599627370496', '94906266', '134217728',
];
const JSON_BIG_LONGS = [9007199254740991, -9007199254740991, 2147483648, -2147483649, 4294967296];
/** Beyond JS safe integers: cedar-wasm reads them from their JSON text (2^62 as 4611686018427388000). */
const JSON_UNSAFE_LONGS = [2 ** 60, 2 ** 62, -(2 ** 62), 2 ** 53 + 2];
/** Numbers cedar-wasm refuses outright: beyond i64 once written out, or not written as integers. */
const JSON_OUT_OF_RANGE = [2 ** 63, -(2 ** 63), 2 ** 64, 1e21, -(2 ** 64), 1e300];
const IPS = ['10.0.0.1', '10.0.0.0/8', '10.1.2.3/16', '127.0.0.1', '127.0.0.0/8', '::1', '192.168.1.10', '192.168.0.0/16', '224.0.0.5', 'ff02::1', '2001:db8::1', '2001:db8::/32', '0.0.0.0', '255.255.255.255', '::', 'fe80::1/64', '10.0.0.1/32', '::1/128', '2001:DB8::1', '2001:0db8:0000::1',
  '0:0:0:0:0:0:0:1', '224.0.0.0/4', 'ff00::/8', '239.255.255.255', '127.255.255.255', '::ffff:0:0/96'];
const BAD_IPS = ['10.0.0', '::ffff:1.2.3.4', '010.0.0.1', '1.2.3.4/33', '', '1.2.3.4 ', 'localhost', '::1/129'];
const DECIMALS = ['0.0', '1.5', '-1.5', '3.1415', '922337203685477.5807', '-922337203685477.5808', '12.0', '0.0001', '1.50', '-0.0', '100.25', '01.5'];
const BAD_DECIMALS = ['1', '1.23456', '922337203685477.5808', 'abc', '1.', '.5', '--1.0', '1.0 ', '+1.5'];
const DATETIMES = ['2024-01-01', '2024-01-01T12:30:00Z', '2024-02-29T23:59:59.999Z', '1969-12-31T23:00:00Z', '2024-06-01T10:00:00+0200', '2024-06-01T10:00:00.500-0130', '0001-01-01', '9999-12-31T23:59:59Z', '1970-01-01', '2024-01-02', '2024-03-10T02:30:00-2359', '2024-03-10T02:30:00.000+2359'];
const BAD_DATETIMES = ['2024-02-30', '2024-1-01', '2024-01-01T24:00:00Z', '2024-01-01T00:00:00.1Z', '2024-01-01 00:00:00Z', '2024-01-01T00:00:00+2400', '24-01-01', ''];
const DURATIONS = ['1d', '2h', '30m', '45s', '500ms', '1d2h3m4s5ms', '-1h', '-3d4h', '0ms', '24h', '1440m', '86400000ms', '9223372036854775807ms', '-9223372036854775808ms', '1h30m', '90m', '-1d2h'];
const BAD_DURATIONS = ['1d1d', '1h1d', '', '1x', '-', '1.5h', 'h', '9223372036854775808ms', '1d-2h'];
const EXT_POOLS = { ip: IPS, decimal: DECIMALS, datetime: DATETIMES, duration: DURATIONS } as const;
const BAD_EXT_POOLS = { ip: BAD_IPS, decimal: BAD_DECIMALS, datetime: BAD_DATETIMES, duration: BAD_DURATIONS } as const;

const ACTIONS = ['read', 'write', 'delete', 'list', 'share'];
const ACTION_GROUPS: Readonly<Record<string, string[]>> = { readOnly: ['read', 'list'], mutate: ['write', 'delete'], all: ['readOnly', 'mutate', 'share'] };

// ---------------------------------------------------------------------------------------------
// Cedar text

const uidKey = (u: EntityUid): string => `${u.type}::${JSON.stringify(u.id)}`;

const FIXED_ESCAPES: Readonly<Record<string, string>> = { '"': '\\"', '\\': '\\\\', '\n': '\\n', '\r': '\\r', '\t': '\\t', '\0': '\\0' };

/** A Cedar string literal for `s`; with `rng`, some plain characters escaped too (\x41, \u{e9}).
 *  `escapes.used` is set when any escape was written. */
function cedarString(s: string, rng: Rng | null, escapes: { used: boolean }): string {
  let out = '"';
  for (const ch of s) {
    const cp = ch.codePointAt(0) ?? 0;
    const f = FIXED_ESCAPES[ch];
    if (f !== undefined) { out += f; escapes.used = true; continue; }
    if (rng && rng.chance(0.08)) {
      escapes.used = true;
      out += cp < 0x80 && rng.chance(0.5) ? `\\x${cp.toString(16).padStart(2, '0')}` : `\\u{${cp.toString(16)}}`;
      continue;
    }
    if (rng && ch === "'" && rng.chance(0.5)) { out += "\\'"; escapes.used = true; continue; }
    out += ch;
  }
  return `${out}"`;
}

interface Node { t: string; p: number; stack?: { op: '!' | '-'; n: number } }
const P = { IF: 0, OR: 1, AND: 2, REL: 3, ADD: 4, MUL: 5, UNARY: 6, MEMBER: 7, PRIMARY: 8 } as const;
const wrap = (n: Node, min: number): string => (n.p >= min ? n.t : `(${n.t})`);
const prim = (t: string): Node => ({ t, p: P.PRIMARY });

// ---------------------------------------------------------------------------------------------
// The generator

export class CaseGenerator {
  readonly options: Readonly<GeneratorOptions>;
  /** How many times each construct was emitted, across every case generated so far. */
  readonly coverage = new Map<Construct, number>();

  constructor(readonly seed: number, options: Partial<GeneratorOptions> = {}) {
    this.options = Object.freeze({ ...defaultGeneratorOptions, ...options });
  }

  /** The case at `index`; deterministic in (seed, options, index). */
  generate(index: number): DiffCase {
    return new CaseBuilder(new Rng(caseSeed(this.seed, index)), this.options, (c) => this.coverage.set(c, (this.coverage.get(c) ?? 0) + 1))
      .build(this.seed, index);
  }

  /** Constructs of CONSTRUCTS never emitted so far. */
  missing(): Construct[] {
    return CONSTRUCTS.filter((c) => !this.coverage.has(c));
  }
}

interface World {
  byType: Map<string, EntityUid[]>;
  actions: EntityUid[];
  actionGroups: EntityUid[];
  ghosts: EntityUid[];
  entities: EntityJson[];
}

class CaseBuilder {
  private world!: World; // set first thing by build(), before anything reads it
  /** Guards (`e has a`, `e.hasTag("k")`) wanted by accesses under the atom being generated. */
  private guards: string[][] = [];

  constructor(private readonly rng: Rng, private readonly o: Readonly<GeneratorOptions>, private readonly mark: (c: Construct) => void) {}

  build(seed: number, index: number): DiffCase {
    this.world = this.buildWorld();
    const policies: GeneratedPolicy[] = [];
    const links: TemplateLink[] = [];
    const statics = this.rng.int(this.o.policies[0], this.o.policies[1]);
    for (let i = 0; i < statics; i++) policies.push({ id: `p${i}`, kind: 'static', text: this.policy(`p${i}`, null) });
    if (this.rng.chance(this.o.templateRate)) {
      const templates = this.rng.int(1, 2);
      for (let i = 0; i < templates; i++) {
        const slots = this.rng.weighted<readonly ('principal' | 'resource')[]>([[2, ['principal']], [2, ['resource']], [1, ['principal', 'resource']]]);
        const id = `t${i}`;
        policies.push({ id, kind: 'template', text: this.policy(id, slots) });
        const n = this.rng.int(1, 3);
        for (let k = 0; k < n; k++) {
          const link: TemplateLink = { template: id, id: `${id}-l${k}` };
          if (slots.includes('principal')) link.principal = this.slotValue('principal');
          if (slots.includes('resource')) link.resource = this.slotValue('resource');
          links.push(link);
          this.mark('template.link');
        }
      }
    }
    const requests: AuthzRequest[] = [];
    const stores: Record<number, EntityJson[]> = {};
    for (let i = 0; i < this.o.requests; i++) {
      const req = this.request();
      if (this.rng.chance(this.o.malformedRate)) {
        const store = this.malform(req);
        if (store) stores[i] = store;
      } else if (this.rng.chance(0.005) && this.world.entities.length) {
        // The same entity twice, identical: cedar-wasm takes it.
        stores[i] = [...this.world.entities, { ...this.rng.pick(this.world.entities) }];
        this.mark('data.duplicateEntity');
      }
      requests.push(req);
    }
    return { seed, index, policies, links, entities: this.world.entities, requests, stores };
  }

  // --- entities ---------------------------------------------------------------------------

  private buildWorld(): World {
    const rng = this.rng;
    const byType = new Map<string, EntityUid[]>();
    const entities: EntityJson[] = [];
    const counts: Record<EntityTypeName, [number, number]> = { User: [2, 4], Group: [1, 4], Doc: [1, 3], Folder: [1, 3], 'App::Service': [0, 2] };
    for (const type of TYPE_NAMES) {
      const ids = rng.some(IDS, counts[type][0], counts[type][1]);
      byType.set(type, ids.map((id) => ({ type, id })));
    }
    const actions = ACTIONS.filter(() => rng.chance(0.92)).map((id) => ({ type: 'Action', id }));
    const actionGroups = Object.keys(ACTION_GROUPS).filter(() => rng.chance(0.85)).map((id) => ({ type: 'Action', id }));
    const ghosts: EntityUid[] = [
      { type: 'User', id: 'ghost' }, { type: 'Group', id: 'ghost' }, { type: 'Doc', id: 'ghost' }, { type: 'Folder', id: 'nowhere' },
      { type: 'Action', id: 'ghost' }, { type: 'Ghost', id: 'alice' },
    ];
    // Absent action entities are referenced like present ones.
    for (const id of ACTIONS) if (!actions.some((a) => a.id === id)) ghosts.push({ type: 'Action', id });
    this.world = { byType, actions, actionGroups, ghosts, entities };
    const of = (t: string): EntityUid[] => byType.get(t) ?? [];

    // Hierarchy: a DAG (an entity's parents come earlier in a fixed order), sometimes several
    // levels deep, sometimes naming a parent that is not in the store.
    const groups = of('Group');
    const depth = new Map<string, number>();
    const parentsOf = (u: EntityUid, candidates: EntityUid[]): EntityUid[] => {
      const ps = rng.some(candidates, 0, Math.min(2, candidates.length));
      if (rng.chance(0.05)) { ps.push({ type: 'Group', id: 'dangling' }); this.mark('entity.danglingParent'); }
      const d = 1 + Math.max(0, ...ps.map((p) => depth.get(uidKey(p)) ?? 0));
      depth.set(uidKey(u), ps.length ? d : 0);
      if (ps.length) this.mark('entity.parents');
      if (d >= 2 && ps.length) this.mark('entity.multiLevel');
      return ps;
    };
    const push = (uid: EntityUid, parents: EntityUid[]): void => {
      const e: EntityJson = { uid, attrs: this.attrsFor(uid.type), parents };
      if (TAGGED.includes(uid.type) && rng.chance(0.4)) {
        const tags: Record<string, CedarJson> = {};
        for (const [k, t] of Object.entries(TAGS)) if (rng.chance(0.6)) tags[k] = this.json(t, 0);
        e.tags = tags;
        this.mark('entity.tags');
      }
      if (/[^a-z]/.test(uid.id) || uid.id === '') this.mark('entity.specialId');
      if (uid.type.includes('::')) this.mark('entity.namespaced');
      entities.push(e);
    };
    groups.forEach((g, i) => push(g, parentsOf(g, groups.slice(0, i))));
    for (const u of of('User')) push(u, parentsOf(u, groups));
    for (const s of of('App::Service')) push(s, parentsOf(s, groups));
    const folders = of('Folder');
    folders.forEach((f, i) => push(f, parentsOf(f, folders.slice(0, i))));
    for (const d of of('Doc')) push(d, parentsOf(d, folders));
    // Actions and action groups (groups of groups: all > readOnly > read).
    for (const a of actions) {
      const ps = actionGroups.filter((g) => (ACTION_GROUPS[g.id] ?? []).includes(a.id));
      entities.push({ uid: a, attrs: {}, parents: ps });
    }
    for (const g of actionGroups) {
      const ps = actionGroups.filter((p) => (ACTION_GROUPS[p.id] ?? []).includes(g.id));
      entities.push({ uid: g, attrs: {}, parents: ps });
      this.mark('entity.actionGroup');
    }
    return this.world;
  }

  private attrsFor(type: string): Record<string, CedarJson> {
    const out: Record<string, CedarJson> = {};
    for (const [name, ty] of Object.entries(TYPES[type as EntityTypeName] ?? {})) { // called with TYPES keys only
      if (!this.rng.chance(this.o.attrRate)) continue;
      if (this.rng.chance(this.o.illDataRate)) { out[name] = this.json(this.otherTy(ty), 0); this.mark('entity.attrIllTyped'); continue; }
      out[name] = this.json(ty, 0);
      if (ty.k === 'Entity') this.mark('entity.attrEntityRef');
      if (ty.k === 'Set') this.mark('entity.attrSet');
      if (ty.k === 'Record') this.mark('entity.attrRecord');
      if (ty.k in EXT_POOLS) this.mark('entity.attrExtn');
    }
    return out;
  }

  /** A JSON value of type `ty` (data: always valid for cedar-wasm, Longs within JS safe integers). */
  private json(ty: Ty, depth: number): CedarJson {
    const rng = this.rng;
    switch (ty.k) {
      case 'Bool': return rng.chance(0.5);
      case 'Long':
        if (rng.chance(0.01)) { this.mark('data.beyondSafeInteger'); return rng.pick(JSON_UNSAFE_LONGS); }
        return rng.chance(0.1) ? rng.pick(JSON_BIG_LONGS) : rng.pick(SMALL_LONGS);
      case 'String': return rng.pick(STRS);
      case 'Entity': return { __entity: ty.of ? this.uidOf([ty.of], 0.1) : this.anyUid(0.1) };
      case 'Set': {
        const n = rng.int(0, 3);
        const out: CedarJson[] = [];
        for (let i = 0; i < n; i++) out.push(this.json(depth > 2 ? LONG : ty.of, depth + 1));
        return out;
      }
      case 'Record': {
        const out: Record<string, CedarJson> = {};
        for (const f of ty.fields) if (!f.optional || rng.chance(0.6)) out[f.name] = this.json(depth > 2 ? LONG : f.ty, depth + 1);
        return out;
      }
      default: return { __extn: { fn: ty.k, arg: rng.pick(EXT_POOLS[ty.k]) } };
    }
  }

  private otherTy(ty: Ty): Ty {
    const others = BASIC_TYS.filter((t) => tyKey(t) !== tyKey(ty));
    return this.rng.pick(others);
  }

  /** A uid from the store, or (with chance `absent`) one that is not in it. */
  private anyUid(absent: number): EntityUid {
    if (this.rng.chance(absent)) return this.rng.pick(this.world.ghosts);
    const all = [...this.world.byType.values()].flat();
    return this.rng.pick(all.length ? all : this.world.ghosts);
  }

  private uidOf(types: readonly string[], absent = 0.08): EntityUid {
    const pool = types.flatMap((t) => (t === 'Action' ? [...this.world.actions, ...this.world.actionGroups] : this.world.byType.get(t) ?? []));
    if (pool.length === 0 || this.rng.chance(absent)) return this.rng.pick(this.world.ghosts.filter((g) => types.includes(g.type)).concat(this.world.ghosts.slice(0, 1)));
    return this.rng.pick(pool);
  }

  private slotValue(slot: 'principal' | 'resource'): EntityUid {
    return slot === 'principal' ? this.uidOf(this.rng.pick([['User'], ['Group'], ['Group'], ['App::Service']])) : this.uidOf(this.rng.pick([['Doc'], ['Folder'], ['Folder']]));
  }

  // --- requests ---------------------------------------------------------------------------

  private request(): AuthzRequest {
    const rng = this.rng;
    const principal = rng.weighted<() => EntityUid>([
      [60, () => this.uidOf(['User'], 0)], [10, () => this.uidOf(['App::Service'], 0)], [6, () => this.uidOf(['Group'], 0)],
      [4, () => this.uidOf(['Doc'], 0)], [10, () => { this.mark('request.principalAbsent'); return { type: 'User', id: rng.pick(['ghost', 'nobody', '']) }; }],
    ])();
    const action = rng.weighted<() => EntityUid>([
      [90, () => ({ type: 'Action', id: rng.pick(ACTIONS) })], [5, () => ({ type: 'Action', id: rng.pick(Object.keys(ACTION_GROUPS)) })],
      [5, () => { this.mark('request.actionAbsent'); return { type: 'Action', id: 'ghost' }; }],
    ])();
    if (!this.world.actions.some((a) => a.id === action.id) && !this.world.actionGroups.some((a) => a.id === action.id)) this.mark('request.actionAbsent');
    const resource = rng.weighted<() => EntityUid>([
      [55, () => this.uidOf(['Doc'], 0)], [20, () => this.uidOf(['Folder'], 0)], [8, () => this.uidOf(['User'], 0)],
      [4, () => this.uidOf(['App::Service'], 0)], [10, () => { this.mark('request.resourceAbsent'); return { type: 'Doc', id: rng.pick(['ghost', 'missing']) }; }],
    ])();
    const context: Record<string, CedarJson> = {};
    for (const f of CONTEXT.fields) {
      if (!rng.chance(this.o.attrRate)) continue;
      if (rng.chance(this.o.illDataRate)) { context[f.name] = this.json(this.otherTy(f.ty), 0); this.mark('request.contextIllTyped'); continue; }
      context[f.name] = this.json(f.ty, 0);
      if (f.ty.k in EXT_POOLS) this.mark('request.contextExtn');
    }
    if (rng.chance(0.01)) {
      // Valid but odd JSON: a record that looks like an escape, a negative zero.
      context[rng.pick(['odd', 'n'])] = rng.pick<CedarJson>([{ __entity: { type: 'User', id: 'alice' }, extra: 1 }, -0, { type: 'User', id: 'alice' }]);
      this.mark('data.oddJson');
    }
    if (Object.keys(context).length) this.mark('request.context');
    return { principal, action, resource, context };
  }

  /** Makes `req` (or, returned, a copy of the store for it) something cedar-wasm refuses. */
  private malform(req: AuthzRequest): EntityJson[] | null {
    const rng = this.rng;
    const store = this.world.entities.map((e) => ({ ...e }));
    const ctx = (req.context ??= {});
    const kind = rng.pick(['cycle', 'duplicate', 'typeName', 'null', 'fraction', 'badExtn', 'unknownExtn', 'actionParent', 'numberRange', 'loneSurrogate'] as const);
    this.mark(`malformed.${kind}`);
    const some = (): EntityJson => rng.pick(store);
    switch (kind) {
      case 'cycle': {
        const a = some();
        const b = some();
        a.parents = [...(a.parents ?? []), b.uid];
        b.parents = [...(b.parents ?? []), a.uid];
        return store;
      }
      case 'duplicate': {
        const a = some();
        store.push({ ...a, attrs: { ...a.attrs, dup: rng.int(0, 9) } });
        return store;
      }
      case 'typeName':
        if (rng.chance(0.5)) { req.principal = { type: rng.pick(['9x', 'A B', 'if', 'User::']), id: 'alice' }; return null; }
        store.push({ uid: { type: rng.pick(['A B', 'in', 'Bad-Type']), id: 'x' }, attrs: {}, parents: [] });
        return store;
      case 'null': {
        // JSON null is outside CedarJson on purpose: cedar-wasm refuses it.
        const nul = null as unknown as CedarJson;
        if (rng.chance(0.5)) { ctx.n = nul; return null; }
        const a = some();
        a.attrs = { ...a.attrs, name: nul };
        return store;
      }
      case 'fraction':
        if (rng.chance(0.5)) { ctx.n = 1.5; return null; }
        some().attrs = { age: 0.25 };
        return store;
      case 'badExtn': {
        const k = rng.pick(['ip', 'decimal', 'datetime', 'duration'] as const);
        const bad: CedarJson = { __extn: { fn: k, arg: rng.pick(BAD_EXT_POOLS[k]) } };
        const where = rng.pick(['context', 'attr', 'tag'] as const);
        if (where === 'context') { ctx.ip = bad; return null; }
        const a = some();
        if (where === 'attr') a.attrs = { ...a.attrs, addr: bad };
        else a.tags = { ...a.tags, env: bad };
        return store;
      }
      case 'unknownExtn':
        ctx.ip = { __extn: { fn: rng.pick(['nope', 'ipaddr', 'Decimal']), arg: '1.2.3.4' } };
        return null;
      case 'numberRange':
        if (rng.chance(0.5)) { ctx.n = rng.pick(JSON_OUT_OF_RANGE); return null; }
        some().attrs = { size: rng.pick(JSON_OUT_OF_RANGE) };
        return store;
      case 'loneSurrogate':
        // cedar-wasm throws on these (its JSON reader rejects the escape).
        if (rng.chance(0.5)) { ctx.s = rng.pick(['\uD800', 'a\uDC00b']); return null; }
        some().attrs = { name: '\uDFFF' };
        return store;
      case 'actionParent': {
        const action = store.find((e) => e.uid.type === 'Action');
        const other = store.find((e) => e.uid.type !== 'Action');
        if (!action || !other) { ctx.n = 1.5; return null; }
        action.parents = [...(action.parents ?? []), other.uid];
        return store;
      }
    }
  }

  // --- policies ---------------------------------------------------------------------------

  private policy(id: string, slots: readonly ('principal' | 'resource')[] | null): string {
    const rng = this.rng;
    const lines: string[] = [`@id("${id}")`];
    if (rng.chance(0.15)) { lines.push(`@advice(${cedarString(rng.pick(STRS), null, { used: false })})`); this.mark('annotation.other'); }
    if (rng.chance(0.08)) { lines.push(`// ${rng.pick(['owners only', 'see ticket 42', 'when { true }'])}`); this.mark('comment'); }
    const effect = rng.chance(0.7) ? 'permit' : 'forbid';
    this.mark(effect === 'permit' ? 'effect.permit' : 'effect.forbid');
    const principal = this.scope('principal', slots?.includes('principal') ?? false);
    const action = this.actionScope();
    const resource = this.scope('resource', slots?.includes('resource') ?? false);
    lines.push(`${effect} (`, `  ${principal},`, `  ${action},`, `  ${resource}`, ')');
    const clauses = rng.weighted([[1, 0], [5, 1], [2, 2], [1, 3]] as const);
    if (clauses >= 2) this.mark('clause.several');
    for (let i = 0; i < clauses; i++) {
      const kind = rng.chance(0.7) ? 'when' : 'unless';
      this.mark(kind === 'when' ? 'clause.when' : 'clause.unless');
      // A random Bool is more often false than true: lean `when` bodies to `||`, `unless` to `&&`.
      const body = rng.chance(0.5) ? this.junction(kind === 'when' ? 'or' : 'and', this.o.maxDepth) : this.bool(this.o.maxDepth);
      lines.push(`${kind} { ${body.t} }`);
    }
    const last = lines.length - 1;
    lines[last] = `${lines[last] ?? ''};`;
    return lines.join('\n');
  }

  private scope(v: 'principal' | 'resource', slot: boolean): string {
    const rng = this.rng;
    const entityTypes = v === 'principal' ? ['User', 'Group', 'App::Service'] : ['Doc', 'Folder'];
    const containerTypes = v === 'principal' ? ['Group'] : ['Folder'];
    const isTypes = v === 'principal' ? ['User', 'App::Service', 'Group', 'Doc'] : ['Doc', 'Folder', 'User'];
    const lit = (types: string[]): string => this.uidText(this.uidOf(types));
    if (slot) {
      const form = rng.pick(['eq', 'in', 'isIn'] as const);
      this.mark(`template.${v}.${form}`);
      if (form === 'eq') return `${v} == ?${v}`;
      if (form === 'in') return `${v} in ?${v}`;
      return `${v} is ${rng.pick(isTypes)} in ?${v}`;
    }
    const form = rng.weighted([[60, 'all'], [10, 'eq'], [10, 'in'], [10, 'is'], [10, 'isIn']] as const);
    this.mark(`scope.${v}.${form}`);
    switch (form) {
      case 'all': return v;
      case 'eq': return `${v} == ${lit(entityTypes)}`;
      case 'in': return `${v} in ${lit(rng.chance(0.8) ? containerTypes : entityTypes)}`;
      case 'is': return `${v} is ${rng.chance(0.6) ? isTypes[0] ?? v : rng.pick(isTypes)}`;
      case 'isIn': return `${v} is ${rng.chance(0.6) ? isTypes[0] ?? v : rng.pick(isTypes)} in ${lit(containerTypes)}`;
    }
  }

  private actionScope(): string {
    const rng = this.rng;
    const form = rng.weighted([[55, 'all'], [15, 'eq'], [15, 'in'], [15, 'inSet']] as const);
    this.mark(`scope.action.${form}`);
    const one = (): string => this.uidText(rng.chance(0.1) ? { type: 'Action', id: 'ghost' } : { type: 'Action', id: rng.pick([...ACTIONS, ...Object.keys(ACTION_GROUPS)]) });
    switch (form) {
      case 'all': return 'action';
      case 'eq': return `action == ${one()}`;
      case 'in': return `action in ${one()}`;
      case 'inSet': {
        const n = rng.weighted([[1, 0], [6, 1], [6, 2], [3, 3]] as const);
        return `action in [${Array.from({ length: n }, one).join(', ')}]`;
      }
    }
  }

  private uidText(u: EntityUid): string {
    const esc = { used: false };
    const t = `${u.type}::${cedarString(u.id, this.rng, esc)}`;
    if (esc.used) this.mark('lit.stringEscape');
    return t;
  }

  // --- expressions ------------------------------------------------------------------------

  /** An expression of type `ty`; with chance illTypedRate, one of another type. */
  private gen(ty: Ty, d: number): Node {
    if (this.rng.chance(this.o.illTypedRate)) { this.mark('err.illTyped'); return this.gen(this.otherTy(ty), d - 1); }
    const n = this.genTyped(ty, d);
    if (this.rng.chance(0.04) && n.p < P.PRIMARY) { this.mark('op.parens'); return prim(`(${n.t})`); }
    return n;
  }

  private genTyped(ty: Ty, d: number): Node {
    switch (ty.k) {
      case 'Bool': return this.bool(d);
      case 'Long': return this.long(d);
      case 'String': return this.string(d);
      case 'Entity': return this.entity(d);
      case 'Set': return this.set(ty, d);
      case 'Record': return this.record(ty, d);
      default: return this.ext(ty.k, d);
    }
  }

  /** A Bool atom with the guards its accesses asked for, `(guard && atom)` most of the time. */
  private guarded(make: () => Node): Node {
    this.guards.push([]);
    const atom = make();
    const gs = this.guards.pop() ?? [];
    if (gs.length === 0 || !this.rng.chance(this.o.guardRate)) return atom;
    this.mark('op.and');
    return { t: [...gs, wrap(atom, P.REL)].join(' && '), p: P.AND };
  }

  private want(guard: string): void {
    this.guards[this.guards.length - 1]?.push(guard);
  }

  private bool(d: number): Node {
    const rng = this.rng;
    const ill = this.o.illTypedRate;
    const leaf = d <= 0;
    const form = rng.weighted([
      [leaf ? 3 : 0.5, 'lit'], [2, 'attr'], [leaf ? 1 : 4, 'cmpLong'], [2, 'cmpTime'], [3, 'eq'], [3, 'in'], [1.5, 'inSet'],
      [3, 'has'], [2, 'like'], [2, 'is'], [3, 'setop'], [1.5, 'tag'], [2, 'ipPred'], [1.5, 'decPred'],
      [leaf ? 0 : 2, 'not'], [leaf ? 0 : 4, 'and'], [leaf ? 0 : 3, 'or'], [leaf ? 0 : 1, 'if'], [ill * 40, 'error'],
    ] as const);
    switch (form) {
      case 'lit': this.mark('lit.bool'); return prim(rng.chance(0.5) ? 'true' : 'false');
      case 'attr': return this.guarded(() => this.access(BOOL));
      case 'cmpLong': return this.guarded(() => this.compare(this.long(d - 1), this.long(d - 1), true));
      case 'cmpTime': return this.guarded(() => {
        const k = rng.chance(0.5) ? 'datetime' : 'duration';
        this.mark(k === 'datetime' ? 'datetime.compare' : 'duration.compare');
        return this.compare(this.ext(k, d - 1), this.ext(k, d - 1), true);
      });
      case 'eq': return this.guarded(() => {
        const t = rng.pick(BASIC_TYS);
        return this.compare(this.gen(t, d - 1), this.gen(rng.chance(0.9) ? t : this.otherTy(t), d - 1), false);
      });
      case 'in': return this.guarded(() => {
        this.mark('in.entity');
        return { t: `${wrap(this.entity(d - 1), P.ADD)} in ${wrap(this.entity(d - 1), P.ADD)}`, p: P.REL };
      });
      case 'inSet': return this.guarded(() => {
        this.mark('in.set');
        return { t: `${wrap(this.entity(d - 1), P.ADD)} in ${wrap(this.set(SET_ENTITY, d - 1), P.ADD)}`, p: P.REL };
      });
      case 'has': return this.guarded(() => this.has(d));
      case 'like': return this.guarded(() => this.like(d));
      case 'is': return this.guarded(() => {
        const lhs = wrap(this.entity(d - 1), P.ADD);
        const type = rng.pick([...TYPE_NAMES, 'Action', 'Ghost']);
        if (rng.chance(0.4)) { this.mark('is.in'); return { t: `${lhs} is ${type} in ${wrap(this.entity(d - 1), P.ADD)}`, p: P.REL }; }
        this.mark('is');
        return { t: `${lhs} is ${type}`, p: P.REL };
      });
      case 'setop': return this.guarded(() => this.setOp(d));
      case 'tag': return this.guarded(() => {
        if (rng.chance(0.5)) return this.getTag(BOOL, d);
        this.mark('tag.has');
        return prim(`${wrap(this.entity(d - 1), P.MEMBER)}.hasTag(${this.tagKey(d).t})`);
      });
      case 'ipPred': return this.guarded(() => {
        const m = rng.pick(['isIpv4', 'isIpv6', 'isLoopback', 'isMulticast', 'isInRange'] as const);
        this.mark(`ip.${m}`);
        const recv = wrap(this.ext('ip', d - 1), P.MEMBER);
        return prim(m === 'isInRange' ? `${recv}.isInRange(${this.ext('ip', d - 1).t})` : `${recv}.${m}()`);
      });
      case 'decPred': return this.guarded(() => {
        const m = rng.pick(['lessThan', 'lessThanOrEqual', 'greaterThan', 'greaterThanOrEqual'] as const);
        this.mark(`decimal.${m}`);
        return prim(`${wrap(this.ext('decimal', d - 1), P.MEMBER)}.${m}(${this.ext('decimal', d - 1).t})`);
      });
      case 'not': return this.unary('!', this.bool(d - 1));
      case 'and':
      case 'or': return this.junction(form, d);
      case 'if': return this.ite(BOOL, d);
      case 'error': return this.error(d);
    }
  }

  private junction(form: 'and' | 'or', d: number): Node {
    const n = this.rng.int(2, 3);
    const parts = Array.from({ length: n }, () => this.bool(d - 1));
    this.mark(form === 'and' ? 'op.and' : 'op.or');
    const [op, min] = form === 'and' ? ['&&', P.REL] as const : ['||', P.AND] as const;
    return { t: parts.map((x, i) => wrap(x, i === 0 ? min - 1 : min)).join(` ${op} `), p: min - 1 };
  }

  private compare(a: Node, b: Node, ordered: boolean): Node {
    const op = ordered ? this.rng.pick(['<', '<=', '>', '>=', '==', '!='] as const) : this.rng.pick(['==', '==', '!='] as const);
    const names = { '<': 'op.lt', '<=': 'op.le', '>': 'op.gt', '>=': 'op.ge', '==': 'op.eq', '!=': 'op.ne' } as const;
    this.mark(names[op]);
    return { t: `${wrap(a, P.ADD)} ${op} ${wrap(b, P.ADD)}`, p: P.REL };
  }

  private unary(op: '!' | '-', x: Node): Node {
    this.mark(op === '!' ? 'op.not' : 'op.neg');
    // Stack like operators directly (`!!x`, `- -x`) up to Cedar's limit of four.
    if (x.stack && x.stack.op === op && x.stack.n < 4) {
      this.mark('op.unaryStack');
      return { t: `${op}${op === '-' ? ' ' : ''}${x.t}`, p: P.UNARY, stack: { op, n: x.stack.n + 1 } };
    }
    const inner = x.p >= P.MEMBER && !x.t.startsWith('-') ? x.t : `(${x.t})`;
    return { t: `${op}${inner}`, p: P.UNARY, stack: { op, n: 1 } };
  }

  private ite(ty: Ty, d: number): Node {
    this.mark('op.if');
    return { t: `if ${this.bool(d - 1).t} then ${this.gen(ty, d - 1).t} else ${this.gen(ty, d - 1).t}`, p: P.IF };
  }

  private has(d: number): Node {
    const rng = this.rng;
    const target = rng.weighted([[5, 'entity'], [2, 'record'], [3, 'context']] as const);
    this.mark(`has.${target}`);
    let lhs: Node;
    let names: string[];
    if (target === 'entity') { lhs = this.entity(d - 1); names = [...Object.keys(TYPES[rng.pick(TYPE_NAMES)]), 'nope', 'Name']; }
    else if (target === 'context') { this.mark('var.context'); lhs = prim('context'); names = [...CONTEXT.fields.map((f) => f.name), 'nope']; }
    else {
      const rec = rng.pick([PROFILE, CTX_REC, META]);
      lhs = this.record(rec, d - 1);
      names = [...rec.fields.map((f) => f.name), 'nope'];
    }
    // `e has a.b.c` along a path of the soft schema.
    if (rng.chance(0.25)) {
      const first = rng.pick(names.filter(isIdent));
      const rest: string[] = [];
      let ty: Ty | undefined = target === 'context' ? CONTEXT.fields.find((f) => f.name === first)?.ty : ATTRS[first];
      while (ty && (ty.k === 'Record' || ty.k === 'Entity') && rest.length < 2 && rng.chance(0.8)) {
        const next: [string, Ty][] = ty.k === 'Record' ? ty.fields.map((f) => [f.name, f.ty]) : Object.entries(attrsOf(ty.of));
        const ok = next.filter(([n]) => isIdent(n));
        if (!ok.length) break;
        const [n, t] = rng.pick(ok);
        rest.push(n);
        ty = t;
      }
      if (rest.length) this.mark('has.path');
      this.mark('has.ident');
      return { t: `${wrap(lhs, P.ADD)} has ${[first, ...rest].join('.')}`, p: P.REL };
    }
    const name = rng.pick(names);
    if (isIdent(name) && rng.chance(0.7)) { this.mark('has.ident'); return { t: `${wrap(lhs, P.ADD)} has ${name}`, p: P.REL }; }
    this.mark('has.string');
    return { t: `${wrap(lhs, P.ADD)} has ${this.strText(name)}`, p: P.REL };
  }

  private like(d: number): Node {
    const rng = this.rng;
    const lhs = this.string(d - 1);
    const target = rng.chance(0.7) ? rng.pick(STRS) : rng.pick(IDS);
    let pat = '';
    let i = 0;
    const chars = [...target];
    while (i < chars.length) {
      const ch = chars[i] ?? '';
      if (rng.chance(0.2)) { pat += '*'; this.mark('like.wildcard'); i += rng.int(0, 2); continue; }
      if (ch === '*') { pat += '\\*'; this.mark('like.escape'); i++; continue; }
      const lit = cedarString(ch, null, { used: false }).slice(1, -1);
      pat += rng.chance(0.03) ? 'q' : lit; // a mutated character, so some patterns miss
      i++;
    }
    if (rng.chance(0.2)) { pat = `*${pat}`; this.mark('like.wildcard'); }
    if (rng.chance(0.15)) { pat += '\\*'; this.mark('like.escape'); }
    if (rng.chance(0.02)) { pat += '\\u{2a}'; this.mark('like.unicodeStar'); }
    return { t: `${wrap(lhs, P.ADD)} like "${pat}"`, p: P.REL };
  }

  private setOp(d: number): Node {
    const rng = this.rng;
    const elem = rng.pick([STRING, LONG, ENTITY]);
    const setTy: SetTy = { k: 'Set', of: elem };
    const recv = wrap(this.set(setTy, d - 1), P.MEMBER);
    const m = rng.pick(['contains', 'containsAll', 'containsAny', 'isEmpty'] as const);
    this.mark(`set.${m}`);
    if (m === 'isEmpty') return prim(`${recv}.isEmpty()`);
    if (m === 'contains') return prim(`${recv}.contains(${this.gen(elem, d - 1).t})`);
    return prim(`${recv}.${m}(${this.set(setTy, d - 1).t})`);
  }

  private tagKey(d: number): Node {
    if (this.rng.chance(0.85)) return prim(this.strText(this.rng.pick([...Object.keys(TAGS), 'nope'])));
    return this.string(d - 1);
  }

  private getTag(ty: Ty, d: number): Node {
    const keys = Object.entries(TAGS).filter(([, t]) => tyKey(t) === tyKey(ty)).map(([k]) => k);
    const key = keys.length ? this.rng.pick(keys) : 'env';
    const e = wrap(this.entity(d - 1), P.MEMBER);
    const k = this.strText(key);
    this.want(`${e}.hasTag(${k})`);
    this.mark('tag.get');
    return prim(`${e}.getTag(${k})`);
  }

  private long(d: number): Node {
    const rng = this.rng;
    const leaf = d <= 0;
    const form = rng.weighted([
      [4, 'lit'], [3, 'attr'], [leaf ? 0 : 2, 'add'], [leaf ? 0 : 1, 'sub'], [leaf ? 0 : 1, 'mul'], [leaf ? 0.5 : 1, 'neg'],
      [leaf ? 0 : 0.5, 'if'], [leaf ? 0 : 1, 'durTo'], [0.5, 'tag'], [leaf ? 0 : 0.5, 'recMember'],
    ] as const);
    switch (form) {
      case 'lit': return this.longLit();
      case 'attr': return this.access(LONG);
      case 'add':
      case 'sub': {
        this.mark(form === 'add' ? 'op.add' : 'op.sub');
        return { t: `${wrap(this.long(d - 1), P.ADD)} ${form === 'add' ? '+' : '-'} ${wrap(this.long(d - 1), P.MUL)}`, p: P.ADD };
      }
      case 'mul':
        this.mark('op.mul');
        return { t: `${wrap(this.long(d - 1), P.MUL)} * ${wrap(this.long(d - 1), P.UNARY)}`, p: P.MUL };
      case 'neg': return this.unary('-', this.long(d - 1));
      case 'if': return this.ite(LONG, d);
      case 'durTo': {
        const m = rng.pick(['toDays', 'toHours', 'toMinutes', 'toSeconds', 'toMilliseconds'] as const);
        this.mark(`duration.${m}`);
        return prim(`${wrap(this.ext('duration', d - 1), P.MEMBER)}.${m}()`);
      }
      case 'tag': return this.getTag(LONG, d);
      case 'recMember': return this.recordMember(LONG, d);
    }
  }

  private longLit(): Node {
    if (this.rng.chance(0.1)) {
      this.mark('lit.longBound');
      const v = this.rng.pick(BOUND_LONGS);
      if (v === '-9223372036854775808' && this.rng.chance(0.3)) return { t: '- 9223372036854775808', p: P.UNARY, stack: { op: '-', n: 1 } };
      return v.startsWith('-') ? { t: v, p: P.UNARY, stack: { op: '-', n: 1 } } : prim(v);
    }
    this.mark('lit.long');
    const v = this.rng.pick(SMALL_LONGS);
    return v < 0 ? { t: String(v), p: P.UNARY, stack: { op: '-', n: 1 } } : prim(String(v));
  }

  private strText(s: string): string {
    const esc = { used: false };
    const t = cedarString(s, this.rng, esc);
    if (esc.used) this.mark('lit.stringEscape');
    return t;
  }

  private string(d: number): Node {
    const leaf = d <= 0;
    const form = this.rng.weighted([[4, 'lit'], [4, 'attr'], [leaf ? 0 : 0.5, 'if'], [0.5, 'tag'], [leaf ? 0 : 0.5, 'recMember']] as const);
    switch (form) {
      case 'lit': this.mark('lit.string'); return prim(this.strText(this.rng.pick(STRS)));
      case 'attr': return this.access(STRING);
      case 'if': return this.ite(STRING, d);
      case 'tag': return this.getTag(STRING, d);
      case 'recMember': return this.recordMember(STRING, d);
    }
  }

  private entity(d: number): Node {
    const rng = this.rng;
    const form = rng.weighted([[5, 'principal'], [4, 'resource'], [1, 'action'], [5, 'lit'], [d <= 0 ? 1 : 3, 'attr'], [d <= 0 ? 0 : 0.3, 'if']] as const);
    switch (form) {
      case 'principal': this.mark('var.principal'); return prim('principal');
      case 'resource': this.mark('var.resource'); return prim('resource');
      case 'action': this.mark('var.action'); return prim('action');
      case 'lit': {
        const u = rng.chance(0.15) ? { type: 'Action', id: rng.pick([...ACTIONS, ...Object.keys(ACTION_GROUPS)]) } : this.anyUid(0.12);
        this.mark(u.type.includes('::') ? 'lit.entityNamespaced' : 'lit.entity');
        return prim(this.uidText(u));
      }
      case 'attr': return this.access(ENTITY);
      case 'if': return this.ite(ENTITY, d);
    }
  }

  private set(ty: SetTy, d: number): Node {
    if (this.rng.chance(0.45) && PATH_TYS.has(tyKey(ty))) return this.access(ty);
    if (d > 0 && this.rng.chance(0.05)) return this.ite(ty, d);
    this.mark('lit.set');
    const n = this.rng.weighted([[1, 0], [3, 1], [3, 2], [2, 3]] as const);
    return prim(`[${Array.from({ length: n }, () => this.gen(ty.of, d - 1).t).join(', ')}]`);
  }

  private record(ty: RecTy, d: number): Node {
    if (ty === CONTEXT) { this.mark('var.context'); return prim('context'); }
    if (this.rng.chance(0.4) && PATH_TYS.has(tyKey(ty))) return this.access(ty);
    this.mark('lit.record');
    const parts: string[] = [];
    for (const f of ty.fields) {
      if (f.optional && this.rng.chance(0.4)) continue;
      const key = isIdent(f.name) && this.rng.chance(0.8) ? f.name : this.strText(f.name);
      if (key.startsWith('"')) this.mark('lit.recordStringKey');
      parts.push(`${key}: ${this.gen(d > 0 ? f.ty : this.leafTy(f.ty), d - 1).t}`);
    }
    return prim(`{${parts.join(', ')}}`);
  }

  private leafTy(t: Ty): Ty { return t.k === 'Record' ? LONG : t; }

  /** `{a: 1, b: "x"}.a` — a member of a record literal. */
  private recordMember(ty: Ty, d: number): Node {
    const rec = ty.k === 'Long' ? CTX_REC : HOME;
    const field = rec.fields.find((f) => tyKey(f.ty) === tyKey(ty));
    const lit = this.record(rec, d - 1);
    if (!field) return this.gen(ty, d - 1);
    this.mark(isIdent(field.name) ? 'attr.dot' : 'attr.index');
    const member = isIdent(field.name) ? `.${field.name}` : `[${this.strText(field.name)}]`;
    if (field.optional) this.want(`${wrap(lit, P.ADD)} has ${this.strText(field.name)}`);
    return { t: `${wrap(lit, P.MEMBER)}${member}`, p: P.MEMBER };
  }

  /** An attribute access of type `ty` along a path of the soft schema, asking for its guards. The
   *  root is principal, resource, context or an entity literal; the path follows the type the
   *  root most likely has (principal: a User; resource: a Doc), so most accesses find a value. */
  private access(ty: Ty): Node {
    const rng = this.rng;
    const key = tyKey(ty);
    const roots = [...new Set(rng.shuffle(['principal', 'principal', 'principal', 'resource', 'resource', 'context', 'context', 'literal'] as const))];
    for (const root of roots) {
      const rootType: RootType = root === 'principal' ? rng.weighted([[70, 'User'], [15, 'App::Service'], [15, 'Group']] as const)
        : root === 'resource' ? rng.weighted([[65, 'Doc'], [25, 'Folder'], [10, 'User']] as const)
          : root === 'context' ? 'context' : rng.pick(TYPE_NAMES);
      const paths = PATHS.get(rootType)?.get(key);
      if (!paths?.length) continue;
      const path = rng.pick(paths);
      let base: string;
      if (root === 'literal') {
        const u = this.uidOf([rootType], 0.12);
        this.mark(u.type.includes('::') ? 'lit.entityNamespaced' : 'lit.entity');
        base = this.uidText(u);
      } else {
        this.mark(`var.${root}`);
        base = root;
      }
      if (path.steps.length >= 2) this.mark('attr.chain');
      const guards: string[] = [];
      let cur = base;
      for (const step of path.steps) {
        guards.push(`${cur} has ${isIdent(step) ? step : this.strText(step)}`);
        if (isIdent(step) && rng.chance(0.9)) { cur = `${cur}.${step}`; this.mark('attr.dot'); }
        else { cur = `${cur}[${this.strText(step)}]`; this.mark('attr.index'); }
      }
      // `principal has manager && principal.manager has profile` or, folded, `principal has manager.profile`.
      if (path.steps.every(isIdent) && path.steps.length >= 2 && rng.chance(0.5)) {
        this.mark('has.path');
        this.want(`${base} has ${path.steps.join('.')}`);
      } else {
        for (const g of guards) this.want(g);
      }
      return { t: cur, p: P.MEMBER };
    }
    return this.genTyped(ty, 0);
  }

  private ext(kind: 'ip' | 'decimal' | 'datetime' | 'duration', d: number): Node {
    const rng = this.rng;
    const ty: Ty = { k: kind };
    const form = rng.weighted([
      [5, 'ctor'], [3, 'attr'], [kind === 'datetime' && d > 0 ? 2 : 0, 'offset'], [kind === 'datetime' && d > 0 ? 1 : 0, 'toDate'],
      [kind === 'duration' && d > 0 ? 2 : 0, 'since'], [kind === 'duration' && d > 0 ? 1 : 0, 'toTime'], [d > 0 ? 0.3 : 0, 'if'],
    ] as const);
    switch (form) {
      case 'ctor': {
        this.mark(`${kind}.${kind}` as Construct); // ip.ip, decimal.decimal, datetime.datetime, duration.duration
        return prim(`${kind}(${this.strText(rng.pick(EXT_POOLS[kind]))})`);
      }
      case 'attr': return this.access(ty);
      case 'offset': this.mark('datetime.offset'); return prim(`${wrap(this.ext('datetime', d - 1), P.MEMBER)}.offset(${this.ext('duration', d - 1).t})`);
      case 'toDate': this.mark('datetime.toDate'); return prim(`${wrap(this.ext('datetime', d - 1), P.MEMBER)}.toDate()`);
      case 'since': this.mark('datetime.durationSince'); return prim(`${wrap(this.ext('datetime', d - 1), P.MEMBER)}.durationSince(${this.ext('datetime', d - 1).t})`);
      case 'toTime': this.mark('datetime.toTime'); return prim(`${wrap(this.ext('datetime', d - 1), P.MEMBER)}.toTime()`);
      case 'if': return this.ite(ty, d);
    }
  }

  /** A Bool-positioned expression that errs on purpose (or would, but for short-circuiting). */
  private error(d: number): Node {
    const rng = this.rng;
    const kind = rng.pick(['overflow', 'missingAttr', 'missingEntity', 'typeMismatch', 'badExtension'] as const);
    this.mark(`err.${kind}`);
    switch (kind) {
      case 'overflow': {
        const forms = [
          () => `9223372036854775807 + ${wrap(this.long(0), P.MUL)} > 0`,
          () => `-9223372036854775808 - ${wrap(this.long(0), P.MUL)} < 0`,
          () => `${wrap(this.long(d - 1), P.MUL)} * 3037000500 != 0`,
          () => `-(-9223372036854775807 - 1) == 0`,
          () => `${wrap(this.access(LONG), P.MUL)} * 9223372036854775807 == 1`,
          () => `context has n && context.n + 9223372036854775807 > 0`,
        ];
        return { t: rng.pick(forms)(), p: P.IF };
      }
      case 'missingAttr': return { t: rng.pick([`context.nope == 1`, `principal.nonexistent == "x"`, `{a: 1}.b == 1`, `resource["no such"] != 0`, `action.level > 0`]), p: P.REL };
      case 'missingEntity': {
        const ghost = this.uidText(rng.pick(this.world.ghosts));
        return { t: rng.pick([`${ghost}.name == "x"`, `${ghost}.getTag("env") == "prod"`, `${ghost} has name || ${ghost}.age > 1`]), p: P.IF };
      }
      case 'typeMismatch': {
        const forms = [
          () => `1 < "a"`, () => `"a" && true`, () => `if 1 then true else false`, () => `principal + 1 > 0`,
          () => `${wrap(this.string(0), P.ADD)} < 3`, () => `${wrap(this.long(0), P.ADD)} like "1*"`, () => `[1, 2].contains(1) + 1 == 2`,
          () => `principal in [1, 2]`, () => `context.isEmpty()`, () => `${wrap(this.long(0), P.MEMBER)}.isIpv4()`, () => `decimal("1.5") < decimal("2.5")`,
          () => `true || 1`, () => `false || "x"`, () => `principal.getTag(1) == 1`, () => `ip("10.0.0.1") > ip("10.0.0.2")`,
        ];
        return { t: rng.pick(forms)(), p: P.IF };
      }
      case 'badExtension': {
        const k = rng.pick(['ip', 'decimal', 'datetime', 'duration'] as const);
        const bad = `${k}(${this.strText(rng.pick(BAD_EXT_POOLS[k]))})`;
        const use: Record<typeof k, string> = {
          ip: `${bad}.isIpv4()`, decimal: `${bad}.lessThan(decimal("1.0"))`,
          datetime: `${bad} < datetime("2024-01-01")`, duration: `${bad}.toDays() == 0`,
        };
        return { t: use[k], p: P.REL };
      }
    }
  }
}
