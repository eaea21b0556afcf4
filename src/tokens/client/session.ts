// A signed-in person's tokens on disk, for the CLI: `portcullis login` saves them, `portcullis
// token` hands out a valid access token (refreshing it first when it is about to expire), and
// `portcullis logout` revokes the refresh token's family and deletes the file.
//   - The file is created with mode 0600 (written beside, then renamed over), in a 0700 directory;
//     one that others can read, or that is not a regular file we own, is refused, never used.
//   - A session is bound to the control plane that issued it: its refresh token is sent nowhere else.
//   - Refreshes run under a lock file, because refresh tokens rotate: two commands refreshing at
//     once would present one token twice, and the server revokes a family on reuse.
//   - A refused refresh (invalid_grant: expired, revoked, reused) ends the session: the file is
//     deleted and the person must sign in again (PCL_ERR_SESSION_EXPIRED).
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, lstatSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { PortcullisError } from '../../core/errors.js';
import { PATHS } from '../oauth/deps.js';
import { checkBaseUrl, clientAgent, oauthErrorOf, postForm, refusal, tokenSet, type TokenSet } from './http.js';

export interface Session {
  version: 1;
  /** The control plane that issued the tokens (its base URL): the only place they are sent. */
  controlUrl: string;
  clientId: string;
  accessToken: string;
  /** Epoch milliseconds. */
  expiresAt: number;
  refreshToken?: string;
  scope?: string;
}

export interface SessionContext {
  file: string;
  controlUrl: string;
  caPem?: string;
  /** Default: Date.now. */
  now?: () => number;
}

/** A token with less left than this is refreshed first: it must not expire on its way. */
export const MIN_VALIDITY_MS = 60_000;
const LOCK_WAIT_MS = 15_000;
/** A lock older than this was left by a process that died. */
const STALE_LOCK_MS = 60_000;
const MAX_SESSION_BYTES = 64 * 1024;

/** $PORTCULLIS_SESSION_FILE, else one file per control plane under $XDG_CONFIG_HOME (~/.config)/portcullis/sessions. */
export function defaultSessionFile(controlUrl: string, env: NodeJS.ProcessEnv = process.env): string {
  if (env.PORTCULLIS_SESSION_FILE) return env.PORTCULLIS_SESSION_FILE;
  const base = env.XDG_CONFIG_HOME || join(homedir(), '.config');
  const id = createHash('sha256').update(controlUrl, 'utf8').digest('hex').slice(0, 16);
  return join(base, 'portcullis', 'sessions', `${id}.json`);
}

export function sessionFromTokens(controlUrl: string, clientId: string, t: TokenSet, now: number): Session {
  return {
    version: 1, controlUrl, clientId, accessToken: t.accessToken, expiresAt: now + t.expiresIn * 1000,
    ...(t.refreshToken ? { refreshToken: t.refreshToken } : {}), ...(t.scope ? { scope: t.scope } : {}),
  };
}

/** Writes the session with mode 0600 (umask can only take bits away), replacing any old one at once. */
export function saveSession(file: string, s: Session): void {
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.${randomBytes(6).toString('hex')}.tmp`;
  const fd = openSync(tmp, 'wx', 0o600);
  try {
    writeSync(fd, JSON.stringify(s));
  } catch (err) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    throw err;
  }
  closeSync(fd);
  renameSync(tmp, file);
}

/** The saved session; undefined when there is none. A file others may read is refused, not used. */
export function loadSession(file: string): Session | undefined {
  let st;
  try {
    st = lstatSync(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined; // fs errors carry a code
    throw err;
  }
  if (!st.isFile()) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `session file ${file} is not a regular file`);
  if (typeof process.getuid === 'function' && st.uid !== process.getuid()) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `session file ${file} belongs to another user`);
  if (process.platform !== 'win32' && (st.mode & 0o077) !== 0) {
    throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `session file ${file} can be read by others (mode ${(st.mode & 0o777).toString(8)}): delete it and sign in again`);
  }
  if (st.size > MAX_SESSION_BYTES) throw new PortcullisError('PCL_ERR_SESSION_EXPIRED', `session file ${file} is not a session: sign in again`);
  let v: unknown;
  try {
    v = JSON.parse(readFileSync(file, 'utf8'));
  } catch {
    v = undefined;
  }
  if (!isSession(v)) throw new PortcullisError('PCL_ERR_SESSION_EXPIRED', `session file ${file} is not a session: sign in again`);
  return v;
}

function isSession(v: unknown): v is Session {
  if (typeof v !== 'object' || v === null) return false;
  const s = v as Record<string, unknown>; // each member checked below
  return s.version === 1 && typeof s.controlUrl === 'string' && typeof s.clientId === 'string' && typeof s.accessToken === 'string'
    && typeof s.expiresAt === 'number' && (s.refreshToken === undefined || typeof s.refreshToken === 'string')
    && (s.scope === undefined || typeof s.scope === 'string');
}

/**
 * A valid access token from the session, refreshed first when it has less than MIN_VALIDITY_MS
 * left. Throws PCL_ERR_SESSION_EXPIRED when there is no session or it ended (then the file is gone).
 */
export async function freshAccessToken(c: SessionContext): Promise<string> {
  const now = c.now ?? Date.now;
  return withLock(c.file, async () => {
    const s = boundSession(c);
    if (s.expiresAt - now() > MIN_VALIDITY_MS) return s.accessToken;
    if (!s.refreshToken) {
      rmSync(c.file, { force: true });
      throw new PortcullisError('PCL_ERR_SESSION_EXPIRED', 'the access token expired and the session has no refresh token: sign in again (portcullis login)');
    }
    const agent = clientAgent(c.caPem);
    try {
      const a = await postForm(agent, new URL(PATHS.token, checkBaseUrl(s.controlUrl)).href, { grant_type: 'refresh_token', refresh_token: s.refreshToken, client_id: s.clientId });
      if (a.status !== 200 && oauthErrorOf(a) === 'invalid_grant') {
        rmSync(c.file, { force: true });
        throw new PortcullisError('PCL_ERR_SESSION_EXPIRED', 'the session ended (refresh token expired, revoked or reused): sign in again (portcullis login)');
      }
      const t = tokenSet(a, 'token refresh');
      // RFC 6749 §6: without a new refresh token the old one stays valid (ours always rotate).
      saveSession(c.file, { ...sessionFromTokens(s.controlUrl, s.clientId, t, now()), ...(t.refreshToken || !s.refreshToken ? {} : { refreshToken: s.refreshToken }) });
      return t.accessToken;
    } finally {
      await agent.close();
    }
  });
}

/** Revokes the session at the server (RFC 7009: the refresh token's family, with its access tokens) and deletes the file. False when there was none. */
export async function endSession(c: SessionContext): Promise<boolean> {
  return withLock(c.file, async () => {
    const s = boundSession(c, false);
    if (!s) return false;
    const agent = clientAgent(c.caPem);
    try {
      const token = s.refreshToken ?? s.accessToken;
      const a = await postForm(agent, new URL(PATHS.revoke, checkBaseUrl(s.controlUrl)).href, {
        token, token_type_hint: s.refreshToken ? 'refresh_token' : 'access_token', client_id: s.clientId,
      });
      rmSync(c.file, { force: true });
      if (a.status !== 200) throw refusal(a, 'revocation (signed out here, but the tokens may stay valid until they expire)');
      return true;
    } finally {
      await agent.close();
    }
  });
}

/** The session of this control plane; a session of another one is refused (its tokens go nowhere else). */
function boundSession(c: SessionContext): Session;
function boundSession(c: SessionContext, required: false): Session | undefined;
function boundSession(c: SessionContext, required = true): Session | undefined {
  const s = loadSession(c.file);
  if (!s) {
    if (!required) return undefined;
    throw new PortcullisError('PCL_ERR_SESSION_EXPIRED', 'not signed in: run portcullis login');
  }
  if (s.controlUrl !== c.controlUrl) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', `session file ${c.file} belongs to another control plane (${s.controlUrl})`);
  return s;
}

/** Runs `fn` holding `<file>.lock` (create-only); waits for another holder, breaks a stale lock. */
async function withLock<T>(file: string, fn: () => Promise<T>): Promise<T> {
  const lock = `${file}.lock`;
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  const deadline = Date.now() + LOCK_WAIT_MS;
  for (;;) {
    try {
      closeSync(openSync(lock, 'wx', 0o600));
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err; // fs errors carry a code
    }
    let age = 0;
    try {
      age = Date.now() - statSync(lock).mtimeMs;
    } catch {
      continue; // released meanwhile
    }
    if (age > STALE_LOCK_MS) {
      rmSync(lock, { force: true });
      continue;
    }
    if (Date.now() >= deadline) throw new PortcullisError('PCL_ERR_INTERNAL', `the session is locked by another portcullis command (${lock})`);
    await delay(100);
  }
  try {
    return await fn();
  } finally {
    rmSync(lock, { force: true });
  }
}
