// Shared fixtures for the token tests: an in-memory store, a random master key, a real HTTP server.
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { KeyWrapper } from '../../src/kms/wrap.js';
import { PgliteStore } from '../../src/store/pglite.js';

export const openMemoryStore = (): Promise<PgliteStore> => PgliteStore.open();

export const newWrapper = (): KeyWrapper => new KeyWrapper(randomBytes(32));

/** Starts a loopback HTTP server; `handle` returns false for "not mine" (answered 404). */
export async function startServer(
  handle: (req: IncomingMessage, res: ServerResponse) => Promise<boolean>,
): Promise<{ url: string; close: () => Promise<void> }> {
  const server = createServer((req, res) => {
    handle(req, res).then(
      (handled) => { if (!handled) { res.writeHead(404); res.end(); } },
      (err: unknown) => { console.error(err); res.destroy(); },
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo; // listening on TCP, so address() is an AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    close: () => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }),
  };
}
