// Step 5 of the pipeline for one route: the body read within its size limit, its content type,
// strict JSON, the route's JSON Schema or OpenAPI operation (unknown properties refused), and the
// injection screen. Compiled once per route at start (`planValidation`); `validateRequest` runs per
// request and reports — the gateway decides what refuses (enforce / report, screen block / report).
import type { IncomingMessage } from 'node:http';
import { readBoundedBody } from '../../core/body.js';
import type { RouteConfig } from '../../core/config/types.js';
import { PortcullisError } from '../../core/errors.js';
import { checkContentType } from './content-type.js';
import { loadOpenApiFile, type ImportedOperation } from './openapi.js';
import { decodeUtf8Strict, parseSafeJson } from './safe-json.js';
import { RequestValidator, type ValidationIssue } from './schema.js';
import { screenRequest, type ScreenFinding } from './screen.js';

export interface ValidationPlan {
  maxBodyBytes: number;
  /** Accepted body media types; undefined: any (a route without `validate`). */
  contentTypes?: readonly string[];
  validator?: RequestValidator;
  mode: 'enforce' | 'report';
  screen: 'off' | 'report' | 'block';
}

export interface ValidationOutcome {
  /** The body as received (buffered, so it can be replayed on a retry); undefined without one. */
  body?: Buffer;
  issues: ValidationIssue[];
  findings: ScreenFinding[];
}

const JSON_TYPE = /^application\/(?:[a-z0-9!#$&^_.+-]+\+)?json$/;

/** OpenAPI documents read once per file, however many routes refer to them. */
export type OpenApiCache = Map<string, ImportedOperation[]>;

/** Compiles one route's validation; throws (at start) for a schema or an operation that does not exist or compile. */
export function planValidation(route: RouteConfig, gatewayMaxBody: number, cache: OpenApiCache = new Map()): ValidationPlan {
  const v = route.validate;
  // Without `validate`: the size limit, and parameters screened in report mode (cheap, no body parse).
  if (!v) return { maxBodyBytes: gatewayMaxBody, mode: 'enforce', screen: 'report' };
  let schemas = { ...(isSchema(v.body) ? { body: v.body } : {}), ...(isSchema(v.params) ? { params: v.params } : {}), ...(isSchema(v.query) ? { query: v.query } : {}) };
  let contentTypes = v.contentTypes;
  let bodyRequired = true;
  if (v.openapi) {
    let ops = cache.get(v.openapi.file);
    if (!ops) cache.set(v.openapi.file, ops = loadOpenApiFile(v.openapi.file));
    const op = ops.find((o) => o.id === v.openapi?.operation);
    if (!op) throw new PortcullisError('PCL_ERR_OPENAPI_INVALID', `route ${route.id}: no operation ${v.openapi.operation} in ${v.openapi.file}`);
    schemas = op.schemas as typeof schemas; // the importer's OperationSchemas: body, params, query objects
    if (op.contentTypes.length > 0) contentTypes = op.contentTypes;
    bodyRequired = op.bodyRequired;
  }
  let validator: RequestValidator;
  try {
    validator = RequestValidator.compile(schemas, { strictProperties: v.strictProperties, bodyRequired });
  } catch (err) {
    throw new PortcullisError('PCL_ERR_CONFIG_INVALID', `route ${route.id}: validate: ${(err as Error).message}`, { cause: err });
  }
  return { maxBodyBytes: v.maxBodyBytes, contentTypes, validator, mode: v.mode, screen: v.screen };
}

function isSchema(s: unknown): s is object {
  return typeof s === 'object' && s !== null;
}

export function hasBody(req: IncomingMessage): boolean {
  // HTTP/2 needs neither header for a body: the stream says whether DATA frames follow.
  if (req.httpVersionMajor === 2) return (req as { stream?: { endAfterHeaders?: boolean } }).stream?.endAfterHeaders === false; // Http2ServerRequest
  const cl = req.headers['content-length'];
  return req.headers['transfer-encoding'] !== undefined || (cl !== undefined && cl !== '0');
}

export async function validateRequest(req: IncomingMessage, plan: ValidationPlan, params: Record<string, string>, query: URLSearchParams): Promise<ValidationOutcome> {
  let body: Buffer | undefined;
  let parsed: unknown;
  if (hasBody(req)) {
    body = await readBoundedBody(req, plan.maxBodyBytes, () => new PortcullisError('PCL_ERR_BODY_TOO_LARGE', `request body over ${plan.maxBodyBytes} bytes`));
    if (plan.contentTypes) {
      const type = checkContentType(req.headers['content-type'], plan.contentTypes);
      if (JSON_TYPE.test(type)) parsed = parseSafeJson(decodeUtf8Strict(body));
    }
  }
  const issues = plan.validator ? plan.validator.validate({ params, query, ...(parsed !== undefined ? { body: parsed } : {}) }) : [];
  const findings = plan.screen === 'off' ? [] : screenRequest({ params, query, ...(parsed !== undefined ? { body: parsed } : {}) });
  return { ...(body ? { body } : {}), issues, findings };
}
