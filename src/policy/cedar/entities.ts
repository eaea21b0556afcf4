// The request's entity list and values, read the way cedar-wasm 4.13 reads them. cedar-wasm sees
// `JSON.stringify(call)` and refuses the whole request (so: deny) on malformed input: a `null`,
// a fractional number, an invalid type name, a bad `__extn` argument, a conflicting duplicate
// entity, a cycle in the hierarchy. We refuse exactly the same inputs, eagerly, with an
// `InputError`; a lazy check would let a malformed request be allowed.
import type { EntityJson } from './types.js';
import { CedarEvalError, EntityRef, callExtension, entityKey, parseIp, valueEquals, type CRecord, type Value } from './values.js';

/** The request is refused as a whole, as cedar-wasm refuses it. */
export class InputError {
  constructor(readonly message: string) {}
}

/** The input holds a value only cedar-wasm can evaluate (an `unknown(...)` escape): the engine
 *  hands the whole request to the reference. */
export class NeedsReference {}

// ---------- type names ----------

const RESERVED = new Set(['true', 'false', 'if', 'then', 'else', 'in', 'is', 'like', 'has', '__cedar']);
const IDENT = /^[_a-zA-Z][_a-zA-Z0-9]*$/;
const knownTypes = new Set<string>();

/** A Cedar entity type name: `Ident(::Ident)*`, no reserved words, no whitespace. */
export function isValidTypeName(t: string): boolean {
  if (knownTypes.has(t)) return true;
  for (const part of t.split('::')) if (!IDENT.test(part) || RESERVED.has(part)) return false;
  if (knownTypes.size > 10000) knownTypes.clear(); // bounded: names come from requests
  knownTypes.add(t);
  return true;
}

function wellFormed(s: string): boolean {
  // String.prototype.isWellFormed exists in Node 20 but not yet in TypeScript's ES2023 lib.
  return (s as unknown as { isWellFormed(): boolean }).isWellFormed();
}

function checkString(s: string): string {
  // cedar-wasm's JSON parser rejects lone surrogates.
  if (!wellFormed(s)) throw new InputError('lone surrogate in a string');
  return s;
}

// ---------- values ----------

function isPlain(v: object): boolean {
  const p = Object.getPrototypeOf(v) as unknown;
  return p === Object.prototype || p === null;
}

/** Values JSON.stringify leaves out of an object (and turns into null in an array). */
function invisible(v: unknown): boolean {
  return v === undefined || typeof v === 'function' || typeof v === 'symbol';
}

function jsonRoundTrip(v: unknown): unknown {
  try {
    return JSON.parse(JSON.stringify(v)) as unknown;
  } catch (e) {
    throw new InputError(`value cannot be serialized: ${(e as Error).message}`);
  }
}

function decodeNumber(n: number): number | bigint {
  if (Number.isSafeInteger(n)) return n;
  if (!Number.isFinite(n)) throw new InputError('found a `null`; JSON `null`s are not allowed in Cedar');
  // cedar-wasm reads the number back from its shortest decimal text, e.g. 2**60 → 1152921504606847000.
  const text = String(n);
  if (!Number.isInteger(n) || text.includes('e')) throw new InputError('data did not match any variant of untagged enum RawCedarValueJson');
  const b = BigInt(text);
  if (b < -(2n ** 63n) || b > 2n ** 63n - 1n) throw new InputError('data did not match any variant of untagged enum RawCedarValueJson');
  return b;
}

function onlyKey(o: Record<string, unknown>, key: string): boolean {
  for (const k in o) if (k !== key && Object.hasOwn(o, k) && !invisible(o[k])) return false;
  return true;
}

/** `{ __entity: { type, id } }` (extra inner keys ignored), or undefined when `o` is not one. */
function entityEscape(o: Record<string, unknown>): EntityRef | undefined {
  const inner = o.__entity;
  if (typeof inner !== 'object' || inner === null || Array.isArray(inner) || !onlyKey(o, '__entity')) return undefined;
  const { type, id } = inner as Record<string, unknown>;
  if (typeof type !== 'string' || typeof id !== 'string') return undefined;
  if (!isValidTypeName(type)) throw new InputError(`failed to parse escape \`__entity\`: invalid entity type name \`${type}\``);
  return new EntityRef(type, checkString(id));
}

/** `{ __extn: { fn, arg } | { fn, args } }`: calls the extension function, any of them. */
function extnEscape(o: Record<string, unknown>): Value | undefined {
  const inner = o.__extn;
  if (typeof inner !== 'object' || inner === null || Array.isArray(inner) || !onlyKey(o, '__extn')) return undefined;
  const { fn, arg, args } = inner as Record<string, unknown>;
  if (typeof fn !== 'string') return undefined;
  let values: Value[];
  if (!invisible(arg)) values = [decodeValue(arg)];
  else if (Array.isArray(args)) {
    values = [];
    for (const a of args as unknown[]) values.push(decodeValue(invisible(a) ? null : a)); // a loop: see evalAll in compile.ts
  }
  else return undefined;
  if (fn === 'unknown') throw new NeedsReference();
  if (fn === 'ip' && values.length === 1 && typeof values[0] === 'string') {
    try {
      return parseIp(values[0]); // the common escape, without the generic call
    } catch (e) {
      if (e instanceof CedarEvalError) throw new InputError(e.message);
      throw e;
    }
  }
  try {
    return callExtension(fn, values);
  } catch (e) {
    if (e instanceof CedarEvalError) throw new InputError(e.message);
    throw e;
  }
}

/** A Cedar value from its JSON form. Returns `v` itself when nothing needs converting, so
 *  plain JSON costs no copy. */
export function decodeValue(v: unknown): Value {
  switch (typeof v) {
    case 'string':
      return checkString(v);
    case 'boolean':
      return v;
    case 'number':
      return decodeNumber(v);
    case 'object':
      break;
    default:
      throw new InputError(invisible(v) ? 'found a `null`; JSON `null`s are not allowed in Cedar' : `unsupported value of type ${typeof v}`);
  }
  if (v === null) throw new InputError('found a `null`; JSON `null`s are not allowed in Cedar');
  if (Array.isArray(v)) return decodeArray(v);
  if (!isPlain(v)) return decodeValue(jsonRoundTrip(v));
  const o = v as Record<string, unknown>;
  if (o.__entity !== undefined) {
    const e = entityEscape(o);
    if (e) return e;
  } else if (o.__extn !== undefined) {
    const x = extnEscape(o);
    if (x !== undefined) return x;
  } else if (typeof o.__expr === 'string' && onlyKey(o, '__expr')) {
    throw new InputError('the `__expr` escape is no longer supported');
  }
  return decodeRecord(o);
}

function decodeArray(a: unknown[]): Value[] {
  let out: Value[] | undefined;
  for (let i = 0; i < a.length; i++) {
    const raw = a[i];
    const d = decodeValue(invisible(raw) ? null : raw);
    if (out === undefined && d !== raw) out = a.slice(0, i) as Value[]; // first i elements were unchanged
    if (out !== undefined) out.push(d);
  }
  return out ?? (a as Value[]);
}

/** A record from a JSON object; keys JSON.stringify would drop are dropped. Primitive values,
 *  the common case, are checked inline. */
export function decodeRecord(o: Record<string, unknown>): CRecord {
  let out: CRecord | undefined;
  for (const k in o) {
    if (!Object.hasOwn(o, k)) continue;
    checkString(k);
    const raw = o[k];
    let d: Value;
    switch (typeof raw) {
      case 'string':
        d = checkString(raw);
        break;
      case 'boolean':
        d = raw;
        break;
      case 'number':
        d = Number.isSafeInteger(raw) ? raw : decodeNumber(raw);
        break;
      case 'undefined':
      case 'function':
      case 'symbol':
        out ??= copyUpTo(o, k);
        continue;
      default:
        d = decodeValue(raw);
    }
    if (out === undefined && d !== raw) out = copyUpTo(o, k);
    if (out !== undefined) out[k] = d;
  }
  return out ?? (o as CRecord);
}

/** A null-prototype copy of the visible entries of `o` before key `stop`. */
function copyUpTo(o: Record<string, unknown>, stop: string): CRecord {
  const out = Object.create(null) as CRecord;
  for (const k in o) {
    if (k === stop) break;
    if (Object.hasOwn(o, k) && !invisible(o[k])) out[k] = o[k] as Value; // already decoded unchanged
  }
  return out;
}

// ---------- uids ----------

/** An entity uid: `{ type, id }`, `{ __entity: { type, id } }` or `[type, id]`. */
export function readUid(v: unknown, where: string): EntityRef {
  let type: unknown;
  let id: unknown;
  if (Array.isArray(v)) {
    if (v.length === 2) [type, id] = v;
  } else if (typeof v === 'object' && v !== null) {
    const o = v as Record<string, unknown>;
    const inner = o.__entity;
    if (typeof inner === 'object' && inner !== null && typeof (inner as Record<string, unknown>).type === 'string') {
      ({ type, id } = inner as Record<string, unknown>);
    }
    if (typeof type !== 'string' || typeof id !== 'string') ({ type, id } = o);
  }
  if (typeof type !== 'string' || typeof id !== 'string') {
    throw new InputError(`in ${where}, expected a literal entity reference, but got \`${safeJson(v)}\``);
  }
  if (!isValidTypeName(type)) throw new InputError(`in ${where}, invalid entity type name \`${type}\``);
  return new EntityRef(type, checkString(id));
}

function safeJson(v: unknown): string {
  try {
    return JSON.stringify(v) ?? String(v);
  } catch {
    return String(v);
  }
}

// ---------- the store ----------

export interface EntityEntry {
  readonly type: string;
  readonly id: string;
  readonly attrs: CRecord;
  /** Parent uids, flattened: type0, id0, type1, id1, ... */
  readonly parents: readonly string[];
  readonly tags: CRecord | undefined;
  /** All ancestors, id → type (or types), computed on the first `in` that needs them. */
  ancestors: Map<string, string | string[]> | undefined;
  /** Cycle check: 0 unvisited, 1 on the path, 2 done. */
  mark: number;
  /** Next entry with the same id and another type. */
  next: EntityEntry | undefined;
}

const EMPTY_RECORD: CRecord = Object.freeze(Object.create(null) as CRecord);
const NO_PARENTS: readonly string[] = Object.freeze([]);

function describeEntity(type: string, id: string): string {
  return `\`${entityKey(type, JSON.stringify(id).slice(1, -1))}\``;
}

// The last uid read by uidParts (module scratch, so the hot path allocates no pair).
let uidType = '';
let uidId = '';

/** Reads and checks a uid into uidType/uidId. `ofType`/`ofId` name the entity whose parent it
 *  is (for messages), or are undefined for an entity's own uid. */
function uidParts(v: unknown, ofType: string | undefined, ofId: string): void {
  if (typeof v === 'object' && v !== null && !Array.isArray(v)) {
    const o = v as Record<string, unknown>;
    if (o.__entity === undefined) {
      const { type, id } = o;
      if (typeof type === 'string' && typeof id === 'string' && isValidTypeName(type)) {
        uidType = type;
        uidId = checkString(id);
        return;
      }
    }
  }
  const ref = readUid(v, ofType === undefined ? 'uid field of <unknown entity>' : `parents field of ${describeEntity(ofType, ofId)}`);
  uidType = ref.type;
  uidId = ref.id;
}

/** Cedar treats `Action` and `Ns::Action` as action types: their parents must be actions too. */
function isActionType(t: string): boolean {
  return t === 'Action' || t.endsWith('::Action');
}

function readEntity(raw: unknown): EntityEntry {
  let uid: unknown;
  let attrs: unknown;
  let parents: unknown;
  let tags: unknown;
  if (Array.isArray(raw)) [uid, attrs, parents, tags] = raw as unknown[];
  else if (typeof raw === 'object' && raw !== null) {
    const o = raw as Record<string, unknown>;
    uid = o.uid;
    attrs = o.attrs;
    parents = o.parents;
    tags = o.tags;
  } else throw new InputError('error during entity deserialization: expected an entity object');
  if (invisible(uid)) throw new InputError('error during entity deserialization: missing field `uid`');
  uidParts(uid, undefined, '');
  const type = uidType;
  const id = uidId;
  // Our contract (types.ts) makes attrs and parents optional: absent means empty. cedar-wasm
  // requires both, so `cedarWasmDecision` fills them in before calling it.
  let decoded = EMPTY_RECORD;
  if (!invisible(attrs)) {
    if (typeof attrs !== 'object' || attrs === null || Array.isArray(attrs)) {
      throw new InputError(`error during entity deserialization: attrs of ${describeEntity(type, id)} is not a map`);
    }
    decoded = decodeAttrs(attrs as Record<string, unknown>, type, id, 'attribute');
  }
  let flat = NO_PARENTS;
  if (!invisible(parents)) {
    if (!Array.isArray(parents)) throw new InputError(`error during entity deserialization: parents of ${describeEntity(type, id)} is not a sequence`);
    if (parents.length > 0) {
      const out: string[] = new Array<string>(parents.length * 2);
      const action = isActionType(type);
      for (let i = 0; i < parents.length; i++) {
        uidParts(parents[i], type, id);
        if (action && !isActionType(uidType)) {
          throw new InputError(`error during entity deserialization: action ${describeEntity(type, id)} has a non-action parent ${describeEntity(uidType, uidId)}`);
        }
        out[2 * i] = uidType;
        out[2 * i + 1] = uidId;
      }
      flat = out;
    }
  }
  let decodedTags: CRecord | undefined;
  if (!invisible(tags)) {
    if (typeof tags !== 'object' || tags === null || Array.isArray(tags)) {
      throw new InputError(`error during entity deserialization: tags of ${describeEntity(type, id)} is not a map`);
    }
    decodedTags = decodeAttrs(tags as Record<string, unknown>, type, id, 'tag');
  }
  return { type, id, attrs: decoded, parents: flat, tags: decodedTags, ancestors: undefined, mark: 0, next: undefined };
}

function decodeAttrs(o: Record<string, unknown>, type: string, id: string, what: string): CRecord {
  if (!isPlain(o)) return decodeAttrs(jsonRoundTrip(o) as Record<string, unknown>, type, id, what);
  try {
    return decodeRecord(o);
  } catch (e) {
    if (e instanceof InputError) throw new InputError(`error during entity deserialization: in ${what} of ${describeEntity(type, id)}, ${e.message}`);
    throw e;
  }
}

function parentKeys(e: EntityEntry): Set<string> {
  const out = new Set<string>();
  for (let i = 0; i < e.parents.length; i += 2) out.add(entityKey(e.parents[i] as string, e.parents[i + 1] as string));
  return out;
}

/** cedar-wasm accepts a repeated entity when both copies are the same. */
function sameEntity(a: EntityEntry, b: EntityEntry): boolean {
  const pa = parentKeys(a);
  const pb = parentKeys(b);
  return (
    valueEquals(a.attrs, b.attrs) &&
    pa.size === pb.size &&
    [...pa].every((k) => pb.has(k)) &&
    valueEquals(a.tags ?? EMPTY_RECORD, b.tags ?? EMPTY_RECORD)
  );
}

function addAncestor(m: Map<string, string | string[]>, type: string, id: string): boolean {
  const t = m.get(id);
  if (t === undefined) {
    m.set(id, type);
    return true;
  }
  if (t === type) return false;
  if (typeof t === 'string') {
    m.set(id, [t, type]);
    return true;
  }
  if (t.includes(type)) return false;
  t.push(type);
  return true;
}

function hasAncestor(m: Map<string, string | string[]>, type: string, id: string): boolean {
  const t = m.get(id);
  return t === type || (t !== undefined && typeof t !== 'string' && t.includes(type));
}

export class Entities {
  /** The list as given, handed to cedar-wasm for fallback policies. */
  readonly source: readonly EntityJson[];
  /** id → entry; entries sharing an id (other types) are chained through `next`. */
  readonly #byId = new Map<string, EntityEntry>();
  readonly #entries: EntityEntry[] = [];
  #hasParents = false;

  private constructor(source: readonly EntityJson[]) {
    this.source = source;
  }

  static readonly empty: Entities = new Entities([]);

  /** Indexes and checks a cedar-wasm-style entity list; throws `InputError` where cedar-wasm
   *  would refuse the request. */
  static fromJson(list: EntityJson[]): Entities {
    if (!Array.isArray(list)) throw new InputError('error during entity deserialization: expected a sequence of entities');
    const store = new Entities(list);
    for (let i = 0; i < list.length; i++) store.#add(readEntity(list[i]));
    if (store.#hasParents) store.#checkAcyclic();
    return store;
  }

  #add(e: EntityEntry): void {
    const head = this.#byId.get(e.id);
    for (let x = head; x !== undefined; x = x.next) {
      if (x.type !== e.type) continue;
      if (sameEntity(x, e)) return;
      throw new InputError(`duplicate entity entry ${describeEntity(e.type, e.id)}`);
    }
    if (head !== undefined) e.next = head;
    this.#byId.set(e.id, e);
    this.#entries.push(e);
    if (e.parents.length > 0) this.#hasParents = true;
  }

  get(type: string, id: string): EntityEntry | undefined {
    let e = this.#byId.get(id);
    while (e !== undefined && e.type !== type) e = e.next;
    return e;
  }

  /** Cedar `a in b` for entities: equal, or b is a transitive ancestor of a. */
  isIn(a: EntityRef, b: EntityRef): boolean {
    return this.isInKey(a, b.type, b.id);
  }

  /** `a in bType::bId`. */
  isInKey(a: EntityRef, bType: string, bId: string): boolean {
    if (a.id === bId && a.type === bType) return true;
    if (!this.#hasParents) return false;
    const e = this.get(a.type, a.id);
    if (e === undefined || e.parents.length === 0) return false;
    return hasAncestor(e.ancestors ?? this.#ancestors(e), bType, bId);
  }

  #ancestors(e: EntityEntry): Map<string, string | string[]> {
    const out = new Map<string, string | string[]>();
    const stack: string[] = [...e.parents];
    while (stack.length > 0) {
      const id = stack.pop() as string; // pushed in (type, id) pairs
      const type = stack.pop() as string;
      if (!addAncestor(out, type, id)) continue;
      const pe = this.get(type, id);
      if (pe === undefined) continue;
      if (pe.ancestors) {
        for (const [aid, at] of pe.ancestors) for (const t of typeof at === 'string' ? [at] : at) addAncestor(out, t, aid);
      } else for (let i = 0; i < pe.parents.length; i++) stack.push(pe.parents[i] as string);
    }
    e.ancestors = out;
    return out;
  }

  /** cedar-wasm computes the transitive closure up front and refuses a cyclic hierarchy. */
  #checkAcyclic(): void {
    const path: EntityEntry[] = [];
    const next: number[] = [];
    for (const root of this.#entries) {
      if (root.mark !== 0) continue;
      root.mark = 1;
      path.push(root);
      next.push(0);
      while (path.length > 0) {
        const top = path.length - 1;
        const e = path[top] as EntityEntry; // index checked
        const i = next[top] as number;
        if (i >= e.parents.length) {
          e.mark = 2;
          path.pop();
          next.pop();
          continue;
        }
        next[top] = i + 2;
        const pe = this.get(e.parents[i] as string, e.parents[i + 1] as string);
        if (pe === undefined || pe.mark === 2) continue;
        if (pe.mark === 1) {
          throw new InputError(`transitive closure computation/enforcement error: input graph has a cycle containing vertex ${describeEntity(pe.type, pe.id)}`);
        }
        pe.mark = 1;
        path.push(pe);
        next.push(0);
      }
    }
  }
}
