import { ForbiddenException, Inject, Injectable, Logger } from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Locks, TaskRegistry, type TaskContext, type TaskRecord } from '../../cluster/index.js';
import { FORGE_NODE_CONFIG, type ForgeNodeConfig } from '../config.js';
import { removeRepo, repoPath } from '../git/bare-repos.js';
import { ReposService } from '../repos/repos.service.js';
import { CloneFailedError, cloneMirror } from './clone.js';
import { MIGRATING_MARKER } from './marker.js';
import { MIGRATE_KIND, MigrationCleanup, migrationTmpDir } from './migration-cleanup.js';

/**
 * Repository migrations: the repository is created for the caller at once (so the name is taken
 * and a second migration gets 409), marked as migrating (writes refused), and a task on this node
 * clones the source into a temporary directory under the cluster lock `migrate.<owner>/<name>`,
 * then moves the clone into place. Whatever does not succeed leaves no repository behind.
 */
@Injectable()
export class MigrationsService {
  private readonly logger = new Logger('Migrations');

  constructor(
    @Inject(FORGE_NODE_CONFIG) private readonly config: ForgeNodeConfig,
    private readonly repos: ReposService,
    private readonly tasks: TaskRegistry,
    private readonly locks: Locks,
    private readonly cleanup: MigrationCleanup,
  ) {}

  async start(owner: string, name: string, user: string, from: string, isPrivate: boolean): Promise<TaskRecord> {
    if (owner !== user) throw new ForbiddenException(`only ${owner} may create repositories under ${owner}/`);
    await this.repos.create(owner, name, isPrivate); // 409 when it exists
    const id = randomUUID();
    try {
      await writeFile(join(repoPath(this.config.dataDir, owner, name), MIGRATING_MARKER), `task ${id}\n`);
      return await this.tasks.start(MIGRATE_KIND, { id, repo: `${owner}/${name}`, user, run: (ctx) => this.migrate(owner, name, user, from, ctx) });
    } catch (err) {
      await this.cleanup.discard(owner, name, id, user);
      throw err;
    }
  }

  private async migrate(owner: string, name: string, user: string, from: string, ctx: TaskContext): Promise<void> {
    const tmp = migrationTmpDir(this.config.dataDir, ctx.id);
    const dest = repoPath(this.config.dataDir, owner, name);
    try {
      await this.locks.withLock(
        `migrate.${owner}/${name}`,
        async ({ signal: lease }) => {
          // Stop on cancel, and when the lease is lost (another node may now migrate it).
          const signal = AbortSignal.any([ctx.signal, lease]);
          await mkdir(dirname(tmp), { recursive: true });
          ctx.progress(5);
          await cloneMirror(from, tmp, signal, ctx.progress);
          signal.throwIfAborted();
          // The marker goes with the placeholder; the clone has none: writes are accepted again.
          await removeRepo(dest);
          await rename(tmp, dest);
        },
        { ttlMs: 15_000, waitMs: 0 },
      );
      // Cancelled while the clone was moved into place: the task reads cancelled, so it must go.
      ctx.signal.throwIfAborted();
      this.logger.log(`migrated ${owner}/${name} (task ${ctx.id})`);
    } catch (err) {
      if (err instanceof CloneFailedError) this.logger.warn(`migration of ${owner}/${name} (task ${ctx.id}) failed: ${err.detail}`);
      await this.cleanup.discard(owner, name, ctx.id, user).catch((e: Error) => this.logger.error(`cannot remove ${owner}/${name} after its migration failed: ${e.message}`));
      throw err;
    }
  }
}
