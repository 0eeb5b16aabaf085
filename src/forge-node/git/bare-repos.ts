import { execFile } from 'node:child_process';
import { rm } from 'node:fs/promises';
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

export async function removeRepo(path: string): Promise<void> {
  await rm(path, { recursive: true, force: true });
}
