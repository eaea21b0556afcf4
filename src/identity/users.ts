// People who log in through the token service. Passwords are hashed with argon2id (OWASP
// parameters) and stored as a PHC string; the hash never leaves this module. Every login failure
// (unknown user, disabled user, wrong password) costs one argon2 verification and raises the same
// PCL_ERR_LOGIN_FAILED, so neither the answer nor its timing tells which one it was.
import { randomBytes } from 'node:crypto';
import { Algorithm, hash, verify } from '@node-rs/argon2';
import { PortcullisError } from '../core/errors.js';
import { NS, type Store } from '../store/store.js';
import { checkUserAttributes, type UserAttributes } from '../core/principal.js';

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

/** The stored record (NS.users, key = username). */
interface UserRecord extends User {
  /** argon2id PHC string. */
  passwordHash: string;
  createdAt: string;
}

/** OWASP Password Storage Cheat Sheet, argon2id: m=19 MiB, t=2, p=1. */
export const ARGON2_OPTIONS = {
  algorithm: Algorithm.Argon2id,
  memoryCost: 19456,
  timeCost: 2,
  parallelism: 1,
} as const;

const USERNAME = /^[a-z0-9._-]{1,64}$/;
/** Long enough for any passphrase, short enough that hashing it cannot be used as a DoS lever. */
const MAX_PASSWORD_LENGTH = 1024;
const ROLE = /^[A-Za-z0-9._:-]{1,64}$/;

export function isValidUsername(username: unknown): username is string {
  return typeof username === 'string' && USERNAME.test(username);
}

export class Users {
  /** Hash of a random password, verified against when the user is unknown (same cost, same answer). */
  private readonly dummyHash: Promise<string>;

  constructor(private readonly store: Store) {
    // Computed up front so the first unknown-user login is not slower than the others.
    this.dummyHash = hash(randomBytes(32), ARGON2_OPTIONS);
    this.dummyHash.catch(() => undefined); // a failure resurfaces, and is handled, at first use
  }

  async add(u: NewUser): Promise<void> {
    if (!isValidUsername(u.username)) {
      throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', 'username must be 1-64 characters of [a-z0-9._-]');
    }
    if (typeof u.password !== 'string' || u.password.length === 0 || u.password.length > MAX_PASSWORD_LENGTH) {
      throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `password must be 1-${MAX_PASSWORD_LENGTH} characters`);
    }
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
      passwordHash: await hash(u.password, ARGON2_OPTIONS),
      createdAt: new Date().toISOString(),
    };
    if (!(await this.store.insert(NS.users, u.username, record))) throw userExists(u.username);
  }

  async get(username: string): Promise<User | undefined> {
    if (!isValidUsername(username)) return undefined;
    const r = await this.store.get<UserRecord>(NS.users, username);
    return r ? toUser(r) : undefined;
  }

  /** Enables or disables a user; a disabled user cannot log in and gets no new tokens. */
  async setDisabled(username: string, disabled: boolean): Promise<void> {
    const r = isValidUsername(username) ? await this.store.get<UserRecord>(NS.users, username) : undefined;
    if (!r) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `no user "${username}"`);
    await this.store.put(NS.users, username, { ...r, disabled });
  }

  /**
   * Returns the user when the password is right and the user is enabled; otherwise throws
   * PCL_ERR_LOGIN_FAILED after the same amount of work, whatever the reason.
   */
  async verifyPassword(username: string, password: string): Promise<User> {
    const r = isValidUsername(username) ? await this.store.get<UserRecord>(NS.users, username) : undefined;
    const candidate = typeof password === 'string' && password.length <= MAX_PASSWORD_LENGTH ? password : '';
    let ok = false;
    try {
      ok = await verify(r?.passwordHash ?? (await this.dummyHash), candidate);
    } catch (err) {
      // A corrupt stored hash is a server problem, but the client still only learns "login failed".
      throw new PortcullisError('PCL_ERR_LOGIN_FAILED', 'password verification failed', { cause: err });
    }
    if (!r) throw new PortcullisError('PCL_ERR_LOGIN_FAILED', UNKNOWN_USER);
    if (!ok) throw new PortcullisError('PCL_ERR_LOGIN_FAILED', 'wrong password');
    if (r.disabled) throw new PortcullisError('PCL_ERR_LOGIN_FAILED', 'user disabled');
    return toUser(r);
  }
}

/** The (internal) message of a failed login whose name is no account: the audit hashes that name. */
export const UNKNOWN_USER = 'unknown user';

function toUser(r: UserRecord): User {
  return { username: r.username, roles: [...r.roles], attributes: { ...r.attributes }, disabled: r.disabled === true };
}

function userExists(username: string): PortcullisError {
  return new PortcullisError('PCL_ERR_USER_EXISTS', `user "${username}" already exists`);
}
