// The administrator credential of the control plane's admin API: created on first start,
// written once to <dataDir>/admin.token (0600) for the operator, stored only as its SHA-256.
import { createHash, timingSafeEqual } from 'node:crypto';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { newSecret } from '../core/ids.js';
import { PortcullisError } from '../core/errors.js';
import { NS, type Store } from '../store/store.js';

const sha256 = (s: string): Buffer => createHash('sha256').update(s, 'utf8').digest();

export class AdminToken {
  private constructor(private readonly hash: Buffer) {}

  /** Loads the stored hash, or creates a token and writes it to the data directory. */
  static async loadOrCreate(store: Store, dataDir: string): Promise<{ admin: AdminToken; createdFile?: string }> {
    const saved = await store.get<{ sha256: string }>(NS.adminTokens, 'admin');
    if (saved) return { admin: new AdminToken(Buffer.from(saved.sha256, 'base64')) };
    const token = `pat_${newSecret()}`;
    const file = join(dataDir, 'admin.token');
    if (existsSync(file)) throw new PortcullisError('PCL_ERR_STORE', `${file} exists but the store has no admin token: remove the stale file`);
    await store.put(NS.adminTokens, 'admin', { sha256: sha256(token).toString('base64') });
    writeFileSync(file, token + '\n', { mode: 0o600, flag: 'wx' });
    return { admin: new AdminToken(sha256(token)), createdFile: file };
  }

  /** Throws unless the Authorization header carries the admin token (compared in constant time). */
  check(authorization: string | undefined): void {
    const m = /^Bearer (\S+)$/.exec(authorization ?? '');
    if (!m?.[1] || !timingSafeEqual(sha256(m[1]), this.hash)) throw new PortcullisError('PCL_ERR_ADMIN_AUTH', 'admin API called without the admin token');
  }
}
