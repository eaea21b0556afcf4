// The schema is documentation too: editors complete from its descriptions and defaults. These tests
// keep it complete and in agreement with the code that applies it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { configSchema, schemaDefinition, type SchemaNode } from '../../src/core/config/schema.js';
import { DEFAULTS } from '../../src/core/config/defaults.js';
import { parseConfig } from '../../src/core/config/load.js';
import { compilePathPattern, HTTP_METHODS } from '../../src/core/path-pattern.js';
import { repoRoot } from '../helpers/paths.js';

/** Every schema object reachable from the root, with a readable location. */
function walk(node: SchemaNode, where: string, visit: (node: SchemaNode, where: string) => void): void {
  visit(node, where);
  for (const [key, child] of Object.entries(node.properties ?? {})) walk(child, `${where}.properties.${key}`, visit);
  for (const [key, child] of Object.entries(node.$defs ?? {})) walk(child, `${where}.$defs.${key}`, visit);
  if (node.items) walk(node.items, `${where}.items`, visit);
}

test('the schema file is draft 2020-12 JSON', () => {
  // Our own file; the shape is checked by the assertions that follow.
  const raw = JSON.parse(readFileSync(join(repoRoot, 'schema', 'portcullis.schema.json'), 'utf8')) as { $schema?: string };
  assert.equal(raw.$schema, 'https://json-schema.org/draft/2020-12/schema');
});

test('every property has a description, every object refuses unknown keys', () => {
  walk(configSchema(), '#', (node, where) => {
    for (const [key, child] of Object.entries(node.properties ?? {})) {
      assert.ok(typeof child.description === 'string' && child.description.length > 10, `${where}.properties.${key} needs a description`);
    }
    if (node.type === 'object' || node.properties) assert.equal(node.additionalProperties, false, `${where} must set additionalProperties: false`);
  });
});

test('every format definition has a title (used in error messages)', () => {
  for (const [name, def] of Object.entries(configSchema().$defs ?? {})) {
    if (def.pattern !== undefined || def.enum !== undefined) assert.ok(def.title, `$defs.${name} needs a title`);
  }
});

test('the schema defaults are the defaults the loader applies', () => {
  const p = configSchema().properties ?? {};
  const route = schemaDefinition('route').properties ?? {};
  const c = parseConfig('trustDomain: demo\nservices:\n  - { name: a, spiffeId: "spiffe://demo/a", upstream: "http://127.0.0.1:1", sidecar: { listen: "127.0.0.1:2", outbound: "127.0.0.1:3" } }\nroutes:\n  - { id: r, method: GET, path: /, service: a }\n', 'p.yaml');
  const pairs: [unknown, unknown][] = [
    [p.control?.properties?.listen?.default, DEFAULTS.controlListen],
    [p.control?.properties?.listen?.default, c.control.listen],
    [p.control?.properties?.url?.default, c.control.url],
    [p.control?.properties?.dataDir?.default, DEFAULTS.dataDir],
    [p.gateway?.properties?.listen?.default, c.gateway.listen],
    [p.gateway?.properties?.serverNames?.default, c.gateway.serverNames],
    [p.gateway?.properties?.upstreamTimeout?.default, c.gateway.upstreamTimeout],
    [p.tokens?.properties?.accessTokenTtl?.default, c.tokens.accessTokenTtl],
    [p.tokens?.properties?.clockSkew?.default, c.tokens.clockSkew],
    [p.routes?.default, []],
    [p.calls?.default, c.calls],
    [route.auth?.default, c.routes[0]?.auth],
    [route.roles?.default, c.routes[0]?.roles],
  ];
  for (const [fromSchema, applied] of pairs) assert.deepEqual(fromSchema, applied);
  assert.equal(c.control.dataDir, join(process.cwd(), DEFAULTS.dataDir));
});

test('the method enum is HTTP_METHODS', () => {
  assert.deepEqual(schemaDefinition('method').enum, [...HTTP_METHODS]);
});

test('the operation pattern is "METHOD " followed by the path pattern', () => {
  const path = schemaDefinition('pathPattern').pattern ?? '';
  assert.equal(schemaDefinition('operation').pattern, `^(?:${HTTP_METHODS.join('|')}) ${path.slice(1)}`);
});

test('the schema\'s path pattern and compilePathPattern accept the same patterns', () => {
  const regex = new RegExp(schemaDefinition('pathPattern').pattern ?? '', 'u');
  const compiles = (p: string): boolean => {
    try {
      compilePathPattern(p);
      return true;
    } catch {
      return false;
    }
  };
  const samples = ['/', '/a', '/a/b', '/a/{id}', '/{a}/{b_1}', '/a.b/~c/d-e/f_g/h:i/@j/k=l;m,n+o!p$q&r\'s(t)', '/.well-known/x', '/...',
    '', 'a', '/a/', '//a', '/a//b', '/a/*', '/a/%20', '/a/{', '/a/{}', '/a/{1}', '/a/x{y}', '/a/.', '/a/..', '/./a', '/a b', '/a?b', '/a#b', '/é',
    '/a/{id}/{id}'];
  for (const sample of samples) {
    // Repeated parameter names are the one thing a regex cannot see; the reference checks report them.
    const expected = sample === '/a/{id}/{id}' ? false : regex.test(sample);
    assert.equal(compiles(sample), expected, sample);
  }
});

test('format patterns accept and refuse what their titles promise', () => {
  const accepts = (def: string, value: string): boolean => new RegExp(schemaDefinition(def).pattern ?? '', 'u').test(value);
  for (const ok of ['127.0.0.1:8443', 'localhost:1', '[::1]:65535', 'api.example.org:443', '0.0.0.0:8080']) assert.ok(accepts('hostPort', ok), ok);
  for (const bad of ['127.0.0.1', ':8443', '127.0.0.1:0', '127.0.0.1:65536', 'host:80x', '-a:1', 'a b:1', 'http://a:1']) assert.ok(!accepts('hostPort', bad), bad);
  for (const ok of ['spiffe://demo/a', 'spiffe://example.org/ns/x/sa/y', 'spiffe://a_b-c.d/e.f_g-h']) assert.ok(accepts('spiffeId', ok), ok);
  for (const bad of ['spiffe://demo', 'spiffe://demo/', 'spiffe://Demo/a', 'spiffe://demo/a/', 'spiffe://demo//a', 'spiffe://demo/./a', 'spiffe://demo/a/..', 'spiffe://demo/a%20b', 'spiffe://demo:80/a', 'https://demo/a', 'spiffe://user@demo/a']) {
    assert.ok(!accepts('spiffeId', bad), bad);
  }
  for (const ok of ['demo', 'example.org', 'a_b-c.d']) assert.ok(accepts('trustDomain', ok), ok);
  for (const bad of ['Demo', 'a b', 'a/b', 'a:1', '']) assert.ok(!accepts('trustDomain', bad), bad);
  for (const ok of ['http://127.0.0.1:9101', 'http://localhost', 'http://[::1]:80']) assert.ok(accepts('upstreamUrl', ok), ok);
  for (const bad of ['https://127.0.0.1:9101', 'http://127.0.0.1:9101/', 'http://127.0.0.1:9101/api', 'http://u:p@127.0.0.1:1', '127.0.0.1:1']) assert.ok(!accepts('upstreamUrl', bad), bad);
  for (const ok of ['https://127.0.0.1:8444', 'https://auth.example.org/realms/x']) assert.ok(accepts('httpsUrl', ok), ok);
  for (const bad of ['http://127.0.0.1:8444', 'https://', 'https://a b']) assert.ok(!accepts('httpsUrl', bad), bad);
});
