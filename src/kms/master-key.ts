// The root of the key hierarchy: a 256-bit key from PORTCULLIS_MASTER_KEY (base64) or from
// <dataDir>/master.key (created 0600 on first start). It wraps every private key the control
// plane stores; it is never logged and never stored anywhere else.
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { PortcullisError } from '../core/errors.js';

export interface MasterKeySource {
  key: Buffer;
  /** Where it came from, for the start-up warning; never the key itself. */
  origin: 'env' | 'file-existing' | 'file-created';
}

export function loadMasterKey(dataDir: string, env: NodeJS.ProcessEnv = process.env): MasterKeySource {
  const fromEnv = env.PORTCULLIS_MASTER_KEY;
  if (fromEnv !== undefined) return { key: decode(fromEnv, 'PORTCULLIS_MASTER_KEY'), origin: 'env' };
  const file = join(dataDir, 'master.key');
  if (existsSync(file)) return { key: decode(readFileSync(file, 'utf8').trim(), file), origin: 'file-existing' };
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const key = randomBytes(32);
  writeFileSync(file, key.toString('base64') + '\n', { mode: 0o600, flag: 'wx' });
  return { key, origin: 'file-created' };
}

function decode(text: string, where: string): Buffer {
  const key = Buffer.from(text.trim(), 'base64');
  if (key.length !== 32) throw new PortcullisError('PCL_ERR_MASTER_KEY', `master key from ${where} must be 32 bytes of base64`);
  return key;
}
