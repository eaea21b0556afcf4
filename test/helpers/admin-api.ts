// One control-plane API handler over real HTTPS, as the control plane serves it: a certificate of
// our CA for 127.0.0.1, a fresh admin token, coded errors answered with their status and public
// body, and a config file pointing at the server (for the CLI). The tests of each admin API share it.
import { randomBytes } from 'node:crypto';
import { createServer, request, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { asPortcullisError } from '../../src/core/errors.js';
import { AdminToken } from '../../src/control/admin-token.js';
import { sendJson } from '../../src/control/http.js';
import { CertificateAuthority } from '../../src/identity/ca.js';
import { createWorkloadKeyAndCsr } from '../../src/identity/workload-key.js';
import { KeyWrapper } from '../../src/kms/wrap.js';
import { MemoryStore } from '../../src/store/memory.js';
import type { Store } from '../../src/store/store.js';

export interface Reply { status: number; text: string; json: Record<string, unknown> }

export type ApiHandler = (req: IncomingMessage, res: ServerResponse, ctx: { requestId: string; peerSpiffeId: string | undefined }) => Promise<boolean>;

export interface AdminApiServer {
  port: number;
  caPem: string;
  adminToken: string;
  dataDir: string;
  /** A config file naming this server as control.url, for CLI runs. */
  configFile: string;
  /**
   * One request. `peer` stands for the SPIFFE ID a verified client certificate would carry (sent
   * in `x-test-peer`, read only by this harness); `token` goes in `Authorization: Bearer`.
   */
  send(method: string, path: string, o?: { token?: string; peer?: string; body?: unknown; raw?: string; contentType?: string }): Promise<Reply>;
  close(): Promise<void>;
}

export async function startAdminApi(o: {
  name: string;
  trustDomain: string;
  store: Store;
  /** The config file's text for the server's URL and data directory. */
  configYaml: (url: string, dataDir: string) => string;
  /** Builds the handler once the admin token exists. */
  api: (admin: AdminToken, dataDir: string) => ApiHandler | Promise<ApiHandler>;
}): Promise<AdminApiServer> {
  const dataDir = mkdtempSync(join(tmpdir(), `pcl-${o.name}-`));
  const { admin, createdFile } = await AdminToken.loadOrCreate(o.store, dataDir);
  const adminToken = readFileSync(createdFile ?? '', 'utf8').trim();
  // The server's own TLS, from a real-time CA of its own (OpenSSL checks dates against the real clock).
  const controlId = `spiffe://${o.trustDomain}/control`;
  const ca = await CertificateAuthority.loadOrCreate({ store: new MemoryStore(), wrapper: new KeyWrapper(randomBytes(32)), trustDomain: o.trustDomain });
  const { keyPem, csrPem } = await createWorkloadKeyAndCsr(controlId);
  const issued = await ca.issue({ csrPem, spiffeId: controlId, ipAddresses: ['127.0.0.1'], dnsNames: [] });
  const caPem = ca.trustBundlePem();
  writeFileSync(join(dataDir, 'ca.pem'), caPem);
  const api = await o.api(admin, dataDir);
  let n = 0;
  const server: Server = createServer({ key: keyPem, cert: issued.chainPem }, (req, res) => {
    const peer = req.headers['x-test-peer'];
    const requestId = `req-${++n}`;
    res.setHeader('x-request-id', requestId);
    api(req, res, { requestId, peerSpiffeId: typeof peer === 'string' ? peer : undefined }).then(
      (handled) => { if (!handled) sendJson(res, 404, { error: { code: 'PCL_ERR_ROUTE_NOT_FOUND' } }); },
      // As the control plane's handler: the coded error's status and public body.
      (err: unknown) => { const e = asPortcullisError(err); sendJson(res, e.status, e.toPublicJSON()); },
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  const configFile = join(dataDir, 'portcullis.yaml');
  writeFileSync(configFile, o.configYaml(`https://127.0.0.1:${port}`, dataDir));

  const send: AdminApiServer['send'] = (method, path, s = {}) => {
    const payload = s.raw ?? (s.body === undefined ? undefined : JSON.stringify(s.body));
    const headers: Record<string, string> = {};
    if (payload !== undefined) headers['content-type'] = s.contentType ?? 'application/json';
    if (s.peer) headers['x-test-peer'] = s.peer;
    if (s.token) headers.authorization = `Bearer ${s.token}`;
    return new Promise((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, path, method, headers, ca: caPem }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json: Record<string, unknown> = {};
          try { json = JSON.parse(text) as Record<string, unknown>; } catch { /* empty or not JSON */ }
          resolve({ status: res.statusCode ?? 0, text, json });
        });
      });
      req.on('error', reject);
      req.end(payload);
    });
  };

  return {
    port, caPem, adminToken, dataDir, configFile, send,
    async close() {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
