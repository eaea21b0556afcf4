// The path-attack catalogue, run through the gateway's first steps as the gateway runs them:
// normalizeTarget (admitting what some route allows) → Router.match → checkPathRules → forwardTarget.
// Each row: request target → the route and exact forwarded target, or the refusal code.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkPathRules, forwardTarget, normalizeTarget, type PathRules } from '../../src/dataplane/normalize.js';
import { Router, type RoutableRoute } from '../../src/dataplane/router.js';
import { asPortcullisError, PortcullisError } from '../../src/core/errors.js';

const route = (id: string, path: string, pathRules?: PathRules): RoutableRoute => ({ id, method: 'GET', path, service: 's', auth: ['jwt'], roles: [], ...(pathRules ? { pathRules } : {}) });

const router = new Router([
  route('root', '/'),
  route('admin', '/admin'),
  route('public', '/public/{page}'),
  route('files', '/files/{name}', { allowEncodedSlash: true }), // admits %2F / %5C
  route('matrix', '/matrix/{cell}', { allowSemicolon: true }), // admits ;
  route('docs', '/Docs/{page}', { caseSensitive: false, trailingSlash: 'ignore' }),
]);

type Outcome = { route: string; forwarded: string } | 'PCL_ERR_PATH_INVALID' | 'PCL_ERR_ROUTE_NOT_FOUND';

function edge(target: string, r: Router<RoutableRoute> = router): Outcome {
  try {
    const t = normalizeTarget(target, r.admits);
    const m = r.match('GET', t.path);
    if (!m) return 'PCL_ERR_ROUTE_NOT_FOUND';
    checkPathRules(t, m.rules);
    return { route: m.route.id, forwarded: forwardTarget(t, m.canonicalPath) };
  } catch (e) {
    const err = asPortcullisError(e);
    if (err.code !== 'PCL_ERR_PATH_INVALID') throw e;
    return err.code;
  }
}

const to = (routeId: string, forwarded: string): Outcome => ({ route: routeId, forwarded });
const INVALID = 'PCL_ERR_PATH_INVALID';
const NOT_FOUND = 'PCL_ERR_ROUTE_NOT_FOUND';

const CATALOGUE: [string, string, Outcome][] = [
  // [attack, target, outcome]
  ['baseline', '/admin', to('admin', '/admin')],
  ['double slash, leading', '//admin', to('admin', '/admin')],
  ['double slash, inner', '/public//admin', to('public', '/public/admin')],
  ['double slash posing as authority', '//evil.example/admin', NOT_FOUND],
  ['encoded slash', '/public/%2fadmin', INVALID],
  ['encoded slash, upper', '/public/x%2Fadmin', INVALID],
  ['encoded backslash', '/public/x%5cadmin', INVALID],
  ['encoded slash on a route that allows it', '/files/a%2fb', to('files', '/files/a%2Fb')],
  ['encoded backslash on a route that allows it', '/files/a%5cb', to('files', '/files/a%5Cb')],
  ['dot segment between encoded slashes', '/files/x%2f..%2fadmin', INVALID],
  ['dot-dot', '/public/../admin', to('admin', '/admin')],
  ['dot-dot above the root', '/public/../../admin', INVALID],
  ['dot', '/./admin', to('admin', '/admin')],
  ['encoded dot-dot', '/public/%2e%2e/admin', to('admin', '/admin')],
  ['encoded dot-dot, mixed case', '/public/%2E%2e/admin', to('admin', '/admin')],
  ['half-encoded dot-dot', '/public/.%2e/admin', to('admin', '/admin')],
  ['double-encoded dot-dot', '/public/%252e%252e/admin', INVALID],
  ['double-encoded slash', '/public/%252fadmin', INVALID],
  ['semicolon parameter', '/admin;x=1', NOT_FOUND],
  ['semicolon in a parameter segment', '/public/admin;x=1', INVALID],
  ['semicolon dot-dot (Tomcat)', '/public/..;/admin', INVALID],
  ['encoded semicolon dot-dot', '/public/..%3b/admin', INVALID],
  ['semicolon on a route that allows it', '/matrix/a;b=1', to('matrix', '/matrix/a;b=1')],
  ['encoded semicolon on a route that allows it', '/matrix/a%3bb', to('matrix', '/matrix/a%3Bb')],
  ['semicolon dot-dot on a route that allows ;', '/matrix/..;/admin', INVALID],
  ['encoded slash on the ; route', '/matrix/a%2fb', INVALID],
  ['semicolon on the encoded-slash route', '/files/a;b', INVALID],
  ['case', '/ADMIN', NOT_FOUND],
  ['case on a case-insensitive route', '/DOCS/Intro', to('docs', '/Docs/Intro')],
  ['trailing dot', '/admin.', INVALID],
  ['trailing dots', '/admin..', INVALID],
  ['dot-only segment', '/public/...', INVALID],
  ['NUL', '/admin%00', INVALID],
  ['NUL before an extension', '/admin%00.json', INVALID],
  ['encoded newline', '/admin%0d%0aX-Injected:%201', INVALID],
  ['trailing slash', '/admin/', NOT_FOUND],
  ['trailing slash on a route that ignores it', '/docs/intro/', to('docs', '/Docs/intro')],
  ['raw backslash', '/public\\..\\admin', INVALID],
  ['overlong UTF-8 dot', '/public/%c0%ae%c0%ae/admin', INVALID],
  ['overlong UTF-8 slash', '/public/x%c0%afadmin', INVALID],
  ['fullwidth solidus', '/public/x%ef%bc%8fadmin', INVALID],
  ['fullwidth full stop', '/public/%ef%bc%8e%ef%bc%8e/admin', INVALID],
  ['raw non-ASCII', '/public/\u00e9', INVALID],
  ['at sign in a segment (harmless in origin form)', '/public/@evil.example', to('public', '/public/@evil.example')],
  ['absolute form', 'http://evil/admin', INVALID],
  ['absolute form with userinfo', 'https://user@evil.example/admin', INVALID],
  ['asterisk form', '*', INVALID],
  ['empty target', '', INVALID],
  ['fragment', '/admin#x', INVALID],
  ['very long path', '/public/' + 'a'.repeat(9000), INVALID],
  ['long but within the limit', '/public/' + 'a'.repeat(8000), to('public', '/public/' + 'a'.repeat(8000))],
  ['very many dot segments (resolved in linear time; leaves a trailing slash)', '/public/x' + '/.'.repeat(4000), NOT_FOUND],
  ['unreserved escape decoded', '/%61dmin', to('admin', '/admin')],
  ['query is passed through, never part of the path', '/public/x?q=..%2f;', to('public', '/public/x?q=..%2f;')],
  ['root', '/', to('root', '/')],
];

test('the path-attack catalogue', () => {
  for (const [attack, target, expected] of CATALOGUE) {
    assert.deepEqual(edge(target), expected, `${attack}: ${JSON.stringify(target.slice(0, 60))}`);
  }
});

test('without a route that allows them, encoded slashes and ";" are refused before routing', () => {
  const strict = new Router([route('files', '/files/{name}'), route('admin', '/admin')]);
  for (const target of ['/files/a%2fb', '/files/a;b', '/files/a%3bb', '/admin;x=1']) {
    assert.throws(() => normalizeTarget(target, strict.admits), (e: unknown) => e instanceof PortcullisError && e.code === INVALID, target);
    assert.equal(edge(target, strict), INVALID, target);
  }
});

test('what is forwarded is exactly what was matched and authorized', () => {
  for (const [attack, , expected] of CATALOGUE) {
    if (typeof expected === 'string') continue;
    const path = expected.forwarded.split('?', 1)[0] ?? '';
    // The forwarded path is itself canonical: normalizing it again changes nothing and routes the same.
    const again = edge(path);
    assert.deepEqual(again, { route: expected.route, forwarded: path }, attack);
  }
});
