// Per-route request validation against JSON Schemas: body, path parameters and query, compiled
// once when the data plane loads its configuration. The point is mass assignment: by default
// every object schema is closed (unknown properties refused), so `{"name":"x","role":"admin"}`
// never reaches a service whose schema declares only `name`.
//
// Dialect: JSON Schema 2020-12 as ajv's Ajv2020 implements it; draft-07 schemas work where the
// keywords agree (`definitions` is understood, tuple `items: [...]` is not: use `prefixItems`).
// One Ajv instance is shared by every route: compiling meta-schemas per route would cost more
// than all the routes' schemas together.
import { Ajv2020, type ErrorObject, type ValidateFunction } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import { PortcullisError } from '../../core/errors.js';

/** The schemas of one operation. */
export interface OperationSchemas {
  /** JSON Schema of the body (draft 2020-12, or the draft-07 subset ajv's 2020 dialect accepts); absent: a body is refused unless `allowBody`. */
  body?: object;
  /** Schema of the path parameters as one object {name: string-typed schema}; values arrive as strings and are coerced (see coercion in docs/validation.md). */
  params?: object;
  /** Schema of the query as one object; values arrive as strings (or arrays of strings when repeated) and are coerced. */
  query?: object;
}

/** How a validator treats what its schemas do not mention. */
export interface ValidatorOptions {
  /**
   * Unknown properties refused (default true): every object schema without
   * `additionalProperties`/`unevaluatedProperties` gets `additionalProperties: false` (or, when it
   * composes subschemas, `unevaluatedProperties: false`), and a query parameter not in the query
   * schema — or any query parameter when there is no query schema — is refused.
   */
  strictProperties?: boolean;
  /** A body is accepted without a body schema (not validated). Default false: refused. */
  allowBody?: boolean;
  /** With a body schema, a request without a body is refused. Default true. */
  bodyRequired?: boolean;
}

/** One reason a request does not match its schemas. */
export interface ValidationIssue {
  location: 'body' | 'query' | 'path';
  /** JSON pointer (RFC 6901) into the location, e.g. `/items/0/sku`; '' for the whole. */
  pointer: string;
  /** The JSON Schema keyword that failed, e.g. `type`, `required`, `additionalProperties`. */
  keyword: string;
  /** ajv's message ("must be integer"): it names the rule, never the value. */
  message: string;
}

/** A request as the validator sees it, after routing and decoding. */
export interface ValidationInput {
  params: Record<string, string>;
  query: URLSearchParams;
  body?: unknown;
}

/** At most this many issues are reported for one request. */
const MAX_ISSUES = 10;
/** Pointers longer than this are cut: keys are client-chosen and a report must stay small. */
const MAX_POINTER_LENGTH = 256;
/** Schemas nested deeper than this are refused (and a cyclic object cannot loop the rewrite). */
const MAX_SCHEMA_DEPTH = 128;

let sharedAjv: Ajv2020 | undefined;

/**
 * The one Ajv instance. strict: unknown keywords and unknown formats are compile errors, so a typo
 * (`requried`) cannot silently switch a check off; strictTypes is off because the strictProperties
 * rewrite adds object keywords to schemas that do not say `type: object`.
 */
function ajv(): Ajv2020 {
  if (sharedAjv) return sharedAjv;
  const a = new Ajv2020({
    strict: true,
    strictTypes: false,
    strictTuples: false,
    strictRequired: false,
    allowUnionTypes: true,
    allErrors: false, // fail fast: the first error of each location is enough to refuse
    verbose: false, // errors must not carry the data
  });
  addFormats.default(a);
  // OpenAPI-style documents keep shared schemas under components/schemas; allow $refs there.
  a.addKeyword('components');
  sharedAjv = a;
  return a;
}

/** True when `format` is one the validators check (ajv-formats, OpenAPI's int32/int64/float/double/byte/binary/password included). */
export function isKnownFormat(format: string): boolean {
  return Object.hasOwn(ajv().formats, format);
}

type SchemaObject = Record<string, unknown>;

function isObject(v: unknown): v is SchemaObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function invalidSchema(where: string, why: string, cause?: unknown): PortcullisError {
  return new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `${where} schema is not valid: ${why}`, cause === undefined ? undefined : { cause });
}

/** RFC 6901 escaping of one pointer segment. */
export function escapePointer(segment: string): string {
  return segment.replace(/~/g, '~0').replace(/\//g, '~1');
}

function unescapePointer(segment: string): string {
  return segment.replace(/~1/g, '/').replace(/~0/g, '~');
}

/** Resolves a local `#/a/b` reference inside `root`; undefined when it leads nowhere. */
function resolveLocal(root: unknown, ref: string): unknown {
  if (ref === '#') return root;
  if (!ref.startsWith('#/')) return undefined;
  let node: unknown = root;
  let fragment: string;
  try {
    fragment = decodeURIComponent(ref.slice(2));
  } catch {
    return undefined;
  }
  for (const raw of fragment.split('/')) {
    const seg = unescapePointer(raw);
    if (Array.isArray(node)) node = node[Number(seg)];
    else if (isObject(node) && Object.hasOwn(node, seg)) node = node[seg];
    else return undefined;
  }
  return node;
}

// Keywords whose value is a schema, a list of schemas or a map of schemas (2020-12 applicators).
const MAP_CLOSED = ['properties', 'patternProperties', '$defs', 'definitions'] as const;
const SINGLE_CLOSED = ['additionalProperties', 'unevaluatedProperties', 'additionalItems', 'unevaluatedItems', 'contains', 'propertyNames', 'contentSchema'] as const;
/** In-place applicators: their subschemas describe the same instance as the parent. */
const LIST_OPEN = ['allOf', 'anyOf', 'oneOf'] as const;
const SINGLE_OPEN = ['then', 'else'] as const;
/** Keywords that say "this schema is about objects" when `type` does not. */
const OBJECT_KEYWORDS = ['properties', 'patternProperties', 'required', 'minProperties', 'maxProperties', 'dependentRequired', 'propertyNames'] as const;

function isObjectSchema(node: SchemaObject): boolean {
  const t = node.type;
  if (t === 'object' || (Array.isArray(t) && t.includes('object'))) return true;
  if (t !== undefined) return false;
  return OBJECT_KEYWORDS.some((k) => Object.hasOwn(node, k));
}

/** Does the node combine its own keywords with subschemas that also describe the instance? */
function isComposed(node: SchemaObject): boolean {
  if (LIST_OPEN.some((k) => Object.hasOwn(node, k)) || SINGLE_OPEN.some((k) => Object.hasOwn(node, k)) || Object.hasOwn(node, 'dependentSchemas')) return true;
  // `$ref` next to object keywords is composition in 2020-12; a bare `$ref` is an alias.
  return typeof node.$ref === 'string' && OBJECT_KEYWORDS.some((k) => Object.hasOwn(node, k));
}

/**
 * The strictProperties rewrite. Returns a new schema in which every object schema that does not
 * say what to do with unknown properties refuses them:
 * - a plain object schema gets `additionalProperties: false`;
 * - a schema composing subschemas (allOf/anyOf/oneOf, if/then/else, dependentSchemas, `$ref` with
 *   siblings) gets `unevaluatedProperties: false` instead, and its branches are left open: closing
 *   each allOf branch would refuse the properties the other branches declare. A `$ref` from an
 *   open branch points at an open copy of its target (added under `$defs`), so a definition can be
 *   closed where it is used alone and still compose where it is a branch;
 * - properties, patternProperties, items/prefixItems, $defs/definitions/components.schemas are
 *   rewritten recursively; `not` and `if` are left untouched (closing them inverts their sense).
 */
function closeSchema(root: SchemaObject, where: string): SchemaObject {
  const twins = new Map<string, string>(); // ref → name of its open copy under $defs
  const twinDefs: SchemaObject = {};
  const existingDefs = isObject(root.$defs) ? root.$defs : {};
  let counter = 0;

  const openRef = (ref: string, depth: number): string => {
    const known = twins.get(ref);
    if (known !== undefined) return `#/$defs/${known}`;
    const target = resolveLocal(root, ref);
    if (target === undefined || ref === '#') return ref; // unresolvable: ajv reports it; the root stays itself
    let name: string;
    do name = `__pcl_open_${counter++}`; while (Object.hasOwn(existingDefs, name));
    twins.set(ref, name); // before walking: a recursive definition reaches its own twin
    twinDefs[name] = walk(target, true, depth + 1);
    return `#/$defs/${name}`;
  };

  const walkMap = (value: unknown, open: boolean, depth: number): unknown => {
    if (!isObject(value)) return value;
    const out: SchemaObject = {};
    for (const [k, v] of Object.entries(value)) out[k] = walk(v, open, depth + 1);
    return out;
  };

  function walk(node: unknown, open: boolean, depth: number): unknown {
    if (!isObject(node)) return node; // boolean schemas, or a malformed value ajv will report
    if (depth > MAX_SCHEMA_DEPTH) throw invalidSchema(where, `nested deeper than ${MAX_SCHEMA_DEPTH}`);
    if (depth > 0 && Object.hasOwn(node, '$id')) {
      // An embedded resource changes what "#/..." means below it; twins could no longer be placed.
      throw invalidSchema(where, 'an embedded "$id" below the root is not supported with strictProperties');
    }
    const out: SchemaObject = {};
    for (const [key, value] of Object.entries(node)) {
      if ((MAP_CLOSED as readonly string[]).includes(key)) out[key] = walkMap(value, false, depth);
      else if ((SINGLE_CLOSED as readonly string[]).includes(key)) out[key] = walk(value, false, depth + 1);
      else if ((LIST_OPEN as readonly string[]).includes(key)) out[key] = Array.isArray(value) ? value.map((v) => walk(v, true, depth + 1)) : value;
      else if ((SINGLE_OPEN as readonly string[]).includes(key)) out[key] = walk(value, true, depth + 1);
      else if (key === 'dependentSchemas') out[key] = walkMap(value, true, depth);
      else if (key === 'items' || key === 'prefixItems') out[key] = Array.isArray(value) ? value.map((v) => walk(v, false, depth + 1)) : walk(value, false, depth + 1);
      else if (key === 'components' && isObject(value)) out[key] = { ...value, ...(isObject(value.schemas) ? { schemas: walkMap(value.schemas, false, depth + 1) } : {}) };
      // A $ref beside other keywords is one more branch of the composition: it must stay open too.
      else if (key === '$ref' && (open || isComposed(node)) && typeof value === 'string' && value.startsWith('#/')) out[key] = openRef(value, depth);
      else out[key] = value; // data (enum, const, default, examples) and assertion keywords
    }
    if (open) return out;
    if (Object.hasOwn(node, 'additionalProperties') || Object.hasOwn(node, 'unevaluatedProperties')) return out;
    if (isComposed(node)) out.unevaluatedProperties = false;
    else if (isObjectSchema(node)) out.additionalProperties = false;
    return out;
  }

  const out = walk(root, false, 0);
  if (!isObject(out)) return root; // unreachable: root is an object
  if (twins.size > 0) out.$defs = { ...(isObject(out.$defs) ? out.$defs : {}), ...twinDefs };
  return out;
}

/**
 * A copy of the schema ready for the shared instance: the root `$schema` goes (the 2020 dialect is
 * used whatever it says, and ajv would otherwise look up a draft-07 meta-schema it does not have)
 * and so does the root `$id` (two routes may share a schema file; ids would clash in the instance).
 */
function prepare(schema: unknown, where: string, strict: boolean): SchemaObject | boolean {
  if (typeof schema === 'boolean') return schema;
  if (!isObject(schema)) throw invalidSchema(where, 'it must be an object');
  const rest: SchemaObject = { ...schema };
  delete rest.$schema;
  delete rest.$id;
  return strict ? closeSchema(rest, where) : rest;
}

function compileOne(schema: unknown, where: string, strict: boolean): { validate: ValidateFunction; prepared: SchemaObject | boolean } {
  const prepared = prepare(schema, where, strict);
  const a = ajv();
  try {
    const validate = a.compile(prepared);
    return { validate, prepared };
  } catch (err) {
    throw invalidSchema(where, err instanceof Error ? err.message : String(err), err);
  } finally {
    // The compiled function keeps what it needs; dropping the cache entry lets a config reload
    // free the previous routes' schemas instead of growing the shared instance forever.
    if (typeof prepared === 'object') a.removeSchema(prepared);
  }
}

type Coercer = (value: string | string[]) => unknown;

const INTEGER = /^-?(?:0|[1-9][0-9]*)$/;
const NUMBER = /^-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?$/;

function typesOf(schema: unknown, root: unknown): { types: string[]; enumValues: unknown[] | undefined; items: unknown } {
  let s = schema;
  // Follow a few local aliases (`{"$ref": "#/$defs/Limit"}`) to find the declared type.
  for (let hops = 0; hops < 8 && isObject(s) && typeof s.$ref === 'string' && s.type === undefined; hops++) s = resolveLocal(root, s.$ref);
  if (!isObject(s)) return { types: [], enumValues: undefined, items: undefined };
  const t = s.type;
  const types = typeof t === 'string' ? [t] : Array.isArray(t) ? t.filter((x): x is string => typeof x === 'string') : [];
  const enumValues = Array.isArray(s.enum) ? s.enum : s.const !== undefined ? [s.const] : undefined;
  return { types, enumValues, items: s.items };
}

/**
 * Canonical-form coercion of one string to a declared scalar type. Only exact forms convert:
 * "10" to 10, never "0x10", " 10" or "1e1" to an integer (ajv's own coercion accepts those, and a
 * service parsing the raw string would then see a different number than the one validated).
 */
function coerceScalar(s: string, types: string[], enumValues: unknown[] | undefined): unknown {
  if (types.length === 0) {
    // Untyped enum/const: the member whose text is exactly the string.
    const match = enumValues?.find((e) => (typeof e === 'number' || typeof e === 'boolean') && String(e) === s);
    return match ?? s;
  }
  if (types.includes('string')) return s;
  if (types.includes('integer') && INTEGER.test(s)) {
    const n = Number(s);
    if (Number.isSafeInteger(n)) return n;
  }
  if (types.includes('number') && NUMBER.test(s)) {
    const n = Number(s);
    if (Number.isFinite(n)) return n;
  }
  if (types.includes('boolean') && (s === 'true' || s === 'false')) return s === 'true';
  if (types.includes('null') && s === '') return null;
  return s; // left as a string: the type check refuses it
}

function coercerFor(schema: unknown, root: unknown): Coercer {
  const { types, enumValues, items } = typesOf(schema, root);
  if (types.includes('array')) {
    const item = typesOf(items, root);
    const one = (s: string): unknown => coerceScalar(s, item.types, item.enumValues);
    return (v) => (Array.isArray(v) ? v.map(one) : [one(v)]);
  }
  // A repeated parameter stays an array, and a scalar schema refuses it: no "last one wins".
  return (v) => (Array.isArray(v) ? v : coerceScalar(v, types, enumValues));
}

/** Coercers of the top-level properties of a params/query schema, plus one for other names. */
function coercersOf(schema: unknown): { named: Map<string, Coercer>; other: Coercer | undefined } {
  const named = new Map<string, Coercer>();
  if (!isObject(schema)) return { named, other: undefined };
  if (isObject(schema.properties)) {
    for (const [name, sub] of Object.entries(schema.properties)) named.set(name, coercerFor(sub, schema));
  }
  const other = isObject(schema.additionalProperties) ? coercerFor(schema.additionalProperties, schema) : undefined;
  return { named, other };
}

interface Part {
  validate: ValidateFunction;
  coerce: { named: Map<string, Coercer>; other: Coercer | undefined };
}

function pointerOf(error: ErrorObject): string {
  const p = error.params as Record<string, unknown>; // ajv documents params per keyword; read with typeof guards
  let pointer = error.instancePath;
  const extra = typeof p.additionalProperty === 'string' ? p.additionalProperty
    : typeof p.unevaluatedProperty === 'string' ? p.unevaluatedProperty
      : typeof p.missingProperty === 'string' ? p.missingProperty : undefined;
  if (extra !== undefined) pointer += `/${escapePointer(extra)}`;
  return pointer.length > MAX_POINTER_LENGTH ? `${pointer.slice(0, MAX_POINTER_LENGTH)}…` : pointer;
}

function toIssues(location: ValidationIssue['location'], errors: ErrorObject[] | null | undefined): ValidationIssue[] {
  return (errors ?? []).map((e) => ({ location, pointer: pointerOf(e), keyword: e.keyword, message: e.message ?? 'is not valid' }));
}

/** The validator of one operation: compile once, validate every request. */
export class RequestValidator {
  /** True when the operation has a body schema. */
  readonly hasBodySchema: boolean;
  private readonly strict: boolean;
  private readonly allowBody: boolean;
  private readonly bodyRequired: boolean;

  private constructor(
    private readonly body: ValidateFunction | undefined,
    private readonly params: Part | undefined,
    private readonly query: Part | undefined,
    opts: ValidatorOptions,
  ) {
    this.hasBodySchema = body !== undefined;
    this.strict = opts.strictProperties ?? true;
    this.allowBody = opts.allowBody ?? false;
    this.bodyRequired = opts.bodyRequired ?? true;
  }

  /**
   * Compiles the schemas of one operation (at configuration load, not per request).
   * Throws PCL_ERR_INVALID_ARGUMENT, with ajv's reason, for a schema that does not compile: not
   * an object, an unknown keyword or format, a `$ref` that leads nowhere (external refs included).
   */
  static compile(schemas: OperationSchemas, opts: ValidatorOptions = {}): RequestValidator {
    const strict = opts.strictProperties ?? true;
    const part = (schema: object | undefined, where: string): Part | undefined => {
      if (schema === undefined) return undefined;
      const { validate, prepared } = compileOne(schema, where, strict);
      return { validate, coerce: coercersOf(prepared) };
    };
    const body = schemas.body === undefined ? undefined : compileOne(schemas.body, 'body', strict).validate;
    return new RequestValidator(body, part(schemas.params, 'path parameters'), part(schemas.query, 'query'), opts);
  }

  /** Checks one request; returns [] when it is valid, otherwise at most 10 issues. */
  validate(input: ValidationInput): ValidationIssue[] {
    const issues: ValidationIssue[] = [];
    if (this.params) {
      const data = coerceAll(Object.entries(input.params), this.params);
      if (!this.params.validate(data)) issues.push(...toIssues('path', this.params.validate.errors));
    }
    issues.push(...this.checkQuery(input.query));
    issues.push(...this.checkBody(input.body));
    return issues.slice(0, MAX_ISSUES);
  }

  private checkQuery(query: URLSearchParams): ValidationIssue[] {
    if (this.query) {
      const entries: [string, string | string[]][] = [];
      for (const name of new Set(query.keys())) {
        const all = query.getAll(name);
        entries.push([name, all.length === 1 ? all[0] as string /* length checked */ : all]);
      }
      const data = coerceAll(entries, this.query);
      return this.query.validate(data) ? [] : toIssues('query', this.query.validate.errors);
    }
    if (!this.strict) return [];
    // No query schema: deny by default, like a schema with no properties.
    const issues: ValidationIssue[] = [];
    for (const name of new Set(query.keys())) {
      issues.push({ location: 'query', pointer: `/${escapePointer(name)}`.slice(0, MAX_POINTER_LENGTH), keyword: 'additionalProperties', message: 'must NOT have additional properties' });
      if (issues.length >= MAX_ISSUES) break;
    }
    return issues;
  }

  private checkBody(body: unknown): ValidationIssue[] {
    if (this.body) {
      if (body === undefined) {
        return this.bodyRequired ? [{ location: 'body', pointer: '', keyword: 'required', message: 'a request body is required' }] : [];
      }
      return this.body(body) ? [] : toIssues('body', this.body.errors);
    }
    if (body !== undefined && !this.allowBody) return [{ location: 'body', pointer: '', keyword: 'body', message: 'no request body is allowed on this route' }];
    return [];
  }
}

/** A fresh null-prototype object (names are client-chosen: `__proto__` must stay a plain key) with coerced values. */
function coerceAll(entries: Iterable<[string, string | string[]]>, part: Part): Record<string, unknown> {
  const data = Object.create(null) as Record<string, unknown>; // null prototype: see above
  for (const [name, value] of entries) {
    const c = part.coerce.named.get(name) ?? part.coerce.other;
    data[name] = c ? c(value) : value;
  }
  return data;
}

/**
 * The error the gateway answers with for a request that has issues: PCL_ERR_VALIDATION, whose
 * message lists where (location and pointer) and which rule — never the values.
 */
export function validationError(issues: readonly ValidationIssue[]): PortcullisError {
  const detail = issues.map((i) => `${i.location}${i.pointer || ' (whole)'}: ${i.message} [${i.keyword}]`).join('; ');
  return new PortcullisError('PCL_ERR_VALIDATION', `request does not match the API schema: ${detail}`);
}
