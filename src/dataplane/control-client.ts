// How a data plane talks to the control plane: workload attestation and renewal, and the
// snapshot. Never called during a request.
//
// Calls made with the workload's certificate share one kept-alive connection pool, rebuilt when the
// certificate or the trust bundle changes: the gateway asks for API-key revocations every 2 s and
// every data plane for the snapshot every 30 s, and each call used to cost a full mTLS handshake
// on both sides. The snapshot is fetched conditionally (ETag = its version; 304 when unchanged).
import { Agent, request } from 'undici';
import { PortcullisError } from '../core/errors.js';
import { etagOf } from '../core/etag.js';
import type { JsonWebKeySet } from './snapshot.js';
import type { PolicyBundle } from '../policy/policy-set.js';
import type { ApiKeySnapshot } from '../identity/api-keys.js';

export interface IssuedCredentials {
  chainPem: string;
  trustBundlePem: string;
}

export interface SnapshotDocument {
  version: string;
  issuer: string;
  jwks: JsonWebKeySet;
  trustBundlePem: string;
  /** The active policy set, compiled and validated by the control plane. */
  policies: PolicyBundle;
  /** A staged policy set: compile it now, switch to it at `activateAt` (all data planes at once). */
  pendingPolicies?: { bundle: PolicyBundle; activateAt: string };
  /** Active temporary blocks (detection's automatic response, or an operator's). */
  blocks: { kind: 'address' | 'principal' | 'workload'; value: string; until: string }[];
  /** The gateway's only: active API keys (hashes, scopes) and the key to hash a presented one. */
  apiKeys?: ApiKeySnapshot;
  /** Revoked workloads (SPIFFE IDs) and the serials of their live certificates: refused by every sidecar. */
  revokedWorkloads?: string[];
  revokedCertificates?: string[];
  /** Revoked access tokens (jti, exp) until they expire. */
  revokedTokens?: { jti: string; exp: number }[];
  /** Every token of a user or client issued up to `before` (epoch seconds), revoked. */
  revokedGrants?: { subject: string; before: number; exp: number }[];
}

export interface ClientCredentials {
  keyPem: string;
  chainPem: string;
}

const TIMEOUT_MS = 10_000;

export class ControlClient {
  /** The pool for calls with a certificate, and the material it was built with. */
  private kept: { caPem: string; keyPem: string; chainPem: string; agent: Agent } | undefined;

  constructor(
    private readonly url: string,
    /** PEM bundle used to authenticate the control plane's TLS certificate. */
    private caPem: string,
  ) {}

  setTrustBundle(pem: string): void {
    this.caPem = pem;
  }

  /** First certificate, with a one-time join token. */
  attest(joinToken: string, csrPem: string): Promise<IssuedCredentials> {
    return this.call<IssuedCredentials>('POST', '/v1/workload/attest', { joinToken, csr: csrPem });
  }

  /** Renewal, authenticated by the current certificate (mTLS). */
  renew(current: ClientCredentials, csrPem: string): Promise<IssuedCredentials> {
    return this.call<IssuedCredentials>('POST', '/v1/workload/renew', { csr: csrPem }, current);
  }

  /** Asks the control plane to block an alert's subject everywhere (detection's automatic response). */
  block(current: ClientCredentials, req: { kind: string; value: string; seconds: number; rule: string; alertId: string }): Promise<unknown> {
    return this.call('POST', '/v1/blocks', req, current);
  }

  /** Hands a signed checkpoint of this workload's audit log to the control plane, its witness. */
  publishCheckpoint(current: ClientCredentials, c: { seq: number; hash: string; time: string; signer: string; signature: string; final: boolean; log?: string }): Promise<unknown> {
    return this.call('POST', '/v1/audit/checkpoints', c, current);
  }

  /** API keys revoked since `since` (a cursor from the last answer): the gateway's fast path. */
  apiKeyRevocations(current: ClientCredentials, since: string | undefined): Promise<{ cursor: string; revoked: string[] }> {
    return this.call('GET', `/v1/apikeys/revoked${since === undefined ? '' : `?since=${encodeURIComponent(since)}`}`, undefined, current);
  }

  /** Last-used times of API keys, reported by the gateway once a minute. */
  reportApiKeyUsage(current: ClientCredentials, used: { id: string; at: string }[]): Promise<unknown> {
    return this.call('POST', '/v1/apikeys/used', { used }, current);
  }

  /**
   * The current snapshot, or `undefined` when it is still `knownVersion` (the control plane answered
   * 304 Not Modified to If-None-Match, and sent no body).
   */
  snapshot(current: ClientCredentials, knownVersion?: string): Promise<SnapshotDocument | undefined> {
    return this.call<SnapshotDocument>('GET', '/v1/snapshot', undefined, current, knownVersion === undefined ? undefined : etagOf(knownVersion));
  }

  /** Closes the kept connections (at shutdown). */
  async close(): Promise<void> {
    const kept = this.kept;
    this.kept = undefined;
    await kept?.agent.close();
  }

  /** The kept pool for these credentials; a new one (the old one drained) when they or the trust bundle changed. */
  private agentFor(creds: ClientCredentials): Agent {
    const k = this.kept;
    if (k && k.caPem === this.caPem && k.keyPem === creds.keyPem && k.chainPem === creds.chainPem) return k.agent;
    if (k) k.agent.close().catch(() => undefined); // its calls in flight finish first
    const agent = newAgent(this.caPem, creds);
    this.kept = { caPem: this.caPem, keyPem: creds.keyPem, chainPem: creds.chainPem, agent };
    return agent;
  }

  private async call<T>(method: 'GET' | 'POST', path: string, body: unknown, creds: ClientCredentials | undefined, ifNoneMatch: string | undefined): Promise<T | undefined>;
  private async call<T>(method: 'GET' | 'POST', path: string, body: unknown, creds?: ClientCredentials): Promise<T>;
  private async call<T>(method: 'GET' | 'POST', path: string, body: unknown, creds?: ClientCredentials, ifNoneMatch?: string): Promise<T | undefined> {
    // Attestation (no certificate yet) happens once: its pool is not kept.
    const dispatcher = creds ? this.agentFor(creds) : newAgent(this.caPem, undefined);
    try {
      const headers: Record<string, string> = {};
      if (body !== undefined) headers['content-type'] = 'application/json';
      if (ifNoneMatch !== undefined) headers['if-none-match'] = ifNoneMatch;
      const res = await request(new URL(path, this.url), {
        method,
        dispatcher,
        headers,
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      const text = await res.body.text();
      if (res.statusCode === 304 && ifNoneMatch !== undefined) return undefined;
      if (res.statusCode < 200 || res.statusCode > 299) {
        let code = 'PCL_ERR_INTERNAL';
        try { code = (JSON.parse(text) as { error?: { code?: string } }).error?.code ?? code; } catch { /* not JSON */ }
        throw new PortcullisError('PCL_ERR_CERT_RENEWAL', `control plane ${method} ${path} answered ${res.statusCode} (${code})`);
      }
      return JSON.parse(text) as T; // the control plane's own documents, shape checked by callers' use
    } catch (err) {
      if (err instanceof PortcullisError) throw err;
      throw new PortcullisError('PCL_ERR_SNAPSHOT_UNAVAILABLE', `control plane unreachable at ${this.url}: ${(err as Error).message}`, { cause: err });
    } finally {
      if (!creds) await dispatcher.close();
    }
  }
}

function newAgent(caPem: string, creds: ClientCredentials | undefined): Agent {
  return new Agent({
    connect: { ca: caPem, ...(creds ? { key: creds.keyPem, cert: creds.chainPem } : {}), minVersion: 'TLSv1.2' },
    // One connection: the calls are small and a few seconds apart; a call issued while another is
    // in flight waits for it (at most TIMEOUT_MS) rather than opening a second mTLS connection.
    connections: 1,
    headersTimeout: TIMEOUT_MS,
    bodyTimeout: TIMEOUT_MS,
  });
}
