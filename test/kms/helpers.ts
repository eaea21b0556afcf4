// Shared fixtures for the KMS tests: a random root key, a seeded PRNG so property tests
// reproduce, a store that fails on demand (for crash and interruption tests), error capture.
import { randomBytes } from 'node:crypto';
import { FakeClock } from '../../src/core/clock.js';
import { PortcullisError } from '../../src/core/errors.js';
import { KeyManager, type KeyManagerOptions } from '../../src/kms/key-manager.js';
import { KeyWrapper } from '../../src/kms/wrap.js';
import { MemoryStore } from '../../src/store/memory.js';
import type { AuditQuery, RecordChange, RecordFilter, Store, StoredAuditEvent } from '../../src/store/store.js';

export const newWrapper = (): KeyWrapper => new KeyWrapper(randomBytes(32));

export async function openKms(o: Partial<KeyManagerOptions> = {}): Promise<{ kms: KeyManager; store: Store; wrapper: KeyWrapper; clock: FakeClock }> {
  const store = o.store ?? new MemoryStore();
  const wrapper = o.wrapper ?? newWrapper();
  const clock = o.clock instanceof FakeClock ? o.clock : new FakeClock(Date.parse('2025-01-01T00:00:00Z'));
  const kms = await KeyManager.open({ ...o, store, wrapper, clock });
  return { kms, store, wrapper, clock };
}

/** A small, fast, seedable PRNG (mulberry32): property tests print their seed and can replay it. */
export class Prng {
  private s: number;
  constructor(readonly seed: number) {
    this.s = seed >>> 0;
  }
  /** Uniform in [0, 1). */
  next(): number {
    let t = (this.s = (this.s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** Integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  bytes(n: number): Buffer {
    const b = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) b[i] = this.int(256);
    return b;
  }
  pick<T>(items: readonly T[]): T {
    const item = items[this.int(items.length)];
    if (item === undefined) throw new Error('pick from an empty list');
    return item;
  }
}

/** The seed for a property test: PCL_TEST_SEED when set (to replay a failure), else random. */
export function seedFromEnv(): number {
  const env = process.env.PCL_TEST_SEED;
  return env === undefined ? randomBytes(4).readUInt32BE(0) : Number(env);
}

/** Wraps a store so that chosen operations fail, as a crash or an outage would. */
export class FailingStore implements Store {
  /** Returns true to make this call throw (before it reaches the inner store). */
  failWhen: (op: 'get' | 'put' | 'insert' | 'list' | 'delete' | 'take', ns: string, key: string) => boolean = () => false;

  constructor(readonly inner: Store) {}

  private check(op: 'get' | 'put' | 'insert' | 'list' | 'delete' | 'take', ns: string, key = ''): void {
    if (this.failWhen(op, ns, key)) throw new PortcullisError('PCL_ERR_STORE', `injected failure: ${op} ${ns}/${key}`);
  }
  async get<T>(ns: string, key: string): Promise<T | undefined> { this.check('get', ns, key); return this.inner.get<T>(ns, key); }
  async put(ns: string, key: string, value: unknown): Promise<void> { this.check('put', ns, key); return this.inner.put(ns, key, value); }
  async insert(ns: string, key: string, value: unknown): Promise<boolean> { this.check('insert', ns, key); return this.inner.insert(ns, key, value); }
  async list<T>(ns: string): Promise<{ key: string; value: T }[]> { this.check('list', ns); return this.inner.list<T>(ns); }
  async delete(ns: string, key: string): Promise<boolean> { this.check('delete', ns, key); return this.inner.delete(ns, key); }
  async take<T>(ns: string, key: string): Promise<T | undefined> { this.check('take', ns, key); return this.inner.take<T>(ns, key); }
  async replace(ns: string, changes: readonly RecordChange[]): Promise<boolean> { for (const c of changes) this.check('put', ns, c.key); return this.inner.replace(ns, changes); }
  async listWhere<T>(ns: string, filter: RecordFilter): Promise<{ key: string; value: T }[]> { this.check('list', ns); return this.inner.listWhere<T>(ns, filter); }
  async patchWhere<T>(ns: string, filter: RecordFilter, patch: Readonly<Record<string, unknown>>): Promise<{ key: string; value: T }[]> { this.check('put', ns); return this.inner.patchWhere<T>(ns, filter, patch); }
  async deleteWhere(ns: string, filter: RecordFilter): Promise<number> { this.check('delete', ns); return this.inner.deleteWhere(ns, filter); }
  async addAuditEvents(events: StoredAuditEvent[]): Promise<number> { return this.inner.addAuditEvents(events); }
  async queryAuditEvents(q: AuditQuery): Promise<StoredAuditEvent[]> { return this.inner.queryAuditEvents(q); }
  async close(): Promise<void> { return this.inner.close(); }
}

/** The rejection of `p`, which must be a PortcullisError. */
export async function rejection(p: Promise<unknown>): Promise<PortcullisError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof PortcullisError) return err;
    throw new Error(`expected a PortcullisError, got ${String(err)}`, { cause: err });
  }
  throw new Error('expected a rejection');
}

/** Everything an error could show a log: message, stack, public JSON and the cause chain. */
export function errorText(err: unknown): string {
  const parts: string[] = [];
  for (let e: unknown = err, depth = 0; e !== undefined && depth < 5; depth++) {
    if (e instanceof Error) {
      parts.push(e.message, e.stack ?? '');
      if (e instanceof PortcullisError) parts.push(JSON.stringify(e.toPublicJSON()));
      e = e.cause;
    } else {
      parts.push(String(e));
      break;
    }
  }
  return parts.join('\n');
}
