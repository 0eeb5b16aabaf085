import type { RepoRef } from '../bus/index.js';

/**
 * Cache tags: what a cached entry depends on. Every entry about a repository carries `repo(…)`
 * as well as its narrower tags, so "everything of this repository" is one invalidation.
 * Tags are plain strings; names are used as they are (`/` and `#` cannot occur in valid names).
 */
export const CacheTags = {
  /** Everything about a repository. */
  repo: (r: RepoRef) => `repo:${r.owner}/${r.name}`,
  /** The repository record itself (visibility, settings, collaborators list). */
  repoMeta: (r: RepoRef) => `repo-meta:${r.owner}/${r.name}`,
  /** Permission decisions on a repository. */
  perm: (r: RepoRef) => `perm:${r.owner}/${r.name}`,
  /** Issue lists and counts of a repository. */
  issues: (r: RepoRef) => `issues:${r.owner}/${r.name}`,
  /** One issue (and what hangs off it: comments, comment counts). */
  issue: (r: RepoRef, number: number) => `issue:${r.owner}/${r.name}#${number}`,
  /** Pull request lists and pull requests of a repository. */
  pulls: (r: RepoRef) => `pulls:${r.owner}/${r.name}`,
  /** Branches, tags, commits, file contents of a repository. */
  refs: (r: RepoRef) => `refs:${r.owner}/${r.name}`,
  /** Per-user data (notification counts, stopwatches, sessions). */
  user: (user: string) => `user:${user}`,
} as const;
