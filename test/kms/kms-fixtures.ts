// The real KeyManager on an in-memory store with a random root key, and a spy that records which
// Kms methods were called (to prove that a refused call never reached the KMS).
import { randomBytes } from 'node:crypto';
import type { Clock } from '../../src/core/clock.js';
import { KeyManager } from '../../src/kms/key-manager.js';
import type { Kms } from '../../src/kms/types.js';
import { KeyWrapper } from '../../src/kms/wrap.js';
import { MemoryStore } from '../../src/store/memory.js';
import type { Store } from '../../src/store/store.js';

export function newKeyManager(o: { clock?: Clock; store?: Store } = {}): Promise<KeyManager> {
  return KeyManager.open({ store: o.store ?? new MemoryStore(), wrapper: new KeyWrapper(randomBytes(32)), ...(o.clock ? { clock: o.clock } : {}) });
}

export type KmsMethod = { [K in keyof Kms]: Kms[K] extends (...args: never[]) => unknown ? K : never }[keyof Kms];

/** Wraps a Kms; `calls` lists the name of every method called through the wrapper, in order. */
export function spyKms(inner: Kms): { kms: Kms; calls: KmsMethod[] } {
  const calls: KmsMethod[] = [];
  const kms = new Proxy(inner, {
    get(target, prop, receiver) {
      const value: unknown = Reflect.get(target, prop, receiver);
      if (typeof value !== 'function') return value;
      return (...args: unknown[]) => {
        calls.push(prop as KmsMethod); // every function property of a Kms is one of its methods
        return (value as (...a: unknown[]) => unknown).apply(target, args); // a method of the target, called on it
      };
    },
  });
  return { kms, calls };
}
