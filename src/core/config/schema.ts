// The JSON Schema of portcullis.yaml, read from schema/portcullis.schema.json (the one source of
// truth that editors also use) and compiled once, on first use.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv2020, type ErrorObject, type ValidateFunction } from 'ajv/dist/2020.js';

/** The subset of JSON Schema this module reads back (titles for messages, keys for hints). */
export interface SchemaNode {
  title?: string;
  description?: string;
  type?: string;
  $ref?: string;
  pattern?: string;
  enum?: unknown[];
  default?: unknown;
  properties?: Record<string, SchemaNode>;
  items?: SchemaNode;
  $defs?: Record<string, SchemaNode>;
  additionalProperties?: boolean;
  required?: string[];
}

const SCHEMA_FILE = join('schema', 'portcullis.schema.json');

/** The package root: the nearest ancestor holding schema/ (dist/src/core/config when built, src/core/config from source). */
function findSchemaFile(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const candidate = join(dir, SCHEMA_FILE);
    if (existsSync(candidate)) return candidate;
    dir = dirname(dir);
  }
  throw new Error(`${SCHEMA_FILE} not found above ${fileURLToPath(import.meta.url)}`);
}

let cached: { schema: SchemaNode; validate: ValidateFunction } | undefined;

function load(): { schema: SchemaNode; validate: ValidateFunction } {
  if (cached) return cached;
  // Our own file shipped with the package, shape checked by ajv.compile below.
  const schema = JSON.parse(readFileSync(findSchemaFile(), 'utf8')) as SchemaNode;
  // allErrors: `config check` lists every problem at once; verbose: errors carry their parentSchema
  // (for titles and allowed keys). Strict mode rejects typos in the schema itself.
  const ajv = new Ajv2020({ allErrors: true, verbose: true, strict: true });
  cached = { schema, validate: ajv.compile(schema) };
  return cached;
}

/** The parsed schema document. */
export function configSchema(): SchemaNode {
  return load().schema;
}

/** Validates plain data against the schema; returns ajv's errors (empty when valid). */
export function validateAgainstSchema(data: unknown): ErrorObject[] {
  const { validate } = load();
  return validate(data) ? [] : [...(validate.errors ?? [])];
}

/** A `$defs` entry by name, e.g. "serviceName"; throws if the schema has none (a programming error). */
export function schemaDefinition(name: string): SchemaNode {
  const def = load().schema.$defs?.[name];
  if (!def) throw new Error(`schema has no $defs/${name}`);
  return def;
}

/** Whether `value` satisfies a `$defs` entry's pattern (for inputs checked outside a whole file). */
export function matchesDefinition(name: string, value: string): boolean {
  const { pattern } = schemaDefinition(name);
  // Same flag ajv uses, so both agree on every input.
  return pattern === undefined || new RegExp(pattern, 'u').test(value);
}
