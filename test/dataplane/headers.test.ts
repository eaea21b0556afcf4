import { test } from 'node:test';
import assert from 'node:assert/strict';
import { forwardableRequestHeaders, forwardableResponseHeaders, hasDuplicateHeader } from '../../src/dataplane/headers.js';

test('spoofable identity, forwarding and method-override headers never cross', () => {
  const out = forwardableRequestHeaders({
    'x-portcullis-principal': 'forged', 'x-portcullis-peer': 'spiffe://demo/forged', 'x-forwarded-for': '10.0.0.1',
    forwarded: 'for=10.0.0.1', 'x-real-ip': '10.0.0.1', 'x-original-url': '/admin', 'x-http-method-override': 'DELETE',
    'x-request-id': 'mine', host: 'evil', connection: 'keep-alive, x-secret', 'x-secret': 'hop', 'transfer-encoding': 'chunked',
    authorization: 'Bearer t', accept: 'application/json', 'content-type': 'application/json',
  }, ['authorization']);
  assert.deepEqual(out, { accept: 'application/json', 'content-type': 'application/json' });
});

test('headers trusted from this caller are kept', () => {
  const out = forwardableRequestHeaders({ 'x-portcullis-principal': 'p', 'x-forwarded-for': '1.2.3.4' }, [], ['x-portcullis-principal']);
  assert.deepEqual(out, { 'x-portcullis-principal': 'p' });
});

test('response hop-by-hop headers are removed', () => {
  assert.deepEqual(forwardableResponseHeaders({ connection: 'close, x-h', 'x-h': '1', 'keep-alive': 'timeout=5', 'content-type': 'text/plain' }), { 'content-type': 'text/plain' });
});

test('duplicate Authorization headers are detected from the raw list', () => {
  assert.equal(hasDuplicateHeader(['Authorization', 'Bearer a', 'authorization', 'Bearer b'], 'authorization'), true);
  assert.equal(hasDuplicateHeader(['Authorization', 'Bearer a', 'Accept', '*/*'], 'authorization'), false);
});
