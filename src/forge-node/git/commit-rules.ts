/**
 * What a commit may contain, checked when the request arrives so that nothing git would refuse
 * reaches the write queue (and is retried there as if the failure might pass).
 *
 * File paths follow git's own `verify_path` rules (read-cache.c, path.c) with both
 * `core.protectHFS` and `core.protectNTFS` on, whatever this server runs on, so that no commit
 * made here is refused by git or turns into a `.git` folder when cloned on macOS or Windows.
 */

/** Code points HFS+ ignores in names, so ".g\u200cit" is ".git" there (git's next_hfs_char). */
const HFS_IGNORED = /[\u200c-\u200f\u202a-\u202e\u206a-\u206f\ufeff]/g;

const MAX_PATH_LENGTH = 1024;

/**
 * Whether a path component names git's own folder on some file system: ".git" in any case;
 * on HFS+ with ignorable code points anywhere; on NTFS with trailing spaces or dots, with an
 * alternate data stream (".git::$INDEX_ALLOCATION"), or as the 8.3 short name "git~1".
 */
export function isReservedGitName(component: string): boolean {
  const folded = component.replace(HFS_IGNORED, '').toLowerCase();
  const beforeStream = folded.split(':', 1)[0]!;
  const trimmed = beforeStream.replace(/[ .]+$/, '');
  return trimmed === '.git' || trimmed === 'git~1';
}

/** Why a file path inside a repository is not acceptable to git, or undefined. */
export function filePathProblem(path: unknown): string | undefined {
  if (typeof path !== 'string') return 'must be a string';
  if (path.length === 0 || path.length > MAX_PATH_LENGTH) return `must be 1-${MAX_PATH_LENGTH} characters`;
  if (!path.isWellFormed()) return 'must be valid Unicode (it contains a lone surrogate)';
  if (/[\u0000-\u001f\u007f\\]/.test(path)) return 'must not contain control characters or "\\"';
  const parts = path.split('/');
  if (parts.some((p) => p === '' || p === '.' || p === '..')) return 'must be relative, without empty, "." or ".." components';
  const reserved = parts.find(isReservedGitName);
  if (reserved !== undefined) {
    return `must not contain ${JSON.stringify(reserved)}: git reserves ".git" and the names macOS and Windows treat as ".git"`;
  }
  return undefined;
}

/** Why a commit message is not acceptable to git (`commit-tree` refuses NUL bytes), or undefined. */
export function commitMessageProblem(message: unknown): string | undefined {
  if (typeof message !== 'string') return 'must be a string';
  if (message.includes('\u0000')) return 'must not contain NUL bytes (git refuses them)';
  return undefined;
}
