import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Router } from '../../src/dataplane/router.js';
import type { RouteConfig } from '../../src/core/config/types.js';

const route = (id: string, method: RouteConfig['method'], path: string): RouteConfig => ({ id, method, path, service: 's', auth: ['jwt'], roles: [] });

test('a literal segment beats a parameter whatever the order in the file', () => {
  const r = new Router([route('byId', 'GET', '/a/{id}'), route('mine', 'GET', '/a/mine'), route('deep', 'GET', '/a/{id}/x')]);
  assert.equal(r.match('GET', '/a/mine')?.route.id, 'mine');
  assert.equal(r.match('GET', '/a/42')?.route.id, 'byId');
  assert.deepEqual({ ...r.match('GET', '/a/42')?.params }, { id: '42' });
  assert.equal(r.match('GET', '/a/42/x')?.route.id, 'deep');
});

test('method and path must both match; nothing else is routed', () => {
  const r = new Router([route('get', 'GET', '/a/{id}')]);
  assert.equal(r.match('POST', '/a/1'), undefined);
  assert.equal(r.match('GET', '/a'), undefined);
  assert.equal(r.match('GET', '/a/1/'), undefined);
  assert.equal(r.match('GET', '/b/1'), undefined);
});
