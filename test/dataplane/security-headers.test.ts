import { test } from 'node:test';
import assert from 'node:assert/strict';
import { applyResponseSecurity, HSTS_VALUE, securityHeaders } from '../../src/dataplane/security-headers.js';

test('Portcullis\'s own responses carry the full set', () => {
  assert.deepEqual(securityHeaders(), {
    'strict-transport-security': 'max-age=31536000; includeSubDomains',
    'x-content-type-options': 'nosniff',
    'referrer-policy': 'no-referrer',
    'x-frame-options': 'DENY',
    'content-security-policy': "default-src 'none'; frame-ancestors 'none'",
  });
  assert.equal(securityHeaders({ hsts: false })['strict-transport-security'], undefined);
});

test('proxied responses: fingerprints removed, HSTS and nosniff enforced, the rest added when absent', () => {
  const out = applyResponseSecurity({
    Server: 'nginx/1.2.3', 'x-powered-by': 'Express', 'X-AspNet-Version': '4.0', 'content-type': 'application/json',
    'strict-transport-security': 'max-age=0', 'x-content-type-options': 'sniff-away', 'x-request-id': 'r1',
  });
  assert.deepEqual(out, {
    'content-type': 'application/json', 'x-request-id': 'r1',
    'strict-transport-security': HSTS_VALUE, 'x-content-type-options': 'nosniff',
    'referrer-policy': 'no-referrer', 'x-frame-options': 'DENY',
  });
});

test('a service\'s own referrer and framing choices are kept; no CSP is imposed', () => {
  const out = applyResponseSecurity({ 'content-type': 'text/html', 'referrer-policy': 'same-origin', 'content-security-policy': "frame-ancestors 'self'" });
  assert.equal(out['referrer-policy'], 'same-origin');
  assert.equal(out['x-frame-options'], undefined);
  assert.equal(out['content-security-policy'], "frame-ancestors 'self'");
  assert.equal(applyResponseSecurity({ 'x-frame-options': 'SAMEORIGIN' })['x-frame-options'], 'SAMEORIGIN');
  assert.equal(applyResponseSecurity({})['content-security-policy'], undefined);
});

test('hsts: false neither adds nor removes Strict-Transport-Security', () => {
  assert.equal(applyResponseSecurity({}, { hsts: false })['strict-transport-security'], undefined);
  assert.equal(applyResponseSecurity({ 'strict-transport-security': 'max-age=60' }, { hsts: false })['strict-transport-security'], 'max-age=60');
});

test('a response without content-type gets application/octet-stream, unless it has no body', () => {
  assert.equal(applyResponseSecurity({})['content-type'], 'application/octet-stream');
  assert.equal(applyResponseSecurity({}, { status: 404 })['content-type'], 'application/octet-stream');
  assert.equal(applyResponseSecurity({}, { status: 204 })['content-type'], undefined);
  assert.equal(applyResponseSecurity({}, { status: 304 })['content-type'], undefined);
  assert.equal(applyResponseSecurity({ 'content-type': 'text/plain' })['content-type'], 'text/plain');
});
