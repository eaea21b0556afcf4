import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

/** The events of one component's audit log (all segments, in order), parsed from its lines. */
export function auditEvents(dataDir: string, component: string): Record<string, unknown>[] {
  const dir = join(dataDir, 'audit', component);
  if (!existsSync(dir)) return [];
  return readdirSync(dir).filter((f) => /^audit-\d+\.jsonl$/.test(f)).sort()
    .flatMap((f) => readFileSync(join(dir, f), 'utf8').split('\n'))
    .flatMap((line) => {
      try {
        const entry = JSON.parse(line) as { event?: Record<string, unknown> };
        return entry.event ? [entry.event] : [];
      } catch {
        return []; // a torn last line
      }
    });
}
