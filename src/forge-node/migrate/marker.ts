import { existsSync } from 'node:fs';
import { join } from 'node:path';

/**
 * A file in a repository's bare directory while a migration fills it. It lives on the shared data
 * directory, so every node and worker that applies writes sees it without asking the cluster.
 * The migration replaces the whole directory at its end (the clone has no marker); a failed
 * migration removes it.
 */
export const MIGRATING_MARKER = 'FORGE_MIGRATING';

export function isMigrating(bareDir: string): boolean {
  return existsSync(join(bareDir, MIGRATING_MARKER));
}
