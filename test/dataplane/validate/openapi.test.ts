// OpenAPI 3.0/3.1 import: the shop fixture end to end, dialect conversion, and every refusal
// naming the document and the JSON pointer.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { importOpenApi, loadOpenApiFile, type ImportedOperation } from '../../../src/dataplane/validate/openapi.js';
import { RequestValidator } from '../../../src/dataplane/validate/schema.js';
import { PortcullisError } from '../../../src/core/errors.js';
import { fixture } from '../../helpers/paths.js';

const shop = fixture('openapi', 'shop.yaml');
const byId = (ops: ImportedOperation[], id: string): ImportedOperation => {
  const op = ops.find((o) => o.id === id);
  assert.ok(op, id);
  return op;
};
const validatorOf = (op: ImportedOperation) => RequestValidator.compile(op.schemas, { bodyRequired: op.bodyRequired, allowBody: op.contentTypes.length > 0 });

test('shop.yaml: operations, ids, methods, paths, content types, security', () => {
  const ops = loadOpenApiFile(shop);
  assert.deepEqual(ops.map((o) => [o.id, o.method, o.path]), [
    ['listOrders', 'GET', '/orders'],
    ['createOrder', 'POST', '/orders'],
    ['getOrder', 'GET', '/orders/{id}'],
    ['updateOrder', 'PATCH', '/orders/{id}'],
    ['delete-orders-id', 'DELETE', '/orders/{id}'],
    ['uploadReceipt', 'PUT', '/orders/{id}/receipt'],
  ]);
  assert.deepEqual(byId(ops, 'createOrder').contentTypes, ['application/json']);
  assert.equal(byId(ops, 'createOrder').bodyRequired, true, 'required from the referenced requestBody');
  assert.deepEqual(byId(ops, 'updateOrder').contentTypes, ['application/merge-patch+json']);
  assert.deepEqual(byId(ops, 'uploadReceipt').contentTypes, ['application/pdf', 'image/png']);
  assert.equal(byId(ops, 'uploadReceipt').schemas.body, undefined, 'no body schema for non-JSON media types');
  assert.deepEqual(byId(ops, 'listOrders').contentTypes, []);
  assert.deepEqual(byId(ops, 'listOrders').security, ['bearerAuth'], 'document-level security');
  assert.deepEqual(byId(ops, 'getOrder').security, ['bearerAuth', 'mutualTLS']);
  assert.deepEqual(byId(ops, 'delete-orders-id').security, [], 'security: [] overrides');
  const based = loadOpenApiFile(shop, { basePath: true });
  assert.deepEqual(based.map((o) => o.path)[2], '/v1/orders/{id}', 'server variable default substituted');
  assert.equal(based[4]?.id, 'delete-orders-id', 'generated ids do not depend on the base path');
});

test('shop.yaml createOrder: nested items array through $refs, mass assignment and readOnly refused', () => {
  const v = validatorOf(byId(loadOpenApiFile(shop), 'createOrder'));
  const order = { customerId: '3f2c1a6e-8a4b-4c1d-9e2f-0a1b2c3d4e5f', items: [{ sku: 'ABC-1234', quantity: 2, unitPrice: 9.5 }], shipping: { line1: '1 Main St', city: 'Oslo', country: 'NO' }, note: null };
  const check = (body: unknown) => v.validate({ params: {}, query: new URLSearchParams(), body });
  assert.deepEqual(check(order), []);
  const bad: [unknown, string, string][] = [
    [{ ...order, role: 'admin' }, '/role', 'additionalProperties'],
    [{ ...order, id: 'o-1' }, '/id', 'additionalProperties'], // readOnly: the server assigns it
    [{ ...order, createdAt: '2026-01-01T00:00:00Z' }, '/createdAt', 'additionalProperties'], // readOnly via $ref
    [{ ...order, items: [{ sku: 'ABC-1234', quantity: 2, discount: 1 }] }, '/items/0/discount', 'additionalProperties'],
    [{ ...order, items: [{ sku: 'abc', quantity: 2 }] }, '/items/0/sku', 'pattern'],
    [{ ...order, items: [{ sku: 'ABC-1234', quantity: 0 }] }, '/items/0/quantity', 'minimum'],
    [{ ...order, items: [{ sku: 'ABC-1234', quantity: 1, unitPrice: 0 }] }, '/items/0/unitPrice', 'exclusiveMinimum'], // 3.0 boolean form
    [{ ...order, items: [] }, '/items', 'minItems'],
    [{ ...order, customerId: 'not-a-uuid' }, '/customerId', 'format'],
    [{ ...order, shipping: { line1: 'x', city: 'y', country: 'NO', gate: 3 } }, '/shipping/gate', 'additionalProperties'],
    [{ items: order.items }, '/customerId', 'required'],
  ];
  for (const [body, pointer, keyword] of bad) {
    const issues = check(body);
    assert.equal(issues[0]?.pointer, pointer, pointer);
    assert.equal(issues[0]?.keyword, keyword, pointer);
  }
  assert.equal(v.validate({ params: {}, query: new URLSearchParams() })[0]?.keyword, 'required', 'the body is required');
});

test('shop.yaml listOrders and getOrder: query and path parameters', () => {
  const ops = loadOpenApiFile(shop);
  const list = validatorOf(byId(ops, 'listOrders'));
  const query = (s: string) => list.validate({ params: {}, query: new URLSearchParams(s) });
  assert.deepEqual(query('status=paid&limit=20&tag=a&tag=b&cursor=abc'), []);
  assert.deepEqual(query(''), []);
  assert.equal(query('status=lost')[0]?.pointer, '/status');
  assert.equal(query('limit=0')[0]?.pointer, '/limit');
  assert.equal(query('limit=ten')[0]?.keyword, 'type');
  assert.equal(query('sort=price')[0]?.pointer, '/sort', 'unknown query parameter');
  assert.equal(query('X-Request-Id=1')[0]?.pointer, '/X-Request-Id', 'header parameters are not query parameters');
  const get = validatorOf(byId(ops, 'getOrder'));
  assert.deepEqual(get.validate({ params: { id: 'o-1042' }, query: new URLSearchParams() }), []);
  assert.equal(get.validate({ params: { id: '1042' }, query: new URLSearchParams() })[0]?.location, 'path');
  assert.equal(get.validate({ params: { id: 'o-1' }, query: new URLSearchParams(), body: {} })[0]?.location, 'body', 'GET has no body');
});

test('shop.yaml updateOrder: 3.0 nullable becomes a null type', () => {
  const v = validatorOf(byId(loadOpenApiFile(shop), 'updateOrder'));
  const check = (body: unknown) => v.validate({ params: { id: 'o-1' }, query: new URLSearchParams(), body });
  assert.deepEqual(check({ note: null }), []);
  assert.deepEqual(check({ note: 'leave at door' }), []);
  assert.equal(check({ note: 5 })[0]?.keyword, 'type');
});

test('3.1 JSON document: type arrays, numeric exclusiveMinimum, $ref with siblings, recursive components', () => {
  const [op] = loadOpenApiFile(fixture('openapi', 'inventory-3.1.json'), { basePath: true });
  assert.ok(op);
  assert.equal(op.path, '/inventory/stock/{sku}');
  const v = validatorOf(op);
  const check = (body: unknown, query = '') => v.validate({ params: { sku: 'A1' }, query: new URLSearchParams(query), body });
  assert.deepEqual(check({ count: 3, reorderAt: null, location: { aisle: '4', parent: { aisle: '1' } } }, 'dryRun=true'), []);
  assert.equal(check({ reorderAt: 2 })[0]?.keyword, 'required', 'required next to $ref applies');
  assert.equal(check({ count: 1, reorderAt: 0 })[0]?.keyword, 'exclusiveMinimum');
  assert.equal(check({ count: 1, owner: 'x' })[0]?.keyword, 'unevaluatedProperties');
  assert.equal(check({ count: 1, location: { aisle: '4', parent: { aisle: '1', x: 1 } } })[0]?.pointer, '/location/parent/x');
  assert.equal(check({ count: 1 }, 'dryRun=yes')[0]?.pointer, '/dryRun');
});

const openapiError = (fn: () => unknown, pointer: RegExp) =>
  assert.throws(fn, (e: unknown) => e instanceof PortcullisError && e.code === 'PCL_ERR_OPENAPI_INVALID' && pointer.test(e.message), String(pointer));

test('bad fixtures are refused with PCL_ERR_OPENAPI_INVALID naming the file and the pointer', () => {
  const bad = (name: string) => fixture('openapi', 'bad', name);
  openapiError(() => loadOpenApiFile(bad('external-ref.yaml')), /external-ref\.yaml: #\/paths\/~1orders\/post\/requestBody\/content\/application~1json\/schema\/\$ref: external/);
  openapiError(() => loadOpenApiFile(bad('http-ref.yaml')), /http-ref\.yaml: #\/paths\/~1orders\/get\/parameters\/0\/\$ref: external/);
  openapiError(() => loadOpenApiFile(bad('param-cycle.yaml')), /param-cycle\.yaml: #\/components\/parameters\/[AB]\/\$ref: reference cycle/);
  openapiError(() => loadOpenApiFile(bad('swagger2.yaml')), /swagger2\.yaml: #\/openapi: must be a 3\.0\.x or 3\.1\.x/);
  openapiError(() => loadOpenApiFile(bad('undeclared-path-param.yaml')), /#\/paths\/~1orders~1\{id\}\/get: path template parameter \{id\} is not declared/);
  openapiError(() => loadOpenApiFile(bad('duplicate-operation-id.yaml')), /#\/paths\/~1orders\/post\/operationId: operationId is not unique/);
  openapiError(() => loadOpenApiFile(bad('syntax.yaml')), /syntax\.yaml: not valid YAML or JSON: .*line 3, column 1/);
  openapiError(() => loadOpenApiFile(bad('dangling-ref.yaml')), /\/schema\/\$ref: reference target not found/);
  openapiError(() => loadOpenApiFile(bad('schema-does-not-compile.yaml')), /#\/paths\/~1orders\/post: schemas do not compile: .*minimum/);
  openapiError(() => loadOpenApiFile(bad('no-such-file.yaml')), /no-such-file\.yaml: cannot be read \(ENOENT\)/);
});

const doc = (paths: object, extra: object = {}) => ({ openapi: '3.0.3', info: { title: 't', version: '1' }, paths, ...extra });
const get = (op: object = {}) => ({ get: { responses: {}, ...op } });

test('document shape errors name the pointer', () => {
  openapiError(() => importOpenApi(null, 'api.yaml'), /^api\.yaml: #: the document must be an object/);
  openapiError(() => importOpenApi({ openapi: 3.1, paths: {} }, 'api.yaml'), /#\/openapi/);
  openapiError(() => importOpenApi({ openapi: '4.0.0', paths: {} }, 'api.yaml'), /#\/openapi/);
  openapiError(() => importOpenApi({ openapi: '3.0.3' }, 'api.yaml'), /#\/paths: is required/);
  assert.deepEqual(importOpenApi({ openapi: '3.1.0', webhooks: {} }, 'api.yaml'), [], '3.1 allows a document without paths');
  openapiError(() => importOpenApi(doc([]), 'api.yaml'), /#\/paths: must be an object/);
  openapiError(() => importOpenApi(doc({ orders: get() }), 'api.yaml'), /#\/paths\/orders: a path must start with "\/"/);
  openapiError(() => importOpenApi(doc({ '/orders': { get: 'list' } }), 'api.yaml'), /#\/paths\/~1orders\/get: an operation must be an object/);
  openapiError(() => importOpenApi(doc({ '/files/*': get() }), 'api.yaml'), /#\/paths\/~1files~1\*: path is not a Portcullis path pattern/);
  openapiError(() => importOpenApi(doc({ '/o': get({ operationId: 'list orders' }) }), 'api.yaml'), /#\/paths\/~1o\/get\/operationId/);
  openapiError(() => importOpenApi(doc({ '/o': get({ parameters: [{ name: 'id', in: 'path', schema: { type: 'string' } }] }) }), 'api.yaml'), /path parameter "id" is not in the path template/);
});

test('parameter forms Portcullis cannot validate are refused; header and cookie parameters are ignored', () => {
  const withParam = (p: object) => doc({ '/o': get({ parameters: [{ name: 'p', in: 'query', ...p }] }) });
  openapiError(() => importOpenApi(withParam({ content: { 'application/json': { schema: {} } } }), 'a'), /\/parameters\/0\/content/);
  openapiError(() => importOpenApi(withParam({ schema: { type: 'object' } }), 'a'), /object-valued/);
  openapiError(() => importOpenApi(withParam({ schema: { type: 'array', items: { type: 'string' } }, explode: false }), 'a'), /exploded/);
  openapiError(() => importOpenApi(withParam({ style: 'deepObject', schema: { type: 'string' } }), 'a'), /\/parameters\/0\/style/);
  openapiError(() => importOpenApi(withParam({ in: 'body', schema: {} }), 'a'), /\/parameters\/0\/in/);
  openapiError(() => importOpenApi(withParam({}), 'a'), /a parameter needs a schema/);
  const [op] = importOpenApi(doc({ '/o': get({ parameters: [{ name: 'X-Trace', in: 'header', schema: { type: 'string' } }, { name: 'sid', in: 'cookie', schema: { type: 'string' } }] }) }), 'a');
  assert.deepEqual(op?.schemas.query, { type: 'object', properties: {} });
});

test('schema refs must point into #/components/schemas; unknown formats and extensions are dropped', () => {
  const body = (schema: object, components: object = {}) => doc({ '/o': { post: { responses: {}, requestBody: { content: { 'application/json': { schema } } } } } }, { components });
  openapiError(() => importOpenApi(body({ $ref: '#/components/parameters/X' }, { parameters: { X: {} } }), 'a'), /may only refer to "#\/components\/schemas/);
  openapiError(() => importOpenApi(body({ type: 'object', properties: { a: { $ref: 'https://example.com/a.json' } } }), 'a'), /properties\/a\/\$ref: external/);
  const [op] = importOpenApi(body({ type: 'string', format: 'currency', 'x-vendor': 1, example: 'EUR', xml: { name: 'c' } }), 'a');
  assert.deepEqual(op?.schemas.body, { type: 'string' });
  // Two JSON media types with different schemas cannot be one body schema.
  openapiError(() => importOpenApi(doc({ '/o': { post: { responses: {}, requestBody: { content: { 'application/json': { schema: { type: 'string' } }, 'application/vnd.a+json': { schema: { type: 'integer' } } } } } } }), 'a'), /must share one schema/);
});

test('a path item $ref cycle and a request body $ref cycle are refused', () => {
  openapiError(() => importOpenApi(doc({ '/o': { $ref: '#/paths/~1o' } }), 'a'), /reference cycle in path item/);
  openapiError(() => importOpenApi(doc({ '/o': { post: { responses: {}, requestBody: { $ref: '#/components/requestBodies/A' } } } }, { components: { requestBodies: { A: { $ref: '#/components/requestBodies/A' } } } }), 'a'), /reference cycle in request body/);
});

test('generated ids are unique and do not collide with explicit ones', () => {
  const ops = importOpenApi(doc({ '/a-b': get(), '/a/b': get(), '/x': get({ operationId: 'get-a-b-2' }) }), 'a');
  assert.deepEqual(ops.map((o) => o.id), ['get-a-b', 'get-a-b-3', 'get-a-b-2']);
});
