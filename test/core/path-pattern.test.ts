import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compilePathPattern, HTTP_METHODS, parseOperation, type PathPattern } from '../../src/core/path-pattern.js';
import { PortcullisError } from '../../src/core/errors.js';

/** match() returns null-prototype records; spread them for deepEqual against literals. */
const m = (p: PathPattern, path: string): Record<string, string> | null => {
  const r = p.match(path);
  return r === null ? null : { ...r };
};

const code = (fn: () => unknown): string | undefined => {
  try {
    fn();
  } catch (err) {
    return err instanceof PortcullisError ? err.code : 'not a PortcullisError';
  }
  return undefined;
};

test('literal segments match exactly', () => {
  const p = compilePathPattern('/shop/orders');
  assert.deepEqual(m(p, '/shop/orders'), {});
  assert.equal(p.match('/shop/order'), null);
  assert.equal(p.match('/shop/ordersx'), null);
  assert.equal(p.match('/shop/Orders'), null, 'case-sensitive: case rules belong to the normalizer');
  assert.equal(p.match('/shop'), null);
  assert.equal(p.match('shop/orders'), null, 'a path without its leading slash never matches');
  assert.equal(p.match(''), null);
});

test('{name} matches exactly one non-empty segment', () => {
  const p = compilePathPattern('/shop/orders/{id}');
  assert.deepEqual(p.params, ['id']);
  assert.deepEqual(m(p, '/shop/orders/42'), { id: '42' });
  assert.equal(p.match('/shop/orders/'), null, 'empty segment');
  assert.equal(p.match('/shop/orders'), null, 'missing segment');
  assert.equal(p.match('/shop/orders/42/refund'), null, 'extra segment');
  assert.equal(p.match('/shop/orders/4/2'), null, 'a parameter never spans a slash');
});

test('several parameters come back by name', () => {
  const p = compilePathPattern('/a/{x}/b/{y_2}');
  assert.deepEqual(m(p, '/a/1/b/two'), { x: '1', y_2: 'two' });
  assert.equal(p.match('/a/1/c/two'), null);
});

test('trailing slash, empty segments and extra segments do not match', () => {
  const p = compilePathPattern('/users/{id}/friends');
  assert.equal(p.match('/users/7/friends/'), null);
  assert.equal(p.match('//users/7/friends'), null);
  assert.equal(p.match('/users//friends'), null);
  assert.equal(p.match('/users/7/friends/extra'), null);
  assert.equal(p.match('/users/7/friends//'), null);
});

test('the root pattern matches only "/"', () => {
  const p = compilePathPattern('/');
  assert.deepEqual(m(p, '/'), {});
  assert.equal(p.match('//'), null);
  assert.equal(p.match('/a'), null);
  assert.equal(p.match(''), null);
});

test('percent signs are compared as given, never decoded (decoding is the normalizer\'s job)', () => {
  const p = compilePathPattern('/files/{name}');
  assert.deepEqual(m(p, '/files/100%'), { name: '100%' });
  assert.deepEqual(m(p, '/files/a%2Fb'), { name: 'a%2Fb' }, 'an encoded slash stays inside one segment');
  assert.equal(compilePathPattern('/files/a').match('/files/%61'), null, '%61 is not "a" to the matcher');
  assert.equal(code(() => compilePathPattern('/files/100%')), 'PCL_ERR_INVALID_ARGUMENT', 'no % in a pattern: it could never match a decoded path');
});

test('dot segments never become parameters', () => {
  const p = compilePathPattern('/files/{name}');
  assert.equal(p.match('/files/..'), null);
  assert.equal(p.match('/files/.'), null);
  assert.deepEqual(m(p, '/files/...'), { name: '...' });
  assert.deepEqual(m(p, '/files/.env'), { name: '.env' });
});

test('pattern text is never interpreted as a regular expression', () => {
  const p = compilePathPattern('/a.b/c+d/(e)/$f');
  assert.deepEqual(m(p, '/a.b/c+d/(e)/$f'), {});
  assert.equal(p.match('/aXb/c+d/(e)/$f'), null, '"." is a literal dot');
  assert.equal(p.match('/a.b/ccd/(e)/$f'), null, '"+" is a literal plus');
});

test('parameter names that are Object.prototype keys stay plain own keys', () => {
  const p = compilePathPattern('/x/{__proto__}/{constructor}');
  const r = p.match('/x/a/b');
  assert.ok(r);
  assert.equal(Object.getPrototypeOf(r), null);
  assert.deepEqual(Object.entries(r), [['__proto__', 'a'], ['constructor', 'b']]);
  // Indexing a fresh object: proves Object.prototype gained nothing.
  assert.equal(({} as Record<string, unknown>).polluted, undefined);
});

test('shape erases parameter names', () => {
  assert.equal(compilePathPattern('/users/{id}/x').shape, '/users/{}/x');
  assert.equal(compilePathPattern('/users/{name}/x').shape, compilePathPattern('/users/{id}/x').shape);
  assert.equal(compilePathPattern('/').shape, '/');
});

test('malformed patterns are refused with PCL_ERR_INVALID_ARGUMENT', () => {
  for (const bad of ['', 'users', '/users/', '//users', '/a//b', '/a/*', '/a/**', '/a/{', '/a/{}', '/a/{1x}', '/a/x{id}', '/a/{id}x',
    '/a/{id}/{id}', '/a/..', '/a/./b', '/a b', '/a?x=1', '/a#b', '/' + 'a'.repeat(1024)]) {
    assert.equal(code(() => compilePathPattern(bad)), 'PCL_ERR_INVALID_ARGUMENT', bad);
  }
});

test('match() rejects non-strings without throwing', () => {
  const p = compilePathPattern('/a');
  // Deliberately wrong input from untyped callers.
  assert.equal(p.match(undefined as unknown as string), null);
});

test('parseOperation splits "METHOD /pattern"', () => {
  assert.deepEqual(parseOperation('POST /payments/charge'), { method: 'POST', pattern: '/payments/charge' });
  assert.deepEqual(parseOperation('GET /internal/users/{id}'), { method: 'GET', pattern: '/internal/users/{id}' });
  for (const method of HTTP_METHODS) assert.equal(parseOperation(`${method} /`).method, method);
  for (const bad of ['/payments/charge', 'post /payments', 'POST  /payments', 'POST', 'POST ', 'FETCH /x', 'POST /a/*', 'POST /a b', ' POST /a', 'POST\t/a']) {
    assert.equal(code(() => parseOperation(bad)), 'PCL_ERR_INVALID_ARGUMENT', bad);
  }
});

test('matching a miss does not depend on path length (linear scan, stops at the first difference)', () => {
  const p = compilePathPattern('/a/{id}/b');
  const long = '/x' + '/y'.repeat(100_000);
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < 1000; i++) p.match(long);
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  assert.ok(ms < 500, `1000 misses on a long path took ${ms} ms`);
});
