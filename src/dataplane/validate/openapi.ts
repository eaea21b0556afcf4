// Import of an OpenAPI 3.0.x / 3.1.x document into per-operation request schemas the gateway
// validates with (schema.ts). Only what a request carries is taken: path and query parameters and
// JSON bodies. Every operation's schemas are compiled during the import, so a document that
// cannot be enforced is refused when it is imported, not when the first request arrives.
//
// Schema references stay as written (`#/components/schemas/Order`); each operation's schemas carry
// a `components.schemas` copy of exactly the components they reach, so they are self-contained.
import { readFileSync, statSync } from 'node:fs';
import { parseDocument } from 'yaml';
import { PortcullisError } from '../../core/errors.js';
import { compilePathPattern } from '../../core/path-pattern.js';
import { escapePointer, isKnownFormat, RequestValidator, type OperationSchemas } from './schema.js';

/** One operation of the document, in the form a route needs. */
export interface ImportedOperation {
  /** operationId, or `<method>-<path>` slugified when absent; unique */
  id: string;
  method: 'GET' | 'HEAD' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  /** Path pattern in Portcullis form: `/orders/{id}` (OpenAPI's own syntax happens to match; servers' base path prefixed when the `basePath` option is given) */
  path: string;
  schemas: OperationSchemas;
  /** Request body media types accepted (from requestBody.content); [] when no body */
  contentTypes: string[];
  bodyRequired: boolean;
  /** The operation's security requirement names (e.g. ['bearerAuth']) — informative */
  security: string[];
}

/** Options of an import. */
export interface ImportOptions {
  /** Prefix every path with the path of the first `servers` URL (e.g. `/v1`). Default false. */
  basePath?: boolean;
}

type Obj = Record<string, unknown>;
type Method = ImportedOperation['method'];

const METHODS: readonly Method[] = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'];
/** Route ids in portcullis.yaml (schema `identifier`). */
const IDENTIFIER = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;
/** OpenAPI keywords that have no JSON Schema meaning for a request. */
const DROPPED_KEYWORDS = new Set(['example', 'xml', 'discriminator', 'externalDocs', 'nullable']);
const SCHEMA_PREFIX = '#/components/schemas/';
const MAX_DEPTH = 64;
const MAX_REF_HOPS = 32;
/** Larger documents are refused before parsing. */
const MAX_FILE_BYTES = 16 * 1024 * 1024;

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function unescapePointer(segment: string): string {
  return segment.replace(/~1/g, '/').replace(/~0/g, '~');
}

/** Errors name the document and the JSON pointer of the offending node. */
class Reporter {
  constructor(readonly source: string) {}

  fail(pointer: string, why: string, cause?: unknown): never {
    throw new PortcullisError('PCL_ERR_OPENAPI_INVALID', `${this.source}: #${pointer}: ${why}`, cause === undefined ? undefined : { cause });
  }
}

/** Everything one import needs to know about the document. */
class Importer {
  private readonly version: '3.0' | '3.1';
  private readonly components: Obj;
  private readonly componentSchemas: Obj;
  /** Converted components by name, with the component names each one refers to. */
  private readonly converted = new Map<string, { schema: unknown; refs: Set<string> }>();

  constructor(private readonly doc: Obj, private readonly r: Reporter) {
    const v = doc.openapi;
    if (typeof v !== 'string' || !/^3\.[01]\.\d+(?:-[0-9A-Za-z.-]+)?$/.test(v)) r.fail('/openapi', 'must be a 3.0.x or 3.1.x version string');
    this.version = v.startsWith('3.0') ? '3.0' : '3.1';
    const components = doc.components ?? {};
    if (!isObj(components)) r.fail('/components', 'must be an object');
    this.components = components;
    const schemas = components.schemas ?? {};
    if (!isObj(schemas)) r.fail('/components/schemas', 'must be an object');
    this.componentSchemas = schemas;
  }

  /** Follows local `$ref`s of a parameter, request body or path item to the object itself. */
  resolve(value: unknown, pointer: string, kind: string): { value: Obj; pointer: string } {
    let current = value;
    let where = pointer;
    const seen = new Set<string>();
    while (isObj(current) && typeof current.$ref === 'string') {
      const ref = current.$ref;
      if (!ref.startsWith('#/')) this.r.fail(`${where}/$ref`, 'external references are not supported (only "#/components/...")');
      if (seen.has(ref) || seen.size >= MAX_REF_HOPS) this.r.fail(`${where}/$ref`, `reference cycle in ${kind}`);
      seen.add(ref);
      const target = this.lookup(ref);
      if (target === undefined) this.r.fail(`${where}/$ref`, 'reference target not found');
      current = target;
      where = ref.slice(1);
    }
    if (!isObj(current)) this.r.fail(where, `${kind} must be an object`);
    return { value: current, pointer: where };
  }

  private lookup(ref: string): unknown {
    let node: unknown = this.doc;
    let fragment: string;
    try {
      fragment = decodeURIComponent(ref.slice(2));
    } catch {
      return undefined;
    }
    for (const seg of fragment.split('/').map(unescapePointer)) {
      if (!isObj(node) || !Object.hasOwn(node, seg)) return undefined;
      node = node[seg];
    }
    return node;
  }

  /** The name of the component a schema `$ref` points into, after checking it is one we support. */
  private componentOf(ref: string, pointer: string): string {
    if (!ref.startsWith('#')) this.r.fail(pointer, 'external references are not supported (only "#/components/schemas/...")');
    if (!ref.startsWith(SCHEMA_PREFIX)) this.r.fail(pointer, 'a schema may only refer to "#/components/schemas/..."');
    let name: string;
    try {
      name = unescapePointer(decodeURIComponent(ref.slice(SCHEMA_PREFIX.length).split('/')[0] ?? ''));
    } catch {
      this.r.fail(pointer, 'malformed reference');
    }
    if (this.lookup(ref) === undefined) this.r.fail(pointer, 'reference target not found');
    return name;
  }

  /**
   * OpenAPI schema object → JSON Schema for a request: 3.0's `nullable` and boolean
   * exclusiveMinimum/Maximum rewritten, annotations without JSON Schema meaning dropped (example,
   * xml, discriminator, externalDocs, x-*), formats the validator does not know dropped (formats
   * are open-ended annotations), and `readOnly` properties removed (a client never sends them).
   */
  convert(schema: unknown, pointer: string, refs: Set<string>, depth = 0): unknown {
    if (typeof schema === 'boolean') return schema;
    if (!isObj(schema)) return this.r.fail(pointer, 'schema must be an object');
    if (depth > MAX_DEPTH) this.r.fail(pointer, `schema nested deeper than ${MAX_DEPTH}`);
    const at = (key: string): string => `${pointer}/${escapePointer(key)}`;
    const sub = (v: unknown, p: string): unknown => this.convert(v, p, refs, depth + 1);

    if (typeof schema.$ref === 'string') {
      refs.add(this.componentOf(schema.$ref, at('$ref')));
      // In 3.0 a $ref replaces its object: siblings are ignored.
      if (this.version === '3.0') return { $ref: schema.$ref };
    }
    const out: Obj = {};
    for (const [key, value] of Object.entries(schema)) {
      if (DROPPED_KEYWORDS.has(key) || key.startsWith('x-')) continue;
      switch (key) {
        case 'properties':
        case 'patternProperties':
        case 'dependentSchemas':
        case '$defs': {
          if (!isObj(value)) this.r.fail(at(key), 'must be an object');
          const m: Obj = {};
          for (const [name, s] of Object.entries(value)) {
            if (key === 'properties' && this.isReadOnly(s)) continue;
            m[name] = sub(s, `${at(key)}/${escapePointer(name)}`);
          }
          out[key] = m;
          break;
        }
        case 'allOf':
        case 'anyOf':
        case 'oneOf':
        case 'prefixItems':
          if (!Array.isArray(value)) this.r.fail(at(key), 'must be an array');
          out[key] = value.map((s, i) => sub(s, `${at(key)}/${i}`));
          break;
        case 'items':
          out[key] = Array.isArray(value) ? value.map((s, i) => sub(s, `${at(key)}/${i}`)) : sub(value, at(key));
          break;
        case 'additionalProperties':
        case 'unevaluatedProperties':
        case 'unevaluatedItems':
        case 'not':
        case 'if':
        case 'then':
        case 'else':
        case 'contains':
        case 'propertyNames':
          out[key] = sub(value, at(key));
          break;
        case 'format':
          if (typeof value === 'string' && isKnownFormat(value)) out[key] = value;
          break;
        case 'exclusiveMinimum':
        case 'exclusiveMaximum': {
          if (typeof value !== 'boolean') { out[key] = value; break; }
          // 3.0: `minimum: 5, exclusiveMinimum: true` is 2020-12's `exclusiveMinimum: 5`.
          const bound = key === 'exclusiveMinimum' ? 'minimum' : 'maximum';
          if (value && typeof schema[bound] === 'number') out[key] = schema[bound];
          break;
        }
        case 'minimum':
        case 'maximum': {
          const flag = schema[key === 'minimum' ? 'exclusiveMinimum' : 'exclusiveMaximum'];
          if (flag !== true) out[key] = value;
          break;
        }
        default:
          out[key] = value; // assertions and data (type, enum, const, default, required, ...)
      }
    }
    if (schema.nullable === true) this.addNull(out);
    if (Array.isArray(out.required) && isObj(out.properties)) {
      const props = out.properties;
      const declared = isObj(schema.properties) ? schema.properties : {};
      // A required readOnly property is required in responses only.
      out.required = out.required.filter((n) => typeof n !== 'string' || Object.hasOwn(props, n) || !Object.hasOwn(declared, n));
    }
    return out;
  }

  /** 3.0 `nullable: true`: null joins the type (and the enum, which would otherwise refuse it). */
  private addNull(out: Obj): void {
    const t = out.type;
    if (typeof t === 'string' && t !== 'null') out.type = [t, 'null'];
    else if (Array.isArray(t) && !t.includes('null')) out.type = [...t, 'null'];
    if (Array.isArray(out.enum) && !out.enum.includes(null)) out.enum = [...out.enum, null];
  }

  /** readOnly on the property's schema, or on the component it refers to. */
  private isReadOnly(schema: unknown): boolean {
    let s = schema;
    for (let hops = 0; hops < MAX_REF_HOPS && isObj(s); hops++) {
      if (s.readOnly === true) return true;
      if (typeof s.$ref !== 'string' || !s.$ref.startsWith('#/')) return false;
      s = this.lookup(s.$ref);
    }
    return false;
  }

  /** Adds `components.schemas` with every component the schema reaches, transitively. */
  withComponents(schema: unknown, refs: Set<string>): object {
    const root: Obj = isObj(schema) ? { ...schema } : { allOf: [schema] };
    if (refs.size === 0) return root;
    const included: Obj = {};
    const queue = [...refs];
    for (let name = queue.shift(); name !== undefined; name = queue.shift()) {
      if (Object.hasOwn(included, name)) continue;
      let c = this.converted.get(name);
      if (!c) {
        const own = new Set<string>();
        c = { schema: this.convert(this.componentSchemas[name], `/components/schemas/${escapePointer(name)}`, own), refs: own };
        this.converted.set(name, c);
      }
      included[name] = c.schema;
      queue.push(...c.refs);
    }
    root.components = { schemas: included };
    return root;
  }
}

interface ParamSpec {
  name: string;
  in: 'path' | 'query';
  required: boolean;
  schema: unknown;
  refs: Set<string>;
}

function slug(method: string, path: string): string {
  const s = `${method}-${path}`.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-+|-+$/g, '');
  return s.slice(0, 120).replace(/-+$/, '');
}

/** The path of servers[0].url ("/v1"), server variables replaced by their defaults; '' for none. */
function serverBasePath(doc: Obj, r: Reporter): string {
  const servers = doc.servers;
  if (servers === undefined) return '';
  if (!Array.isArray(servers)) return r.fail('/servers', 'must be an array');
  const first: unknown = servers[0];
  if (first === undefined) return '';
  if (!isObj(first) || typeof first.url !== 'string') return r.fail('/servers/0/url', 'must be a string');
  const vars = isObj(first.variables) ? first.variables : {};
  const url = first.url.replace(/\{([^}]*)\}/g, (_m, name: string) => {
    const v = vars[name];
    if (!isObj(v) || typeof v.default !== 'string') r.fail('/servers/0/variables', `variable {${name}} has no default`);
    return v.default;
  });
  let path: string;
  try {
    path = /^[a-z][a-z0-9+.-]*:/i.test(url) ? new URL(url).pathname : (url.split(/[?#]/)[0] ?? '');
  } catch (err) {
    return r.fail('/servers/0/url', 'is not a valid URL', err);
  }
  path = path.replace(/\/+$/, '');
  if (path !== '' && !path.startsWith('/')) path = `/${path}`;
  return path;
}

/**
 * Imports the operations of an OpenAPI 3.0.x or 3.1.x document (already parsed). `source` names
 * the document in errors. Throws PCL_ERR_OPENAPI_INVALID, naming `source` and the JSON pointer,
 * for a document that is not OpenAPI 3.0/3.1, a malformed path or operation, an external or
 * dangling `$ref`, a reference cycle among parameters, request bodies or path items, a parameter
 * style Portcullis cannot validate, a duplicate or unusable operationId, or schemas that do not
 * compile. Header and cookie parameters are ignored; `options` and `trace` operations are not
 * imported.
 */
export function importOpenApi(doc: unknown, source: string, opts: ImportOptions = {}): ImportedOperation[] {
  const r: Reporter = new Reporter(source); // annotated: lets r.fail (never) narrow types
  if (!isObj(doc)) r.fail('', 'the document must be an object');
  const im = new Importer(doc, r);
  const paths = doc.paths;
  if (paths === undefined) {
    if (typeof doc.openapi === 'string' && doc.openapi.startsWith('3.0')) r.fail('/paths', 'is required in OpenAPI 3.0');
    return [];
  }
  if (!isObj(paths)) r.fail('/paths', 'must be an object');
  const base = opts.basePath ? serverBasePath(doc, r) : '';
  const docSecurity = doc.security;

  const ops: (Omit<ImportedOperation, 'id'> & { id: string | undefined; pointer: string; docPath: string })[] = [];
  for (const [rawPath, rawItem] of Object.entries(paths)) {
    if (rawPath.startsWith('x-')) continue;
    const itemPtr = `/paths/${escapePointer(rawPath)}`;
    if (!rawPath.startsWith('/')) r.fail(itemPtr, 'a path must start with "/"');
    const { value: item } = im.resolve(rawItem, itemPtr, 'path item');
    const path = base === '' ? rawPath : rawPath === '/' ? base : `${base}${rawPath}`;
    let templateParams: readonly string[];
    try {
      templateParams = compilePathPattern(path).params;
    } catch (err) {
      return r.fail(itemPtr, `path is not a Portcullis path pattern: ${err instanceof Error ? err.message : String(err)}`, err);
    }
    const shared = readParameters(im, r, item.parameters, `${itemPtr}/parameters`);

    for (const method of METHODS) {
      const op = item[method.toLowerCase()];
      if (op === undefined) continue;
      const opPtr = `${itemPtr}/${method.toLowerCase()}`;
      if (!isObj(op)) r.fail(opPtr, 'an operation must be an object');
      const own = readParameters(im, r, op.parameters, `${opPtr}/parameters`);
      const params = new Map([...shared, ...own]); // operation-level parameters override path-level ones

      const pathParams = [...params.values()].filter((p) => p.in === 'path');
      for (const p of pathParams) if (!templateParams.includes(p.name)) r.fail(opPtr, `path parameter "${p.name}" is not in the path template`);
      for (const name of templateParams) if (!pathParams.some((p) => p.name === name)) r.fail(opPtr, `path template parameter {${name}} is not declared`);

      const schemas: OperationSchemas = {};
      if (pathParams.length > 0) schemas.params = objectSchema(im, pathParams, true);
      schemas.query = objectSchema(im, [...params.values()].filter((p) => p.in === 'query'), false);
      const body = readBody(im, r, op.requestBody, `${opPtr}/requestBody`);
      if (body.schema !== undefined) schemas.body = body.schema;

      const operationId = op.operationId;
      if (operationId !== undefined && (typeof operationId !== 'string' || !IDENTIFIER.test(operationId))) {
        r.fail(`${opPtr}/operationId`, 'must be letters, digits, ".", "_", ":" or "-" (at most 128, starting with a letter or digit) to name a route');
      }
      ops.push({
        id: operationId,
        pointer: opPtr,
        docPath: rawPath,
        method,
        path,
        schemas,
        contentTypes: body.contentTypes,
        bodyRequired: body.required,
        security: securityNames(op.security ?? docSecurity, r, `${opPtr}/security`),
      });
    }
  }

  // Explicit ids first (they must be unique), then generated ones that avoid them.
  const taken = new Set<string>();
  for (const op of ops) {
    if (op.id === undefined) continue;
    if (taken.has(op.id)) r.fail(`${op.pointer}/operationId`, 'operationId is not unique');
    taken.add(op.id);
  }
  const result: ImportedOperation[] = [];
  for (const { pointer, id, docPath, ...rest } of ops) {
    let finalId = id;
    if (finalId === undefined) {
      // From the document's path, so the id does not change with the basePath option.
      const s = slug(rest.method, docPath) || rest.method.toLowerCase();
      finalId = s;
      for (let n = 2; taken.has(finalId); n++) finalId = `${s}-${n}`;
      taken.add(finalId);
    }
    try {
      RequestValidator.compile(rest.schemas, { strictProperties: true, allowBody: true });
    } catch (err) {
      r.fail(pointer, `schemas do not compile: ${err instanceof Error ? err.message : String(err)}`, err);
    }
    result.push({ id: finalId, ...rest });
  }
  return result;
}

function readParameters(im: Importer, r: Reporter, list: unknown, pointer: string): Map<string, ParamSpec> {
  const out = new Map<string, ParamSpec>();
  if (list === undefined) return out;
  if (!Array.isArray(list)) return r.fail(pointer, 'must be an array');
  list.forEach((raw: unknown, i) => {
    const { value: p, pointer: at } = im.resolve(raw, `${pointer}/${i}`, 'parameter');
    const name = p.name;
    const where = p.in;
    if (typeof name !== 'string' || name === '') r.fail(at, 'a parameter needs a name');
    if (where !== 'path' && where !== 'query' && where !== 'header' && where !== 'cookie') r.fail(`${at}/in`, 'must be path, query, header or cookie');
    if (where === 'header' || where === 'cookie') return; // not validated by the gateway (docs/validation.md)
    const key = `${where}:${name}`;
    if (out.has(key)) r.fail(at, `parameter "${name}" in ${where} is declared twice`);
    if (p.content !== undefined) r.fail(`${at}/content`, 'parameters described by "content" are not supported; use "schema"');
    if (p.schema === undefined) r.fail(at, 'a parameter needs a schema');
    const style = p.style;
    if (where === 'path' && style !== undefined && style !== 'simple') r.fail(`${at}/style`, 'only the "simple" style is supported for path parameters');
    if (where === 'query' && style !== undefined && style !== 'form') r.fail(`${at}/style`, 'only the "form" style is supported for query parameters');
    const refs = new Set<string>();
    const schema = im.convert(p.schema, `${at}/schema`, refs);
    const type = isObj(schema) ? schema.type : undefined;
    const types = Array.isArray(type) ? type : [type];
    if (types.includes('object')) r.fail(`${at}/schema`, 'object-valued parameters are not supported');
    if (types.includes('array')) {
      if (where === 'path') r.fail(`${at}/schema`, 'array-valued path parameters are not supported');
      if (p.explode === false) r.fail(`${at}/explode`, 'only exploded arrays (a=1&a=2) are supported');
    }
    out.set(key, { name, in: where, required: where === 'path' || p.required === true, schema, refs });
  });
  return out;
}

function objectSchema(im: Importer, params: ParamSpec[], allRequired: boolean): object {
  const properties: Record<string, unknown> = {};
  const required: string[] = [];
  const refs = new Set<string>();
  for (const p of params) {
    properties[p.name] = p.schema;
    if (allRequired || p.required) required.push(p.name);
    for (const ref of p.refs) refs.add(ref);
  }
  return im.withComponents({ type: 'object', properties, ...(required.length > 0 ? { required } : {}) }, refs);
}

function isJsonMediaType(mediaType: string): boolean {
  const [type, subtype = ''] = mediaType.split('/');
  return type === 'application' && (subtype === 'json' || subtype.endsWith('+json'));
}

function readBody(im: Importer, r: Reporter, raw: unknown, pointer: string): { schema: object | undefined; contentTypes: string[]; required: boolean } {
  if (raw === undefined) return { schema: undefined, contentTypes: [], required: false };
  const { value: body, pointer: at } = im.resolve(raw, pointer, 'request body');
  const content = body.content;
  if (!isObj(content)) return r.fail(`${at}/content`, 'a request body needs a content object');
  const contentTypes: string[] = [];
  let schema: object | undefined;
  let schemaText: string | undefined;
  for (const [key, media] of Object.entries(content)) {
    const mediaPtr = `${at}/content/${escapePointer(key)}`;
    const mediaType = (key.split(';')[0] ?? '').trim().toLowerCase();
    if (!/^[a-z0-9!#$&^_.+*-]+\/[a-z0-9!#$&^_.+*-]+$/.test(mediaType)) r.fail(mediaPtr, 'is not a media type');
    if (!contentTypes.includes(mediaType)) contentTypes.push(mediaType);
    if (!isJsonMediaType(mediaType)) continue; // listed, but the gateway does not parse it
    if (media !== undefined && media !== null && !isObj(media)) r.fail(mediaPtr, 'a media type object must be an object');
    const refs = new Set<string>();
    const converted = isObj(media) && media.schema !== undefined ? im.convert(media.schema, `${mediaPtr}/schema`, refs) : {};
    const complete = im.withComponents(converted, refs);
    const text = JSON.stringify(complete);
    if (schemaText !== undefined && text !== schemaText) r.fail(mediaPtr, 'JSON media types of one request body must share one schema');
    schema = complete;
    schemaText = text;
  }
  return { schema, contentTypes, required: body.required === true };
}

function securityNames(value: unknown, r: Reporter, pointer: string): string[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) return r.fail(pointer, 'must be an array');
  const names: string[] = [];
  for (const req of value) {
    if (!isObj(req)) r.fail(pointer, 'each security requirement must be an object');
    for (const name of Object.keys(req)) if (!names.includes(name)) names.push(name);
  }
  return names;
}

/**
 * Reads and imports an OpenAPI document from a YAML or JSON file (JSON is read as YAML 1.2).
 * Throws PCL_ERR_OPENAPI_INVALID for a file that cannot be read, is larger than 16 MiB, is not
 * one YAML document (syntax error, duplicate key, several documents, too many aliases), and
 * everything importOpenApi refuses.
 */
export function loadOpenApiFile(file: string, opts: ImportOptions = {}): ImportedOperation[] {
  let text: string;
  try {
    const size = statSync(file).size;
    if (size > MAX_FILE_BYTES) throw new PortcullisError('PCL_ERR_OPENAPI_INVALID', `${file}: larger than ${MAX_FILE_BYTES} bytes`);
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if (err instanceof PortcullisError) throw err;
    const code = (err as NodeJS.ErrnoException).code; // fs errors carry a code such as ENOENT
    throw new PortcullisError('PCL_ERR_OPENAPI_INVALID', `${file}: cannot be read${code ? ` (${code})` : ''}`, { cause: err });
  }
  const parsed = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  const first = parsed.errors[0];
  if (first) throw new PortcullisError('PCL_ERR_OPENAPI_INVALID', `${file}: not valid YAML or JSON: ${(first.message.split('\n')[0] ?? '').replace(/:\s*$/, '')}`);
  let doc: unknown;
  try {
    doc = parsed.toJS({ maxAliasCount: 100 });
  } catch (err) {
    throw new PortcullisError('PCL_ERR_OPENAPI_INVALID', `${file}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
  return importOpenApi(doc, file, opts);
}
