import { execFile, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { PermanentWriteError } from '../../repo-writes/index.js';
import { commitMessageProblem, filePathProblem } from './commit-rules.js';

/**
 * The git side of repository writes, with git's plumbing commands on a bare repository. Each
 * operation is idempotent, because a write whose worker died is delivered again:
 * - commits carry a `Forge-Write-Id:` trailer; a write whose commit is among the branch's newest
 *   commits is reported as applied instead of being committed twice;
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

/**
 * A git command failed for a reason that may pass (a stale lock, a full disk): the queue retries
 * the write. The message is what users may see (it reaches the submitter and the failures list),
 * so it names only the command; git's own output, which holds server paths, is in `detail` for
 * the server log.
 */
export class GitCommandError extends Error {
  constructor(
    readonly command: string,
    readonly exitCode: number | string | undefined,
    readonly detail: string,
  ) {
    super(`git ${command} failed${exitCode === undefined ? '' : ` (exit code ${exitCode})`}`);
    this.name = 'GitCommandError';
  }
}

/**
 * Failures git reports for requests that can never succeed, as clean reasons. Most are refused
 * before they are queued (commit-rules.ts); these stay as a net for writes submitted some other
 * way. Matched on git's untranslated messages (LC_ALL=C below).
 */
const PERMANENT_GIT_FAILURES: [RegExp, string, 400 | 409][] = [
  [/Invalid path '/, 'git refuses this file path (it names a .git folder or is not a valid path)', 400],
  [/appears as both a file and as a directory/, 'the commit would make one path both a file and a folder', 409],
  [/NUL byte in commit log message/, 'the commit message must not contain NUL bytes', 400],
  [/exists; cannot create|cannot lock ref .* but expected/, 'the ref was changed or created at the same time by someone else', 409],
];

function gitFailure(args: string[], err: unknown, stderr: string): Error {
  const permanent = PERMANENT_GIT_FAILURES.find(([pattern]) => pattern.test(stderr));
  if (permanent) return new GitWriteError(permanent[1], permanent[2]);
  const { code } = err as { code?: number | string };
  return new GitCommandError(args[0] ?? '', code, stderr.trim() || (err as Error).message);
}

/** git in the C locale: its messages are matched above and must not be translated. */
const gitEnv = (env: NodeJS.ProcessEnv): NodeJS.ProcessEnv => ({ ...process.env, ...env, LC_ALL: 'C', LANGUAGE: 'C' });

async function git(repo: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<string> {
  try {
    const { stdout } = await run('git', ['--git-dir', repo, ...args], { env: gitEnv(env), maxBuffer: 64 << 20 });
    return stdout.trim();
  } catch (err) {
    throw gitFailure(args, err, String((err as { stderr?: unknown }).stderr ?? ''));
  }
}

function gitWithInput(repo: string, args: string[], input: string | Buffer, env: NodeJS.ProcessEnv = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('git', ['--git-dir', repo, ...args], { env: gitEnv(env) });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', (error) => reject(gitFailure(args, error, err)));
    child.on('close', (code) => (code === 0 ? resolve(out.trim()) : reject(gitFailure(args, { code }, err))));
    // git may exit before it read its input (the repository was deleted under it): the write to
    // its stdin then fails with EPIPE, which must not become an uncaught error that ends the
    // node. The exit code above reports the failure.
    child.stdin.on('error', () => undefined);
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

/**
 * Why the tree of `commit` has no room for a file at `path`, or undefined: a file (or symlink, or
 * submodule) where the path needs a folder, or a folder where the file would go.
 */
async function pathConflict(repo: string, commit: string, path: string): Promise<string | undefined> {
  const parts = path.split('/');
  const prefixes = parts.map((_, i) => parts.slice(0, i + 1).join('/'));
  // -t lists the folders on the way; literal pathspecs, so "*" in a name is just a character.
  const out = await git(repo, ['ls-tree', '-t', '-z', '--full-tree', commit, '--', ...prefixes], { GIT_LITERAL_PATHSPECS: '1' });
  const wanted = new Set(prefixes);
  for (const entry of out.split('\0')) {
    const tab = entry.indexOf('\t');
    const entryPath = entry.slice(tab + 1);
    // A folder's pathspec also lists what is in it: only the entries on the path matter.
    if (tab < 0 || !wanted.has(entryPath)) continue;
    const type = entry.split(' ')[1];
    if (entryPath !== path && type !== 'tree') return `a file exists at '${entryPath}' where the commit needs a folder`;
    if (entryPath === path && type === 'tree') return `a folder exists at '${path}' where the commit needs a file`;
    if (entryPath === path && type === 'commit') return `a submodule exists at '${path}'`;
  }
  return undefined;
}

/**
 * How far back a write is looked for. Not only the head: the first attempt of a write may have
 * been applied and then others after it (its worker died before the ack, a consumer was deleted
 * and re-created, the server lost the ack in a crash) before it is delivered again.
 */
const WRITE_LOOKBACK = 200;

/** The commit that applied `writeId` (by its trailer), among the newest commits of `head`. */
async function findWrite(repo: string, head: string, writeId: string): Promise<{ sha: string; parent: string | null } | undefined> {
  const log = await git(repo, ['log', `-${WRITE_LOOKBACK}`, '--format=%H %P%x1f%B%x1e', head]);
  const trailer = `${TRAILER}: ${writeId}`;
  for (const entry of log.split('\x1e')) {
    const [shas, body] = entry.split('\x1f');
    if (!body?.split('\n').some((line) => line.trim() === trailer)) continue;
    const [sha, parent] = shas!.trim().split(' ');
    return { sha: sha!, parent: parent ?? null };
  }
  return undefined;
}

/** Writes `content` at `path` on top of `branch` (creating the branch) and moves the branch. */
export async function commitFile(repo: string, input: CommitFileInput): Promise<CommitResult> {
  // The API checks these before queueing; the queue accepts writes from other submitters too.
  const pathProblem = filePathProblem(input.path);
  if (pathProblem) throw new GitWriteError(`invalid path: it ${pathProblem}`, 400);
  const messageProblem = commitMessageProblem(input.message);
  if (messageProblem) throw new GitWriteError(`invalid commit message: it ${messageProblem}`, 400);
  const ref = `refs/heads/${input.branch}`;
  const head = await resolveRef(repo, ref);
  if (head) {
    const applied = await findWrite(repo, head, input.writeId);
    if (applied) return { ...applied, alreadyApplied: true };
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
    try {
      await git(repo, ['update-index', '--add', '--cacheinfo', `100644,${blob},${input.path}`], env);
    } catch (err) {
      // Looked up only when git refused: what is in the way, in the user's terms.
      const conflict = err instanceof GitWriteError && head ? await pathConflict(repo, head, input.path) : undefined;
      throw conflict ? new GitWriteError(conflict, 409) : err;
    }
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
  await git(repo, ['update-ref', ref, sha, ZERO]);
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
