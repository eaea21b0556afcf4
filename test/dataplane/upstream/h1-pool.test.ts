// The forwarding client's HTTP/1.1 pool against real sockets: what it writes (framing, refused
// headers), what it accepts back (1xx, HEAD, close-delimited, >32 headers), and when it may reuse a
// connection — never after anything unexpected, which is where a desync would start.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createNetServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { Readable } from 'node:stream';
import { ExchangeError, H1Pool, type ExchangeRequest, type ResponseHeaders } from '../../../src/dataplane/upstream/h1-pool.js';

interface Answer { status: number; headers: ResponseHeaders; body: string }

function exchange(pool: H1Pool, req: Partial<ExchangeRequest> & { path: string }): Promise<Answer> {
  return new Promise((resolve, reject) => {
    let status = 0;
    let headers: ResponseHeaders = {};
    const chunks: Buffer[] = [];
    pool.dispatch({ method: 'GET', headers: {}, body: null, ...req }, {
      onStart: () => undefined,
      onHead: (s, h) => { status = s; headers = h; },
      onData: (c) => { chunks.push(c); },
      onEnd: () => resolve({ status, headers, body: Buffer.concat(chunks).toString('latin1') }),
      onError: (e) => reject(e),
    });
  });
}

async function failure(p: Promise<unknown>): Promise<ExchangeError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof ExchangeError, String(e));
    return e;
  }
  throw new Error('expected the exchange to fail');
}

function newPool(port: number, connections = 8, timeoutMs = 5000): H1Pool {
  return new H1Pool({ origin: `http://127.0.0.1:${port}`, connections, connectTimeoutMs: 2000, timeoutMs, keepAliveMs: 30_000 });
}

/** A node:http upstream that records each request's head and body and counts connections. */
async function httpUpstream(handler: (req: IncomingMessage, res: ServerResponse, body: string) => void = (_q, r) => r.end('ok')) {
  const seen: { method: string; url: string; headers: IncomingMessage['headers']; body: string }[] = [];
  let connections = 0;
  const server = createHttpServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString();
      seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body });
      handler(req, res, body);
    });
  });
  server.on('connection', () => { connections++; });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as AddressInfo).port, // a TCP listener's address is an AddressInfo
    seen,
    connections: () => connections,
    close: async () => { server.closeAllConnections(); await new Promise((r) => server.close(r)); },
  };
}

/** A raw TCP upstream: `onRequest` writes whatever bytes the test wants, once per request head. */
async function rawUpstream(onRequest: (socket: Socket, n: number) => void) {
  let connections = 0;
  let requests = 0;
  const sockets = new Set<Socket>();
  const server: Server = createNetServer((socket) => {
    connections++;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    let buffered = '';
    socket.on('data', (d) => {
      buffered += d.toString('latin1');
      while (buffered.includes('\r\n\r\n')) {
        buffered = buffered.slice(buffered.indexOf('\r\n\r\n') + 4);
        onRequest(socket, ++requests);
      }
    });
    socket.on('error', () => undefined);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as AddressInfo).port, // a TCP listener's address is an AddressInfo
    connections: () => connections,
    close: async () => { for (const s of sockets) s.destroy(); await new Promise((r) => server.close(r)); },
  };
}

test('one keep-alive connection carries sequential exchanges; framing headers are ours, not the caller\'s', async () => {
  const up = await httpUpstream((_q, r, body) => r.end(`got ${body}`));
  const pool = newPool(up.port);
  try {
    const a = await exchange(pool, { method: 'POST', path: '/a?x=1', headers: { 'content-length': '999', 'transfer-encoding': 'chunked', expect: '100-continue', 'x-k': 'v' }, body: Buffer.from('{"a":1}') });
    assert.deepEqual([a.status, a.body], [200, 'got {"a":1}']);
    const b = await exchange(pool, { path: '/b', headers: { 'x-multi': ['1', '2'] } });
    assert.equal(b.body, 'got ');
    const c = await exchange(pool, { method: 'POST', path: '/c' });
    assert.equal(c.status, 200);
    assert.equal(up.connections(), 1);
    const [ha, hb, hc] = up.seen.map((s) => s.headers);
    assert.equal(up.seen[0]?.url, '/a?x=1');
    assert.equal(ha?.host, `127.0.0.1:${up.port}`);
    assert.equal(ha?.['content-length'], '7');
    assert.equal(ha?.['transfer-encoding'], undefined);
    assert.equal(ha?.expect, undefined);
    assert.equal(ha?.['x-k'], 'v');
    assert.equal(hb?.['x-multi'], '1, 2');
    assert.equal(hb?.['content-length'], undefined, 'a GET without a body declares none');
    assert.equal(hc?.['content-length'], '0', 'a POST without a body says so');
  } finally {
    await pool.close();
    await up.close();
  }
});

test('a streamed body goes chunked without a length, as declared with one; a length mismatch fails the request, not the upstream', async () => {
  const up = await httpUpstream((_q, r, body) => r.end(`got ${body.length}`));
  const pool = newPool(up.port);
  try {
    const chunked = await exchange(pool, { method: 'PUT', path: '/s', body: Readable.from([Buffer.from('abc'), Buffer.from('defg')]) });
    assert.equal(chunked.body, 'got 7');
    assert.equal(up.seen[0]?.headers['transfer-encoding'], 'chunked');
    const sized = await exchange(pool, { method: 'PUT', path: '/s', headers: { 'content-length': '4' }, body: Readable.from([Buffer.from('wxyz')]) });
    assert.equal(sized.body, 'got 4');
    assert.equal(up.seen[1]?.headers['content-length'], '4');
    const long = await failure(exchange(pool, { method: 'PUT', path: '/s', headers: { 'content-length': '2' }, body: Readable.from([Buffer.from('too long')]) }));
    assert.equal(long.kind, 'request');
    const short = await failure(exchange(pool, { method: 'PUT', path: '/s', headers: { 'content-length': '20' }, body: Readable.from([Buffer.from('short')]) }));
    assert.equal(short.kind, 'request');
    assert.equal(up.seen.length, 2, 'neither mismatched body reached the service as a request');
  } finally {
    await pool.close();
    await up.close();
  }
});

test('a header or target that would split the request is refused before any connection is opened', async () => {
  const up = await httpUpstream();
  const pool = newPool(up.port);
  try {
    const refused: (Partial<ExchangeRequest> & { path: string })[] = [
      { path: '/x', headers: { 'x-a': 'v\r\nx-injected: 1' } },
      { path: '/x', headers: { 'x-a': ['ok', 'v\nGET /admin HTTP/1.1'] } },
      { path: '/x', headers: { 'bad name': 'v' } },
      { path: '/x HTTP/1.1\r\nx: y' },
      { path: '/x', method: 'G T' },
    ];
    for (const req of refused) {
      assert.equal((await failure(exchange(pool, req))).kind, 'request', JSON.stringify(req));
    }
    assert.equal(up.connections(), 0);
  } finally {
    await pool.close();
    await up.close();
  }
});

test('interim 1xx answers are skipped; HEAD and 204 have no body; the connection is reused after each', async () => {
  const up = await rawUpstream((s, n) => {
    if (n === 1) s.write('HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok');
    else if (n === 2) s.write('HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n'); // the answer to HEAD
    else if (n === 3) s.write('HTTP/1.1 204 No Content\r\n\r\n');
    else s.write('HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nlast');
  });
  const pool = newPool(up.port);
  try {
    const a = await exchange(pool, { path: '/1' });
    assert.deepEqual([a.status, a.body, a.headers.link], [200, 'ok', undefined]);
    const head = await exchange(pool, { method: 'HEAD', path: '/2' });
    assert.deepEqual([head.status, head.body, head.headers['content-length']], [200, '', '100']);
    assert.equal((await exchange(pool, { path: '/3' })).status, 204);
    assert.equal((await exchange(pool, { path: '/4' })).body, 'last');
    assert.equal(up.connections(), 1);
  } finally {
    await pool.close();
    await up.close();
  }
});

test('bytes after a complete answer fail it and close the connection: a second answer is never taken for the next request', async () => {
  const up = await rawUpstream((s, n) => {
    if (n === 1) s.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokHTTP/1.1 200 OK\r\ncontent-length: 8\r\n\r\nsmuggled');
    else s.write('HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nclean');
  });
  const pool = newPool(up.port);
  try {
    assert.equal((await failure(exchange(pool, { path: '/1' }))).kind, 'reset');
    const next = await exchange(pool, { path: '/2' });
    assert.equal(next.body, 'clean');
    assert.equal(up.connections(), 2, 'the desynchronized connection was not reused');
  } finally {
    await pool.close();
    await up.close();
  }
});

test('a byte arriving on an idle connection closes it; the next exchange opens a new one', async () => {
  let stray: Socket | undefined;
  const up = await rawUpstream((s) => {
    stray = s;
    s.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok');
  });
  const pool = newPool(up.port);
  try {
    await exchange(pool, { path: '/1' });
    assert.equal(pool.size, 1);
    const closed = once(stray as Socket, 'close'); // set by the first request
    stray?.write('HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nbad');
    await closed;
    assert.equal(pool.size, 0);
    assert.equal((await exchange(pool, { path: '/2' })).body, 'ok');
    assert.equal(up.connections(), 2);
  } finally {
    await pool.close();
    await up.close();
  }
});

test('a body delimited by the connection\'s end arrives whole; one cut short of its length breaks after the head', async () => {
  const up = await rawUpstream((s, n) => {
    if (n === 1) s.end('HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nuntil the end');
    else s.end('HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhalf');
  });
  const pool = newPool(up.port);
  try {
    assert.equal((await exchange(pool, { path: '/1' })).body, 'until the end');
    let headed = false;
    const err = await new Promise<ExchangeError>((resolve, reject) => {
      pool.dispatch({ method: 'GET', path: '/2', headers: {}, body: null }, {
        onStart: () => undefined, onHead: () => { headed = true; }, onData: () => undefined,
        onEnd: () => reject(new Error('a truncated body must not end normally')), onError: resolve,
      });
    });
    assert.ok(headed);
    assert.equal(err.kind, 'reset');
  } finally {
    await pool.close();
    await up.close();
  }
});

test('more than 32 response headers all arrive; repeated ones become arrays, set-cookie always is one', async () => {
  const extra = Array.from({ length: 40 }, (_, i) => `x-h${i}: v${i}\r\n`).join('');
  const up = await rawUpstream((s) => s.write(`HTTP/1.1 200 OK\r\n${extra}x-dup: a\r\nX-Dup: b\r\nset-cookie: c=1\r\ncontent-length: 0\r\n\r\n`));
  const pool = newPool(up.port);
  try {
    const a = await exchange(pool, { path: '/' });
    assert.equal(a.headers['x-h0'], 'v0');
    assert.equal(a.headers['x-h39'], 'v39');
    assert.deepEqual(a.headers['x-dup'], ['a', 'b']);
    assert.deepEqual(a.headers['set-cookie'], ['c=1']);
  } finally {
    await pool.close();
    await up.close();
  }
});

test('body chunks handed out are the handler\'s to keep (later reads do not overwrite them)', async () => {
  const parts = ['first-', 'second-', 'third'];
  const up = await rawUpstream((s) => {
    s.write('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n');
    let i = 0;
    const next = (): void => {
      const p = parts[i++];
      if (p === undefined) return void s.write('0\r\n\r\n');
      s.write(`${p.length.toString(16)}\r\n${p}\r\n`);
      setTimeout(next, 5);
    };
    next();
  });
  const pool = newPool(up.port);
  try {
    assert.equal((await exchange(pool, { path: '/' })).body, parts.join(''));
  } finally {
    await pool.close();
    await up.close();
  }
});

test('at most `connections` at once; the rest wait their turn and all are answered', async () => {
  let open = 0;
  let peak = 0;
  const up = await httpUpstream((_q, r) => {
    open++;
    peak = Math.max(peak, open);
    setTimeout(() => { open--; r.end('done'); }, 20);
  });
  const pool = newPool(up.port, 2);
  try {
    const answers = await Promise.all(Array.from({ length: 6 }, (_, i) => exchange(pool, { path: `/${i}` })));
    assert.deepEqual(answers.map((a) => a.body), Array(6).fill('done'));
    assert.equal(peak, 2);
    assert.equal(up.connections(), 2);
  } finally {
    await pool.close();
    await up.close();
  }
});

test('an answer before the upload ended is relayed, and that connection is not reused', async () => {
  const up = await rawUpstream((s, n) => {
    if (n === 1) s.write('HTTP/1.1 413 Payload Too Large\r\ncontent-length: 0\r\n\r\n');
    else s.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok');
  });
  const pool = newPool(up.port);
  const body = new Readable({ read() { /* pushed by hand: the upload never ends */ } });
  body.push('partial');
  try {
    const a = await exchange(pool, { method: 'POST', path: '/upload', headers: { 'content-length': '1000000' }, body });
    assert.equal(a.status, 413);
    assert.equal((await exchange(pool, { path: '/next' })).body, 'ok');
    assert.equal(up.connections(), 2);
  } finally {
    body.destroy();
    await pool.close();
    await up.close();
  }
});

test('no answer within the timeout fails as a timeout; close() waits for nothing and refuses new exchanges', async () => {
  const up = await rawUpstream(() => undefined);
  const pool = newPool(up.port, 4, 100);
  try {
    const err = await failure(exchange(pool, { path: '/' }));
    assert.deepEqual([err.kind, err.timedOut], ['timeout', true]);
  } finally {
    await pool.close();
    await up.close();
  }
  assert.equal((await failure(exchange(pool, { path: '/' }))).kind, 'connect');
});
