// `portcullis openapi import <file> --service <name>`: turns the operations of an OpenAPI 3.x
// document into route entries for portcullis.yaml. Each route refers back to its operation, and
// the gateway loads the operation's schemas from the document when it starts (docs/validation.md).
import type { Command } from 'commander';
import { Document, isCollection, isScalar, visit } from 'yaml';
import { PortcullisError } from '../core/errors.js';
import { loadOpenApiFile, type ImportedOperation } from '../dataplane/validate/openapi.js';

/** Service names and role ids as the config schema defines them (`serviceName`, `identifier`). */
const SERVICE_NAME = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
const IDENTIFIER = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;

/** Options of `openapi import`. */
export interface OpenApiImportOptions {
  /** The service every route forwards to. */
  service: string;
  /** Roles any one of which may call each route; omitted from the output when absent. */
  roles?: string[];
  /** Prefix paths with the path of the document's first server URL. Default false. */
  basePath?: boolean;
}

/** Parses `--roles r1,r2`; throws PCL_ERR_INVALID_ARGUMENT for an empty or malformed role. */
export function parseRoles(value: string): string[] {
  const roles = value.split(',').map((r) => r.trim());
  for (const r of roles) {
    if (!IDENTIFIER.test(r)) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `--roles: "${r.slice(0, 64)}" is not a role id (letters, digits, ".", "_", ":", "-")`);
  }
  return [...new Set(roles)];
}

/** The YAML fragment (`routes:` …) for the operations of `file`; `file` is written as given. */
export function routesYaml(file: string, operations: readonly ImportedOperation[], opts: OpenApiImportOptions): string {
  if (!SERVICE_NAME.test(opts.service)) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', '--service must be a service name (lowercase letters, digits and "-", at most 63)');
  const doc = new Document({
    routes: operations.map((op) => ({
      id: op.id,
      method: op.method,
      path: op.path,
      service: opts.service,
      ...(opts.roles ? { roles: [...opts.roles] } : {}),
      validate: { openapi: { file, operation: op.id } },
    })),
  }, { aliasDuplicateObjects: false });
  // Flow style for the short lists and references, as one writes them by hand.
  visit(doc, {
    Pair(_, pair) {
      if (isScalar(pair.key) && (pair.key.value === 'roles' || pair.key.value === 'openapi') && isCollection(pair.value)) pair.value.flow = true;
    },
  });
  return doc.toString({ lineWidth: 0 });
}

/** Reads the document and renders the routes (the command without the terminal). */
export function importRoutes(file: string, opts: OpenApiImportOptions): string {
  return routesYaml(file, loadOpenApiFile(file, { basePath: opts.basePath ?? false }), opts);
}

/** Adds `portcullis openapi import`. */
export function registerOpenApiCommands(cli: Command): void {
  const openapi = cli.command('openapi').description('OpenAPI 3.0/3.1 documents: request validation from the API description (docs/validation.md)');
  openapi.command('import')
    .description('print portcullis.yaml routes (YAML, to stdout) for every operation of an OpenAPI document; each route validates requests against its operation. Exits 2 when the document is not valid.')
    .argument('<file>', 'OpenAPI 3.0.x or 3.1.x document, YAML or JSON; written into each route as given (relative paths resolve from the config file)')
    .requiredOption('--service <name>', 'the service (in `services`) the routes forward to')
    .option('--roles <r1,r2>', 'roles any one of which may call each route (default: none; Cedar policies decide)')
    .option('--base-path', "prefix each path with the path of the document's first server URL (e.g. /v1)")
    .action((file: string, o: { service: string; roles?: string; basePath?: boolean }) => {
      const opts: OpenApiImportOptions = { service: o.service, ...(o.roles !== undefined ? { roles: parseRoles(o.roles) } : {}), basePath: o.basePath ?? false };
      let out: string;
      try {
        out = importRoutes(file, opts);
      } catch (err) {
        if (!(err instanceof PortcullisError) || err.code !== 'PCL_ERR_OPENAPI_INVALID') throw err;
        console.error(`error [${err.code}]: ${err.message}`);
        process.exitCode = 2;
        return;
      }
      process.stdout.write(out);
    });
}
