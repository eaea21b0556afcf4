// Request validation: mass assignment refused by default, composition kept working, canonical
// coercion of path and query strings, and issues that name where, never what.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RequestValidator, validationError, type OperationSchemas, type ValidatorOptions } from '../../../src/dataplane/validate/schema.js';
import { PortcullisError } from '../../../src/core/errors.js';

const q = (s = '') => new URLSearchParams(s);
function bodyIssues(body: object, input: unknown, opts?: ValidatorOptions) {
  return RequestValidator.compile({ body, query: { type: 'object' } }, opts).validate({ params: {}, query: q(), body: input });
}

test('mass assignment: a property the schema does not declare is refused', () => {
  const v = RequestValidator.compile({ body: { type: 'object', required: ['name'], properties: { name: { type: 'string' } } } });
  assert.deepEqual(v.validate({ params: {}, query: q(), body: { name: 'x' } }), []);
  const issues = v.validate({ params: {}, query: q(), body: { name: 'x', role: 'admin' } });
  assert.deepEqual(issues, [{ location: 'body', pointer: '/role', keyword: 'additionalProperties', message: 'must NOT have additional properties' }]);
  assert.equal(v.hasBodySchema, true);
});

test('strictProperties: false leaves open schemas open; explicit additionalProperties is respected', () => {
  const schema = { type: 'object', properties: { name: { type: 'string' } } };
  assert.deepEqual(bodyIssues(schema, { name: 'x', role: 'admin' }, { strictProperties: false }), []);
  assert.deepEqual(bodyIssues({ ...schema, additionalProperties: true }, { name: 'x', role: 'admin' }), []);
  assert.deepEqual(bodyIssues({ ...schema, additionalProperties: { type: 'integer' } }, { name: 'x', n: 1 }), []);
  assert.equal(bodyIssues({ ...schema, additionalProperties: { type: 'integer' } }, { name: 'x', n: 'y' })[0]?.keyword, 'type');
});

test('nested objects, array items and $refs into $defs, definitions and components are closed too', () => {
  const schema = {
    type: 'object',
    properties: {
      address: { type: 'object', properties: { city: { type: 'string' } } },
      items: { type: 'array', items: { $ref: '#/$defs/Item' } },
      tuple: { type: 'array', prefixItems: [{ type: 'object', properties: { a: { type: 'integer' } } }] },
      legacy: { $ref: '#/definitions/Legacy' },
      shared: { $ref: '#/components/schemas/Shared' },
      tree: { $ref: '#/$defs/Node' },
    },
    $defs: {
      Item: { type: 'object', required: ['sku'], properties: { sku: { type: 'string' } } },
      Node: { type: 'object', properties: { kids: { type: 'array', items: { $ref: '#/$defs/Node' } } } },
    },
    definitions: { Legacy: { properties: { old: { type: 'boolean' } } } },
    components: { schemas: { Shared: { type: 'object', properties: { s: { type: 'string' } } } } },
  };
  const good = { address: { city: 'Oslo' }, items: [{ sku: 'A' }], tuple: [{ a: 1 }], legacy: { old: true }, shared: { s: 'x' }, tree: { kids: [{ kids: [] }] } };
  assert.deepEqual(bodyIssues(schema, good), []);
  const cases: [object, string][] = [
    [{ address: { city: 'Oslo', admin: true } }, '/address/admin'],
    [{ items: [{ sku: 'A' }, { sku: 'B', price: 0 }] }, '/items/1/price'],
    [{ tuple: [{ a: 1, b: 2 }] }, '/tuple/0/b'],
    [{ legacy: { old: true, extra: 1 } }, '/legacy/extra'],
    [{ shared: { s: 'x', t: 'y' } }, '/shared/t'],
    [{ tree: { kids: [{ kids: [{ owner: 'me' }] }] } }, '/tree/kids/0/kids/0/owner'],
  ];
  for (const [body, pointer] of cases) assert.equal(bodyIssues(schema, body)[0]?.pointer, pointer, pointer);
});

test('allOf composition keeps working: the parent is closed with unevaluatedProperties, branches stay open', () => {
  const schema = {
    type: 'object',
    properties: {
      pet: { allOf: [{ $ref: '#/$defs/Base' }, { type: 'object', properties: { extra: { type: 'integer' } } }] },
      base: { $ref: '#/$defs/Base' },
    },
    $defs: { Base: { type: 'object', required: ['name'], properties: { name: { type: 'string' } } } },
  };
  assert.deepEqual(bodyIssues(schema, { pet: { name: 'rex', extra: 1 } }), [], 'properties of both branches are accepted');
  assert.deepEqual(bodyIssues(schema, { pet: { name: 'rex', extra: 1, owner: 'x' } }).map((i) => [i.pointer, i.keyword]), [['/pet/owner', 'unevaluatedProperties']]);
  // The same definition used alone is still closed.
  assert.equal(bodyIssues(schema, { base: { name: 'rex', extra: 1 } })[0]?.pointer, '/base/extra');
  // $ref next to properties (2020-12 composition) behaves the same way.
  const withRef = { $ref: '#/$defs/Base', properties: { age: { type: 'integer' } }, $defs: schema.$defs };
  assert.deepEqual(bodyIssues(withRef, { name: 'a', age: 3 }), []);
  assert.equal(bodyIssues(withRef, { name: 'a', age: 3, role: 'admin' })[0]?.keyword, 'unevaluatedProperties');
});

test('anyOf/oneOf: each alternative is closed by the parent; properties of no valid branch are refused', () => {
  const schema = {
    type: 'object',
    properties: {
      pay: {
        oneOf: [
          { type: 'object', required: ['card'], properties: { card: { type: 'string' } } },
          { type: 'object', required: ['iban'], properties: { iban: { type: 'string' } } },
        ],
      },
    },
  };
  assert.deepEqual(bodyIssues(schema, { pay: { card: '4111' } }), []);
  assert.deepEqual(bodyIssues(schema, { pay: { iban: 'NO93' } }), []);
  assert.equal(bodyIssues(schema, { pay: { card: '4111', admin: true } }).length, 1);
  assert.equal(bodyIssues({ anyOf: [{ type: 'string' }, { type: 'object', properties: { a: { type: 'integer' } } }] }, { a: 1, b: 2 }).length, 1);
});

test('path parameters are coerced from strings in canonical form only', () => {
  const v = RequestValidator.compile({ params: { type: 'object', properties: { id: { type: 'integer', minimum: 1 } }, required: ['id'] } });
  assert.deepEqual(v.validate({ params: { id: '42' }, query: q() }), []);
  for (const id of ['0x10', ' 1', '1e1', '1.0', '+1', '', '9007199254740993', '0']) {
    const issues = v.validate({ params: { id }, query: q() });
    assert.equal(issues.length, 1, JSON.stringify(id));
    assert.equal(issues[0]?.location, 'path');
    assert.equal(issues[0]?.pointer, '/id');
  }
});

test('query: coercion, repeated parameters, arrays, unknown parameters refused', () => {
  const v = RequestValidator.compile({
    query: {
      type: 'object',
      properties: {
        limit: { type: 'integer', maximum: 100 },
        price: { type: 'number' },
        dry: { type: 'boolean' },
        tag: { type: 'array', items: { type: 'string', pattern: '^[a-z]+$' }, maxItems: 3 },
        ids: { type: 'array', items: { type: 'integer' } },
        status: { enum: ['open', 'closed'] },
        size: { $ref: '#/$defs/Size' },
      },
      $defs: { Size: { type: 'integer', enum: [1, 2, 3] } },
    },
  });
  const ok = (s: string) => assert.deepEqual(v.validate({ params: {}, query: q(s) }), [], s);
  const bad = (s: string, pointer: string) => assert.equal(v.validate({ params: {}, query: q(s) })[0]?.pointer, pointer, s);
  ok('limit=10&price=1.5e2&dry=true&tag=a&tag=b&ids=1&ids=2&status=open&size=2');
  ok('tag=a'); // one value for an array parameter
  ok('');
  bad('limit=101', '/limit');
  bad('limit=10&limit=20', '/limit'); // parameter pollution: no "last one wins"
  bad('dry=1', '/dry');
  bad('price=Infinity', '/price');
  bad('ids=1&ids=x', '/ids/1');
  bad('tag=a&tag=b&tag=c&tag=d', '/tag');
  bad('size=4', '/size');
  bad('debug=1', '/debug');
  bad('__proto__=1', '/__proto__');
});

test('with strictProperties and no query schema, any query parameter is refused', () => {
  const v = RequestValidator.compile({ body: { type: 'object' } });
  assert.deepEqual(v.validate({ params: {}, query: q(), body: {} }), []);
  assert.deepEqual(v.validate({ params: {}, query: q('a=1'), body: {} }).map((i) => [i.location, i.pointer]), [['query', '/a']]);
  assert.deepEqual(RequestValidator.compile({ body: { type: 'object' } }, { strictProperties: false }).validate({ params: {}, query: q('a=1'), body: {} }), []);
});

test('bodies: refused without a schema unless allowBody; required with a schema unless bodyRequired: false', () => {
  const none = RequestValidator.compile({});
  assert.equal(none.hasBodySchema, false);
  assert.equal(none.validate({ params: {}, query: q(), body: { a: 1 } })[0]?.location, 'body');
  assert.deepEqual(none.validate({ params: {}, query: q() }), []);
  assert.deepEqual(RequestValidator.compile({}, { allowBody: true }).validate({ params: {}, query: q(), body: { a: 1 } }), []);
  const withBody = RequestValidator.compile({ body: { type: 'object' } });
  assert.equal(withBody.validate({ params: {}, query: q() })[0]?.keyword, 'required');
  assert.deepEqual(RequestValidator.compile({ body: { type: 'object' } }, { bodyRequired: false }).validate({ params: {}, query: q() }), []);
});

test('formats are checked (ajv-formats), types are exact in bodies', () => {
  const schema = { type: 'object', properties: { id: { type: 'string', format: 'uuid' }, at: { type: 'string', format: 'date-time' }, mail: { type: 'string', format: 'email' }, n: { type: 'integer' } } };
  assert.deepEqual(bodyIssues(schema, { id: '3f2c1a6e-8a4b-4c1d-9e2f-0a1b2c3d4e5f', at: '2026-01-02T03:04:05Z', mail: 'a@example.com', n: 1 }), []);
  for (const body of [{ id: 'nope' }, { at: 'yesterday' }, { mail: 'not-an-email' }, { n: '1' }]) assert.equal(bodyIssues(schema, body).length, 1, JSON.stringify(body));
});

test('issues never contain the value; at most 10 are reported', () => {
  const v = RequestValidator.compile({ body: { type: 'object', properties: { card: { type: 'string', maxLength: 4 } } } });
  const issues = v.validate({ params: {}, query: q(), body: { card: '4111111111111111' } });
  assert.equal(issues.length, 1);
  assert.doesNotMatch(JSON.stringify(issues), /4111/);
  const err = validationError(issues);
  assert.equal(err.code, 'PCL_ERR_VALIDATION');
  assert.doesNotMatch(err.message, /4111/);
  const many = RequestValidator.compile({ body: { type: 'object' } }).validate({ params: {}, query: q(Array.from({ length: 30 }, (_, i) => `p${i}=1`).join('&')), body: {} });
  assert.equal(many.length, 10);
});

test('schemas that do not compile are refused with PCL_ERR_INVALID_ARGUMENT', () => {
  const bad: OperationSchemas[] = [
    { body: { type: 'object', properties: { a: { type: 'strin' } } } },
    { body: { type: 'object', requried: ['a'] } }, // a typo must not switch a check off
    { body: { type: 'string', format: 'no-such-format' } },
    { body: { $ref: '#/$defs/Missing' } },
    { body: { $ref: 'https://example.com/schema.json' } },
    { query: { type: 'object', properties: { a: { $id: 'https://x/y', type: 'string' } } } },
    { params: 'nope' as unknown as object },
  ];
  for (const s of bad) {
    assert.throws(() => RequestValidator.compile(s), (e: unknown) => e instanceof PortcullisError && e.code === 'PCL_ERR_INVALID_ARGUMENT', JSON.stringify(s));
  }
});

test('a draft-07 $schema and a root $id are accepted, and two routes may share one schema', () => {
  const schema = { $schema: 'http://json-schema.org/draft-07/schema#', $id: 'https://shop.example/order.json', type: 'object', properties: { a: { type: 'integer' } } };
  const one = RequestValidator.compile({ body: schema });
  const two = RequestValidator.compile({ body: schema });
  for (const v of [one, two]) {
    assert.deepEqual(v.validate({ params: {}, query: q(), body: { a: 1 } }), []);
    assert.equal(v.validate({ params: {}, query: q(), body: { a: 1, b: 2 } }).length, 1);
  }
});
