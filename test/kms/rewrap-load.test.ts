// The bar: rotation and rewrap of 100,000 records while they are being read, with zero
// failed reads. In-process on a MemoryStore: readers decrypt random records continuously while
// the keyring rotates on its schedule (fake clock), rewrapAll moves every record, the keyring
// rotates again by hand half-way through, a second pass catches the records rewrapped before that,
// and the old versions are retired, all while the readers keep reading.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setImmediate as turn } from 'node:timers/promises';
import { parseCiphertext } from '../../src/kms/ciphertext.js';
import { rewrapAll, type RewrapItem } from '../../src/kms/rewrap-batch.js';
import { openKms, Prng, seedFromEnv } from './helpers.js';

const N = 100_000;
const DAY = 86_400_000;
const ctxOf = (i: number): { table: string; row: string } => ({ table: 'cards', row: String(i) });
const valueOf = (i: number): string => `card-holder-${i}|4111-xxxx-${String(i).padStart(6, '0')}`;

test('rotation and rewrap of 100,000 records while they are being read: zero failed reads', { timeout: 60_000 }, async () => {
  const seed = seedFromEnv();
  const started = Date.now();
  const { kms, clock } = await openKms();
  await kms.ensureKeyring('records', { rotationPeriodMs: DAY });
  kms.start();

  const db: string[] = new Array<string>(N);
  for (let i = 0; i < N; i++) db[i] = await kms.encrypt('records', Buffer.from(valueOf(i)), ctxOf(i));

  let stop = false;
  let reads = 0;
  const failures: string[] = [];
  const versionsRead = new Set<number>();
  const reader = async (r: Prng): Promise<void> => {
    while (!stop) {
      for (let k = 0; k < 20; k++) {
        const i = r.int(N);
        const ct = db[i] ?? '';
        try {
          const pt = await kms.decrypt(ct, ctxOf(i), 'records');
          if (pt.toString() !== valueOf(i)) failures.push(`${i}: wrong plaintext`);
          versionsRead.add(parseCiphertext(ct).version);
        } catch (err) {
          failures.push(`${i}: ${(err as { code?: string }).code ?? String(err)}`); // report whatever was thrown
        }
        reads++;
      }
      await turn(); // let the rewrap (and the clock) move between bursts of reads
    }
  };
  const readers = [1, 2, 3, 4].map((n) => reader(new Prng(seed + n)));

  async function* records(): AsyncIterable<RewrapItem> {
    for (let i = 0; i < N; i++) {
      if (i % 500 === 0) await turn(); // a real table scan waits on I/O; readers run meanwhile
      yield { id: String(i), ciphertext: db[i] ?? '', context: ctxOf(i) };
    }
  }
  const write = async (id: string, next: string): Promise<void> => { db[Number(id)] = next; };

  // The scheduled rotation (v1 → v2) comes due under the readers.
  for (let k = 0; k < 20; k++) await turn();
  await clock.advance(DAY);
  await kms.idle();
  assert.equal((await kms.getKeyring('records'))?.latestVersion, 2);

  // Pass 1 moves every record to the latest version; half-way through, a manual rotation (→ v3).
  let rotation: Promise<unknown> | undefined;
  const readsAtStart = reads;
  const first = await rewrapAll(kms, records(), write, {
    onProgress: (done) => { if (done >= N / 2) rotation ??= kms.rotate('records'); },
  });
  await rotation;
  const readsDuringPass1 = reads - readsAtStart;
  assert.equal((await kms.getKeyring('records'))?.latestVersion, 3);
  assert.deepEqual(first, { rewrapped: N, skipped: 0, failed: [] });

  // Pass 2 brings the records rewrapped to v2 up to v3; then v1 and v2 are retired under the readers.
  const second = await rewrapAll(kms, records(), write);
  assert.deepEqual(second.failed, []);
  assert.ok(second.rewrapped > 0 && second.skipped > 0, JSON.stringify(second));
  await kms.setMinDecryptionVersion('records', 3);
  for (let k = 0; k < 20; k++) await turn(); // readers keep reading the retired-under-them table

  stop = true;
  await Promise.all(readers);
  kms.stop();

  assert.deepEqual(failures.slice(0, 10), [], `seed ${seed}: ${failures.length} failed reads`);
  assert.ok(readsDuringPass1 > 5_000, `only ${readsDuringPass1} reads overlapped the rewrap`);
  assert.deepEqual([...versionsRead].sort(), [1, 2, 3], 'readers met every version');
  for (let i = 0; i < N; i++) {
    const ct = db[i] ?? '';
    assert.equal(parseCiphertext(ct).version, 3);
    if (i % 10 === 0) assert.equal((await kms.decrypt(ct, ctxOf(i))).toString(), valueOf(i));
  }
  console.log(`# ${reads} reads, 0 failed; pass 1 ${JSON.stringify({ ...first, failed: first.failed.length })}, pass 2 ${JSON.stringify({ ...second, failed: second.failed.length })}, ${Date.now() - started} ms`);
});
