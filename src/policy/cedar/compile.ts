// Compiles a policy's JSON form (EST, from cedar-wasm) into JavaScript closures. Each closure
// throws CedarEvalError where Cedar's evaluator errors; constant sub-expressions are evaluated
// once here. Anything this compiler does not know raises Unsupported, and the engine hands that
// policy to cedar-wasm instead: never a guess.
import type { Entities } from './entities.js';
import { InputError, NeedsReference, decodeValue } from './entities.js';
import type { Expr, PolicyJson } from './parse.js';
import {
  ANY_ENTITY,
  CedarEvalError,
  EntityRef,
  callExtension,
  compilePattern,
  displayUid,
  extensionFn,
  lessThan,
  longAdd,
  longFromBig,
  longMul,
  longNeg,
  longSub,
  setContains,
  setField,
  setSubset,
  typeError,
  typeErrorOneOf,
  valueEquals,
  type CRecord,
  type PatternElem,
  type Value,
} from './values.js';

/** One request, as the closures see it. */
export interface Env {
  principal: EntityRef;
  action: EntityRef;
  resource: EntityRef;
  context: CRecord;
  entities: Entities;
}

type Ev = (env: Env) => Value;
type EvB = (env: Env) => boolean;

/** The compiler cannot compile this policy; cedar-wasm evaluates it instead. */
export class Unsupported {
  constructor(readonly reason: string) {}
}

export type ScopeConstraint =
  | { op: 'All' }
  | { op: '=='; uid: EntityRef }
  | { op: 'in'; uid: EntityRef }
  | { op: 'is'; type: string; in?: EntityRef };

export type ActionConstraint = { op: 'All' } | { op: '=='; uid: EntityRef } | { op: 'in'; uids: EntityRef[] };

/** Entity values for a template's slots. */
export interface SlotValues {
  '?principal'?: EntityRef;
  '?resource'?: EntityRef;
}

// ---------- shared runtime helpers ----------

function isRecord(v: Value): v is CRecord {
  if (typeof v !== 'object') return false;
  const p = Object.getPrototypeOf(v) as unknown;
  return p === Object.prototype || p === null;
}

function entityAttr(env: Env, v: EntityRef, attr: string): Value {
  const e = env.entities.entryOf(v);
  if (e === undefined) throw new CedarEvalError(`entity \`${displayUid(v)}\` does not exist`);
  if (Object.hasOwn(e.attrs, attr)) return e.attrs[attr] as Value; // own key checked
  throw new CedarEvalError(`\`${displayUid(v)}\` does not have the attribute \`${attr}\``);
}

function getAttr(env: Env, v: Value, attr: string): Value {
  if (v instanceof EntityRef) return entityAttr(env, v, attr);
  if (isRecord(v)) {
    if (Object.hasOwn(v, attr)) return v[attr] as Value; // own key checked
    throw new CedarEvalError(`record does not have the attribute \`${attr}\``);
  }
  throw typeErrorOneOf(['record', ANY_ENTITY], v);
}

function hasAttr(env: Env, v: Value, attr: string): boolean {
  if (v instanceof EntityRef) {
    const e = env.entities.get(v.type, v.id);
    return e !== undefined && Object.hasOwn(e.attrs, attr);
  }
  if (isRecord(v)) return Object.hasOwn(v, attr);
  throw typeErrorOneOf(['record', ANY_ENTITY], v);
}

/** Evaluates in order. A plain loop, not `map`: a Cedar error thrown from a callback inside an
 *  array builtin has crashed V8's deoptimizer (Node 20). */
function evalAll(evs: readonly Ev[], env: Env): Value[] {
  const out: Value[] = new Array<Value>(evs.length);
  for (let i = 0; i < evs.length; i++) out[i] = (evs[i] as Ev)(env); // i < length
  return out;
}

function asBool(v: Value): boolean {
  if (typeof v === 'boolean') return v;
  throw typeError('bool', v);
}

function asEntity(v: Value): EntityRef {
  if (v instanceof EntityRef) return v;
  throw typeError(ANY_ENTITY, v);
}

function asSet(v: Value): Value[] {
  if (Array.isArray(v)) return v;
  throw typeError('set', v);
}

function asString(v: Value): string {
  if (typeof v === 'string') return v;
  throw typeError('string', v);
}

/** Cedar `in`: the left side an entity, the right an entity or a set of entities. */
function entityIn(env: Env, l: Value, r: Value): boolean {
  const a = asEntity(l);
  if (r instanceof EntityRef) return env.entities.isIn(a, r);
  if (!Array.isArray(r)) throw typeErrorOneOf(['set', ANY_ENTITY], r);
  for (const x of r) asEntity(x); // every element is checked before any match counts
  for (const x of r) if (env.entities.isIn(a, x as EntityRef)) return true; // checked just above
  return false;
}

function getTag(env: Env, l: Value, r: Value): Value {
  const e = asEntity(l);
  const k = asString(r);
  const entry = env.entities.get(e.type, e.id);
  if (entry === undefined) throw new CedarEvalError(`entity \`${displayUid(e)}\` does not exist`);
  if (entry.tags !== undefined && Object.hasOwn(entry.tags, k)) return entry.tags[k] as Value; // own key checked
  throw new CedarEvalError(`\`${displayUid(e)}\` does not have the tag \`${k}\``);
}

function hasTag(env: Env, l: Value, r: Value): boolean {
  const e = asEntity(l);
  const k = asString(r);
  const entry = env.entities.get(e.type, e.id);
  return entry !== undefined && entry.tags !== undefined && Object.hasOwn(entry.tags, k);
}

// ---------- the compiler ----------

/** A compiled sub-expression: `k` holds its value when it is a constant, `b` evaluates it
 *  straight to a JS boolean (throwing the Cedar type error for a non-bool). */
interface C {
  ev: Ev;
  k?: Value;
  b?: EvB;
}

function konst(v: Value): C {
  return { ev: () => v, k: v, b: typeof v === 'boolean' ? () => v : undefined };
}

function thrower(e: CedarEvalError): C {
  const f = (): never => {
    throw e;
  };
  return { ev: f, b: f };
}

function boolC(b: EvB): C {
  return { ev: b, b };
}

function toBool(c: C): EvB {
  if (c.b) return c.b;
  const ev = c.ev;
  return (env) => asBool(ev(env));
}

/** Evaluates `compute` now when every operand is a constant (a pure function of them). */
function fold(children: C[], compute: (vals: Value[]) => Value): C | undefined {
  const vals: Value[] = [];
  for (const c of children) {
    if (c.k === undefined) return undefined;
    vals.push(c.k);
  }
  try {
    return konst(compute(vals));
  } catch (e) {
    if (e instanceof CedarEvalError) return thrower(e);
    throw e;
  }
}

/** Numbers beyond 2^53 lost their exact value in the EST's JSON; only cedar-wasm has it. */
function checkExact(v: unknown): void {
  if (typeof v === 'number' && !Number.isSafeInteger(v)) throw new Unsupported('integer literal beyond 2^53');
  if (typeof v === 'object' && v !== null) for (const x of Object.values(v)) checkExact(x);
}

function literal(v: unknown): Value {
  checkExact(v);
  try {
    return decodeValue(v);
  } catch (e) {
    if (e instanceof InputError || e instanceof NeedsReference) throw new Unsupported('literal value');
    throw e;
  }
}

type Bin = { left: Expr; right: Expr };

function binary(node: unknown, name: string): [C, C] {
  const { left, right } = node as Bin; // shape fixed by the EST for this operator
  if (left === undefined || right === undefined) throw new Unsupported(`malformed ${name}`);
  return [compileExpr(left), compileExpr(right)];
}

function compileEq(l: C, r: C): C {
  const folded = fold([l, r], ([a, b]) => valueEquals(a as Value, b as Value)); // fold passes one value per operand
  if (folded) return folded;
  const [x, y] = l.k !== undefined ? [r, l] : [l, r];
  const lv = x.ev;
  if (y.k !== undefined) {
    const k = y.k;
    if (typeof k !== 'object') return boolC((env) => lv(env) === k);
    if (k instanceof EntityRef) {
      const { type, id } = k;
      return boolC((env) => {
        const v = lv(env);
        return v instanceof EntityRef && v.id === id && v.type === type;
      });
    }
    return boolC((env) => valueEquals(lv(env), k));
  }
  const rv = y.ev;
  return boolC((env) => valueEquals(lv(env), rv(env)));
}

function compileCmp(l: C, r: C, orEqual: boolean, swap: boolean): C {
  const [a, b] = swap ? [r, l] : [l, r];
  const folded = fold([l, r], () => lessThan(a.k as Value, b.k as Value, orEqual)); // both constant in fold
  if (folded) return folded;
  const lv = l.ev;
  const rv = r.ev;
  if (r.k !== undefined && typeof r.k === 'number') {
    const k = r.k;
    // Left evaluated first, as Cedar does; numbers compare directly.
    if (swap) return boolC((env) => { const v = lv(env); return typeof v === 'number' ? (orEqual ? k <= v : k < v) : lessThan(k, v, orEqual); });
    return boolC((env) => { const v = lv(env); return typeof v === 'number' ? (orEqual ? v <= k : v < k) : lessThan(v, k, orEqual); });
  }
  if (swap) return boolC((env) => { const x = lv(env); return lessThan(rv(env), x, orEqual); });
  return boolC((env) => { const x = lv(env); return lessThan(x, rv(env), orEqual); });
}

function compileArith(l: C, r: C, op: (a: Value, b: Value) => Value): C {
  const folded = fold([l, r], ([a, b]) => op(a as Value, b as Value)); // one value per operand
  if (folded) return folded;
  const lv = l.ev;
  const rv = r.ev;
  return { ev: (env) => { const a = lv(env); return op(a, rv(env)); } };
}

function compileAttr(left: Expr, attr: string): C {
  if (typeof left === 'object' && left !== null && 'Var' in left) {
    const v = (left as { Var: string }).Var; // 'Var' in left
    if (v === 'principal') return { ev: (env) => entityAttr(env, env.principal, attr) };
    if (v === 'resource') return { ev: (env) => entityAttr(env, env.resource, attr) };
    if (v === 'action') return { ev: (env) => entityAttr(env, env.action, attr) };
    if (v === 'context') {
      return {
        ev: (env) => {
          const c = env.context;
          if (Object.hasOwn(c, attr)) return c[attr] as Value; // own key checked
          throw new CedarEvalError(`record does not have the attribute \`${attr}\``);
        },
      };
    }
  }
  const l = compileExpr(left);
  const lv = l.ev;
  return { ev: (env) => getAttr(env, lv(env), attr) };
}

function compileHas(left: Expr, attrs: string[]): C {
  const l = compileExpr(left);
  const lv = l.ev;
  if (attrs.length === 1) {
    const a = attrs[0] as string; // length checked
    return boolC((env) => hasAttr(env, lv(env), a));
  }
  // `e has a.b.c` is `e has a && e.a has b && e.a.b has c`.
  return boolC((env) => {
    let v = lv(env);
    for (let i = 0; i < attrs.length; i++) {
      const a = attrs[i] as string; // index checked
      if (!hasAttr(env, v, a)) return false;
      if (i < attrs.length - 1) v = getAttr(env, v, a);
    }
    return true;
  });
}

function compileIn(l: C, r: C): C {
  const lv = l.ev;
  if (r.k instanceof EntityRef) {
    const { type, id } = r.k;
    return boolC((env) => env.entities.isInKey(asEntity(lv(env)), type, id));
  }
  const rv = r.ev;
  return boolC((env) => {
    const a = lv(env);
    return entityIn(env, a, rv(env));
  });
}

function compileIs(left: Expr, type: string, inExpr: Expr | undefined): C {
  const lv = compileExpr(left).ev;
  if (inExpr === undefined) return boolC((env) => asEntity(lv(env)).type === type);
  const r = compileExpr(inExpr);
  const rv = r.ev;
  return boolC((env) => {
    const e = asEntity(lv(env));
    return e.type === type && entityIn(env, e, rv(env));
  });
}

function compileLike(left: Expr, pattern: unknown): C {
  if (!Array.isArray(pattern)) throw new Unsupported('malformed like');
  const elems: PatternElem[] = [];
  for (const p of pattern as unknown[]) { // an array, checked above
    if (p === 'Wildcard') elems.push({ wildcard: true });
    else if (typeof p === 'object' && p !== null && typeof (p as { Literal?: unknown }).Literal === 'string') elems.push({ literal: (p as { Literal: string }).Literal });
    else throw new Unsupported('malformed like pattern');
  }
  const match = compilePattern(elems);
  const l = compileExpr(left);
  const folded = fold([l], ([s]) => match(asString(s as Value))); // one value per operand
  if (folded) return folded;
  const lv = l.ev;
  return boolC((env) => match(asString(lv(env))));
}

function compileIf(c: C, t: C, e: C): C {
  if (typeof c.k === 'boolean') return c.k ? t : e;
  const cb = toBool(c);
  const tv = t.ev;
  const ev = e.ev;
  const out: C = { ev: (env) => (cb(env) ? tv(env) : ev(env)) };
  if (t.b && e.b) {
    const tb = t.b;
    const eb = e.b;
    out.b = (env) => (cb(env) ? tb(env) : eb(env));
  }
  return out;
}

function compileAnd(l: C, r: C): C {
  if (l.k === false) return l;
  if (l.k === true) return r.b ? r : boolC(toBool(r));
  const lb = toBool(l);
  const rb = toBool(r);
  return boolC((env) => lb(env) && rb(env));
}

function compileOr(l: C, r: C): C {
  if (l.k === true) return l;
  if (l.k === false) return r.b ? r : boolC(toBool(r));
  const lb = toBool(l);
  const rb = toBool(r);
  return boolC((env) => lb(env) || rb(env));
}

function compileCall(name: string, args: unknown): C {
  const ext = extensionFn(name);
  if (!ext) throw new Unsupported(`function ${name}`);
  if (!Array.isArray(args)) throw new Unsupported(`malformed call to ${name}`);
  const cs = compileAll(args as Expr[]); // an array of EST expressions
  const folded = fold(cs, (vals) => callExtension(name, vals));
  if (folded) return folded;
  const { arity, fn } = ext;
  if (arity !== cs.length) {
    const evs = cs.map((c) => c.ev);
    return { ev: (env) => callExtension(name, evalAll(evs, env)) }; // arguments first, then the arity error
  }
  const a = (cs[0] as C).ev; // arity is 1 or 2
  if (arity === 1) return { ev: (env) => fn(a(env), false) };
  const second = cs[1] as C; // arity 2
  if (second.k !== undefined) {
    const k = second.k;
    return { ev: (env) => fn(a(env), k) };
  }
  const b = second.ev;
  return { ev: (env) => { const x = a(env); return fn(x, b(env)); } };
}

/** Compiles in order. Loops, not `map`: see evalAll (compileExpr throws Unsupported). */
function compileAll(es: readonly Expr[]): C[] {
  const out: C[] = [];
  for (const e of es) out.push(compileExpr(e));
  return out;
}

function compileExpr(e: Expr): C {
  if (typeof e !== 'object' || e === null) throw new Unsupported('malformed expression');
  const keys = Object.keys(e);
  if (keys.length !== 1) throw new Unsupported('malformed expression');
  const op = keys[0] as string; // length checked
  const node = (e as Record<string, unknown>)[op]; // an object, checked above
  // Below, `node as {...}` reads the EST shape cedar-wasm defines for each operator (types `Expr`).
  switch (op) {
    case 'Value':
      return konst(literal(node));
    case 'Long': {
      // An exact literal beyond 2^53 (see exactIntegers in parse.ts).
      const v = typeof node === 'string' && /^-?[0-9]+$/.test(node) ? longFromBig(BigInt(node)) : undefined;
      if (v === undefined) throw new Unsupported('malformed integer literal');
      return konst(v);
    }
    case 'Var': {
      switch (node) {
        case 'principal':
          return { ev: (env) => env.principal };
        case 'action':
          return { ev: (env) => env.action };
        case 'resource':
          return { ev: (env) => env.resource };
        case 'context':
          return { ev: (env) => env.context };
      }
      throw new Unsupported(`variable ${String(node)}`);
    }
    case '!': {
      const a = compileExpr((node as { arg: Expr }).arg);
      const folded = fold([a], ([v]) => !asBool(v as Value)); // one value per operand
      if (folded) return folded;
      const ab = toBool(a);
      return boolC((env) => !ab(env));
    }
    case 'neg': {
      const a = compileExpr((node as { arg: Expr }).arg);
      const folded = fold([a], ([v]) => longNeg(v as Value)); // one value per operand
      if (folded) return folded;
      const av = a.ev;
      return { ev: (env) => longNeg(av(env)) };
    }
    case '==':
      return compileEq(...binary(node, op));
    case '!=': {
      const eq = compileEq(...binary(node, op));
      if (eq.k !== undefined) return konst(!eq.k);
      const b = toBool(eq);
      return boolC((env) => !b(env));
    }
    case '<':
      return compileCmp(...binary(node, op), false, false);
    case '<=':
      return compileCmp(...binary(node, op), true, false);
    case '>':
      return compileCmp(...binary(node, op), false, true);
    case '>=':
      return compileCmp(...binary(node, op), true, true);
    case '&&':
      return compileAnd(...binary(node, op));
    case '||':
      return compileOr(...binary(node, op));
    case '+':
      return compileArith(...binary(node, op), longAdd);
    case '-':
      return compileArith(...binary(node, op), longSub);
    case '*':
      return compileArith(...binary(node, op), longMul);
    case 'in':
      return compileIn(...binary(node, op)); // needs the entity store: never folded
    case 'contains': {
      const [l, r] = binary(node, op);
      const lv = l.ev;
      const rv = r.ev;
      return boolC((env) => {
        const s = asSet(lv(env));
        return setContains(s, rv(env));
      });
    }
    case 'containsAll':
    case 'containsAny': {
      const [l, r] = binary(node, op);
      const lv = l.ev;
      const rv = r.ev;
      const all = op === 'containsAll';
      return boolC((env) => {
        const a = lv(env);
        const b = asSet(rv(env));
        const s = asSet(a);
        if (all) return setSubset(b, s);
        for (const x of b) if (setContains(s, x)) return true;
        return false;
      });
    }
    case 'isEmpty': {
      const a = compileExpr((node as { arg: Expr }).arg);
      const av = a.ev;
      return boolC((env) => asSet(av(env)).length === 0);
    }
    case 'getTag': {
      const [l, r] = binary(node, op);
      const lv = l.ev;
      const rv = r.ev;
      return { ev: (env) => { const a = lv(env); return getTag(env, a, rv(env)); } };
    }
    case 'hasTag': {
      const [l, r] = binary(node, op);
      const lv = l.ev;
      const rv = r.ev;
      return boolC((env) => { const a = lv(env); return hasTag(env, a, rv(env)); });
    }
    case '.': {
      const { left, attr } = node as { left: Expr; attr: unknown };
      if (typeof attr !== 'string') throw new Unsupported('malformed attribute access');
      return compileAttr(left, attr);
    }
    case 'has': {
      const { left, attr } = node as { left: Expr; attr: unknown };
      const attrs = typeof attr === 'string' ? [attr] : attr;
      if (!Array.isArray(attrs) || attrs.length === 0) throw new Unsupported('malformed has');
      for (const a of attrs as unknown[]) if (typeof a !== 'string') throw new Unsupported('malformed has');
      return compileHas(left, attrs as string[]);
    }
    case 'like': {
      const { left, pattern } = node as { left: Expr; pattern: unknown };
      return compileLike(left, pattern);
    }
    case 'is': {
      const { left, entity_type: type, in: inExpr } = node as { left: Expr; entity_type: unknown; in?: Expr };
      if (typeof type !== 'string') throw new Unsupported('malformed is');
      return compileIs(left, type, inExpr);
    }
    case 'if-then-else': {
      const n = node as { if: Expr; then: Expr; else: Expr };
      return compileIf(compileExpr(n.if), compileExpr(n.then), compileExpr(n.else));
    }
    case 'Set': {
      if (!Array.isArray(node)) throw new Unsupported('malformed set');
      const cs = compileAll(node as Expr[]); // an array of EST expressions
      const folded = fold(cs, (vals) => vals);
      if (folded) return folded;
      const evs = cs.map((c) => c.ev);
      return { ev: (env) => evalAll(evs, env) };
    }
    case 'Record': {
      if (typeof node !== 'object' || node === null) throw new Unsupported('malformed record');
      const cs = compileAll(Object.values(node as Record<string, Expr>)); // an object of EST expressions
      const keys = Object.keys(node);
      const entries = keys.map((k, i) => [k, cs[i] as C] as const);
      const build = (vals: Value[]): CRecord => {
        const r: CRecord = {};
        for (let i = 0; i < entries.length; i++) setField(r, (entries[i] as (typeof entries)[number])[0], vals[i] as Value); // i < length, one value per entry
        return r;
      };
      const folded = fold(entries.map(([, c]) => c), build);
      if (folded) return folded;
      const evs = entries.map(([, c]) => c.ev);
      return { ev: (env) => build(evalAll(evs, env)) };
    }
    case 'Slot':
      throw new Unsupported('slot in a condition');
    default:
      return compileCall(op, node);
  }
}

// ---------- scope ----------

function uidOf(u: unknown): EntityRef {
  const o = (typeof u === 'object' && u !== null && '__entity' in u ? (u as { __entity: unknown }).__entity : u) as { type?: unknown; id?: unknown };
  if (typeof o?.type !== 'string' || typeof o.id !== 'string') throw new Unsupported('malformed entity uid in scope');
  return new EntityRef(o.type, o.id);
}

function slotOrUid(c: { entity?: unknown; slot?: unknown }, slots: SlotValues): EntityRef {
  if (c.slot !== undefined) {
    const v = slots[c.slot as keyof SlotValues]; // an unknown slot name reads undefined
    if (!v) throw new Unsupported(`unfilled slot ${String(c.slot)}`);
    return v;
  }
  return uidOf(c.entity);
}

function scopeConstraint(c: PolicyJson['principal'], slots: SlotValues): ScopeConstraint {
  switch (c.op) {
    case 'All':
      return { op: 'All' };
    case '==':
      return { op: '==', uid: slotOrUid(c, slots) };
    case 'in':
      return { op: 'in', uid: slotOrUid(c, slots) };
    case 'is':
      return c.in ? { op: 'is', type: c.entity_type, in: slotOrUid(c.in, slots) } : { op: 'is', type: c.entity_type };
  }
  throw new Unsupported('scope constraint');
}

function actionConstraint(c: PolicyJson['action']): ActionConstraint {
  switch (c.op) {
    case 'All':
      return { op: 'All' };
    case '==':
      if (!('entity' in c)) throw new Unsupported('action slot');
      return { op: '==', uid: uidOf(c.entity) };
    case 'in': {
      if ('entity' in c) return { op: 'in', uids: [uidOf(c.entity)] };
      const uids: EntityRef[] = [];
      for (const u of c.entities) uids.push(uidOf(u));
      return { op: 'in', uids };
    }
  }
  throw new Unsupported('action constraint');
}

type Side = 'principal' | 'resource';

/** What of a principal/resource constraint the index does not already guarantee: the index
 *  keeps a policy that fixes a type only for requests of that type. Closures are written out per
 *  side so each reads one fixed property. */
function sideTest(c: ScopeConstraint, side: Side): EvB | undefined {
  if (c.op === '==') {
    const id = c.uid.id;
    return side === 'principal' ? (env) => env.principal.id === id : (env) => env.resource.id === id;
  }
  const inUid = c.op === 'in' ? c.uid : c.op === 'is' ? c.in : undefined;
  if (inUid === undefined) return undefined;
  const { type, id } = inUid;
  return side === 'principal'
    ? (env) => env.entities.isInKey(env.principal, type, id)
    : (env) => env.entities.isInKey(env.resource, type, id);
}

/** The action test the index does not guarantee: none for `==`; for `in [...]` none unless the
 *  request's action has parents (the hierarchical bucket). */
function actionTest(c: ActionConstraint): EvB | undefined {
  if (c.op !== 'in') return undefined;
  const uids = c.uids.map((u) => [u.type, u.id] as const);
  if (uids.length === 1) {
    const [type, id] = uids[0] as readonly [string, string]; // length checked
    return (env) => env.entities.isInKey(env.action, type, id);
  }
  return (env) => {
    for (const [type, id] of uids) if (env.entities.isInKey(env.action, type, id)) return true;
    return false;
  };
}

/** The full scope test, for callers without the index (explain of fallback policies). */
function fullSideTest(c: ScopeConstraint, side: Side): EvB | undefined {
  const rest = sideTest(c, side);
  const t = c.op === '==' ? c.uid.type : c.op === 'is' ? c.type : undefined;
  if (t === undefined) return rest;
  const typeOk: EvB = side === 'principal' ? (env) => env.principal.type === t : (env) => env.resource.type === t;
  return rest ? (env) => typeOk(env) && rest(env) : typeOk;
}

function fullActionTest(c: ActionConstraint): EvB | undefined {
  if (c.op !== '==') return actionTest(c);
  const { type, id } = c.uid;
  return (env) => env.action.id === id && env.action.type === type;
}

function all(tests: Array<EvB | undefined>): EvB | undefined {
  const ts = tests.filter((t): t is EvB => t !== undefined);
  if (ts.length === 0) return undefined;
  if (ts.length === 1) return ts[0];
  if (ts.length === 2) {
    const [a, b] = ts as [EvB, EvB]; // length checked
    return (env) => a(env) && b(env);
  }
  const [a, b, c] = ts as [EvB, EvB, EvB]; // at most three tests
  return (env) => a(env) && b(env) && c(env);
}

export interface CompiledScope {
  principal: ScopeConstraint;
  action: ActionConstraint;
  resource: ScopeConstraint;
  /** What the index leaves to check when the request's action has no parents; undefined: nothing. */
  residual: EvB | undefined;
  /** The same when the action has parents (an `action in` may match through them). */
  residualHierarchical: EvB | undefined;
  /** The whole scope test; never throws. */
  matches: EvB;
}

/** The scope of a policy (or of a template link, with its slot values). Throws Unsupported. */
export function compileScope(est: PolicyJson, slots: SlotValues = {}): CompiledScope {
  const principal = scopeConstraint(est.principal, slots);
  const action = actionConstraint(est.action);
  const resource = scopeConstraint(est.resource, slots);
  const p = sideTest(principal, 'principal');
  const r = sideTest(resource, 'resource');
  return {
    principal,
    action,
    resource,
    residual: all([p, r]),
    residualHierarchical: all([p, actionTest(action), r]),
    matches: all([fullSideTest(principal, 'principal'), fullActionTest(action), fullSideTest(resource, 'resource')]) ?? (() => true),
  };
}

/** The `when`/`unless` clauses in order, or undefined when there are none. Throws Unsupported. */
export function compileConditions(est: PolicyJson): EvB | undefined {
  const clauses: EvB[] = [];
  for (const clause of est.conditions) {
    const c = compileExpr(clause.body);
    if (clause.kind === 'when') {
      if (c.k === true) continue;
      clauses.push(toBool(c));
    } else if (clause.kind === 'unless') {
      if (c.k === false) continue;
      const b = toBool(c);
      clauses.push((env) => !b(env));
    } else throw new Unsupported('clause kind');
  }
  if (clauses.length === 0) return undefined;
  if (clauses.length === 1) return clauses[0];
  return (env) => {
    for (let i = 0; i < clauses.length; i++) if (!(clauses[i] as EvB)(env)) return false; // i < length
    return true;
  };
}
