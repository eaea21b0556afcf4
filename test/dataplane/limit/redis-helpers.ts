// Shared by the Redis tests: the real Redis (REDIS_URL or 127.0.0.1:6379), a key prefix unique to
// this run, and cleanup of everything under it. A down Redis makes these tests fail, not skip.
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';

export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

/** A fresh `pcl-test:<random>:` prefix. */
export function testPrefix(): string {
  return `pcl-test:${randomUUID()}:`;
}

/** A plain client for inspecting keys; throws when Redis is not reachable within 5 s. */
export async function inspector(): Promise<Redis> {
  const r = new Redis(REDIS_URL, { lazyConnect: true, connectTimeout: 5000, maxRetriesPerRequest: 1, retryStrategy: () => null });
  r.on('error', () => undefined); // the failed connect() below reports it
  try {
    await r.connect();
  } catch (err) {
    r.disconnect();
    throw err;
  }
  return r;
}

/** All keys under `prefix`. */
export async function keysUnder(r: Redis, prefix: string): Promise<string[]> {
  const out: string[] = [];
  let cursor = '0';
  do {
    const [next, batch] = await r.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
    cursor = next;
    out.push(...batch);
  } while (cursor !== '0');
  return out;
}

/** Deletes every key under `prefix`. */
export async function cleanUp(r: Redis, prefix: string): Promise<void> {
  const keys = await keysUnder(r, prefix);
  if (keys.length > 0) await r.del(...keys);
}
