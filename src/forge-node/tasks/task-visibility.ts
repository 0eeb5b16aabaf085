import type { ReposService } from '../repos/repos.service.js';

/**
 * Whether `user` may see a task: those they started, and those of repositories they may read
 * (GET /api/tasks and the operations view, GET /api/ops, apply the same rule).
 */
export async function taskVisibleTo(task: { user: string; repo?: string }, user: string, repos: ReposService): Promise<boolean> {
  if (task.user === user) return true;
  const [owner, name] = (task.repo ?? '').split('/');
  if (!owner || !name) return false;
  return repos.canRead(await repos.findRepo(owner, name), user);
}
