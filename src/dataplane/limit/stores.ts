// Where GCRA state lives: in this process (MemoryLimitStore, one limit per replica) or in Redis
// (RedisLimitStore, one limit shared by every gateway replica). Both apply gcra.ts atomically.
import { createHash } from 'node:crypto';
import { Redis } from 'ioredis';
import { systemClock, type Clock } from '../../core/clock.js';
import { PortcullisError } from '../../core/errors.js';
import { GCRA_EPSILON_MS, gcra, validateGcraParams, type GcraParams, type GcraResult } from './gcra.js';

/** Storage for GCRA theoretical arrival times. */
export interface LimitStore {
  /** Atomically applies GCRA to `key` and returns the result. */
  take(key: string, p: GcraParams, cost: number): Promise<GcraResult>;
  close(): Promise<void>;
}

/** Options of {@link MemoryLimitStore}. */
export interface MemoryLimitStoreOptions {
  /** Time source; default systemClock. */
  clock?: Clock;
  /** Most keys kept; the least recently used is evicted beyond it. Default 100,000. */
  maxKeys?: number;
}

/**
 * In-process store. Bounded: at most `maxKeys` keys (LRU), so a flood of distinct keys cannot
 * exhaust memory; a key whose TAT is past is a full bucket and is dropped when next seen.
 * Eviction forgets a key's history (the key starts full again): size `maxKeys` above the number
 * of keys active within one reset period.
 */
export class MemoryLimitStore implements LimitStore {
  private readonly clock: Clock;
  private readonly maxKeys: number;
  // Map iteration order is insertion order: re-inserting on every touch makes the first key the LRU.
  private readonly tats = new Map<string, number>();

  constructor(o: MemoryLimitStoreOptions = {}) {
    this.clock = o.clock ?? systemClock;
    this.maxKeys = o.maxKeys ?? 100_000;
    if (!Number.isInteger(this.maxKeys) || this.maxKeys < 1) {
      throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', 'MemoryLimitStore maxKeys must be an integer >= 1');
    }
  }

  /** Number of keys held (expired ones included until touched or evicted). */
  get size(): number {
    return this.tats.size;
  }

  take(key: string, p: GcraParams, cost: number): Promise<GcraResult> {
    try {
      return Promise.resolve(this.takeSync(key, p, cost));
    } catch (err) {
      return Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
  }

  private takeSync(key: string, p: GcraParams, cost: number): GcraResult {
    const now = this.clock.now();
    let stored = this.tats.get(key);
    if (stored !== undefined) {
      this.tats.delete(key);
      if (stored <= now) stored = undefined;
    }
    const r = gcra(stored, now, p, cost);
    const keep = r.allowed ? r.tat : stored;
    if (keep !== undefined && keep > now) {
      this.tats.set(key, keep);
      while (this.tats.size > this.maxKeys) {
        const oldest = this.tats.keys().next();
        if (oldest.done) break;
        this.tats.delete(oldest.value);
      }
    }
    return r;
  }

  close(): Promise<void> {
    this.tats.clear();
    return Promise.resolve();
  }
}

/**
 * GCRA in Lua, a port of gcra() in gcra.ts. Time comes from the Redis server (`TIME`), so
 * replicas with skewed clocks share one limit. Numbers go back as strings: Redis would truncate
 * Lua numbers to integers. KEYS[1] = bucket; ARGV = emission interval ms, burst, cost, epsilon.
 */
const GCRA_LUA = `
if redis.replicate_commands then pcall(redis.replicate_commands) end
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local eps = tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local tat = now
local stored = tonumber(redis.call('GET', KEYS[1]) or '')
if stored and stored > now then tat = stored end
local tolerance = interval * burst
local increment = interval * cost
local newTat = tat + increment
local allowAt = newTat - tolerance
local diff = now - allowAt
if diff >= -eps then
  local ttl = math.max(1, math.ceil(newTat - now))
  redis.call('SET', KEYS[1], string.format('%.3f', newTat), 'PX', ttl)
  local remaining = math.max(0, math.floor((diff + eps) / interval))
  return {'1', string.format('%.3f', newTat), tostring(remaining), '0', string.format('%.3f', newTat - now)}
end
local remaining = math.max(0, math.floor((now - (tat - tolerance) + eps) / interval))
local retry = '-1'
if increment <= tolerance then
  remaining = math.min(remaining, math.max(0, math.ceil(cost) - 1))
  retry = string.format('%.3f', allowAt - now)
end
return {'0', string.format('%.3f', tat), tostring(remaining), retry, string.format('%.3f', math.max(0, tat - now))}
`;
// The script's id for EVALSHA; SHA-1 here is Redis's script naming, not a security primitive.
const GCRA_SHA = createHash('sha1').update(GCRA_LUA).digest('hex');

/** Options of {@link RedisLimitStore}. */
export interface RedisLimitStoreOptions {
  /** redis:// or rediss:// URL (the gateway passes REDIS_URL). Never logged. */
  url: string;
  /** Prepended to every key; default 'pcl:rl:'. */
  keyPrefix?: string;
  /** A command not answered within this is a failure; default 100 ms. Also bounds the wait for a connection in progress. */
  commandTimeoutMs?: number;
  /** TCP connect timeout; default 1000 ms. */
  connectTimeoutMs?: number;
  /** Connection errors (ioredis reconnects by itself); default: ignored, the limiter sees failed takes. */
  onError?: (err: Error) => void;
}

function unavailable(detail: string, cause?: unknown): PortcullisError {
  return new PortcullisError('PCL_ERR_RATE_LIMIT_UNAVAILABLE', `rate-limit store: ${detail}`, cause === undefined ? undefined : { cause });
}

function parseReply(reply: unknown): GcraResult {
  if (!Array.isArray(reply) || reply.length !== 5) throw unavailable('unexpected script reply');
  const nums: number[] = reply.map((v: unknown) => (typeof v === 'string' ? Number(v) : NaN));
  if (!nums.every((n) => Number.isFinite(n))) throw unavailable('unexpected script reply');
  // The length was checked to be 5 just above.
  const [a, t, rem, ra, rs] = nums as [number, number, number, number, number];
  return { allowed: a === 1, tat: t, remaining: rem, retryAfterMs: ra < 0 ? Number.POSITIVE_INFINITY : ra, resetMs: rs };
}

/**
 * Store shared by all replicas through Redis. One Lua script computes GCRA atomically with the
 * server's clock; each key lives only until its bucket is full again (TTL = reset time). A down
 * Redis fails fast: no offline queue, one retry, a short command timeout. Every failure is a
 * PortcullisError PCL_ERR_RATE_LIMIT_UNAVAILABLE, for the limiter's `onStoreDown` to handle.
 */
export class RedisLimitStore implements LimitStore {
  private readonly redis: Redis;
  private readonly keyPrefix: string;
  private readonly commandTimeoutMs: number;
  private closed = false;

  constructor(o: RedisLimitStoreOptions) {
    this.keyPrefix = o.keyPrefix ?? 'pcl:rl:';
    this.commandTimeoutMs = o.commandTimeoutMs ?? 100;
    const connectTimeout = o.connectTimeoutMs ?? 1000;
    if (!(this.commandTimeoutMs > 0) || !(connectTimeout > 0)) {
      throw new PortcullisError('PCL_ERR_INVALID_ARGUMENT', 'RedisLimitStore timeouts must be positive');
    }
    this.redis = new Redis(o.url, {
      commandTimeout: this.commandTimeoutMs,
      connectTimeout,
      maxRetriesPerRequest: 1,
      enableOfflineQueue: false,
      // How long disconnect() waits for a graceful close (default 2 s, which also delays exit).
      disconnectTimeout: 200,
      // Keep trying to reconnect in the background, at most every 2 s.
      retryStrategy: (times) => Math.min(times * 100, 2000),
    });
    // Without a listener ioredis prints every connection error; the limiter reports failed takes.
    this.redis.on('error', (err: Error) => o.onError?.(err));
  }

  /** Resolves once connected (for startup and tests), through reconnects; rejects after `timeoutMs` (default 5000). */
  waitReady(timeoutMs = 5000): Promise<void> {
    return this.untilReady(timeoutMs, false);
  }

  /** Waits for 'ready'; with `failFast`, a failed attempt ends the wait instead of the next retry. */
  private async untilReady(timeoutMs: number, failFast: boolean): Promise<void> {
    if (this.closed) throw unavailable('closed');
    if (this.redis.status === 'ready') return;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => finish(unavailable('not connected')), timeoutMs);
      const onReady = (): void => finish();
      const onEnd = (): void => finish(unavailable('connection ended'));
      const onClose = (): void => { if (failFast) finish(unavailable('connection failed')); };
      const finish = (err?: Error): void => {
        clearTimeout(timer);
        this.redis.off('ready', onReady);
        this.redis.off('end', onEnd);
        this.redis.off('close', onClose);
        if (err) reject(err);
        else resolve();
      };
      this.redis.once('ready', onReady);
      this.redis.once('end', onEnd);
      this.redis.on('close', onClose);
    });
  }

  async take(key: string, p: GcraParams, cost: number): Promise<GcraResult> {
    validateGcraParams(p, cost);
    if (this.closed) throw unavailable('closed');
    const status = this.redis.status;
    if (status !== 'ready') {
      // A connection being set up is worth a short wait; one between retries is not.
      if (status !== 'connecting' && status !== 'connect') throw unavailable(`connection ${status}`);
      await this.untilReady(this.commandTimeoutMs, true);
    }
    const k = this.keyPrefix + key;
    const args = [String(p.emissionIntervalMs), String(p.burst), String(cost), String(GCRA_EPSILON_MS)];
    let reply: unknown;
    try {
      try {
        reply = await this.redis.evalsha(GCRA_SHA, 1, k, ...args);
      } catch (err) {
        // First use on this server (or after SCRIPT FLUSH): EVAL loads the script into its cache.
        if (!(err instanceof Error) || !err.message.startsWith('NOSCRIPT')) throw err;
        reply = await this.redis.eval(GCRA_LUA, 1, k, ...args);
      }
    } catch (err) {
      throw unavailable('command failed', err);
    }
    return parseReply(reply);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.redis.status === 'ready') {
      try {
        await this.redis.quit();
        return;
      } catch {
        // Fall through: drop the connection instead.
      }
    }
    this.redis.disconnect();
  }
}
