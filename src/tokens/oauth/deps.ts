// What the OAuth endpoints need, validated once when the router is created, then frozen.
import { systemClock, type Clock } from '../../core/clock.js';
import { PortcullisError } from '../../core/errors.js';
import { silentLogger, type Logger } from '../../core/log.js';
import type { Users } from '../../identity/users.js';
import type { Store } from '../../store/store.js';
import { RefreshTokens, type RefreshTokenPolicy } from '../refresh-tokens.js';
import { RevocationList } from '../revocations.js';
import type { SigningKeys } from '../signing-keys.js';
import { SeenAssertions } from './client-assertion.js';
import { ClientRegistry, type ClientLookup } from './client-registry.js';
import type { OAuthClient } from './clients.js';
import { DeviceAuthorizations, type DeviceAuthorizationOptions } from './device-codes.js';
import { UserCodeGuard, type UserCodeGuardOptions } from './user-code-guard.js';

export interface OAuthDeps {
  /** `iss` of tokens and of authorization responses; an https (or loopback http) origin, no path. */
  issuer: string;
  /** `aud` of every access token. */
  audience: string;
  /** Access-token lifetime in seconds. */
  accessTokenTtl: number;
  users: Users;
  keys: SigningKeys;
  store: Store;
  /** Default: the system clock. */
  clock?: Clock;
  /** Default: silent. */
  logger?: Logger;
  /**
   * The registered clients: a fixed list (validated here), or a ClientRegistry that also finds the
   * clients registered through the admin API (the control plane's).
   */
  clients: OAuthClient[] | ClientRegistry;
  /** Keyed hash for identifiers a person typed that may not be identifiers (a failed login's username); default: recorded as typed. */
  hashId?: (value: string) => Promise<string>;
  /**
   * Revoked access tokens. Pass the instance whose list() goes into the data-plane snapshot.
   * Default: a list of its own over `store` (revocations then take effect at introspection and
   * token exchange only, not at the gateway).
   */
  revocations?: RevocationList;
  /** Refresh-token lifetimes in seconds. Default: 30 days absolute, 7 days idle. */
  refreshTokenPolicy?: Partial<RefreshTokenPolicy>;
  /** Checks the admin credential (AdminToken): lets the operator call introspection. Default: none (workloads only). */
  admin?: { check(authorization: string | undefined): void };
  /** Token exchange (RFC 8693) for workloads. Default: off (the grant type is unsupported). */
  tokenExchange?: {
    /** The audiences (RFC 8707 resources) an exchanged token may be issued for; anything else is invalid_target. */
    audiences: string[];
  };
  /** Device authorization (RFC 8628): code lifetime, polling interval, how many at once. Defaults in device-codes.ts. */
  deviceAuthorization?: DeviceAuthorizationOptions & {
    /** Limits on wrong user codes at the verification page. Defaults in user-code-guard.ts. */
    userCodeLimits?: Omit<UserCodeGuardOptions, 'clock'>;
  };
}

/** Per-request facts the server established before calling the router. */
export interface OAuthContext {
  /** SPIFFE ID of the TLS client certificate, set only after the server verified the certificate. */
  peerSpiffeId?: string;
  sourceAddress?: string;
  requestId?: string;
}

export interface ResolvedDeps extends Readonly<Omit<OAuthDeps, 'clients' | 'clock' | 'logger' | 'revocations' | 'refreshTokenPolicy' | 'tokenExchange' | 'deviceAuthorization'>> {
  readonly clock: Clock;
  readonly logger: Logger;
  /** Asked per request: a client removed through the admin API is unknown from then on. */
  readonly clients: ClientLookup & Pick<ClientRegistry, 'knownScopes'>;
  readonly revocations: RevocationList;
  readonly refreshTokens: RefreshTokens;
  readonly assertions: SeenAssertions;
  /** Undefined when token exchange is off. */
  readonly tokenExchange: { readonly audiences: ReadonlySet<string> } | undefined;
  readonly deviceAuthorizations: DeviceAuthorizations;
  readonly userCodeGuard: UserCodeGuard;
  /** Absolute endpoint URLs, derived from the issuer. */
  readonly endpoints: { authorization: string; token: string; jwks: string; revocation: string; introspection: string; deviceAuthorization: string; deviceVerification: string };
}

export const PATHS = {
  metadata: '/.well-known/oauth-authorization-server',
  openidConfiguration: '/.well-known/openid-configuration',
  jwks: '/.well-known/jwks.json',
  authorize: '/oauth2/authorize',
  token: '/oauth2/token',
  revoke: '/oauth2/revoke',
  introspect: '/oauth2/introspect',
  deviceAuthorization: '/oauth2/device_authorization',
  /** Where a person enters a device's user code (RFC 8628 verification_uri): short, to type by hand. */
  device: '/device',
} as const;

export function resolveDeps(d: OAuthDeps): ResolvedDeps {
  const issuer = checkIssuer(d.issuer);
  if (!d.audience) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', 'OAuth audience is required');
  if (!Number.isSafeInteger(d.accessTokenTtl) || d.accessTokenTtl <= 0 || d.accessTokenTtl > 86_400) {
    throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', 'accessTokenTtl must be 1-86400 seconds');
  }
  const clock = d.clock ?? systemClock;
  const revocations = d.revocations ?? new RevocationList({ store: d.store, clock });
  const device = d.deviceAuthorization ?? {};
  return Object.freeze({
    issuer,
    audience: d.audience,
    accessTokenTtl: d.accessTokenTtl,
    users: d.users,
    keys: d.keys,
    store: d.store,
    clock,
    logger: d.logger ?? silentLogger,
    clients: d.clients instanceof ClientRegistry ? d.clients : ClientRegistry.fixed(d.clients),
    ...(d.hashId ? { hashId: d.hashId } : {}),
    ...(d.admin ? { admin: d.admin } : {}),
    revocations,
    refreshTokens: new RefreshTokens({ store: d.store, clock, revoker: revocations, ...(d.refreshTokenPolicy ? { policy: d.refreshTokenPolicy } : {}) }),
    assertions: new SeenAssertions(d.store, clock),
    tokenExchange: d.tokenExchange ? Object.freeze({ audiences: checkAudiences(d.tokenExchange.audiences) }) : undefined,
    deviceAuthorizations: new DeviceAuthorizations(d.store, clock, { ttlSec: device.ttlSec, intervalSec: device.intervalSec, maxPending: device.maxPending }),
    userCodeGuard: new UserCodeGuard({ ...device.userCodeLimits, clock }),
    endpoints: Object.freeze({
      authorization: issuer + PATHS.authorize,
      token: issuer + PATHS.token,
      jwks: issuer + PATHS.jwks,
      revocation: issuer + PATHS.revoke,
      introspection: issuer + PATHS.introspect,
      deviceAuthorization: issuer + PATHS.deviceAuthorization,
      deviceVerification: issuer + PATHS.device,
    }),
  });
}

/** Exchange targets: non-empty, printable, no whitespace (they become `aud` values verbatim). */
function checkAudiences(audiences: string[]): ReadonlySet<string> {
  if (!Array.isArray(audiences) || audiences.length === 0) {
    throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', 'tokenExchange.audiences must list at least one audience');
  }
  for (const a of audiences) {
    if (typeof a !== 'string' || !/^[\x21-\x7e]{1,2048}$/.test(a)) {
      throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', 'tokenExchange.audiences entries must be 1-2048 printable characters without spaces');
    }
  }
  return new Set(audiences);
}

/** RFC 8414 §2: https, no query or fragment. We also require no path, since routes are at the root. */
function checkIssuer(issuer: string): string {
  let u: URL;
  try {
    u = new URL(issuer);
  } catch {
    throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `OAuth issuer "${issuer}" is not a URL`);
  }
  const loopback = u.hostname === '127.0.0.1' || u.hostname === '[::1]' || u.hostname === 'localhost';
  if (u.protocol !== 'https:' && !(u.protocol === 'http:' && loopback)) {
    throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `OAuth issuer "${issuer}" must be https (plain http only on loopback)`);
  }
  // Exactly the origin, as written: verifiers compare `iss` as a string, so "…/" would never match.
  if (issuer !== u.origin) {
    throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `OAuth issuer "${issuer}" must be a bare origin such as "${u.origin}" (no path, trailing slash, query or fragment)`);
  }
  return u.origin;
}
