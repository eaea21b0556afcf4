// Bringing stored ciphertexts to the newest key version, in batches, without ever holding their
// plaintext outside the KMS. One bad record is counted and skipped, never the end of the run; a
// run interrupted anywhere leaves every record readable (each write replaces one ciphertext with
// another that decrypts), so it can simply be started again.
import { asPortcullisError, PortcullisError } from '../core/errors.js';
import { parseCiphertext } from './ciphertext.js';
import type { Kms, KmsContext } from './types.js';

export interface RewrapItem {
  id: string;
  ciphertext: string;
  context?: KmsContext;
}

export interface RewrapOptions {
  /** Records rewrapped concurrently, and how often onProgress is called (default 256). */
  batchSize?: number;
  /** Called after each batch with the number of records handled so far. */
  onProgress?: (done: number) => void;
}

export interface RewrapResult {
  /** Records written with a new ciphertext. */
  rewrapped: number;
  /** Records already at their keyring's latest version: not written. */
  skipped: number;
  /** Records that could not be rewrapped (or written), with the error code; never their content. */
  failed: { id: string; code: string }[];
}

export async function rewrapAll(
  kms: Pick<Kms, 'rewrap' | 'getKeyring'>,
  items: AsyncIterable<RewrapItem> | Iterable<RewrapItem>,
  write: (id: string, newCiphertext: string) => Promise<void>,
  o: RewrapOptions = {},
): Promise<RewrapResult> {
  const batchSize = o.batchSize ?? 256;
  if (!Number.isSafeInteger(batchSize) || batchSize < 1) throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', 'batchSize must be a positive integer');
  const result: RewrapResult = { rewrapped: 0, skipped: 0, failed: [] };
  let done = 0;

  const runBatch = async (batch: RewrapItem[]): Promise<void> => {
    // The latest version of each keyring in this batch, asked once per batch (rotation may move it).
    const latest = new Map<string, Promise<number | undefined>>();
    const latestOf = (name: string): Promise<number | undefined> => {
      let p = latest.get(name);
      if (!p) latest.set(name, (p = kms.getKeyring(name).then((k) => k?.latestVersion, () => undefined)));
      return p;
    };
    await Promise.all(batch.map(async (item) => {
      try {
        const { keyring, version } = parseCiphertext(item.ciphertext);
        if ((await latestOf(keyring)) === version) {
          result.skipped++;
          return;
        }
        const next = await kms.rewrap(item.ciphertext, item.context);
        // Equal means it was at the latest version after all (rewrap returns those unchanged).
        if (next === item.ciphertext) {
          result.skipped++;
          return;
        }
        await write(item.id, next);
        result.rewrapped++;
      } catch (err) {
        result.failed.push({ id: item.id, code: asPortcullisError(err).code });
      }
    }));
    done += batch.length;
    o.onProgress?.(done);
  };

  let batch: RewrapItem[] = [];
  for await (const item of items) {
    batch.push(item);
    if (batch.length >= batchSize) {
      await runBatch(batch);
      batch = [];
    }
  }
  if (batch.length > 0) await runBatch(batch);
  return result;
}
