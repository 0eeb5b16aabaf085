import { Controller, Get, Inject } from '@nestjs/common';
import { RepoWriteQueue, type FailedWrite } from '../../repo-writes/index.js';
import { CurrentUser } from '../auth/auth.guard.js';
import { FORGE_NODE_CONFIG, type ForgeNodeConfig } from '../config.js';
import { ReposService } from '../repos/repos.service.js';

/**
 * The repository write queue as users see it. The example forge has no operator role: every
 * signed-in user is treated alike, so nothing here may show more than the repositories the user
 * may read.
 */
@Controller('api/writes')
export class WritesController {
  constructor(
    private readonly queue: RepoWriteQueue,
    private readonly repos: ReposService,
    @Inject(FORGE_NODE_CONFIG) private readonly config: ForgeNodeConfig,
  ) {}

  /**
   * This process's counters (applied, failed, redelivered, in flight, wait and apply times) and
   * the cluster's queue depth. Only numbers, per partition index: no repository names.
   */
  @Get('stats')
  async stats() {
    const queued = await this.queue.queued();
    return { ...this.queue.stats, queued: Object.values(queued).reduce((a, b) => a + b, 0), queuedByPartition: queued };
  }

  /**
   * Writes that failed for good (a handler that kept failing, no handler), oldest first: only
   * those of repositories `user` may read (the rule of GET /api/repos/:owner/:name), since a
   * failure carries the write's arguments, such as a private file's content and its message.
   */
  @Get('failures')
  async failures(@CurrentUser() user: string): Promise<FailedWrite[]> {
    const readable = new Map<string, boolean>();
    const visible: FailedWrite[] = [];
    for (const failure of await this.queue.listFailures()) {
      const key = `${failure.repo.owner}/${failure.repo.name}`;
      let mayRead = readable.get(key);
      if (mayRead === undefined) {
        mayRead = this.repos.canRead(await this.repos.findRepo(failure.repo.owner, failure.repo.name), user);
        readable.set(key, mayRead);
      }
      if (mayRead) visible.push({ ...failure, error: this.withoutServerPaths(failure.error) });
    }
    return visible;
  }

  /** Records written before handlers kept paths out of their errors may still hold one. */
  private withoutServerPaths(error: string): string {
    return error.split(this.config.dataDir).join('<data dir>');
  }
}
