// Loads portcullis.yaml once, at start: YAML → schema → references → defaults → frozen (STYLE.md
// habit 5). Every problem becomes a ConfigError at file:line:column. Messages quote key names and
// identifiers (names, ids, addresses) but never free-form values, so no secret can leak through them.
import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs';
import { isAlias, isMap, isPair, isScalar, isSeq, LineCounter, parseDocument, visit, type Document } from 'yaml';
import type { ErrorObject } from 'ajv/dist/2020.js';
import { ConfigError } from '../errors.js';
import { applyDefaults, deepFreeze, type RawConfig } from './defaults.js';
import { closest, quote, suggest } from './hint.js';
import { checkReferences, displayPath, type ConfigIssue, type ConfigPath } from './references.js';
import { validateAgainstSchema, type SchemaNode } from './schema.js';
import type { PortcullisConfig } from './types.js';

/** Larger files are refused unread: a config is a few kilobytes, anything bigger is a mistake or an attack. */
export const MAX_CONFIG_BYTES = 1024 * 1024;
/** Alias expansions allowed (yaml weighs each by the aliases inside it): a few for DRY role lists, never a "billion laughs". */
const MAX_ALIAS_COUNT = 32;
/** Syntax errors beyond this many are noise: the first ones explain the rest. */
const MAX_SYNTAX_ERRORS = 5;

/** Parses and validates a config; throws the first ConfigError (by position) when there is any. */
export function parseConfig(text: string, file: string): PortcullisConfig {
  const { config, errors } = checkConfig(text, file);
  if (errors[0] !== undefined) throw errors[0];
  // checkConfig returns a config whenever it returns no error.
  return config as PortcullisConfig;
}

/** Reads (at most 1 MiB of) a config file, then parseConfig(); unreadable → PCL_ERR_CONFIG_READ. */
export function loadConfig(file: string): PortcullisConfig {
  return parseConfig(readConfigFile(file), file);
}

/**
 * Every problem of a config at once, sorted by position (for `portcullis config check`), and the
 * frozen config when there is none.
 */
export function checkConfig(text: string, file: string): { config?: PortcullisConfig; errors: ConfigError[] } {
  const start = { file, line: 1, column: 1 };
  if (text.length > MAX_CONFIG_BYTES || Buffer.byteLength(text, 'utf8') > MAX_CONFIG_BYTES) {
    return { errors: [new ConfigError('PCL_ERR_CONFIG_READ', start, `the file is larger than ${MAX_CONFIG_BYTES} bytes (1 MiB)`, 'a configuration file is a few kilobytes; is this the right file?')] };
  }

  const lineCounter = new LineCounter();
  let doc: Document.Parsed;
  try {
    doc = parseDocument(text, { lineCounter, keepSourceTokens: true, prettyErrors: false, uniqueKeys: true, strict: true, version: '1.2', schema: 'core' });
  } catch (err) {
    // yaml reports problems in doc.errors; a throw here is unexpected, so say so without echoing input.
    return { errors: [new ConfigError('PCL_ERR_CONFIG_SYNTAX', start, `the YAML parser failed: ${err instanceof Error ? err.name : 'unknown error'}`)] };
  }
  const at = (offset: number | undefined): { file: string; line: number; column: number } => {
    if (offset === undefined) return start;
    const { line, col } = lineCounter.linePos(offset);
    return { file, line, column: col };
  };

  const errors: ConfigError[] = [];
  let syntaxBroken = false;
  let exhausted = false;
  // In source order, and only the first few syntax problems: a broken file can yield thousands.
  const problems = [...doc.errors, ...doc.warnings].sort((a, b) => a.pos[0] - b.pos[0]);
  let syntaxCount = 0;
  const syntaxLines = new Set<number>();
  for (const problem of problems) {
    if (problem.code !== 'DUPLICATE_KEY') {
      // One syntax error per line: the parser's follow-up complaints about the same line add nothing.
      const { line } = lineCounter.linePos(problem.pos[0]);
      if (syntaxLines.has(line) || ++syntaxCount > MAX_SYNTAX_ERRORS) {
        syntaxBroken = true;
        continue;
      }
      syntaxLines.add(line);
    }
    if (problem.code === 'DUPLICATE_KEY') {
      const key = keyTextAt(doc, problem.pos[0]) ?? text.slice(problem.pos[0], problem.pos[1]);
      errors.push(new ConfigError('PCL_ERR_CONFIG_REFERENCE', at(problem.pos[0]), `duplicate key ${quote(key)}: a key may appear only once in a mapping`, 'YAML would silently keep only one of the values; remove or merge the other'));
      continue;
    }
    syntaxBroken = true;
    if (problem.code === 'RESOURCE_EXHAUSTION') {
      if (exhausted) continue;
      exhausted = true;
      errors.push(new ConfigError('PCL_ERR_CONFIG_SYNTAX', at(problem.pos[0]), 'the document is nested too deeply to parse'));
      continue;
    }
    // yaml's message without its " at line L, column C:" suffix (we give the position ourselves).
    const message = (problem.message.split('\n')[0] ?? '').replace(/ at line \d+, column \d+:?$/, '');
    errors.push(new ConfigError('PCL_ERR_CONFIG_SYNTAX', at(problem.pos[0]), `YAML: ${message}`, syntaxHint(text, lineCounter, problem.pos[0])));
  }
  if (syntaxBroken) return { errors: finish(errors).slice(0, MAX_SYNTAX_ERRORS) };

  // Keys must be plain scalars: a mapping or sequence as a key has no meaning in this file.
  visit(doc, {
    Pair(_, pair) {
      if (!isScalar(pair.key) || typeof pair.key.value === 'object') {
        const range = (pair.key as { range?: [number, number, number] } | null)?.range; // any node or null: only its range is read
        errors.push(new ConfigError('PCL_ERR_CONFIG_SYNTAX', at(range?.[0]), 'a mapping key must be plain text', 'complex keys (`? [a, b]`), aliases and null keys are not allowed here'));
      }
    },
  });
  if (errors.some((e) => e.code === 'PCL_ERR_CONFIG_SYNTAX')) return { errors: finish(errors) };

  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT });
  } catch (err) {
    if (!(err instanceof ReferenceError)) {
      // Not expected after a clean parse; still a located config error, never a crash with input in it.
      return { errors: [new ConfigError('PCL_ERR_CONFIG_SYNTAX', start, `the YAML document cannot be converted: ${err instanceof Error ? err.name : 'unknown error'}`)] };
    }
    // yaml throws a ReferenceError when aliases expand beyond maxAliasCount.
    let firstAlias: number | undefined;
    visit(doc, { Alias(_, alias) { firstAlias ??= alias.range?.[0]; return visit.BREAK; } });
    errors.push(new ConfigError('PCL_ERR_CONFIG_SYNTAX', at(firstAlias), `YAML aliases expand to too much data (more than ${MAX_ALIAS_COUNT} alias expansions)`, 'write the values out, or use fewer `*alias` references'));
    return { errors: finish(errors) };
  }

  const fromSchema = schemaIssues(data);
  // A malformed value is reported once: the schema's message wins over a reference check's.
  const flagged = new Set(fromSchema.map((i) => displayPath(i.path)));
  const fromReferences = checkReferences(data).filter((i) => i.code !== 'PCL_ERR_CONFIG_INVALID' || !flagged.has(displayPath(i.path)));
  const issues: ConfigIssue[] = [...fromSchema, ...fromReferences];
  for (const issue of issues) {
    const offset = locate(doc, issue.path, issue.at);
    let hint = issue.hint;
    if (issue.related !== undefined) {
      const { line } = at(locate(doc, issue.related, 'value'));
      hint = `first at line ${line}${hint ? `; ${hint}` : ''}`;
    }
    errors.push(new ConfigError(issue.code, at(offset), issue.message, hint));
  }
  if (errors.length > 0) return { errors: finish(errors) };

  // No schema error: the data has the RawConfig shape.
  return { config: deepFreeze(applyDefaults(data as RawConfig, file)), errors: [] };
}

/** The commonest slip: an unquoted `{name}` inside `{ … }` reads as a nested YAML mapping. */
function syntaxHint(text: string, lineCounter: LineCounter, offset: number): string | undefined {
  const { line } = lineCounter.linePos(offset);
  const from = lineCounter.lineStarts[line - 1] ?? 0;
  const to = lineCounter.lineStarts[line] ?? text.length;
  return /\/\{/.test(text.slice(from, to)) ? 'quote path patterns that contain {name}, e.g. path: "/orders/{id}"' : undefined;
}

/** Sorted by position, exact repeats dropped. */
function finish(errors: ConfigError[]): ConfigError[] {
  const seen = new Set<string>();
  return errors
    .filter((e) => (seen.has(e.message) ? false : (seen.add(e.message), true)))
    .sort((a, b) => a.line - b.line || a.column - b.column);
}

// ---------------------------------------------------------------------------------------------
// Reading

/** Reads a config file as UTF-8 text: regular files only, at most 1 MiB, never blocking on a FIFO. */
export function readConfigFile(file: string): string {
  const start = { file, line: 1, column: 1 };
  let fd: number;
  try {
    // O_NONBLOCK: opening a FIFO must not hang the process; fstat below then refuses it.
    fd = openSync(file, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (err) {
    throw new ConfigError('PCL_ERR_CONFIG_READ', start, `cannot open the configuration file: ${describeFsError(err)}`);
  }
  try {
    const stat = fstatSync(fd);
    if (!stat.isFile()) throw new ConfigError('PCL_ERR_CONFIG_READ', start, 'the configuration path is not a regular file');
    if (stat.size > MAX_CONFIG_BYTES) throw new ConfigError('PCL_ERR_CONFIG_READ', start, `the file is larger than ${MAX_CONFIG_BYTES} bytes (1 MiB)`, 'a configuration file is a few kilobytes; is this the right file?');
    // Read at most one byte past the limit, in case the file grew after fstat.
    const buffer = Buffer.alloc(Math.min(stat.size, MAX_CONFIG_BYTES) + 1);
    let length = 0;
    for (;;) {
      const n = readSync(fd, buffer, length, buffer.length - length, null);
      if (n === 0) break;
      length += n;
      if (length === buffer.length) break;
    }
    if (length > MAX_CONFIG_BYTES) throw new ConfigError('PCL_ERR_CONFIG_READ', start, `the file is larger than ${MAX_CONFIG_BYTES} bytes (1 MiB)`);
    try {
      return new TextDecoder('utf-8', { fatal: true }).decode(buffer.subarray(0, length));
    } catch {
      throw new ConfigError('PCL_ERR_CONFIG_READ', start, 'the file is not UTF-8 text');
    }
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    throw new ConfigError('PCL_ERR_CONFIG_READ', start, `cannot read the configuration file: ${describeFsError(err)}`);
  } finally {
    closeSync(fd);
  }
}

function describeFsError(err: unknown): string {
  const code = (err as NodeJS.ErrnoException | undefined)?.code; // reading a property of any thrown value is safe
  switch (code) {
    case 'ENOENT': return 'no such file (ENOENT)';
    case 'EACCES':
    case 'EPERM': return `permission denied (${code})`;
    case 'EISDIR': return 'it is a directory (EISDIR)';
    default: return code ?? 'unknown error';
  }
}

// ---------------------------------------------------------------------------------------------
// Locating a data path in the YAML source

/** Offset in the source of the node at `path` (or its key), falling back to the nearest ancestor found. */
function locate(doc: Document.Parsed, path: ConfigPath, at: 'key' | 'value'): number | undefined {
  let node: unknown = doc.contents;
  let best: number | undefined = rangeStart(node);
  for (let i = 0; i < path.length; i++) {
    if (isAlias(node)) node = node.resolve(doc);
    const seg = path[i];
    let key: unknown;
    if (isMap(node)) {
      const pair = node.items.find((p) => isPair(p) && isScalar(p.key) && String(p.key.value) === String(seg));
      if (pair === undefined) break;
      key = pair.key;
      node = pair.value;
    } else if (isSeq(node) && typeof seg === 'number') {
      node = node.items[seg];
      if (node === undefined) break;
    } else {
      break;
    }
    const last = i === path.length - 1;
    const keyStart = rangeStart(key);
    // An unknown key is reported at the key; a value at the value, or at its key when it is empty.
    best = (last && at === 'key' ? keyStart : undefined) ?? rangeStart(node) ?? keyStart ?? best;
  }
  return best;
}

/** Text of the scalar key starting at `offset` (yaml reports a duplicate key by position only). */
function keyTextAt(doc: Document.Parsed, offset: number): string | undefined {
  let found: string | undefined;
  visit(doc, {
    Pair(_, pair) {
      if (isScalar(pair.key) && pair.key.range?.[0] === offset) {
        found = String(pair.key.value);
        return visit.BREAK;
      }
      return undefined;
    },
  });
  return found;
}

function rangeStart(node: unknown): number | undefined {
  if (node === null || typeof node !== 'object' || !('range' in node)) return undefined;
  const range = (node as { range?: unknown }).range; // checked to exist just above
  return Array.isArray(range) && typeof range[0] === 'number' ? range[0] : undefined;
}

// ---------------------------------------------------------------------------------------------
// Schema errors → issues

/** JSON pointer "/services/0/name" → ["services", 0, "name"], with numbers where the data is a list. */
function toPath(pointer: string, data: unknown): (string | number)[] {
  const path: (string | number)[] = [];
  if (pointer === '') return path;
  let cursor: unknown = data;
  for (const raw of pointer.slice(1).split('/')) {
    const seg = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    if (Array.isArray(cursor)) {
      path.push(Number(seg));
      cursor = cursor[Number(seg)];
    } else {
      path.push(seg);
      cursor = cursor !== null && typeof cursor === 'object' ? (cursor as Record<string, unknown>)[seg] /* plain object from yaml */ : undefined;
    }
  }
  return path;
}

const TYPE_NAMES: Record<string, string> = {
  object: 'a mapping', array: 'a list', string: 'a string', integer: 'an integer', number: 'a number', boolean: 'true or false', null: 'empty',
};

function describeValue(value: unknown): string {
  if (value === null || value === undefined) return 'empty';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'number') return Number.isInteger(value) ? 'an integer' : 'a number';
  return TYPE_NAMES[typeof value] ?? typeof value;
}

/** Calls operations are checked, with a better message, by checkReferences(). */
const OPERATION_PATH = /^\/calls\/\d+\/operations\/\d+$/;

function schemaIssues(data: unknown): ConfigIssue[] {
  const errors = validateAgainstSchema(data);
  // One typo is one error: "missing `upstream`" is dropped when `upstreem` beside it already suggests it.
  const suggested = new Set<string>();
  for (const error of errors) {
    if (error.keyword !== 'additionalProperties') continue;
    const near = closest(String(error.params.additionalProperty), Object.keys((error.parentSchema as SchemaNode | undefined)?.properties ?? {})); // verbose: the failing schema object
    if (near !== undefined) suggested.add(`${error.instancePath}/${near}`);
  }
  const issues: ConfigIssue[] = [];
  for (const error of errors) {
    if (error.keyword === 'pattern' && OPERATION_PATH.test(error.instancePath)) continue;
    if (error.keyword === 'required' && suggested.has(`${error.instancePath}/${String(error.params.missingProperty)}`)) continue;
    const issue = schemaIssue(error, toPath(error.instancePath, data));
    if (issue) issues.push(issue);
  }
  return issues;
}

function schemaIssue(error: ErrorObject, path: (string | number)[]): ConfigIssue | undefined {
  const where = path.length === 0 ? 'the file' : `\`${displayPath(path)}\``;
  // verbose: true puts the schema object that failed here; our schema only holds SchemaNode keys.
  const parent = error.parentSchema as SchemaNode | undefined;
  const invalid = (message: string, hint?: string, at: 'key' | 'value' = 'value', p: ConfigPath = path): ConfigIssue =>
    ({ code: 'PCL_ERR_CONFIG_INVALID', path: p, at, message, ...(hint !== undefined ? { hint } : {}) });
  const params = error.params as Record<string, unknown>; // ajv documents params per keyword; read with guards below

  switch (error.keyword) {
    case 'additionalProperties': {
      const key = String(params.additionalProperty);
      const allowed = Object.keys(parent?.properties ?? {});
      return invalid(`unknown key ${quote(key)} ${path.length === 0 ? 'at the top level' : `in ${where}`}`, suggest(key, allowed, 'allowed keys'), 'key', [...path, key]);
    }
    case 'required':
      return invalid(`${where} is missing the required key \`${String(params.missingProperty)}\``);
    case 'type':
      if (path.length === 0) {
        return invalid(`the file must be a mapping with at least \`trustDomain\` and \`services\`, not ${describeValue(error.data)}`, 'start from `portcullis init`, or see the schema');
      }
      return invalid(`${where} must be ${TYPE_NAMES[String(params.type)] ?? String(params.type)}, not ${describeValue(error.data)}`);
    case 'enum': {
      const allowed = (parent?.enum ?? []).map(String);
      const hint = typeof error.data === 'string' ? suggest(error.data, allowed, 'allowed values') : `allowed values: ${allowed.join(', ')}`;
      return invalid(`${where} must be one of ${allowed.join(', ')}`, hint);
    }
    case 'pattern':
      return invalid(`${where} is not a valid ${parent?.title ?? 'value (see the schema)'}`);
    case 'uniqueItems': {
      const i = Number(params.i);
      const j = Number(params.j);
      return invalid(`${where} lists the same item twice`, `item ${Math.min(i, j)} and item ${Math.max(i, j)} are equal`, 'value', [...path, Math.max(i, j)]);
    }
    case 'minLength':
      if (params.limit === 1) return invalid(`${where} must not be empty`);
      return invalid(`${where} ${error.message ?? 'is too short'}`);
    case 'minItems':
      return invalid(`${where} must have at least ${String(params.limit)} item${params.limit === 1 ? '' : 's'}`);
    default:
      // minimum, maximum, maxLength, maxItems: ajv's message ("must be <= 86400") names only the limit.
      return invalid(`${where} ${error.message ?? 'is not valid'}`);
  }
}
