// In-process store for tests and tools: the same contract as the PGlite adapter (the store
// contract test runs against both), values copied in and out like a database would.
import type { Store } from './store.js';

export class MemoryStore implements Store {
  private readonly data = new Map<string, Map<string, string>>();

  private ns(ns: string): Map<string, string> {
    let m = this.data.get(ns);
    if (!m) this.data.set(ns, (m = new Map()));
    return m;
  }

  async get<T>(ns: string, key: string): Promise<T | undefined> {
    const v = this.ns(ns).get(key);
    return v === undefined ? undefined : (JSON.parse(v) as T); // stored by put/insert as JSON
  }

  async put(ns: string, key: string, value: unknown): Promise<void> {
    this.ns(ns).set(key, JSON.stringify(value));
  }

  async insert(ns: string, key: string, value: unknown): Promise<boolean> {
    if (this.ns(ns).has(key)) return false;
    this.ns(ns).set(key, JSON.stringify(value));
    return true;
  }

  async list<T>(ns: string): Promise<{ key: string; value: T }[]> {
    return [...this.ns(ns).entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([key, v]) => ({ key, value: JSON.parse(v) as T }));
  }

  async delete(ns: string, key: string): Promise<boolean> {
    return this.ns(ns).delete(key);
  }

  async take<T>(ns: string, key: string): Promise<T | undefined> {
    const v = await this.get<T>(ns, key);
    this.ns(ns).delete(key);
    return v;
  }

  async close(): Promise<void> {}
}
