// A person logging in from a machine without a browser (RFC 8628): ask for a device and a user
// code, show the person where to enter the code, then poll the token endpoint no faster than the
// server's interval, adding 5 s at every slow_down (§3.5), until the person allowed or denied it
// or the codes expired. What the server sends is checked before it is shown (printable, http(s)).
import { setTimeout as delay } from 'node:timers/promises';
import { PortcullisError } from '../../core/errors.js';
import { DEVICE_CODE_GRANT } from '../oauth/clients.js';
import { PATHS } from '../oauth/deps.js';
import { checkBaseUrl, clientAgent, oauthErrorOf, parseJson, postForm, printable, refusal, tokenSet, type TokenSet } from './http.js';

/** What the person needs: shown by the caller (the CLI prints it on stderr). */
export interface DevicePrompt {
  verificationUri: string;
  /** The same with the code in it, for a link or a QR code; absent when the server sent none. */
  verificationUriComplete?: string;
  userCode: string;
  expiresIn: number;
}

export interface DeviceLoginOptions {
  controlUrl: string;
  /** PEM trust anchors for the control plane's TLS certificate (the Portcullis CA). */
  caPem?: string;
  clientId: string;
  /** Scope to ask for (`offline_access` for a refresh token). Default: none. */
  scope?: string;
  prompt(p: DevicePrompt): void;
  /** Waits between polls. Default: a real timer (tests pass their own). */
  sleep?: (ms: number) => Promise<void>;
  /** Default: Date.now. */
  now?: () => number;
}

/** RFC 8628 §3.2: the default when the server names no interval. */
const DEFAULT_INTERVAL_SEC = 5;
/** A server asking for more than this is not one we wait for. */
const MAX_INTERVAL_SEC = 300;

export async function loginWithDevice(o: DeviceLoginOptions): Promise<TokenSet> {
  const base = checkBaseUrl(o.controlUrl);
  const url = (path: string): string => new URL(path, base).href;
  const sleep = o.sleep ?? ((ms: number) => delay(ms));
  const now = o.now ?? Date.now;
  const agent = clientAgent(o.caPem);
  try {
    const start = await postForm(agent, url(PATHS.deviceAuthorization), { client_id: o.clientId, ...(o.scope ? { scope: o.scope } : {}) });
    if (start.status !== 200) throw refusal(start, 'device authorization');
    const a = checkDeviceAuthorization(parseJson(start.body));
    const deadline = now() + a.expiresIn * 1000;
    o.prompt({ verificationUri: a.verificationUri, userCode: a.userCode, expiresIn: a.expiresIn, ...(a.verificationUriComplete ? { verificationUriComplete: a.verificationUriComplete } : {}) });

    let interval = a.interval;
    for (;;) {
      await sleep(interval * 1000);
      if (now() >= deadline) throw new PortcullisError('PCL_ERR_OAUTH_EXPIRED_TOKEN', 'the code expired before the sign-in was allowed: start again');
      const poll = await postForm(agent, url(PATHS.token), { grant_type: DEVICE_CODE_GRANT, device_code: a.deviceCode, client_id: o.clientId });
      if (poll.status === 200) return tokenSet(poll, 'device token request');
      const error = oauthErrorOf(poll);
      if (error === 'authorization_pending') continue;
      if (error === 'slow_down') {
        interval = Math.min(interval + 5, MAX_INTERVAL_SEC);
        continue;
      }
      if (error === 'access_denied') throw new PortcullisError('PCL_ERR_OAUTH_ACCESS_DENIED', 'the sign-in was denied on the verification page');
      if (error === 'expired_token') throw new PortcullisError('PCL_ERR_OAUTH_EXPIRED_TOKEN', 'the code expired before the sign-in was allowed: start again');
      throw refusal(poll, 'device token request');
    }
  } finally {
    await agent.close();
  }
}

interface DeviceAuthorization { deviceCode: string; userCode: string; verificationUri: string; verificationUriComplete?: string; expiresIn: number; interval: number }

/** RFC 8628 §3.2, member by member: anything we would print must be printable and bounded. */
function checkDeviceAuthorization(v: unknown): DeviceAuthorization {
  const r = (typeof v === 'object' && v !== null ? v : {}) as Record<string, unknown>; // each member checked below
  const bad = (what: string): PortcullisError => new PortcullisError('PCL_ERR_INTERNAL', `device authorization response: ${what}`);
  const { device_code: deviceCode, user_code: userCode, verification_uri: uri, verification_uri_complete: complete, expires_in: expiresIn, interval } = r;
  if (typeof deviceCode !== 'string' || deviceCode.length === 0 || deviceCode.length > 512) throw bad('no device_code');
  if (typeof userCode !== 'string' || !/^[\x21-\x7e]{1,32}$/.test(userCode)) throw bad('no printable user_code');
  if (typeof expiresIn !== 'number' || !Number.isFinite(expiresIn) || expiresIn <= 0) throw bad('no expires_in');
  if (interval !== undefined && (typeof interval !== 'number' || !Number.isFinite(interval) || interval < 0)) throw bad('interval is not a number');
  const verificationUri = httpUrl(uri);
  if (!verificationUri) throw bad('verification_uri is not an http(s) URL');
  const verificationUriComplete = complete === undefined ? undefined : httpUrl(complete);
  return {
    deviceCode, userCode, verificationUri, expiresIn,
    interval: Math.min(Math.max(1, Math.ceil(interval ?? DEFAULT_INTERVAL_SEC)), MAX_INTERVAL_SEC),
    ...(verificationUriComplete ? { verificationUriComplete } : {}),
  };
}

function httpUrl(v: unknown): string | undefined {
  if (typeof v !== 'string' || v.length > 2048) return undefined;
  try {
    const u = new URL(v);
    return (u.protocol === 'https:' || u.protocol === 'http:') && !u.username && !u.password ? printable(u.href, 2048) : undefined;
  } catch {
    return undefined;
  }
}
