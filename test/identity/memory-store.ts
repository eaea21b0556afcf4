// A minimal in-memory Store for tests that need many independent CAs (one CA per store) without
// paying PGlite's start-up for each. Values round-trip through JSON, as in the real adapters.
import type { Store } from '../../src/store/store.js';

export class MemoryStore implements Store {
  private readonly data = new Map<string, string>();

  private static k(ns: string, key: string): string {
    return `${ns}\u0000${key}`;
  }

  async get<T>(ns: string, key: string): Promise<T | undefined> {
    const v = this.data.get(MemoryStore.k(ns, key));
    // JSON written by put/insert from a value of this type: the same trust the SQL adapters place in JSONB.
    return v === undefined ? undefined : (JSON.parse(v) as T);
  }

  async put(ns: string, key: string, value: unknown): Promise<void> {
    this.data.set(MemoryStore.k(ns, key), JSON.stringify(value));
  }

  async insert(ns: string, key: string, value: unknown): Promise<boolean> {
    if (this.data.has(MemoryStore.k(ns, key))) return false;
    this.data.set(MemoryStore.k(ns, key), JSON.stringify(value));
    return true;
  }

  async list<T>(ns: string): Promise<{ key: string; value: T }[]> {
    const prefix = `${ns}\u0000`;
    return [...this.data.entries()]
      .filter(([k]) => k.startsWith(prefix))
      .map(([k, v]) => ({ key: k.slice(prefix.length), value: JSON.parse(v) as T })) // as in get()
      .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  async delete(ns: string, key: string): Promise<boolean> {
    return this.data.delete(MemoryStore.k(ns, key));
  }

  async take<T>(ns: string, key: string): Promise<T | undefined> {
    // Read and delete with no await in between, so the take is atomic like DELETE … RETURNING.
    const k = MemoryStore.k(ns, key);
    const v = this.data.get(k);
    this.data.delete(k);
    return v === undefined ? undefined : (JSON.parse(v) as T); // as in get()
  }

  async close(): Promise<void> {}
}
