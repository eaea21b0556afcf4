// Fixtures for the gateway authenticators' tests: certificates from the project's CA, a test-only
// issuer for the certificates the CA refuses to make (two URI SANs, a non-SPIFFE URI), a real
// HTTPS server that asks for client certificates as the gateway would, and a client for it.
import { createHash, randomBytes, webcrypto, X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import { createServer, request, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { TlsOptions } from 'node:tls';
import { CertificateAuthority } from '../../../src/identity/ca.js';
import { createWorkloadKeyAndCsr } from '../../../src/identity/workload-key.js';
import { EC_P256, ECDSA_SHA256, x509 } from '../../../src/identity/x509.js';
import type { MtlsCredentials } from '../../../src/identity/tls-options.js';
import { KeyWrapper } from '../../../src/kms/wrap.js';
import { MemoryStore } from '../../../src/store/memory.js';

export const TD = 'example.test';

/** A CA of `trustDomain` in a throwaway store. */
export function newCa(trustDomain = TD): Promise<CertificateAuthority> {
  return CertificateAuthority.loadOrCreate({ store: new MemoryStore(), wrapper: new KeyWrapper(randomBytes(32)), trustDomain });
}

/** A workload's key and certificate from `ca`; localhost names so a plain TLS client can check it. */
export async function issue(ca: CertificateAuthority, spiffeId: string, trustBundlePem = ca.trustBundlePem()): Promise<MtlsCredentials> {
  const { keyPem, csrPem } = await createWorkloadKeyAndCsr(spiffeId);
  const { chainPem } = await ca.issue({ csrPem, spiffeId, dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
  return { keyPem, chainPem, trustBundlePem };
}

/** A certificate with exactly `uris` as URI SANs, from a test-only root (returned, to be trusted or not). */
export async function oddCertificate(uris: string[]): Promise<{ keyPem: string; chainPem: string; rootPem: string }> {
  const rootKeys = await webcrypto.subtle.generateKey(EC_P256, true, ['sign', 'verify']);
  const notBefore = new Date(Date.now() - 60_000);
  const notAfter = new Date(Date.now() + 3_600_000);
  // A distinct name per root: OpenSSL looks issuers up by name.
  const root = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: '01', name: [{ CN: [`test-only root ${randomBytes(4).toString('hex')}`] }], keys: rootKeys, signingAlgorithm: ECDSA_SHA256, notBefore, notAfter,
    extensions: [new x509.BasicConstraintsExtension(true, undefined, true), new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign, true)],
  });
  const leafKeys = await webcrypto.subtle.generateKey(EC_P256, true, ['sign', 'verify']);
  const leaf = await x509.X509CertificateGenerator.create({
    serialNumber: '02', subject: [{ CN: ['odd'] }], issuer: root.subjectName, publicKey: leafKeys.publicKey, signingKey: rootKeys.privateKey,
    signingAlgorithm: ECDSA_SHA256, notBefore, notAfter,
    extensions: [
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth]),
      new x509.SubjectAlternativeNameExtension(uris.map((value) => ({ type: 'url' as const, value }))),
    ],
  });
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', leafKeys.privateKey)).toString('base64');
  const keyPem = `-----BEGIN PRIVATE KEY-----\n${pkcs8.match(/.{1,64}/g)?.join('\n') ?? ''}\n-----END PRIVATE KEY-----\n`;
  return { keyPem, chainPem: leaf.toString('pem'), rootPem: root.toString('pem') };
}

/** base64url(SHA-256(DER)) of a PEM certificate: what a token's cnf.x5t#S256 holds. */
export function thumbprintOf(certPem: string): string {
  return createHash('sha256').update(new X509Certificate(certPem).raw).digest('base64url');
}

export interface TestServer {
  port: number;
  close(): Promise<void>;
}

/** An HTTPS server on 127.0.0.1 with `tls`; `handle` answers each request. */
export async function startHttps(tls: TlsOptions, handle: (req: IncomingMessage, res: ServerResponse) => void | Promise<void>): Promise<TestServer> {
  const server: Server = createServer(tls, (req, res) => {
    Promise.resolve(handle(req, res)).catch((err: unknown) => { res.writeHead(500); res.end(String(err)); });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo; // a TCP listener: address() is an AddressInfo
  return {
    port,
    close: () => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }),
  };
}

export interface CallOptions {
  ca: string;
  key?: string;
  cert?: string;
  method?: string;
  path?: string;
  headers?: Record<string, string>;
}

/** One request on a fresh connection (no agent: each call presents exactly its own certificate). */
export function call(port: number, o: CallOptions): Promise<{ status: number; body: Record<string, unknown>; headers: Record<string, string | string[] | undefined> }> {
  return new Promise((resolve, reject) => {
    const req = request({
      host: '127.0.0.1', port, method: o.method ?? 'GET', path: o.path ?? '/', headers: o.headers ?? {}, agent: false,
      servername: 'localhost', // the certificate's name, whatever Host header a test sends
      ca: o.ca, ...(o.key ? { key: o.key } : {}), ...(o.cert ? { cert: o.cert } : {}),
    }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text ? (JSON.parse(text) as Record<string, unknown>) : {}, headers: res.headers }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** Sends a JSON answer. */
export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(JSON.stringify(body));
}
