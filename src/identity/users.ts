// People who log in through the token service. Passwords are hashed with argon2id (OWASP
// parameters) and stored as a PHC string; the hash never leaves this module, and a hash made with
// other parameters is replaced at the next successful login. Every login failure (unknown user,
// disabled user, wrong password) costs one hash verification and raises the same
// PCL_ERR_LOGIN_FAILED, so neither the answer nor its timing tells which one it was.
// The second factor is TOTP (RFC 6238, totp.ts): its secret is sealed with the KeySealer, never
// stored in clear, and each code works once. Roles listed in `privilegedRoles` require it.
import { randomBytes } from 'node:crypto';
import { Algorithm, hash, parseOptions, verify } from '@node-rs/argon2';
import { systemClock, type Clock } from '../core/clock.js';
import { PortcullisError } from '../core/errors.js';
import { checkUserAttributes, type UserAttributes } from '../core/principal.js';
import type { KeySealer } from '../kms/key-sealer.js';
import { KeyedMutex } from '../kms/mutex.js';
import { NS, type Store } from '../store/store.js';
import { LoginThrottle } from './login-throttle.js';
import { base32Encode, generateTotpSecret, otpauthUrl, verifyTotp } from './totp.js';

/** A user as the rest of Portcullis sees it: never the password hash. */
export interface User {
  username: string;
  roles: string[];
  attributes: UserAttributes;
  disabled: boolean;
}

export interface NewUser {
  username: string;
  password: string;
  roles: string[];
  attributes?: UserAttributes;
}

/** A user as the admin API lists them: never a hash or a secret. */
export interface UserSummary extends User {
  createdAt: string;
  /** `pending`: enrolled, not confirmed yet (the first valid code confirms it). */
  totp: 'none' | 'pending' | 'active';
}

/** What an enrolment hands out, once: the secret for an authenticator app. */
export interface TotpEnrolment {
  secretBase32: string;
  /** otpauth://totp/… (the Key Uri Format authenticator apps read, e.g. from a QR code). */
  otpauthUrl: string;
}

/** What a user with the right password still needs. */
export type SecondFactor =
  /** Nothing: signed in. */
  | 'none'
  /** A one-time code from the enrolled (or pending) TOTP secret. */
  | 'totp'
  /** A privileged role without an enrolled second factor: refused until an administrator enrols one. */
  | 'enrolment-required';

/** Password hashing, injectable (tests count calls through it). */
export interface PasswordHasher {
  hash(password: string): Promise<string>;
  /** Throws on a malformed hash. */
  verify(phc: string, password: string): Promise<boolean>;
  /** True when `phc` was made with other parameters than the current ones. */
  needsRehash(phc: string): boolean;
}

export interface UsersOptions {
  /** Default: the system clock. */
  clock?: Clock;
  /** Default: argon2id with ARGON2_OPTIONS. */
  hasher?: PasswordHasher;
  /** Seals TOTP secrets at rest. Without it TOTP cannot be enrolled (PCL_ERR_INTERNAL). */
  sealer?: KeySealer;
  /** Roles whose users must sign in with TOTP. Default: none. */
  privilegedRoles?: string[];
  /** Login throttling the sign-in form applies. Default: a LoginThrottle with its defaults on the same store and `clock`. */
  throttle?: LoginThrottle;
  /** Issuer shown in authenticator apps. Default `Portcullis`. */
  totpIssuer?: string;
}

interface SealedTotp {
  /** KeySealer envelope of the raw secret, label `totp:<username>`. */
  sealed: string;
  createdAt: string;
}

/** The stored record (NS.users, key = username). */
interface UserRecord extends User {
  /** argon2id PHC string. */
  passwordHash: string;
  createdAt: string;
  /** The active second factor, with the last time step used (a code works once). */
  totp?: SealedTotp & { lastUsedStep: number; confirmedAt: string };
  /** Enrolled and not yet confirmed; replaces `totp` once a code from it is accepted. */
  totpPending?: SealedTotp;
}

/** OWASP Password Storage Cheat Sheet, argon2id: m=19 MiB, t=2, p=1. */
export const ARGON2_OPTIONS = {
  algorithm: Algorithm.Argon2id,
  memoryCost: 19456,
  timeCost: 2,
  parallelism: 1,
} as const;

/** True when a PHC string is not argon2id with exactly ARGON2_OPTIONS (older, weaker or unreadable). */
export function needsRehash(phc: string): boolean {
  try {
    const p = parseOptions(phc);
    return p.algorithm !== ARGON2_OPTIONS.algorithm || p.memoryCost !== ARGON2_OPTIONS.memoryCost
      || p.timeCost !== ARGON2_OPTIONS.timeCost || p.parallelism !== ARGON2_OPTIONS.parallelism;
  } catch {
    return true;
  }
}

/** The default hasher: argon2id, OWASP parameters. */
export const argon2Hasher: PasswordHasher = {
  hash: (password) => hash(password, ARGON2_OPTIONS),
  verify: (phc, password) => verify(phc, password),
  needsRehash,
};

const USERNAME = /^[a-z0-9._-]{1,64}$/;
/** Long enough for any passphrase, short enough that hashing it cannot be used as a DoS lever. */
const MAX_PASSWORD_LENGTH = 1024;
const ROLE = /^[A-Za-z0-9._:-]{1,64}$/;

export function isValidUsername(username: unknown): username is string {
  return typeof username === 'string' && USERNAME.test(username);
}

function checkPassword(password: unknown): asserts password is string {
  if (typeof password !== 'string' || password.length === 0 || password.length > MAX_PASSWORD_LENGTH) {
    throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `password must be 1-${MAX_PASSWORD_LENGTH} characters`);
  }
}

const totpLabel = (username: string): string => `totp:${username}`;

export class Users {
  /** Hash of a random password, verified against when the user is unknown (same cost, same answer). */
  private readonly dummyHash: Promise<string>;
  private readonly clock: Clock;
  private readonly hasher: PasswordHasher;
  private readonly sealer: KeySealer | undefined;
  private readonly totpIssuer: string;
  /** Read-modify-write of one user's record, one at a time (a TOTP step must be spent once). */
  private readonly mutex = new KeyedMutex();
  /** Roles that require TOTP. */
  readonly privilegedRoles: ReadonlySet<string>;
  /** The throttle the sign-in form asks before checking anything. */
  readonly throttle: LoginThrottle;

  constructor(private readonly store: Store, options: UsersOptions = {}) {
    this.clock = options.clock ?? systemClock;
    this.hasher = options.hasher ?? argon2Hasher;
    this.sealer = options.sealer;
    this.totpIssuer = options.totpIssuer ?? 'Portcullis';
    const privileged = options.privilegedRoles ?? [];
    if (!Array.isArray(privileged) || !privileged.every((r) => typeof r === 'string' && ROLE.test(r))) {
      throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', 'privilegedRoles must be role names');
    }
    this.privilegedRoles = new Set(privileged);
    this.throttle = options.throttle ?? new LoginThrottle({ store, clock: this.clock });
    // Computed up front so the first unknown-user login is not slower than the others.
    this.dummyHash = this.hasher.hash(randomBytes(32).toString('base64url'));
    this.dummyHash.catch(() => undefined); // a failure resurfaces, and is handled, at first use
  }

  async add(u: NewUser): Promise<void> {
    if (!isValidUsername(u.username)) {
      throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', 'username must be 1-64 characters of [a-z0-9._-]');
    }
    checkPassword(u.password);
    if (!Array.isArray(u.roles) || !u.roles.every((r) => typeof r === 'string' && ROLE.test(r))) {
      throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', 'roles must be an array of 1-64 character names of [A-Za-z0-9._:-]');
    }
    const attributes = u.attributes ?? {};
    const bad = checkUserAttributes(attributes);
    if (bad) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', bad);
    // Fail fast before paying for a hash; the insert below is what guarantees uniqueness.
    if (await this.store.get(NS.users, u.username)) throw userExists(u.username);
    const record: UserRecord = {
      username: u.username,
      roles: [...new Set(u.roles)],
      attributes: { ...attributes },
      disabled: false,
      passwordHash: await this.hasher.hash(u.password),
      createdAt: new Date(this.clock.now()).toISOString(),
    };
    if (!(await this.store.insert(NS.users, u.username, record))) throw userExists(u.username);
  }

  async get(username: string): Promise<User | undefined> {
    const r = await this.record(username);
    return r ? toUser(r) : undefined;
  }

  /** Every user, by name. */
  async list(): Promise<UserSummary[]> {
    const all = await this.store.list<UserRecord>(NS.users);
    return all.map(({ value: r }) => ({
      ...toUser(r),
      createdAt: r.createdAt,
      totp: r.totp ? 'active' as const : r.totpPending ? 'pending' as const : 'none' as const,
    })).sort((a, b) => (a.username < b.username ? -1 : a.username > b.username ? 1 : 0));
  }

  /** Enables or disables a user; a disabled user cannot log in and gets no new tokens. */
  async setDisabled(username: string, disabled: boolean): Promise<void> {
    await this.update(username, (r) => ({ ...r, disabled }));
  }

  /** Replaces the password (hashed with the current parameters). */
  async setPassword(username: string, password: string): Promise<void> {
    checkPassword(password);
    if (!(await this.record(username))) throw userNotFound();
    const passwordHash = await this.hasher.hash(password);
    await this.update(username, (r) => ({ ...r, passwordHash }));
  }

  /** Removes a user for good, with their second factor; throws PCL_ERR_USER_NOT_FOUND. */
  async delete(username: string): Promise<void> {
    await this.mutex.run(username, async () => {
      if (!isValidUsername(username) || !(await this.store.delete(NS.users, username))) throw userNotFound();
    });
    // A new account of the same name must not inherit counters or known sources.
    await this.throttle.forgetAccount(username);
  }

  /**
   * Returns the user when the password is right and the user is enabled; otherwise throws
   * PCL_ERR_LOGIN_FAILED after the same amount of work, whatever the reason. A hash made with
   * other parameters than ARGON2_OPTIONS is replaced on success.
   */
  async verifyPassword(username: string, password: string): Promise<User> {
    const r = await this.record(username);
    const candidate = typeof password === 'string' && password.length <= MAX_PASSWORD_LENGTH ? password : '';
    let ok = false;
    try {
      ok = await this.hasher.verify(r?.passwordHash ?? (await this.dummyHash), candidate);
    } catch (err) {
      // A corrupt stored hash is a server problem, but the client still only learns "login failed".
      throw new PortcullisError('PCL_ERR_LOGIN_FAILED', 'password verification failed', { cause: err });
    }
    if (!r) throw new PortcullisError('PCL_ERR_LOGIN_FAILED', UNKNOWN_USER);
    if (!ok) throw new PortcullisError('PCL_ERR_LOGIN_FAILED', 'wrong password');
    if (r.disabled) throw new PortcullisError('PCL_ERR_LOGIN_FAILED', 'user disabled');
    if (this.hasher.needsRehash(r.passwordHash)) await this.rehash(r, candidate);
    return toUser(r);
  }

  /** True when one of the user's roles is privileged (TOTP required). */
  isPrivileged(user: Pick<User, 'roles'>): boolean {
    return user.roles.some((role) => this.privilegedRoles.has(role));
  }

  /** What a user whose password was right still needs before signing in. */
  async secondFactor(username: string): Promise<SecondFactor> {
    const r = await this.record(username);
    if (!r) throw userNotFound();
    if (r.totp || r.totpPending) return 'totp';
    return this.isPrivileged(r) ? 'enrolment-required' : 'none';
  }

  /**
   * Starts (or restarts) a TOTP enrolment: a new secret, sealed, pending until a code from it is
   * accepted (confirmTotp, or the user's next sign-in). An active secret keeps working until then.
   */
  async enrollTotp(username: string): Promise<TotpEnrolment> {
    const sealer = this.sealer;
    if (!sealer) throw new PortcullisError('PCL_ERR_INTERNAL', 'TOTP enrolment needs a key sealer (Users option `sealer`)');
    if (!(await this.record(username))) throw userNotFound();
    const secret = generateTotpSecret();
    const sealed = await sealer.wrap(secret, totpLabel(username));
    await this.update(username, (r) => ({ ...r, totpPending: { sealed, createdAt: new Date(this.clock.now()).toISOString() } }));
    const secretBase32 = base32Encode(secret);
    secret.fill(0);
    return { secretBase32, otpauthUrl: otpauthUrl({ issuer: this.totpIssuer, account: username, secretBase32 }) };
  }

  /** Activates a pending enrolment with a code from it; throws PCL_ERR_TOTP_INVALID for a wrong one. */
  async confirmTotp(username: string, code: string): Promise<void> {
    await this.mutex.run(username, async () => {
      const r = await this.record(username);
      if (!r) throw userNotFound();
      if (!r.totpPending) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', 'no TOTP enrolment pending for this user');
      const step = await this.matchStep(username, r.totpPending.sealed, code, undefined);
      if (step === undefined) throw new PortcullisError('PCL_ERR_TOTP_INVALID', 'one-time code does not match the pending enrolment');
      await this.store.put(NS.users, username, activate(r, r.totpPending, step, this.clock));
    });
  }

  /** Removes the second factor, active and pending (a lost device). True when there was one. */
  async removeTotp(username: string): Promise<boolean> {
    let had = false;
    await this.update(username, (r) => {
      had = r.totp !== undefined || r.totpPending !== undefined;
      const rest = { ...r };
      delete rest.totp;
      delete rest.totpPending;
      return rest;
    });
    return had;
  }

  /**
   * The sign-in's second step: true when `code` is a current code of the user's active secret
   * (or of the pending one, which it then activates) that was not used before. False for a wrong,
   * replayed or expired code, and for a user that is gone or disabled.
   */
  async verifyTotp(username: string, code: string): Promise<boolean> {
    const clean = typeof code === 'string' ? code.replace(/\s/g, '') : '';
    return this.mutex.run(username, async () => {
      const r = await this.record(username);
      if (!r || r.disabled) return false;
      if (r.totp) {
        const step = await this.matchStep(username, r.totp.sealed, clean, r.totp.lastUsedStep);
        if (step === undefined) return false;
        await this.store.put(NS.users, username, { ...r, totp: { ...r.totp, lastUsedStep: step } });
        return true;
      }
      if (!r.totpPending) return false;
      const step = await this.matchStep(username, r.totpPending.sealed, clean, undefined);
      if (step === undefined) return false;
      await this.store.put(NS.users, username, activate(r, r.totpPending, step, this.clock));
      return true;
    });
  }

  private async matchStep(username: string, sealed: string, code: string, afterStep: number | undefined): Promise<number | undefined> {
    if (!this.sealer) throw new PortcullisError('PCL_ERR_INTERNAL', 'TOTP verification needs a key sealer (Users option `sealer`)');
    const key = Buffer.from(await this.sealer.unwrap(sealed, totpLabel(username)));
    try {
      return verifyTotp(key, code, this.clock.now(), afterStep === undefined ? {} : { afterStep });
    } finally {
      key.fill(0);
    }
  }

  private async rehash(r: UserRecord, password: string): Promise<void> {
    const passwordHash = await this.hasher.hash(password);
    // Only if nothing replaced the hash meanwhile (a password change wins over a rehash).
    await this.update(r.username, (now) => (now.passwordHash === r.passwordHash ? { ...now, passwordHash } : now));
  }

  private async record(username: string): Promise<UserRecord | undefined> {
    return isValidUsername(username) ? this.store.get<UserRecord>(NS.users, username) : undefined;
  }

  /** Read-modify-write of one record under the user's lock; throws PCL_ERR_USER_NOT_FOUND. */
  private async update(username: string, change: (r: UserRecord) => UserRecord): Promise<void> {
    await this.mutex.run(username, async () => {
      const r = await this.record(username);
      if (!r) throw userNotFound();
      await this.store.put(NS.users, username, change(r));
    });
  }
}

/** The (internal) message of a failed login whose name is no account: the audit hashes that name. */
export const UNKNOWN_USER = 'unknown user';

function activate(r: UserRecord, pending: SealedTotp, step: number, clock: Clock): UserRecord {
  const rest = { ...r };
  delete rest.totpPending;
  return { ...rest, totp: { ...pending, lastUsedStep: step, confirmedAt: new Date(clock.now()).toISOString() } };
}

function toUser(r: UserRecord): User {
  return { username: r.username, roles: [...r.roles], attributes: { ...r.attributes }, disabled: r.disabled === true };
}

function userExists(username: string): PortcullisError {
  return new PortcullisError('PCL_ERR_USER_EXISTS', `user "${username}" already exists`);
}

function userNotFound(): PortcullisError {
  return new PortcullisError('PCL_ERR_USER_NOT_FOUND', 'no such user');
}
