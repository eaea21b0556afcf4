// How a data plane talks to the control plane: workload attestation and renewal, and the
// snapshot. Never called during a request.
import { Agent, request } from 'undici';
import { PortcullisError } from '../core/errors.js';
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

  snapshot(current: ClientCredentials): Promise<SnapshotDocument> {
    return this.call<SnapshotDocument>('GET', '/v1/snapshot', undefined, current);
  }

  private async call<T>(method: 'GET' | 'POST', path: string, body: unknown, creds?: ClientCredentials): Promise<T> {
    const dispatcher = new Agent({
      connect: { ca: this.caPem, ...(creds ? { key: creds.keyPem, cert: creds.chainPem } : {}), minVersion: 'TLSv1.2' },
      headersTimeout: TIMEOUT_MS,
      bodyTimeout: TIMEOUT_MS,
    });
    try {
      const res = await request(new URL(path, this.url), {
        method,
        dispatcher,
        headers: body === undefined ? {} : { 'content-type': 'application/json' },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      const text = await res.body.text();
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
      await dispatcher.close();
    }
  }
}
