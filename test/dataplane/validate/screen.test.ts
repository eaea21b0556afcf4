// Injection screening: the classic probes are caught, and ordinary text — apostrophes, "or",
// "select", ampersands, hearts — is not. False positives are tested as hard as detections.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { screenRequest, type ScreenFinding } from '../../../src/dataplane/validate/screen.js';

const screenOne = (value: string): ScreenFinding[] => screenRequest({ params: {}, query: new URLSearchParams([['q', value]]) });

const PROBES: [string, string][] = [
  [`' OR '1'='1`, 'sqli:tautology'],
  [`1 UNION SELECT password FROM users--`, 'sqli:union-select'],
  [`1; DROP TABLE x`, 'sqli:stacked-query'],
  [`<script>alert(1)</script>`, 'xss:script-tag'],
  [`<img src=x onerror=alert(1)>`, 'xss:event-handler'],
  [`javascript:alert(1)`, 'xss:script-url'],
  [`admin'--`, 'sqli:comment-truncation'],
  [`' or 1=1--`, 'sqli:tautology'],
  [`1' AND 1=1#`, 'sqli:tautology'],
  [`" OR ""="`, 'sqli:tautology'],
  [`1 OR 1=1`, 'sqli:tautology'],
  [`' or true--`, 'sqli:tautology'],
  [`x'); DROP TABLE students;--`, 'sqli:stacked-query'],
  [`1' ORDER BY 3--`, 'sqli:order-by-probe'],
  [`1 AND SLEEP(5)`, 'sqli:time-delay'],
  [`'; WAITFOR DELAY '0:0:5'--`, 'sqli:time-delay'],
  [`1 UNION/**/ALL/**/SELECT NULL`, 'sqli:union-select'],
  [`1/*!UNION*/SELECT 1`, 'sqli:union-select'],
  [`1' AND 1=2 UNION SELECT table_name FROM information_schema.tables--`, 'sqli:system-catalog'],
  [`<svg/onload=alert(1)>`, 'xss:event-handler'],
  [`"><script>alert(document.cookie)</script>`, 'xss:script-tag'],
  [`<ScRiPt>alert(1)</sCrIpT>`, 'xss:script-tag'],
  [`<a href="javascript:alert(1)">x</a>`, 'xss:script-url'],
  [`java\tscript:alert(1)`, 'xss:script-url'],
  [`" onmouseover="alert(1)`, 'xss:attribute-breakout'],
  [`<iframe src=//evil.example>`, 'xss:dangerous-tag'],
  [`<body onload=alert(1)>`, 'xss:event-handler'],
  [`&lt;script&gt;alert(1)&lt;/script&gt;`, 'xss:script-tag'], // HTML-entity decoded form
  [`javascript&#58;alert(1)`, 'xss:script-url'],
  [`%3Cscript%3Ealert(1)%3C%2Fscript%3E`, 'xss:script-tag'], // %-decoded form (double-encoded in the URL)
  [`%27%20OR%20%271%27%3D%271`, 'sqli:tautology'],
];

const BENIGN = [
  `O'Brien`, `Rock & Roll`, `select a size`, `<3`, `alice@example.com`, `3f2c1a6e-8a4b-4c1d-9e2f-0a1b2c3d4e5f`, `you can pay by card or cash`,
  `Tom & Jerry; drop by anytime`, `It's 5 o'clock`, `JavaScript: The Good Parts (2008)`, `a < b and c > d`, `I'd like 2 or 3 = plenty`, `Wait -- really?`,
  `50% off & free shipping`, `the '# of items' column`, `don't union select anyone`, `Order by date, please`, `rock'n'roll`, `He said "hi" on Monday`,
  `C:\\Program Files\\app`, `1,2,3`, `john.o'reilly@example.com`, `https://example.com/?q=1&r=2`, `We sleep (8 hours) a night`, `<b>bold</b> and <i>italic</i>`,
  `5' 11" tall`, `Mr. "Quotes" or 'single'`, `2+2=4`, `and/or`, `#hashtag #love`, `100%`, `%zz`, `it's true or false`, `Ünïcødé ✓ 😀`, `SELECT * is not a thing I type`,
  `the update set is ready`, `Drop-off: 5pm; delete old labels`, `x >= 3 or y <= 4`,
];

test(`${PROBES.length} probes are caught, each with its signature`, () => {
  assert.ok(PROBES.length >= 15);
  for (const [value, signature] of PROBES) {
    const found = screenOne(value);
    assert.ok(found.some((f) => f.signature === signature), `${JSON.stringify(value)} → ${JSON.stringify(found.map((f) => f.signature))}, want ${signature}`);
    for (const f of found) assert.equal(f.kind, f.signature.split(':')[0]);
  }
});

test(`${BENIGN.length} ordinary values pass`, () => {
  assert.ok(BENIGN.length >= 15);
  for (const value of BENIGN) assert.deepEqual(screenOne(value), [], JSON.stringify(value));
});

test('findings name the location and JSON pointer, never the value', () => {
  const body = { order: { items: [{ sku: 'A' }, { note: "' OR '1'='1" }] }, '<script>x</script>': 1, 'a/b': '<img src=x onerror=alert(1)>' };
  const findings = screenRequest({ params: { id: '1 OR 1=1' }, query: new URLSearchParams('tag=ok&tag=<script>alert(1)</script>&name=O%27Brien'), body });
  assert.deepEqual(findings.map((f) => [f.location, f.pointer, f.signature]), [
    ['path', '/id', 'sqli:tautology'],
    ['query', '/tag/1', 'xss:script-tag'],
    ['body', '/<script>x<~1script>', 'xss:script-tag'], // keys are screened too
    ['body', '/order/items/1/note', 'sqli:tautology'],
    ['body', '/a~1b', 'xss:event-handler'],
  ]);
  assert.doesNotMatch(JSON.stringify(findings), /OR '1'|alert/);
});

test('maxFindings caps the report; a clean request gives []', () => {
  const query = new URLSearchParams(Array.from({ length: 30 }, (_, i): [string, string] => [`p${i}`, '<script>alert(1)</script>']));
  assert.equal(screenRequest({ params: {}, query }).length, 10);
  assert.equal(screenRequest({ params: {}, query }, 3).length, 3);
  assert.deepEqual(screenRequest({ params: { id: 'o-1' }, query: new URLSearchParams('limit=10'), body: { name: "O'Brien", n: 3, ok: true, none: null } }), []);
});

test('a deeply nested body is walked without recursion', () => {
  let body: unknown = "' OR '1'='1";
  for (let i = 0; i < 50; i++) body = [body];
  assert.equal(screenRequest({ params: {}, query: new URLSearchParams(), body })[0]?.signature, 'sqli:tautology');
  let deep: unknown = 'x';
  for (let i = 0; i < 100_000; i++) deep = [deep];
  assert.deepEqual(screenRequest({ params: {}, query: new URLSearchParams(), body: deep }), []);
});
