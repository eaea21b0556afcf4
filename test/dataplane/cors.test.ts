import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compileCorsPolicy, handleCors, normalizeOrigin, type CorsPolicy } from '../../src/dataplane/cors.js';
import { PortcullisError } from '../../src/core/errors.js';

const policy: CorsPolicy = { origins: ['https://shop.example', 'HTTPS://Admin.Example:443', 'http://localhost:3000'], methods: ['GET', 'POST', 'DELETE'], credentials: true, maxAgeSec: 300 };
const corsRefused = (e: unknown): boolean => e instanceof PortcullisError && e.code === 'PCL_ERR_CORS';
const preflight = (origin: string, method = 'POST', headers?: string): Record<string, string> => ({
  origin, host: 'api.example', 'access-control-request-method': method, ...(headers !== undefined ? { 'access-control-request-headers': headers } : {}),
});

test('origins are normalized: scheme and host lower-case, default port elided; anything else is not an origin', () => {
  assert.equal(normalizeOrigin('HTTPS://Shop.Example:443'), 'https://shop.example');
  assert.equal(normalizeOrigin('http://shop.example:80'), 'http://shop.example');
  assert.equal(normalizeOrigin('https://shop.example:8443'), 'https://shop.example:8443');
  for (const o of ['null', '*', 'https://shop.example/', 'https://shop.example/x', 'https://u@shop.example', 'ftp://shop.example', 'https://shop.example?x', 'shop.example', 'https://shop example', '']) {
    assert.equal(normalizeOrigin(o), undefined, o);
  }
});

test('an allowed origin\'s preflight is answered with the policy, not forwarded', () => {
  const r = handleCors('OPTIONS', preflight('https://shop.example', 'POST', 'Authorization, content-type'), policy);
  assert.equal(r.preflight, true);
  assert.deepEqual(r.responseHeaders, {
    vary: 'Origin, Access-Control-Request-Method, Access-Control-Request-Headers',
    'access-control-allow-origin': 'https://shop.example',
    'access-control-allow-methods': 'GET, POST, DELETE',
    'access-control-allow-headers': 'authorization, content-type',
    'access-control-allow-credentials': 'true',
    'access-control-max-age': '300',
  });
  assert.equal(handleCors('OPTIONS', preflight('https://admin.example'), policy).responseHeaders['access-control-allow-origin'], 'https://admin.example', 'configured with case and default port');
});

test('preflights from other origins, for other methods or headers, are refused', () => {
  for (const h of [
    preflight('https://evil.example'), preflight('null'), preflight('https://shop.example.evil.example'), preflight('https://shop.example:444'),
    preflight('http://shop.example'), preflight('https://shop.example, https://evil.example'),
    preflight('https://shop.example', 'PUT'), preflight('https://shop.example', 'post'), preflight('https://shop.example', 'GET', 'x-portcullis-principal'),
  ]) assert.throws(() => handleCors('OPTIONS', h, policy), corsRefused, JSON.stringify(h));
  assert.throws(() => handleCors('OPTIONS', preflight('https://shop.example'), undefined), corsRefused, 'no policy: no origin');
});

test('actual requests: an allowed origin gets CORS headers; Vary: Origin always', () => {
  assert.deepEqual(handleCors('DELETE', { origin: 'https://shop.example' }, policy).responseHeaders, { vary: 'Origin', 'access-control-allow-origin': 'https://shop.example', 'access-control-allow-credentials': 'true' });
  assert.deepEqual(handleCors('GET', {}, policy), { preflight: false, responseHeaders: { vary: 'Origin' } });
  assert.deepEqual(handleCors('POST', {}, undefined), { preflight: false, responseHeaders: { vary: 'Origin' } }, 'no Origin: not a cross-origin browser request');
  const noCreds = handleCors('GET', { origin: 'https://shop.example' }, { origins: ['https://shop.example'] });
  assert.equal(noCreds.responseHeaders['access-control-allow-credentials'], undefined);
});

test('actual requests from other origins: reads pass without CORS headers, state changes are refused', () => {
  for (const origin of ['https://evil.example', 'null']) {
    assert.deepEqual(handleCors('GET', { origin, host: 'api.example' }, policy).responseHeaders, { vary: 'Origin' });
    assert.deepEqual(handleCors('HEAD', { origin, host: 'api.example' }, policy).responseHeaders, { vary: 'Origin' });
    for (const m of ['POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']) assert.throws(() => handleCors(m, { origin, host: 'api.example' }, policy), corsRefused, `${m} ${origin}`);
  }
  assert.throws(() => handleCors('POST', { origin: 'https://evil.example', host: 'api.example' }, undefined), corsRefused);
});

test('the gateway\'s own origin (https + Host) may change state without being listed', () => {
  assert.deepEqual(handleCors('POST', { origin: 'https://api.example', host: 'API.example:443' }, undefined).responseHeaders, { vary: 'Origin' });
  assert.deepEqual(handleCors('POST', { origin: 'https://api.example:8443', host: 'api.example:8443' }, policy).responseHeaders, { vary: 'Origin' });
  assert.throws(() => handleCors('POST', { origin: 'http://api.example', host: 'api.example' }, undefined), corsRefused, 'plain http is another origin');
});

test('a policy with a wildcard, null or a path is a configuration error', () => {
  const invalidArg = (e: unknown): boolean => e instanceof PortcullisError && e.code === 'PCL_ERR_INVALID_ARGUMENT';
  for (const origins of [['*'], ['null'], ['https://shop.example/app'], ['https://*.shop.example']]) {
    assert.throws(() => compileCorsPolicy({ origins }), invalidArg, origins[0]);
  }
  assert.throws(() => compileCorsPolicy({ origins: [], methods: ['GET POST'] }), invalidArg);
  assert.throws(() => compileCorsPolicy({ origins: [], maxAgeSec: -1 }), invalidArg);
  assert.deepEqual(compileCorsPolicy({ origins: [] }).methods, ['GET', 'HEAD', 'POST']);
});
