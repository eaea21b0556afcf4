import { fileURLToPath } from 'node:url';
import { join } from 'node:path';

// Tests run compiled from dist/test/...; fixtures and the CLI live in the source tree.
export const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));
export const fixture = (...parts: string[]): string => join(repoRoot, 'test', 'fixtures', ...parts);
export const cliPath = join(repoRoot, 'bin', 'portcullis.js');
