import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { connect } from 'node:net';
import { assertSingleHeaders, forwardableRequestHeaders, forwardableResponseHeaders, hasDuplicateHeader, POLICY_HEADERS } from '../../src/dataplane/headers.js';
import { PortcullisError } from '../../src/core/errors.js';

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

const headerInvalid = (e: unknown): boolean => e instanceof PortcullisError && e.code === 'PCL_ERR_HEADER_INVALID';

test('a header that policy reads may arrive only once', () => {
  for (const raw of [
    ['Authorization', 'Bearer a', 'authorization', 'Bearer b'],
    ['Host', 'a', 'HOST', 'b'],
    ['Content-Type', 'application/json', 'content-type', 'text/plain'],
    ['Origin', 'https://a.example', 'Origin', 'https://b.example'],
    ['X-Portcullis-Principal', 'x', 'x-portcullis-principal', 'y'],
  ]) assert.throws(() => assertSingleHeaders(raw, POLICY_HEADERS), headerInvalid, raw[0]);
  assert.throws(() => assertSingleHeaders(['X-Forwarded-For', '1.1.1.1', 'X-Forwarded-For', '2.2.2.2'], [...POLICY_HEADERS, 'x-forwarded-for']), headerInvalid);
});

test('single policy headers and repeated other headers pass', () => {
  assert.doesNotThrow(() => assertSingleHeaders(['Host', 'a', 'Authorization', 'Bearer a', 'Accept', '*/*', 'accept', 'text/html', 'X-Portcullis-A', '1', 'X-Portcullis-B', '2'], POLICY_HEADERS));
  assert.doesNotThrow(() => assertSingleHeaders(['X-Forwarded-For', '1.1.1.1', 'X-Forwarded-For', '2.2.2.2'], POLICY_HEADERS), 'not listed unless the gateway trusts it');
});

/** Sends raw bytes to a local Node HTTP server; returns the status line, and what the handler saw. */
async function rawExchange(request: string): Promise<{ status: string; seen?: string[] }> {
  let seen: string[] | undefined;
  const server = createServer((req, res) => { seen = req.rawHeaders; res.end(); });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  try {
    const reply = await new Promise<string>((resolve, reject) => {
      const s = connect(port, '127.0.0.1', () => s.end(Buffer.from(request, 'latin1')));
      let data = '';
      s.on('data', (c: Buffer) => { data += c.toString('latin1'); });
      s.on('end', () => resolve(data));
      s.on('error', reject);
    });
    return { status: reply.split('\r\n', 1)[0] ?? '', ...(seen ? { seen } : {}) };
  } finally {
    server.close();
  }
}

test('what Node\'s parser already refuses never reaches a handler (so it is not checked again)', async () => {
  const head = 'POST / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n';
  for (const [why, extra] of [
    ['obs-fold', 'X-A: 1\r\n  2\r\n'],
    ['space in a header name', 'X A: 1\r\n'],
    ['space before the colon', 'Authorization : Bearer x\r\n'],
    ['control character in a value', 'X-A: a\u0001b\r\n'],
    ['two Content-Length', 'Content-Length: 1\r\nContent-Length: 1\r\n'],
    ['Content-Length with Transfer-Encoding', 'Content-Length: 1\r\nTransfer-Encoding: chunked\r\n'],
  ] as const) {
    const r = await rawExchange(head + extra + '\r\n0\r\n\r\n');
    assert.equal(r.status, 'HTTP/1.1 400 Bad Request', why);
    assert.equal(r.seen, undefined, why);
  }
  const bareLf = await rawExchange('GET / HTTP/1.1\nHost: a\nConnection: close\n\n');
  assert.equal(bareLf.status, 'HTTP/1.1 400 Bad Request', 'bare LF line endings');
  // Node passes duplicate Host and Authorization to the handler (keeping only the first in
  // req.headers): that is what assertSingleHeaders is for.
  const dup = await rawExchange('GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\nAuthorization: x\r\nAuthorization: y\r\nConnection: close\r\n\r\n');
  assert.equal(dup.status, 'HTTP/1.1 200 OK');
  assert.throws(() => assertSingleHeaders(dup.seen ?? [], POLICY_HEADERS), headerInvalid);
});
