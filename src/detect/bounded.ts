// Bounded state for rules. Every map evicts its least recently touched key when full, and every
// per-key window holds at most `cap` entries, so a flood of distinct keys or hits cannot grow
// memory: what it costs is forgetting the oldest keys (counted in `evicted`).

/** Keys tracked per rule at most (fewer when thresholds are high; see keysFor). */
export const MAX_KEYS = 10_000;
/** Hits held per rule at most, across all its keys: MAX_KEYS × threshold is capped by this. */
const MAX_HITS_PER_RULE = 250_000;
/** Request ids kept as evidence per alert. */
export const MAX_EVIDENCE = 20;

/** Keys a rule may track when each holds up to `perKey` hits. */
export function keysFor(perKey: number, maxKeys = MAX_KEYS): number {
  return Math.max(1, Math.min(maxKeys, Math.floor(MAX_HITS_PER_RULE / Math.max(1, perKey))));
}

interface Entry<V> { key: string; value: V; last: number; prev: Entry<V> | undefined; next: Entry<V> | undefined }

/**
 * A Map with LRU eviction past `maxKeys`, and expiry of keys untouched for a while. The order is
 * a linked list rather than the Map's own: iterating a Map from its start after many deletes
 * walks their holes, which made each eviction cost O(keys) under a flood.
 */
export class BoundedMap<V> {
  private readonly map = new Map<string, Entry<V>>();
  /** Least recently touched. */
  private head: Entry<V> | undefined;
  /** Most recently touched. */
  private tail: Entry<V> | undefined;
  evicted = 0;

  constructor(readonly maxKeys: number) {}

  get size(): number {
    return this.map.size;
  }

  /** The value for `key`, created by `make` when absent; marks the key as most recently used. */
  touch(key: string, now: number, make: () => V): V {
    const e = this.map.get(key);
    if (e) {
      e.last = now;
      this.unlink(e);
      this.append(e);
      return e.value;
    }
    if (this.map.size >= this.maxKeys && this.head) {
      this.delete(this.head.key);
      this.evicted++;
    }
    const fresh: Entry<V> = { key, value: make(), last: now, prev: undefined, next: undefined };
    this.map.set(key, fresh);
    this.append(fresh);
    return fresh.value;
  }

  /** Sets the value of `key`, as most recently used. */
  set(key: string, value: V, now: number): void {
    const e = this.map.get(key);
    if (e) e.value = value;
    this.touch(key, now, () => value);
  }

  /** Marks `key` as most recently used; false when it is not held. */
  refresh(key: string, now: number): boolean {
    const e = this.map.get(key);
    if (!e) return false;
    e.last = now;
    this.unlink(e);
    this.append(e);
    return true;
  }

  get(key: string): V | undefined {
    return this.map.get(key)?.value;
  }

  has(key: string): boolean {
    return this.map.has(key);
  }

  delete(key: string): void {
    const e = this.map.get(key);
    if (!e) return;
    this.map.delete(key);
    this.unlink(e);
  }

  /** Drops keys untouched for `idleMs` or more; cheap, since they sit at the front. */
  prune(now: number, idleMs: number): void {
    while (this.head && now - this.head.last >= idleMs) this.delete(this.head.key);
  }

  keys(): IterableIterator<string> {
    return this.map.keys();
  }

  private append(e: Entry<V>): void {
    e.prev = this.tail;
    e.next = undefined;
    if (this.tail) this.tail.next = e;
    else this.head = e;
    this.tail = e;
  }

  private unlink(e: Entry<V>): void {
    if (e.prev) e.prev.next = e.next;
    else this.head = e.next;
    if (e.next) e.next.prev = e.prev;
    else this.tail = e.prev;
    e.prev = e.next = undefined;
  }
}

interface Hit { t: number; id: string | undefined }

/**
 * The last `cap` hits of one key. With cap = threshold the test is exact: there are at least
 * `threshold` hits in the window exactly when the oldest of the last `threshold` is inside it.
 */
export class HitWindow {
  private readonly hits: Hit[] = [];

  constructor(private readonly cap: number) {}

  add(t: number, id: string | undefined): void {
    if (this.hits.length >= this.cap) this.hits.shift();
    this.hits.push({ t, id });
  }

  /** Whether a hit with this request id is already held (one request seen by several components). */
  includes(id: string | undefined): boolean {
    return id !== undefined && this.hits.some((h) => h.id === id);
  }

  count(now: number, windowMs: number): number {
    let n = 0;
    for (const h of this.hits) if (now - h.t < windowMs) n++;
    return n;
  }

  evidence(now: number, windowMs: number): string[] {
    return ids(this.hits.filter((h) => now - h.t < windowMs));
  }

  clear(): void {
    this.hits.length = 0;
  }
}

/**
 * The `cap` most recently seen distinct values of one key. With cap = threshold the test is exact
 * for the same reason as HitWindow's: the values evicted are the ones seen longest ago.
 */
export class DistinctWindow {
  private readonly seen = new Map<string, Hit>();

  constructor(private readonly cap: number) {}

  add(value: string, t: number, id: string | undefined): void {
    const h = this.seen.get(value);
    this.seen.delete(value);
    if (h) {
      h.t = t;
      h.id = id;
      this.seen.set(value, h);
      return;
    }
    this.seen.set(value, { t, id });
    if (this.seen.size > this.cap) {
      const oldest = this.seen.keys().next();
      if (!oldest.done) this.seen.delete(oldest.value);
    }
  }

  count(now: number, windowMs: number): number {
    let n = 0;
    for (const h of this.seen.values()) if (now - h.t < windowMs) n++;
    return n;
  }

  /** Values seen inside the window, oldest first. */
  values(now: number, windowMs: number): string[] {
    return [...this.seen].filter(([, h]) => now - h.t < windowMs).map(([v]) => v);
  }

  evidence(now: number, windowMs: number): string[] {
    return ids([...this.seen.values()].filter((h) => now - h.t < windowMs));
  }
}

function ids(hits: Hit[]): string[] {
  const out: string[] = [];
  for (const h of hits) if (h.id !== undefined && !out.includes(h.id)) out.push(h.id);
  return out.slice(-MAX_EVIDENCE);
}

/** Once per subject per window: true (and arms the suppression) when no alert is in force. */
export function armAlert(state: { alertedUntil: number }, now: number, windowMs: number): boolean {
  if (now < state.alertedUntil) return false;
  state.alertedUntil = now + windowMs;
  return true;
}
