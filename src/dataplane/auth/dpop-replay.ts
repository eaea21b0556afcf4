// DPoP proof ids shared by every gateway replica through Redis, so a proof accepted by one replica
// cannot be replayed at another within its `iat` window (RFC 9449 §11.1). One command per proof:
// `SET <id> 1 NX PX <ms until the window ends>` — set means first use, not set means a replay.
// When Redis cannot answer, `onDown` decides, as for rate limits: `deny` refuses the proof (fail
// closed), `local` falls back to this replica's own memory (replays across replicas go unseen
// until Redis is back: the gateway logs it).
import { Redis } from 'ioredis';
import { PortcullisError } from '../../core/errors.js';
import { systemClock, type Clock } from '../../core/clock.js';
import { MemoryReplayCache, type ReplayCache } from './dpop.js';

export interface RedisReplayCacheOptions {
  /** redis:// or rediss:// URL (the gateway passes REDIS_URL). Never logged. */
  url: string;
  /** Prepended to every key; default 'pcl:dpop:'. */
  keyPrefix?: string;
  onDown: 'deny' | 'local';
  /** A command not answered within this is a failure; default 100 ms. */
  commandTimeoutMs?: number;
  clock?: Clock;
  /** Called once per outage when proofs are checked locally (or refused) because Redis is down. */
  onFallback?: (err: Error) => void;
}

export class RedisReplayCache implements ReplayCache {
  private readonly redis: Redis;
  private readonly keyPrefix: string;
  private readonly clock: Clock;
  private readonly local: MemoryReplayCache;
  private down = false;

  constructor(private readonly o: RedisReplayCacheOptions) {
    this.keyPrefix = o.keyPrefix ?? 'pcl:dpop:';
    this.clock = o.clock ?? systemClock;
    this.local = new MemoryReplayCache({ clock: this.clock });
    // Same fail-fast settings as the rate-limit store: no offline queue, one retry, short timeout.
    this.redis = new Redis(o.url, {
      commandTimeout: o.commandTimeoutMs ?? 100, connectTimeout: 1000, maxRetriesPerRequest: 1, enableOfflineQueue: false,
      disconnectTimeout: 200, retryStrategy: (times) => Math.min(times * 100, 2000),
    });
    this.redis.on('error', () => { /* reported through claim's fallback */ });
  }

  async claim(key: string, untilMs: number): Promise<boolean> {
    const ttl = Math.max(1, Math.ceil(untilMs - this.clock.now()));
    try {
      if (this.redis.status !== 'ready') await this.ready();
      const set = await this.redis.set(this.keyPrefix + key, '1', 'PX', ttl, 'NX');
      this.down = false;
      // Remembered locally too, so a fallback during a later outage still knows this id.
      if (set === 'OK') this.local.claim(key, untilMs);
      return set === 'OK';
    } catch (err) {
      if (!this.down) this.o.onFallback?.(err instanceof Error ? err : new Error(String(err)));
      this.down = true;
      if (this.o.onDown === 'deny') throw new PortcullisError('PCL_ERR_DPOP_INVALID', 'DPoP proof cannot be checked for reuse: the shared replay cache is unavailable', { cause: err });
      return this.local.claim(key, untilMs);
    }
  }

  /** A connection still being made (start-up, reconnect) is waited for, briefly; anything else fails now. */
  private ready(): Promise<void> {
    if (this.redis.status !== 'connecting' && this.redis.status !== 'connect' && this.redis.status !== 'reconnecting') {
      return Promise.reject(new Error(`redis ${this.redis.status}`));
    }
    return new Promise<void>((resolve, reject) => {
      const done = (err?: Error): void => {
        clearTimeout(timer);
        this.redis.off('ready', onReady);
        this.redis.off('close', onClose);
        if (err) reject(err);
        else resolve();
      };
      const onReady = (): void => done();
      const onClose = (): void => done(new Error('redis connection failed'));
      const timer = setTimeout(() => done(new Error('redis not connected')), 1000);
      this.redis.once('ready', onReady);
      this.redis.once('close', onClose);
    });
  }

  close(): void {
    this.redis.disconnect();
  }
}
