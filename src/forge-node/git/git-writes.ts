import { execFile, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { PermanentWriteError } from '../../repo-writes/index.js';

/**
 * The git side of repository writes, with git's plumbing commands on a bare repository. Each
 * operation is idempotent, because a write whose worker died is delivered again:
 * - commits carry a `Forge-Write-Id:` trailer; a write whose commit is already the branch head
 *   is reported as applied instead of being committed twice;
 * - ref changes are compare-and-swap (`git update-ref <ref> <new> <old>`); a ref already in the
 *   wanted state counts as applied.
 */

const run = promisify(execFile);
const ZERO = '0'.repeat(40);

/** A write that cannot succeed as asked (conflict, missing ref): failed at once, not retried. */
export class GitWriteError extends PermanentWriteError {
  constructor(message: string, status: 400 | 404 | 409 = 409) {
    super(message, status);
  }
}

async function git(repo: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<string> {
  const { stdout } = await run('git', ['--git-dir', repo, ...args], { env: { ...process.env, ...env }, maxBuffer: 64 << 20 });
  return stdout.trim();
}

function gitWithInput(repo: string, args: string[], input: string | Buffer, env: NodeJS.ProcessEnv = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('git', ['--git-dir', repo, ...args], { env: { ...process.env, ...env } });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(out.trim()) : reject(new Error(`git ${args[0]} failed: ${err.trim()}`))));
    child.stdin.end(input);
  });
}

/** The sha a ref points to, or undefined. */
export async function resolveRef(repo: string, ref: string): Promise<string | undefined> {
  try {
    return await git(repo, ['rev-parse', '--verify', '--quiet', `${ref}^{commit}`]);
  } catch {
    return undefined;
  }
}

export interface CommitFileInput {
  writeId: string;
  branch: string;
  path: string;
  content: string;
  message: string;
  author: string;
  /** ISO time the write was accepted: the commit date, so the commit is reproducible. */
  date: string;
}

export interface CommitResult {
  sha: string;
  parent: string | null;
  /** True when this delivery found the commit already made by an earlier one. */
  alreadyApplied: boolean;
}

const TRAILER = 'Forge-Write-Id';

/** Writes `content` at `path` on top of `branch` (creating the branch) and moves the branch. */
export async function commitFile(repo: string, input: CommitFileInput): Promise<CommitResult> {
  const ref = `refs/heads/${input.branch}`;
  const head = await resolveRef(repo, ref);
  if (head) {
    const message = await git(repo, ['log', '-1', '--format=%B', head]);
    if (message.includes(`${TRAILER}: ${input.writeId}`)) {
      const parent = await resolveRef(repo, `${head}^`);
      return { sha: head, parent: parent ?? null, alreadyApplied: true };
    }
  }
  const indexDir = await mkdtemp(join(tmpdir(), 'forgebus-index-'));
  const env = {
    GIT_INDEX_FILE: join(indexDir, 'index'),
    GIT_AUTHOR_NAME: input.author,
    GIT_AUTHOR_EMAIL: `${input.author}@forge.invalid`,
    GIT_AUTHOR_DATE: input.date,
    GIT_COMMITTER_NAME: 'forgebus',
    GIT_COMMITTER_EMAIL: 'forgebus@forge.invalid',
    GIT_COMMITTER_DATE: input.date,
  };
  try {
    if (head) await git(repo, ['read-tree', head], env);
    const blob = await gitWithInput(repo, ['hash-object', '-w', '--stdin'], input.content);
    await git(repo, ['update-index', '--add', '--cacheinfo', `100644,${blob},${input.path}`], env);
    const tree = await git(repo, ['write-tree'], env);
    const message = `${input.message.trim()}\n\n${TRAILER}: ${input.writeId}\n`;
    const sha = await gitWithInput(repo, ['commit-tree', tree, ...(head ? ['-p', head] : [])], message, env);
    await git(repo, ['update-ref', ref, sha, head ?? ZERO]);
    return { sha, parent: head ?? null, alreadyApplied: false };
  } finally {
    await rm(indexDir, { recursive: true, force: true });
  }
}

/** Creates `ref` at `sha`; applied already if it points there. */
export async function createRef(repo: string, ref: string, sha: string): Promise<{ sha: string; alreadyApplied: boolean }> {
  const current = await resolveRef(repo, ref);
  if (current === sha) return { sha, alreadyApplied: true };
  if (current) throw new GitWriteError(`${ref} already exists (at ${current})`);
  try {
    await git(repo, ['update-ref', ref, sha, ZERO]);
  } catch (err) {
    throw new GitWriteError(`cannot create ${ref}: ${(err as Error).message}`);
  }
  return { sha, alreadyApplied: false };
}

/** Deletes `ref`; applied already if it does not exist. */
export async function deleteRef(repo: string, ref: string): Promise<{ sha: string | null; alreadyApplied: boolean }> {
  const current = await resolveRef(repo, ref);
  if (!current) return { sha: null, alreadyApplied: true };
  await git(repo, ['update-ref', '-d', ref, current]);
  return { sha: current, alreadyApplied: false };
}

export interface CommitSummary {
  sha: string;
  message: string;
}

/** Commits reachable from `branch`, newest first. */
export async function listCommits(repo: string, branch: string, limit = 1000): Promise<CommitSummary[]> {
  const head = await resolveRef(repo, `refs/heads/${branch}`);
  if (!head) return [];
  const out = await git(repo, ['log', `--max-count=${limit}`, '--format=%H%x00%s', head]);
  return out
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const [sha, message] = line.split('\0');
      return { sha: sha!, message: message ?? '' };
    });
}
