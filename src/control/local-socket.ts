// The control plane's local administration socket (<dataDir>/control.sock, mode 0600): unseal,
// seal and status. It needs no TLS and no token, because only the owner of the data directory
// can open it — which is also what makes unsealing possible before any key is available.
import { createServer, createConnection, type Server } from 'node:net';
import { chmodSync, existsSync, unlinkSync } from 'node:fs';
import { PortcullisError } from '../core/errors.js';

export type LocalRequest = { op: 'unseal'; passphrase: string } | { op: 'seal' } | { op: 'status' };
export type LocalReply = { ok: true; sealed: boolean } | { ok: false; code: string; message: string };

const MAX_LINE = 4096;

/** Serves one JSON request per connection; `handle` returns the reply or throws a PortcullisError. */
export async function serveLocalSocket(path: string, handle: (req: LocalRequest) => Promise<LocalReply>): Promise<Server> {
  if (existsSync(path)) unlinkSync(path); // a stale socket from a crashed run
  const server = createServer((sock) => {
    let buf = '';
    sock.setEncoding('utf8');
    sock.on('error', () => sock.destroy());
    sock.on('data', (chunk: string) => {
      buf += chunk;
      if (buf.length > MAX_LINE) return void sock.destroy();
      const nl = buf.indexOf('\n');
      if (nl === -1) return;
      sock.pause();
      let req: LocalRequest;
      try {
        req = parseRequest(buf.slice(0, nl));
      } catch (err) {
        return void sock.end(JSON.stringify(replyOf(err)) + '\n');
      }
      handle(req).then(
        (reply) => sock.end(JSON.stringify(reply) + '\n'),
        (err: unknown) => sock.end(JSON.stringify(replyOf(err)) + '\n'),
      );
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => resolve());
  });
  chmodSync(path, 0o600);
  return server;
}

function parseRequest(line: string): LocalRequest {
  const v = JSON.parse(line) as Partial<{ op: string; passphrase: unknown }>; // fields checked below
  if (v.op === 'unseal' && typeof v.passphrase === 'string' && v.passphrase.length > 0 && v.passphrase.length <= 1024) return { op: 'unseal', passphrase: v.passphrase };
  if (v.op === 'seal' || v.op === 'status') return { op: v.op };
  throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', 'unknown request on the local socket');
}

function replyOf(err: unknown): LocalReply {
  if (err instanceof PortcullisError) return { ok: false, code: err.code, message: err.message };
  return { ok: false, code: 'PCL_ERR_INVALID_ARGUMENT', message: 'malformed request' };
}

/** Client side, for the CLI. */
export function askLocalSocket(path: string, req: LocalRequest, timeoutMs = 30_000): Promise<LocalReply> {
  return new Promise((resolve, reject) => {
    const sock = createConnection(path);
    let buf = '';
    const timer = setTimeout(() => { sock.destroy(); reject(new PortcullisError('PCL_ERR_INTERNAL', `no answer on ${path}`)); }, timeoutMs);
    sock.setEncoding('utf8');
    sock.on('connect', () => sock.write(JSON.stringify(req) + '\n'));
    sock.on('data', (c: string) => { buf += c; });
    sock.on('error', (err) => { clearTimeout(timer); reject(new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `no control plane listening on ${path}: ${err.message}`)); });
    sock.on('end', () => {
      clearTimeout(timer);
      try {
        resolve(JSON.parse(buf) as LocalReply); // our own server's reply
      } catch {
        reject(new PortcullisError('PCL_ERR_INTERNAL', 'malformed reply on the local socket'));
      }
    });
  });
}
