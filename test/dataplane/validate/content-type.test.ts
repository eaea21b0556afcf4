// Content-Type: one media type, among those accepted, UTF-8 for JSON.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkContentType } from '../../../src/dataplane/validate/content-type.js';
import { PortcullisError } from '../../../src/core/errors.js';

const JSON_ONLY = ['application/json'];
const refused = (header: string | undefined, accepted: readonly string[] = JSON_ONLY) =>
  assert.throws(() => checkContentType(header, accepted), (e: unknown) => e instanceof PortcullisError && e.code === 'PCL_ERR_CONTENT_TYPE', String(header));

test('returns the media type, lower-case, without parameters', () => {
  assert.equal(checkContentType('application/json', JSON_ONLY), 'application/json');
  assert.equal(checkContentType('Application/JSON; charset=UTF-8', JSON_ONLY), 'application/json');
  assert.equal(checkContentType('application/json;charset="utf-8"', JSON_ONLY), 'application/json');
  assert.equal(checkContentType(' application/json ; charset=utf-8 ; ', JSON_ONLY), 'application/json');
  assert.equal(checkContentType('text/plain; charset=iso-8859-1', ['text/plain']), 'text/plain', 'charset is only pinned for JSON');
});

test('patterns: type/*, */*, and structured-syntax suffixes like application/*+json', () => {
  const accepted = ['application/*+json', 'image/*'];
  assert.equal(checkContentType('application/merge-patch+json', accepted), 'application/merge-patch+json');
  assert.equal(checkContentType('application/vnd.shop.v2+json; charset=utf-8', accepted), 'application/vnd.shop.v2+json');
  assert.equal(checkContentType('image/png', accepted), 'image/png');
  refused('application/json', accepted); // no "+json" suffix
  refused('application/+json', accepted); // nothing before the suffix
  refused('text/json', accepted);
  assert.equal(checkContentType('anything/else', ['*/*']), 'anything/else');
});

test('missing, empty or malformed headers are refused', () => {
  for (const h of [undefined, '', '   ', 'application', 'application/', '/json', 'application/json x', 'application/json; charset', 'application/json; =utf-8',
    'application/json; charset="utf-8', 'application/js\u0000on', 'application/json\r\nX-Injected: 1', 'x'.repeat(2000) + '/json']) refused(h);
});

test('two media types are refused, however they are written', () => {
  refused('application/json, text/plain', ['application/json', 'text/plain']);
  refused('text/plain,application/json', ['application/json', 'text/plain']);
  refused('application/json; charset=utf-8; charset=utf-16');
});

test('JSON with a charset other than UTF-8 is refused', () => {
  for (const h of ['application/json; charset=utf-16', 'application/json; charset=iso-8859-1', 'application/json; charset="utf-16le"', 'application/problem+json; charset=us-ascii']) {
    refused(h, ['application/json', 'application/*+json']);
  }
});

test('a type not accepted is refused; an empty list accepts nothing', () => {
  refused('text/plain');
  refused('application/x-www-form-urlencoded');
  refused('application/json', []);
});

test('a malformed accepted entry is a configuration error, not a client error', () => {
  assert.throws(() => checkContentType('application/json', ['json']), (e: unknown) => e instanceof PortcullisError && e.code === 'PCL_ERR_INVALID_ARGUMENT');
});
