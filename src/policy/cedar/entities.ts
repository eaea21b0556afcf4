// The request's entity list and values, read the way cedar-wasm 4.13 reads them. cedar-wasm sees
// `JSON.stringify(call)` and refuses the whole request (so: deny) on malformed input: a `null`,
// a fractional number, an invalid type name, a bad `__extn` argument, a conflicting duplicate
// entity, a cycle in the hierarchy. We refuse exactly the same inputs, eagerly, with an
// `InputError`; a lazy check would let a malformed request be allowed.
import type { EntityJson } from './types.js';
import { CedarEvalError, EntityRef, callExtension, entityKey, parseIp, setField, valueEquals, type CRecord, type Value } from './values.js';

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

/**
 * cedar-wasm's JSON reader nests at most 127 arrays/objects deep, counting the call object that
 * holds the request: `room` is how many more levels a value may open. The context object sits
 * at level 2, an entity's attrs and tags at level 4.
 */
const MAX_DEPTH = 127;
export const CONTEXT_ROOM = MAX_DEPTH - 1;
const ATTRS_ROOM = MAX_DEPTH - 3;

function tooDeep(): InputError {
  return new InputError('recursion limit exceeded');
}

/** Values JSON.stringify leaves out of an object (and turns into null in an array). */
function invisible(v: unknown): boolean {
  return v === undefined || typeof v === 'function' || typeof v === 'symbol';
}

function jsonRoundTrip(v: unknown): unknown {
  try {
    return JSON.parse(JSON.stringify(v)) as unknown;
  } catch (e) {
    throw new InputError(`value cannot be serialized: ${String(e)}`);
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
function entityEscape(o: Record<string, unknown>, room: number): EntityRef | undefined {
  const inner = o.__entity;
  if (typeof inner !== 'object' || inner === null || Array.isArray(inner) || !onlyKey(o, '__entity')) return undefined;
  const { type, id } = inner as Record<string, unknown>; // an object, checked above
  if (typeof type !== 'string' || typeof id !== 'string') return undefined;
  if (room < 2) throw tooDeep();
  if (!isValidTypeName(type)) throw new InputError(`failed to parse escape \`__entity\`: invalid entity type name \`${type}\``);
  return new EntityRef(type, checkString(id));
}

/** `{ __extn: { fn, arg } | { fn, args } }`: calls the extension function, any of them. */
function extnEscape(o: Record<string, unknown>, room: number): Value | undefined {
  const inner = o.__extn;
  if (typeof inner !== 'object' || inner === null || Array.isArray(inner) || !onlyKey(o, '__extn')) return undefined;
  const { fn, arg, args } = inner as Record<string, unknown>; // an object, checked above
  if (typeof fn !== 'string') return undefined;
  let values: Value[];
  if (room < 2) throw tooDeep();
  if (!invisible(arg)) values = [decodeValue(arg, room - 2)];
  else if (Array.isArray(args)) {
    values = [];
    if (room < 3) throw tooDeep();
    for (const a of args as unknown[]) values.push(decodeValue(invisible(a) ? null : a, room - 3)); // a loop: see evalAll in compile.ts
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
export function decodeValue(v: unknown, room: number = MAX_DEPTH): Value {
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
  if (room < 1) throw tooDeep();
  if (Array.isArray(v)) return decodeArray(v, room);
  if (!isPlain(v)) return decodeValue(jsonRoundTrip(v), room);
  const o = v as Record<string, unknown>; // a plain object
  if (o.__entity !== undefined) {
    const e = entityEscape(o, room);
    if (e) return e;
  } else if (o.__extn !== undefined) {
    const x = extnEscape(o, room);
    if (x !== undefined) return x;
  } else if (typeof o.__expr === 'string' && onlyKey(o, '__expr')) {
    throw new InputError('the `__expr` escape is no longer supported');
  }
  return decodeRecord(o, room);
}

function decodeArray(a: unknown[], room: number): Value[] {
  let out: Value[] | undefined;
  for (let i = 0; i < a.length; i++) {
    const raw = a[i];
    const d = decodeValue(invisible(raw) ? null : raw, room - 1);
    if (out === undefined && d !== raw) out = a.slice(0, i) as Value[]; // first i elements were unchanged
    if (out !== undefined) out.push(d);
  }
  return out ?? (a as Value[]); // every element decoded to itself
}

/** A record from a JSON object; keys JSON.stringify would drop are dropped. Primitive values,
 *  the common case, are checked inline. */
export function decodeRecord(o: Record<string, unknown>, room: number): CRecord {
  if (room < 1) throw tooDeep();
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
        d = decodeValue(raw, room - 1);
    }
    if (out === undefined && d !== raw) out = copyUpTo(o, k);
    if (out !== undefined) setField(out, k, d);
  }
  return out ?? (o as CRecord); // every value decoded to itself
}

/** A copy of the visible entries of `o` before key `stop`. */
function copyUpTo(o: Record<string, unknown>, stop: string): CRecord {
  const out: CRecord = {};
  for (const k in o) {
    if (k === stop) break;
    if (Object.hasOwn(o, k) && !invisible(o[k])) setField(out, k, o[k] as Value); // already decoded unchanged
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
  /** All ancestors, computed on the first `in` that needs them. */
  ancestors: Ancestors | undefined;
  /** Cycle check: 0 unvisited, 1 on the path, 2 done. */
  mark: number;
  /** Next entry with the same id and another type. */
  next: EntityEntry | undefined;
}

const EMPTY_RECORD: CRecord = Object.freeze({});
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
    return decodeRecord(o, ATTRS_ROOM);
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

/** A set of entity uids: a flat (type, id, type, id, ...) list while small, which costs one
 *  array per request; a map id → types once it grows. */
class Ancestors {
  flat: string[] = [];
  #byId: Map<string, string[]> | undefined;

  add(type: string, id: string): boolean {
    if (this.has(type, id)) return false;
    if (this.#byId) {
      const types = this.#byId.get(id);
      if (types) types.push(type);
      else this.#byId.set(id, [type]);
      return true;
    }
    this.flat.push(type, id);
    if (this.flat.length > 64) {
      this.#byId = new Map();
      for (let i = 0; i < this.flat.length; i += 2) {
        const fid = this.flat[i + 1] as string; // pairs
        const types = this.#byId.get(fid);
        if (types) types.push(this.flat[i] as string);
        else this.#byId.set(fid, [this.flat[i] as string]);
      }
    }
    return true;
  }

  has(type: string, id: string): boolean {
    if (this.#byId) return this.#byId.get(id)?.includes(type) ?? false;
    const f = this.flat;
    for (let i = 0; i < f.length; i += 2) if (f[i + 1] === id && f[i] === type) return true;
    return false;
  }

  /** Every (type, id), for merging a cached set into another. */
  forEach(fn: (type: string, id: string) => void): void {
    if (this.#byId) {
      for (const [id, types] of this.#byId) for (const t of types) fn(t, id);
      return;
    }
    for (let i = 0; i < this.flat.length; i += 2) fn(this.flat[i] as string, this.flat[i + 1] as string);
  }
}

const SCAN_LIMIT = 16;

export class Entities {
  /** The list as given, handed to cedar-wasm for fallback policies. */
  readonly source: readonly EntityJson[];
  readonly #entries: EntityEntry[] = [];
  /** id → entry, entries sharing an id chained through `next`; only for larger lists, a short
   *  list is scanned (cheaper than building and hashing into a Map per request). */
  #byId: Map<string, EntityEntry> | undefined;
  #hasParents = false;
  // The last entity looked up: a request asks for the same principal/resource again and again.
  #lastRef: EntityRef | undefined;
  #lastEntry: EntityEntry | undefined;

  private constructor(source: readonly EntityJson[]) {
    this.source = source;
  }

  static readonly empty: Entities = new Entities([]);

  /** Indexes and checks a cedar-wasm-style entity list; throws `InputError` where cedar-wasm
   *  would refuse the request. */
  static fromJson(list: EntityJson[]): Entities {
    if (!Array.isArray(list)) throw new InputError('error during entity deserialization: expected a sequence of entities');
    const store = new Entities(list);
    if (list.length > SCAN_LIMIT) store.#byId = new Map();
    for (let i = 0; i < list.length; i++) store.#add(readEntity(list[i]));
    if (store.#hasParents) store.#checkAcyclic();
    return store;
  }

  #add(e: EntityEntry): void {
    const prior = this.get(e.type, e.id);
    if (prior !== undefined) {
      if (sameEntity(prior, e)) return;
      throw new InputError(`duplicate entity entry ${describeEntity(e.type, e.id)}`);
    }
    if (this.#byId !== undefined) {
      const head = this.#byId.get(e.id);
      if (head !== undefined) e.next = head;
      this.#byId.set(e.id, e);
    }
    this.#entries.push(e);
    if (e.parents.length > 0) this.#hasParents = true;
  }

  get(type: string, id: string): EntityEntry | undefined {
    if (this.#byId === undefined) {
      const list = this.#entries;
      for (let i = 0; i < list.length; i++) {
        const e = list[i] as EntityEntry; // index checked
        if (e.id === id && e.type === type) return e;
      }
      return undefined;
    }
    let e = this.#byId.get(id);
    while (e !== undefined && e.type !== type) e = e.next;
    return e;
  }

  /** The entry of an entity value (cached for the last one asked). */
  entryOf(ref: EntityRef): EntityEntry | undefined {
    if (ref === this.#lastRef) return this.#lastEntry;
    const e = this.get(ref.type, ref.id);
    this.#lastRef = ref;
    this.#lastEntry = e;
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
    const e = this.entryOf(a);
    if (e === undefined || e.parents.length === 0) return false;
    return (e.ancestors ?? this.#ancestors(e)).has(bType, bId);
  }

  #ancestors(e: EntityEntry): Ancestors {
    const out = new Ancestors();
    const stack: string[] = e.parents.slice();
    while (stack.length > 0) {
      const id = stack.pop() as string; // pushed in (type, id) pairs
      const type = stack.pop() as string;
      if (!out.add(type, id)) continue;
      const pe = this.get(type, id);
      if (pe === undefined) continue;
      if (pe.ancestors) pe.ancestors.forEach((t, i) => out.add(t, i));
      else for (let i = 0; i < pe.parents.length; i++) stack.push(pe.parents[i] as string);
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
