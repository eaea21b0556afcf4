// Device authorizations (RFC 8628), kept in the store like authorization codes and login
// challenges, so that every control-plane replica sees them. A device authorization is:
//   d:<hash of device code>  the request: client, scope, expiry, interval (written once);
//   u:<hash of user code>    the way to it from the verification page (taken by the decision);
//   p:<device hash>          polling: last poll and current interval (slow_down adds 5 s);
//   a:<device hash>          the person's decision, created once (store.insert: the first wins);
//   c:<hash of ticket>       a consent ticket: a signed-in person may decide for one user code;
//   r:<device hash>          what a redeemed code issued, so a replay can revoke it.
// Codes and tickets are never stored, only their SHA-256. The device code is 32 random bytes; the
// user code 8 characters of RFC 8628 §6.1's base-20 alphabet (34.5 bits, so the verification page
// limits guesses: user-code-guard.ts). Records outlive their expiry by EXPIRED_GRACE_MS (a late
// poll still gets expired_token), then a sweep deletes them; at most `maxPending` exist at once.
import { createHash, randomBytes, randomInt } from 'node:crypto';
import type { Clock } from '../../core/clock.js';
import { PortcullisError } from '../../core/errors.js';
import { NS, type Store } from '../../store/store.js';

/** RFC 8628 §6.1: no vowels (no words), no easily confused characters. */
export const USER_CODE_ALPHABET = 'BCDFGHJKLMNPQRSTVWXZ';
export const USER_CODE_LENGTH = 8;
/** RFC 8628 §3.5: slow_down adds 5 seconds to the interval, for this and all later requests. */
export const SLOW_DOWN_STEP_SEC = 5;

export interface DeviceAuthorizationOptions {
  /** Lifetime of a device and user code, seconds. Default 600 (RFC 8628's example is 1800; a person at a browser needs far less). */
  ttlSec?: number;
  /** Minimum seconds between polls (RFC 8628 §3.2 `interval`). Default 5, the RFC's default. */
  intervalSec?: number;
  /** Device authorizations kept at once (pending, or expired and not yet swept). Default 10 000. */
  maxPending?: number;
}

const DEFAULTS = { ttlSec: 600, intervalSec: 5, maxPending: 10_000 } as const;
/** A consent ticket lasts as long as a login challenge: the time to read the page and decide. */
const CONSENT_TTL_MS = 5 * 60_000;
const EXPIRED_GRACE_MS = 10 * 60_000;
const PURGE_INTERVAL_MS = 60_000;
/** When full, a sweep to make room runs at most this often (a flood must not turn into list() calls). */
const FULL_SWEEP_GAP_MS = 5_000;
/** Typed codes longer than this are not looked at (a code with dashes and spaces is ~12). */
const MAX_TYPED_USER_CODE = 32;

const DEVICE_CODE = /^[A-Za-z0-9_-]{43}$/;
const TICKET = /^[A-Za-z0-9_-]{43}$/;
const hash = (s: string): string => createHash('sha256').update(s, 'utf8').digest('base64url');

interface DeviceRecord { clientId: string; scope: string[]; userKey: string; expiresAt: number; interval: number }
interface UserCodeRecord { deviceKey: string; clientId: string; scope: string[]; expiresAt: number }
interface PollRecord { lastPollAt: number; interval: number }
interface DecisionRecord { approved: boolean; username: string; at: number }
interface ConsentRecord { username: string; userKey: string; expiresAt: number }
interface RedeemedRecord { jti: string; exp: number; refreshFamily?: string; expiresAt: number }

export interface IssuedDeviceAuthorization {
  deviceCode: string;
  /** As shown to people: XXXX-XXXX. */
  userCode: string;
  expiresIn: number;
  interval: number;
}

/** A user code that names a live device authorization. */
export interface PendingDeviceAuthorization {
  userKey: string;
  clientId: string;
  scope: string[];
  /** The code as shown: XXXX-XXXX. */
  userCode: string;
}

export type PollOutcome =
  | { state: 'unknown' }
  | { state: 'expired' }
  | { state: 'pending' }
  | { state: 'slow_down'; interval: number }
  | { state: 'denied' }
  | { state: 'approved'; deviceKey: string; username: string; scope: string[]; expiresAt: number }
  /** Redeemed before: what it issued, for revocation. */
  | { state: 'replayed'; jti: string; exp: number; refreshFamily?: string };

/** The canonical form of a typed user code (RFC 8628 §6.1: case and punctuation ignored), or undefined. */
export function normalizeUserCode(typed: string): string | undefined {
  if (typeof typed !== 'string' || typed.length > MAX_TYPED_USER_CODE) return undefined;
  const code = typed.toUpperCase().replace(/[\s-]/g, '');
  if (code.length !== USER_CODE_LENGTH) return undefined;
  for (const ch of code) if (!USER_CODE_ALPHABET.includes(ch)) return undefined;
  return code;
}

/** XXXX-XXXX, the form people read and type. */
export function formatUserCode(code: string): string {
  return `${code.slice(0, 4)}-${code.slice(4)}`;
}

function newUserCode(): string {
  let code = '';
  for (let i = 0; i < USER_CODE_LENGTH; i++) code += USER_CODE_ALPHABET[randomInt(USER_CODE_ALPHABET.length)];
  return code;
}

export class DeviceAuthorizations {
  readonly ttlSec: number;
  readonly intervalSec: number;
  readonly maxPending: number;
  /** Device records in the store, as of the last sweep plus those issued since (this replica's view). */
  private count = 0;
  private lastSweep = Number.NEGATIVE_INFINITY;

  constructor(private readonly store: Store, private readonly clock: Clock, options: DeviceAuthorizationOptions = {}) {
    const o = { ttlSec: options.ttlSec ?? DEFAULTS.ttlSec, intervalSec: options.intervalSec ?? DEFAULTS.intervalSec, maxPending: options.maxPending ?? DEFAULTS.maxPending };
    for (const [k, v] of Object.entries(o)) {
      if (!Number.isSafeInteger(v) || v < 1) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `deviceAuthorization.${k} must be a positive integer`);
    }
    this.ttlSec = o.ttlSec;
    this.intervalSec = o.intervalSec;
    this.maxPending = o.maxPending;
  }

  /** A new device authorization; undefined when `maxPending` are pending already. */
  async issue(clientId: string, scope: string[]): Promise<IssuedDeviceAuthorization | undefined> {
    const now = this.clock.now();
    if (now - this.lastSweep >= PURGE_INTERVAL_MS || (this.count >= this.maxPending && now - this.lastSweep >= FULL_SWEEP_GAP_MS)) await this.sweep(now);
    if (this.count >= this.maxPending) return undefined;
    const deviceCode = randomBytes(32).toString('base64url');
    const deviceKey = hash(deviceCode);
    const expiresAt = now + this.ttlSec * 1000;
    // A user code already in use is drawn again (create-only write); 20^8 codes make this rare.
    for (let i = 0; i < 5; i++) {
      const userCode = newUserCode();
      const userKey = hash(userCode);
      if (!(await this.store.insert(NS.deviceCodes, `u:${userKey}`, { deviceKey, clientId, scope, expiresAt } satisfies UserCodeRecord))) continue;
      await this.store.put(NS.deviceCodes, `d:${deviceKey}`, { clientId, scope, userKey, expiresAt, interval: this.intervalSec } satisfies DeviceRecord);
      this.count++;
      return { deviceCode, userCode: formatUserCode(userCode), expiresIn: this.ttlSec, interval: this.intervalSec };
    }
    throw new PortcullisError('PCL_ERR_INTERNAL', 'no free user code after 5 draws');
  }

  /** The live device authorization a typed user code names; undefined for a wrong, used or expired code. */
  async lookupUserCode(typed: string): Promise<PendingDeviceAuthorization | undefined> {
    const code = normalizeUserCode(typed);
    if (!code) return undefined;
    const userKey = hash(code);
    const r = await this.store.get<UserCodeRecord>(NS.deviceCodes, `u:${userKey}`);
    if (!r || this.clock.now() >= r.expiresAt) return undefined;
    return { userKey, clientId: r.clientId, scope: [...r.scope], userCode: formatUserCode(code) };
  }

  /** A ticket that lets `username`, just signed in, decide on the user code once. */
  async createConsent(userKey: string, username: string): Promise<string> {
    const ticket = randomBytes(32).toString('base64url');
    await this.store.put(NS.deviceCodes, `c:${hash(ticket)}`, { username, userKey, expiresAt: this.clock.now() + CONSENT_TTL_MS } satisfies ConsentRecord);
    return ticket;
  }

  /**
   * Records the person's decision, spending the ticket and the user code. Undefined when the ticket
   * is unknown, used or expired, or the request was decided, redeemed or expired meanwhile.
   */
  async decide(ticket: string, approved: boolean): Promise<{ username: string; clientId: string; scope: string[] } | undefined> {
    if (!TICKET.test(ticket)) return undefined;
    const now = this.clock.now();
    const c = await this.store.take<ConsentRecord>(NS.deviceCodes, `c:${hash(ticket)}`);
    if (!c || now >= c.expiresAt) return undefined;
    const u = await this.store.take<UserCodeRecord>(NS.deviceCodes, `u:${c.userKey}`);
    if (!u || now >= u.expiresAt) return undefined;
    const decided = await this.store.insert(NS.deviceCodes, `a:${u.deviceKey}`, { approved, username: c.username, at: now } satisfies DecisionRecord);
    return decided ? { username: c.username, clientId: u.clientId, scope: u.scope } : undefined;
  }

  /**
   * One poll of the token endpoint (RFC 8628 §3.4-3.5). An approved authorization is taken, so it
   * yields tokens once; the caller reports what it issued with `redeemed`.
   */
  async poll(deviceCode: string, clientId: string): Promise<PollOutcome> {
    if (!DEVICE_CODE.test(deviceCode)) return { state: 'unknown' };
    const key = hash(deviceCode);
    const now = this.clock.now();
    const d = await this.store.get<DeviceRecord>(NS.deviceCodes, `d:${key}`);
    if (!d) {
      const r = await this.store.get<RedeemedRecord>(NS.deviceCodes, `r:${key}`);
      return r ? { state: 'replayed', jti: r.jti, exp: r.exp, ...(r.refreshFamily ? { refreshFamily: r.refreshFamily } : {}) } : { state: 'unknown' };
    }
    // Another client's code: as if unknown, and its polling state is left alone.
    if (d.clientId !== clientId) return { state: 'unknown' };
    if (now >= d.expiresAt) return { state: 'expired' };
    const decision = await this.store.get<DecisionRecord>(NS.deviceCodes, `a:${key}`);
    if (decision && !decision.approved) return { state: 'denied' };
    if (decision) {
      // The atomic take decides which of two concurrent polls gets the tokens.
      const taken = await this.store.take<DeviceRecord>(NS.deviceCodes, `d:${key}`);
      if (!taken) return { state: 'unknown' };
      this.count = Math.max(0, this.count - 1);
      await this.store.delete(NS.deviceCodes, `a:${key}`);
      await this.store.delete(NS.deviceCodes, `p:${key}`);
      return { state: 'approved', deviceKey: key, username: decision.username, scope: taken.scope, expiresAt: taken.expiresAt };
    }
    const p = await this.store.get<PollRecord>(NS.deviceCodes, `p:${key}`);
    const interval = p?.interval ?? d.interval;
    if (p && now - p.lastPollAt < interval * 1000) {
      const slower = interval + SLOW_DOWN_STEP_SEC;
      await this.store.put(NS.deviceCodes, `p:${key}`, { lastPollAt: now, interval: slower } satisfies PollRecord);
      return { state: 'slow_down', interval: slower };
    }
    await this.store.put(NS.deviceCodes, `p:${key}`, { lastPollAt: now, interval } satisfies PollRecord);
    return { state: 'pending' };
  }

  /** What an approved authorization issued, kept until it expires so that a replay revokes it. */
  async redeemed(deviceKey: string, issued: { jti: string; exp: number; refreshFamily?: string }, expiresAt: number): Promise<void> {
    await this.store.put(NS.deviceCodes, `r:${deviceKey}`, { ...issued, expiresAt: expiresAt + EXPIRED_GRACE_MS } satisfies RedeemedRecord);
  }

  /** Deletes what has expired; recounts the device records. */
  private async sweep(now: number): Promise<void> {
    this.lastSweep = now;
    const all = await this.store.list<{ expiresAt?: number }>(NS.deviceCodes);
    const devices = new Set<string>();
    let count = 0;
    for (const { key, value } of all) {
      const kind = key.slice(0, 2);
      const expiresAt = typeof value.expiresAt === 'number' ? value.expiresAt : 0;
      if (kind === 'd:') {
        if (expiresAt + EXPIRED_GRACE_MS <= now) await this.store.delete(NS.deviceCodes, key);
        else { devices.add(key.slice(2)); count++; }
      } else if (kind === 'u:' || kind === 'c:' || kind === 'r:') {
        if (expiresAt <= now) await this.store.delete(NS.deviceCodes, key);
      }
    }
    // Polling state and decisions live as long as their device record.
    for (const { key } of all) {
      const kind = key.slice(0, 2);
      if ((kind === 'p:' || kind === 'a:') && !devices.has(key.slice(2))) await this.store.delete(NS.deviceCodes, key);
    }
    this.count = count;
  }
}
