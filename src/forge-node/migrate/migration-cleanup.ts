import { Inject, Injectable, Logger, type OnModuleInit } from '@nestjs/common';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { TaskRegistry, type TaskRecord } from '../../cluster/index.js';
import { FORGE_NODE_CONFIG, type ForgeNodeConfig } from '../config.js';
import { removeRepo, repoPath } from '../git/bare-repos.js';
import { ForgeEventsService } from '../outbox/forge-events.service.js';

export const MIGRATE_KIND = 'migrate';

/** Where a migration clones before its result is moved into place (same filesystem: a rename). */
export const migrationTmpDir = (dataDir: string, taskId: string) => join(dataDir, 'tmp', `migrate-${taskId}.git`);

/**
 * Removes what a migration that did not succeed leaves: its partial clone, the repository record
 * (with a repo.deleted event, which also invalidates caches) and its bare directory. Used by the
 * migration itself on failure or cancel, and by whichever node recovers the task of a node that
 * died mid-migration: registered in every process with a TaskRegistry (web nodes and workers),
 * since any of them may win the recovery. Plain SQL rather than ReposService: workers have no
 * cache module, and the decision needs no permission check (the task's starter owns the repo).
 */
@Injectable()
export class MigrationCleanup implements OnModuleInit {
  private readonly logger = new Logger('Migrations');

  constructor(
    @Inject(FORGE_NODE_CONFIG) private readonly config: ForgeNodeConfig,
    private readonly events: ForgeEventsService,
    private readonly tasks: TaskRegistry,
  ) {}

  onModuleInit(): void {
    this.tasks.onRecovered(MIGRATE_KIND, (task) => this.afterDeadNode(task));
  }

  async discard(owner: string, name: string, taskId: string, actor: string): Promise<void> {
    await rm(migrationTmpDir(this.config.dataDir, taskId), { recursive: true, force: true });
    await this.events.transaction(async (record, tx) => {
      const deleted = await tx.run('DELETE FROM repos WHERE owner = ? AND name = ?', [owner, name]);
      if (deleted.changes > 0) record({ type: 'repo.deleted', repo: { owner, name }, actor, payload: {} });
    });
    await removeRepo(repoPath(this.config.dataDir, owner, name));
  }

  private async afterDeadNode(task: TaskRecord): Promise<void> {
    const [owner, name] = (task.repo ?? '').split('/');
    if (!owner || !name) return;
    this.logger.warn(`removing ${task.repo}: its migration (task ${task.id}) died with node ${task.node}`);
    await this.discard(owner, name, task.id, task.user);
  }
}
