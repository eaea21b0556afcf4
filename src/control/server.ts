// The control plane: certificate authority and workload identities, the OAuth2 token service,
// users, the admin API and the snapshot data planes pull. HTTPS only; a client certificate is
// requested but optional, so people and the CLI can reach the OAuth endpoints while workloads
// authenticate with their certificate (renewal, snapshot, client_credentials).
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createHash } from 'node:crypto';
import { writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { isIP } from 'node:net';
import type { PortcullisConfig } from '../core/config/types.js';
import { systemClock, type Clock, type Timer } from '../core/clock.js';
import { asPortcullisError, PortcullisError } from '../core/errors.js';
import { checkUserAttributes, type UserAttributes } from '../core/principal.js';
import { createPolicyApi, PolicyAuthority } from './policy-api.js';
import { BlockList, createBlockApi } from './blocks.js';
import { publishAudit, publishTlsFailure } from '../core/events.js';
import { newRequestId } from '../core/ids.js';
import { etagOf, matchesEtag } from '../core/etag.js';
import { silentLogger, type Logger } from '../core/log.js';
import type { Store } from '../store/store.js';
import type { KeyWrapper } from '../kms/wrap.js';
import { CertificateAuthority } from '../identity/ca.js';
import { JoinTokens } from '../identity/join-tokens.js';
import { Users } from '../identity/users.js';
import { parseSpiffeId } from '../identity/spiffe.js';
import { peerSpiffeId } from '../identity/tls-options.js';
import { createWorkloadKeyAndCsr } from '../identity/workload-key.js';
import { SigningKeys } from '../tokens/signing-keys.js';
import { createOAuthRouter, DEVICE_CODE_GRANT } from '../tokens/oauth/router.js';
import { clientFromConfig } from '../tokens/oauth/clients.js';
import { DEFAULT_REDIRECT_URI } from '../tokens/client/pkce-login.js';
import { KeyManager } from '../kms/key-manager.js';
import { openIdHasher } from './audit-ids.js';
import { CheckpointWitness, createCheckpointApi } from './checkpoints.js';
import { ApiKeys } from '../identity/api-keys.js';
import { createApiKeyApi, type ApiKeyApi } from './apikey-api.js';
import { KeyRotationScheduler } from '../tokens/key-rotation.js';
import { RevocationList } from '../tokens/revocations.js';
import { LoginThrottle } from '../identity/login-throttle.js';
import { WorkloadRevocations } from '../identity/workload-revocations.js';
import { CaRotationScheduler } from '../identity/ca-rotation.js';
import { createWorkloadsApi } from './workloads-api.js';
import { createUsersApi, type UsersApi } from './users-api.js';
import { createClientsApi, type ClientsApi } from './clients-api.js';
import { ClientRegistry } from '../tokens/oauth/client-registry.js';
import { RefreshTokens } from '../tokens/refresh-tokens.js';
import { createKeysApi, type KeysApi } from './keys-api.js';
import { CONTROL_KEYRING, KmsKeySealer } from '../kms/key-sealer.js';
import { SecretStore } from '../kms/secrets.js';
import { AdminToken } from './admin-token.js';
import { createKmsApi, type KmsApi } from './kms-api.js';
import { createAuditApi, type AuditApi } from './audit-api.js';
import { readJsonObject, sendJson, stringField } from './http.js';

/** The keyring whose key signs the control plane's audit checkpoints. */
export const AUDIT_KEYRING = 'audit';

/** The public client the CLI uses for authorization code + PKCE (RFC 8252 loopback redirect). */
export const CLI_CLIENT_ID = 'portcullis-cli';

export interface ControlPlaneOptions {
  config: PortcullisConfig;
  store: Store;
  wrapper: KeyWrapper;
  /** Overrides config.control.listen. */
  listen?: string;
  clock?: Clock;
  logger?: Logger;
}

export class ControlPlane {
  private server!: Server; // created in start(), before any use
  private serverCertTimer: Timer | undefined;
  adminTokenFile: string | undefined;
  /** OAuth client administration (set in create(), before any request). */
  private clientsApi!: ClientsApi;

  private constructor(
    private readonly o: ControlPlaneOptions & { clock: Clock; logger: Logger },
    readonly ca: CertificateAuthority,
    readonly keys: SigningKeys,
    readonly users: Users,
    readonly joinTokens: JoinTokens,
    private readonly admin: AdminToken,
    private readonly oauth: ReturnType<typeof createOAuthRouter>,
    readonly kms: KeyManager,
    private readonly kmsApi: KmsApi,
    private readonly auditApi: AuditApi,
    readonly policies: PolicyAuthority,
    private readonly policyApi: ReturnType<typeof createPolicyApi>,
    readonly blocks: BlockList,
    private readonly blockApi: ReturnType<typeof createBlockApi>,
    readonly checkpoints: CheckpointWitness,
    private readonly checkpointApi: ReturnType<typeof createCheckpointApi>,
    readonly apiKeys: ApiKeys,
    private readonly apiKeyApi: ApiKeyApi,
    readonly keyRotation: KeyRotationScheduler,
    private readonly keysApi: KeysApi,
    readonly revocations: RevocationList,
    private readonly usersApi: UsersApi,
    readonly caRotation: CaRotationScheduler,
    readonly workloadRevocations: WorkloadRevocations,
    private readonly workloadsApi: ReturnType<typeof createWorkloadsApi>,
  ) {}

  static async create(options: ControlPlaneOptions): Promise<ControlPlane> {
    const o = { ...options, clock: options.clock ?? systemClock, logger: options.logger ?? silentLogger };
    const { config, store, wrapper, clock } = o;
    // Key hierarchy: the root key (wrapper) protects the keyrings' versions, which protect
    // everything else, the control plane's own private keys included.
    const kms = await KeyManager.open({ store, wrapper, clock });
    await kms.ensureKeyring(CONTROL_KEYRING);
    await kms.ensureKeyring(AUDIT_KEYRING, { type: 'ecdsa-p256' });
    for (const k of config.kms.keyrings) {
      const period = k.rotationPeriod === undefined ? undefined : k.rotationPeriod * 1000;
      const info = await kms.ensureKeyring(k.name, { type: k.type, ...(period === undefined ? {} : { rotationPeriodMs: period }) });
      if (info.rotationPeriodMs !== period) await kms.setRotationPeriod(k.name, period);
    }
    const sealer = new KmsKeySealer(kms);
    const apiKeys = await ApiKeys.open({ store, sealer, clock });
    const workloadRevocations = await WorkloadRevocations.open({ store, clock, trustDomain: config.trustDomain, protectedWorkloads: [`spiffe://${config.trustDomain}/control`] });
    const ca = await CertificateAuthority.loadOrCreate({ store, wrapper: sealer, trustDomain: config.trustDomain, clock, issuance: workloadRevocations });
    // The successor CA is published in the bundle (and ca.pem) before it signs anything.
    const caRotation = new CaRotationScheduler({ ca, clock, logger: o.logger, onBundleChange: (pem) => writeFileSync(join(config.control.dataDir, 'ca.pem'), pem, { mode: 0o644 }) });
    // Retired keys stay published until the last token they signed has expired (docs/keys.md).
    // tokens.signingAlg applies to keys created from now on; existing keys keep their algorithm.
    const keys = await SigningKeys.loadOrCreate({ store, wrapper: sealer, clock, alg: config.tokens.signingAlg, maxTokenLifetimeMs: config.tokens.accessTokenTtl * 1000, clockSkewMs: config.tokens.clockSkew * 1000 });
    const keyRotation = new KeyRotationScheduler({ keys, clock, logger: o.logger });
    // Roles that need a second factor (TOTP) come from the config; TOTP secrets are sealed by the KMS.
    const hashId = await openIdHasher(kms);
    // The throttle's account keys are keyed hashes too: a name typed at the login form may be a mistyped password.
    const throttle = new LoginThrottle({ store, clock, hashAccount: hashId });
    const users = new Users(store, { clock, sealer, privilegedRoles: config.users.privilegedRoles, throttle });
    const joinTokens = new JoinTokens(store, clock);
    mkdirSync(config.control.dataDir, { recursive: true, mode: 0o700 });
    const { admin, createdFile } = await AdminToken.loadOrCreate(store, config.control.dataDir);
    const revocations = await RevocationList.open({ store, clock });
    // Ending a user's or a client's sessions (disable, delete, new password; client removed) also
    // revokes every access token already issued to them, at every data plane with the next snapshot.
    const sessions = new RefreshTokens({ store, clock, revoker: revocations, accessTokenTtlSec: config.tokens.accessTokenTtl });
    const usersApi = createUsersApi({ users, admin, clock, sessions });
    // Fixed clients, then those registered through the admin API (store; every replica within 2 s).
    const clients = await ClientRegistry.open({
      store, clock, logger: o.logger,
      fixed: [
        // The CLI signs people in with a loopback redirect, or with the device flow (`login --device`).
        { clientId: CLI_CLIENT_ID, type: 'public', redirectUris: [DEFAULT_REDIRECT_URI], scopes: ['offline_access'], grantTypes: [DEVICE_CODE_GRANT] },
        // Machines declared in the config (tokens.clients): private_key_jwt or tls_client_auth.
        ...config.tokens.clients.map(clientFromConfig),
      ],
    });
    const oauth = createOAuthRouter({
      issuer: config.tokens.issuer,
      audience: config.tokens.audience,
      accessTokenTtl: config.tokens.accessTokenTtl,
      users, keys, store, clock, logger: o.logger, hashId, admin, revocations,
      clients,
      // A service may exchange a user's token for one naming itself in `act`, for another service.
      tokenExchange: { audiences: config.services.map((s) => s.spiffeId) },
    });
    const secrets = new SecretStore({ store, kms, clock });
    const kmsApi = createKmsApi({ config, kms, secrets, admin, clock, logger: o.logger });
    const policies = await PolicyAuthority.open({ config, store, clock, logger: o.logger });
    // The gateway and the control plane carry every request: blocking them would be an outage.
    const blocks = await BlockList.open({ store, clock, protectedWorkloads: new Set([config.gateway.spiffeId, `spiffe://${config.trustDomain}/control`]) });
    const checkpoints = new CheckpointWitness(store, clock);
    kms.start();
    keyRotation.start();
    caRotation.start();
    workloadRevocations.start();
    const cp = new ControlPlane(o, ca, keys, users, joinTokens, admin, oauth, kms, kmsApi, createAuditApi({ store, admin, hashId }), policies, createPolicyApi({ authority: policies, admin }),
      blocks, createBlockApi({ blocks, admin, config, clock }), checkpoints, createCheckpointApi({ witness: checkpoints, admin, config }),
      apiKeys, createApiKeyApi({ apiKeys, admin, config }), keyRotation, createKeysApi({ keys, admin, clock }), revocations, usersApi,
      caRotation, workloadRevocations, createWorkloadsApi({ workloads: workloadRevocations, ca, admin, scheduler: caRotation }));
    cp.adminTokenFile = createdFile;
    cp.clientsApi = createClientsApi({ registry: clients, admin, trustDomain: config.trustDomain, clock, sessions });
    // Clients need the trust bundle to reach the gateway and the control plane.
    writeFileSync(cp.caBundleFile(), ca.trustBundlePem(), { mode: 0o644 });
    return cp;
  }

  caBundleFile(): string {
    return join(this.o.config.control.dataDir, 'ca.pem');
  }

  async listen(): Promise<{ host: string; port: number }> {
    const listen = this.o.listen ?? this.o.config.control.listen;
    const m = /^(.*):(\d+)$/.exec(listen);
    if (!m?.[1] || !m[2]) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `not a host:port address: ${listen}`);
    const host = m[1];
    const tls = await this.issueServerCert();
    this.server = createServer({ ...tls, ca: this.ca.trustBundlePem(), requestCert: true, rejectUnauthorized: false, minVersion: 'TLSv1.2' }, (req, res) => void this.handle(req, res));
    this.server.on('tlsClientError', (err: NodeJS.ErrnoException) => publishTlsFailure({ component: 'control', code: err.code ?? 'unknown' }));
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(Number(m[2]), host, () => resolve());
    });
    const addr = this.server.address();
    return { host, port: typeof addr === 'object' && addr ? addr.port : Number(m[2]) };
  }

  async close(): Promise<void> {
    this.serverCertTimer?.cancel();
    if (this.server) await new Promise<void>((resolve) => { this.server.close(() => resolve()); this.server.closeAllConnections(); });
    this.keyRotation.stop();
    await this.keyRotation.settled();
    this.caRotation.stop();
    await this.caRotation.settled();
    this.workloadRevocations.stop();
    await this.apiKeys.flush();
    await this.kms.close();
  }

  /** The control plane's own TLS certificate, from its CA, renewed at half-life like any workload's. */
  private async issueServerCert(): Promise<{ key: string; cert: string }> {
    const { config, clock } = this.o;
    const spiffeId = `spiffe://${config.trustDomain}/control`;
    const names = new Set(['localhost', '127.0.0.1', new URL(config.control.url).hostname]);
    const dnsNames = [...names].filter((n) => !isIP(n));
    const ipAddresses = [...names].filter((n) => isIP(n));
    const { keyPem, csrPem } = await createWorkloadKeyAndCsr(spiffeId);
    const issued = await this.ca.issue({ csrPem, spiffeId, dnsNames, ipAddresses });
    const half = (issued.notAfter.getTime() - issued.notBefore.getTime()) / 2;
    this.serverCertTimer = clock.setTimer(issued.notBefore.getTime() + half - clock.now(), () => {
      this.issueServerCert().then(
        (t) => this.server.setSecureContext({ ...t, ca: this.ca.trustBundlePem(), minVersion: 'TLSv1.2' }),
        (err: unknown) => this.o.logger.error({ err: (err as Error).message }, 'control plane certificate renewal failed'),
      );
    });
    return { key: keyPem, cert: issued.chainPem };
  }

  /** The verified SPIFFE ID of the TLS peer, when it presented a certificate of our CA. */
  private peerSpiffeId(req: IncomingMessage): string | undefined {
    const socket = req.socket as TLSSocket; // this is an https server
    return socket.authorized ? peerSpiffeId(socket) : undefined;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const requestId = newRequestId();
    const url = new URL(req.url ?? '/', 'https://control.invalid');
    const route = `${req.method} ${url.pathname}`;
    try {
      // The caller's SPIFFE ID, read once for every API below. A revoked workload's certificate still
      // chains to the CA until it expires: nothing is served to it (snapshot, API-key hashes,
      // secrets, transit, checkpoints, blocks), not only renewal.
      const peer = this.safePeer(req);
      if (peer !== undefined && this.workloadRevocations.isRevoked(peer)) throw new PortcullisError('PCL_ERR_WORKLOAD_REVOKED', `workload ${peer} is revoked`);
      switch (route) {
        case 'GET /healthz': return sendJson(res, 200, { status: 'ok' });
        case 'GET /v1/bundle':
          res.writeHead(200, { 'content-type': 'application/x-pem-file', 'cache-control': 'no-store' });
          return void res.end(this.ca.trustBundlePem());
        case 'POST /v1/workload/attest': return await this.attest(req, res, requestId);
        case 'POST /v1/workload/renew': return await this.renew(req, res, requestId);
        case 'GET /v1/snapshot': return this.snapshot(req, res);
        case 'GET /v1/workload/identity': return this.workloadIdentity(req, res);
        case 'POST /v1/admin/join-tokens': return await this.createJoinToken(req, res, requestId);
        case 'POST /v1/admin/users': return await this.addUser(req, res, requestId);
      }
      // Only the OAuth router serves /oauth2/ and /.well-known/: tokens and introspection, the busiest
      // endpoints, go straight there instead of past the nine handlers below (each parses the URL to say no).
      if (url.pathname.startsWith('/oauth2/') || url.pathname.startsWith('/.well-known/')) {
        if (await this.oauth(req, res, { peerSpiffeId: peer, sourceAddress: req.socket.remoteAddress ?? '' })) return;
        throw new PortcullisError('PCL_ERR_ROUTE_NOT_FOUND', `no endpoint ${route}`);
      }
      if (await this.auditApi(req, res)) return;
      if (await this.policyApi(req, res, { peerSpiffeId: peer, requestId })) return;
      if (await this.blockApi(req, res, { peerSpiffeId: peer, requestId })) return;
      if (await this.checkpointApi(req, res, { peerSpiffeId: peer })) return;
      if (await this.apiKeyApi(req, res, { peerSpiffeId: peer, requestId })) return;
      if (await this.usersApi(req, res, { requestId })) return;
      if (await this.clientsApi(req, res, { requestId })) return;
      if (await this.keysApi(req, res, { requestId })) return;
      if (await this.workloadsApi(req, res, { requestId })) return;
      if (await this.kmsApi(req, res, { peerSpiffeId: peer, requestId, sourceAddress: req.socket.remoteAddress ?? '' })) return;
      const handled = await this.oauth(req, res, { peerSpiffeId: peer, sourceAddress: req.socket.remoteAddress ?? '' });
      if (!handled) throw new PortcullisError('PCL_ERR_ROUTE_NOT_FOUND', `no endpoint ${route}`);
    } catch (e) {
      const err = asPortcullisError(e);
      if (err.code === 'PCL_ERR_INTERNAL') this.o.logger.error({ requestId, err: err.message }, 'internal error');
      else this.o.logger.info({ requestId, route, code: err.code, err: err.message }, 'request refused');
      if (res.headersSent) return void res.destroy();
      sendJson(res, err.status, err.toPublicJSON());
    }
  }

  private safePeer(req: IncomingMessage): string | undefined {
    try {
      return this.peerSpiffeId(req);
    } catch {
      return undefined;
    }
  }

  /** DNS and IP SANs a workload may have besides its SPIFFE ID: only the gateway, for the edge. */
  private extraNames(spiffeId: string): { dnsNames: string[]; ipAddresses: string[] } {
    const g = this.o.config.gateway;
    if (spiffeId !== g.spiffeId) return { dnsNames: [], ipAddresses: [] };
    return { dnsNames: g.serverNames.filter((n) => !isIP(n)), ipAddresses: g.serverNames.filter((n) => isIP(n)) };
  }

  private async attest(req: IncomingMessage, res: ServerResponse, requestId: string): Promise<void> {
    const body = await readJsonObject(req);
    const { spiffeId } = await this.joinTokens.consume(stringField(body, 'joinToken', 256));
    await this.issueAndSend(res, requestId, 'workload.attest', spiffeId, stringField(body, 'csr'), req);
  }

  private async renew(req: IncomingMessage, res: ServerResponse, requestId: string): Promise<void> {
    const spiffeId = this.peerSpiffeId(req);
    if (!spiffeId) throw new PortcullisError('PCL_ERR_PEER_CERT_REQUIRED', 'renewal needs the current workload certificate');
    const body = await readJsonObject(req);
    await this.issueAndSend(res, requestId, 'workload.renew', spiffeId, stringField(body, 'csr'), req);
  }

  private async issueAndSend(res: ServerResponse, requestId: string, action: string, spiffeId: string, csrPem: string, req: IncomingMessage): Promise<void> {
    parseSpiffeId(spiffeId, this.o.config.trustDomain);
    const issued = await this.ca.issue({ csrPem, spiffeId, ...this.extraNames(spiffeId) });
    publishAudit({
      type: 'admin', time: new Date(this.o.clock.now()).toISOString(), requestId, component: 'control', action, outcome: 'success',
      who: { spiffeId, sourceAddress: req.socket.remoteAddress ?? '' }, detail: { serial: issued.serial, notAfter: issued.notAfter.toISOString() },
    });
    sendJson(res, 200, { chainPem: issued.chainPem, trustBundlePem: this.ca.trustBundlePem() });
  }

  /** What the SDK needs to check the gateway's user assertions: who the caller is, who the gateway is, and the trust bundle. */
  private workloadIdentity(req: IncomingMessage, res: ServerResponse): void {
    const peer = this.peerSpiffeId(req);
    if (!peer) throw new PortcullisError('PCL_ERR_PEER_CERT_REQUIRED', 'workload identity is for workloads only');
    sendJson(res, 200, { spiffeId: peer, gatewaySpiffeId: this.o.config.gateway.spiffeId, trustBundlePem: this.ca.trustBundlePem() });
  }

  private snapshot(req: IncomingMessage, res: ServerResponse): void {
    const peer = this.peerSpiffeId(req);
    if (!peer) throw new PortcullisError('PCL_ERR_PEER_CERT_REQUIRED', 'the snapshot is for workloads only');
    const doc = {
      issuer: this.o.config.tokens.issuer, jwks: this.keys.jwks(), trustBundlePem: this.ca.trustBundlePem(), policies: this.policies.bundle(), blocks: this.blocks.list(),
      // Only the gateway checks API keys, so only it gets the key hashes and the key to compute them.
      ...(peer === this.o.config.gateway.spiffeId ? { apiKeys: this.apiKeys.snapshot() } : {}),
      revokedTokens: this.revocations.list(),
      revokedGrants: this.revocations.grantList(),
      ...this.workloadRevocations.denyList(),
    };
    const pending = this.policies.pendingBundle();
    if (pending) Object.assign(doc, { pendingPolicies: pending });
    const version = createHash('sha256').update(JSON.stringify(doc)).digest('base64url').slice(0, 16);
    // Data planes poll with the version they hold; unchanged, they get 304 and no body (RFC 9110 §13.1.2).
    const etag = etagOf(version);
    if (matchesEtag(req.headers['if-none-match'], etag)) {
      res.writeHead(304, { etag, 'cache-control': 'no-store' });
      return void res.end();
    }
    res.setHeader('etag', etag);
    sendJson(res, 200, { version, ...doc });
  }

  private async createJoinToken(req: IncomingMessage, res: ServerResponse, requestId: string): Promise<void> {
    this.admin.check(req.headers.authorization);
    const body = await readJsonObject(req);
    const spiffeId = parseSpiffeId(stringField(body, 'spiffeId', 2048), this.o.config.trustDomain).id;
    // The control plane's own identity is never handed to a workload: sidecars trust it for the KMS.
    if (spiffeId === `spiffe://${this.o.config.trustDomain}/control`) throw new PortcullisError('PCL_ERR_SPIFFE_ID_INVALID', `${spiffeId} is reserved for the control plane`);
    const ttlMs = 10 * 60_000;
    const token = await this.joinTokens.create(spiffeId, ttlMs);
    publishAudit({
      type: 'admin', time: new Date(this.o.clock.now()).toISOString(), requestId, component: 'control', action: 'join-token.create', outcome: 'success',
      who: { sub: 'admin' }, detail: { spiffeId },
    });
    sendJson(res, 200, { token, spiffeId, expiresAt: new Date(this.o.clock.now() + ttlMs).toISOString() });
  }

  private async addUser(req: IncomingMessage, res: ServerResponse, requestId: string): Promise<void> {
    this.admin.check(req.headers.authorization);
    const body = await readJsonObject(req);
    const roles = body.roles;
    const attributes = body.attributes ?? {};
    if (!Array.isArray(roles) || !roles.every((r) => typeof r === 'string' && /^[\w.-]{1,64}$/.test(r))) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', 'roles must be a list of role names');
    const bad = checkUserAttributes(attributes);
    if (bad) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', bad);
    const username = stringField(body, 'username', 64);
    await this.users.add({ username, password: stringField(body, 'password', 1024), roles: roles as string[], attributes: attributes as UserAttributes }); // both checked above
    publishAudit({
      type: 'admin', time: new Date(this.o.clock.now()).toISOString(), requestId, component: 'control', action: 'user.add', outcome: 'success',
      who: { sub: 'admin' }, detail: { username, roles: roles.join(',') },
    });
    sendJson(res, 201, { username, roles });
  }
}
