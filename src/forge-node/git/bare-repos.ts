import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { rename, rm } from 'node:fs/promises';
import { Logger } from '@nestjs/common';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Bare repositories live at <dataDir>/repos/<owner>/<name>.git (names are validated first). */
export function repoPath(dataDir: string, owner: string, name: string): string {
  return join(dataDir, 'repos', owner, `${name}.git`);
}

export async function initBareRepo(path: string, defaultBranch = 'main'): Promise<void> {
  await run('git', ['init', '--bare', '--quiet', `--initial-branch=${defaultBranch}`, path]);
}

/**
 * Removes a repository. It is moved aside first (one rename), so the name is free at once and a
 * write still running on it (a queued commit racing the delete) fails on a missing repository
 * instead of adding files under the path while it is removed, which made the removal fail with
 * ENOTEMPTY (a 500 for the DELETE, seen in the fuzz test). What cannot be removed even then is
 * left under a `.deleted-` name and logged.
 */
export async function removeRepo(path: string): Promise<void> {
  const aside = `${path}.deleted-${randomBytes(4).toString('hex')}`;
  try {
    await rename(path, aside);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  try {
    await rm(aside, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 });
  } catch (err) {
    logger.warn(`could not remove the deleted repository's files at ${aside} (${(err as Error).message}); remove them by hand`);
  }
}

const logger = new Logger('BareRepos');
