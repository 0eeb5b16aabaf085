import { Inject, Injectable, Logger } from '@nestjs/common';
import { existsSync } from 'node:fs';
import type { EventInput } from '../../index.js';
import { RepoWriteHandler } from '../../nest/index.js';
import { PermanentWriteError, type RepoWriteContext } from '../../repo-writes/index.js';
import { FORGE_NODE_CONFIG, type ForgeNodeConfig } from '../config.js';
import { ForgeEventsService } from '../outbox/forge-events.service.js';
import { isMigrating } from '../migrate/marker.js';
import { repoPath } from './bare-repos.js';
import { commitFile, createRef, deleteRef, GitCommandError, resolveRef, type CommitResult } from './git-writes.js';

export interface CommitArgs {
  branch: string;
  path: string;
  content: string;
  message: string;
  author: string;
}

export interface RefArgs {
  name: string;
  /** Target sha (creation only). */
  sha?: string;
  author: string;
}

const ZERO = '0'.repeat(40);

/**
 * The git write operations of the example forge, applied by whichever node (or worker process)
 * pulls the write from the queue. After applying, each publishes its event with an id derived
 * from the write id, so a redelivered write publishes it once.
 */
@Injectable()
export class GitWriteHandlers {
  private readonly logger = new Logger('GitWriteHandlers');

  constructor(
    @Inject(FORGE_NODE_CONFIG) private readonly config: ForgeNodeConfig,
    private readonly events: ForgeEventsService,
  ) {}

  private repoDir(ctx: RepoWriteContext): string {
    const dir = repoPath(this.config.dataDir, ctx.repo.owner, ctx.repo.name);
    if (!existsSync(dir)) throw new PermanentWriteError(`repository ${ctx.repo.owner}/${ctx.repo.name} does not exist (deleted?)`, 404);
    if (isMigrating(dir)) throw new PermanentWriteError(`repository ${ctx.repo.owner}/${ctx.repo.name} is being migrated: writes are refused until the migration ends`, 409);
    return dir;
  }

  /**
   * Runs a handler's git work; a git failure that may pass is logged here with git's own output
   * (server paths and all), which its error message leaves out because users see that.
   */
  private async logged<T>(ctx: RepoWriteContext, dir: string, work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } catch (err) {
      if (!(err instanceof GitCommandError)) throw err;
      // Deleted while the write ran (DELETE of the repository races the queue): retrying cannot help.
      if (!existsSync(dir)) throw new PermanentWriteError(`repository ${ctx.repo.owner}/${ctx.repo.name} was deleted while the write was applied`, 404);
      this.logger.warn(`write ${ctx.writeId} (${ctx.operation} on ${ctx.repo.owner}/${ctx.repo.name}, attempt ${ctx.deliveryCount}): ${err.message}: ${err.detail}`);
      throw err;
    }
  }

  /**
   * Records the write's events in the outbox (a local SQLite insert), which relays them. The
   * write is applied by now: an event that cannot be published this moment (FORGE_EVENTS
   * unavailable) must not fail it, or the submitter gets a 500 for a commit that exists and a
   * retry commits twice. The id derives from the write id, so a redelivered write's second record
   * is stored once by the stream's duplicate window.
   */
  private async publish(ctx: RepoWriteContext, ...inputs: Omit<EventInput, 'id' | 'repo'>[]): Promise<void> {
    await this.events.transaction((record) => {
      for (const input of inputs) record({ ...input, repo: ctx.repo, id: `${ctx.writeId}.${input.type}` } as EventInput);
    });
  }

  @RepoWriteHandler('commit')
  async commit(ctx: RepoWriteContext<CommitArgs>): Promise<{ sha: string; parent: string | null }> {
    const dir = this.repoDir(ctx);
    const result: CommitResult = await this.logged(ctx, dir, () => commitFile(dir, {
      writeId: ctx.writeId,
      branch: ctx.args.branch,
      path: ctx.args.path,
      content: ctx.args.content,
      message: ctx.args.message,
      author: ctx.args.author,
      date: ctx.acceptedAt,
    }));
    const ref = `refs/heads/${ctx.args.branch}`;
    const pushed = { type: 'repo.pushed', actor: ctx.args.author, payload: { ref, before: result.parent ?? ZERO, after: result.sha, commitCount: 1 } };
    if (result.parent) await this.publish(ctx, pushed);
    else await this.publish(ctx, pushed, { type: 'ref.created', actor: ctx.args.author, payload: { ref, sha: result.sha } });
    return { sha: result.sha, parent: result.parent };
  }

  @RepoWriteHandler('branch.create')
  async createBranch(ctx: RepoWriteContext<RefArgs>): Promise<{ sha: string }> {
    return this.createRefWrite(ctx, `refs/heads/${ctx.args.name}`);
  }

  @RepoWriteHandler('tag.create')
  async createTag(ctx: RepoWriteContext<RefArgs>): Promise<{ sha: string }> {
    return this.createRefWrite(ctx, `refs/tags/${ctx.args.name}`);
  }

  @RepoWriteHandler('branch.delete')
  async deleteBranch(ctx: RepoWriteContext<RefArgs>): Promise<{ sha: string | null }> {
    const ref = `refs/heads/${ctx.args.name}`;
    const dir = this.repoDir(ctx);
    const result = await this.logged(ctx, dir, () => deleteRef(dir, ref));
    if (!result.alreadyApplied && result.sha) {
      await this.publish(ctx, { type: 'ref.deleted', actor: ctx.args.author, payload: { ref, sha: result.sha } });
    } else if (ctx.deliveryCount === 1) {
      throw new PermanentWriteError(`branch ${ctx.args.name} does not exist`, 404);
    }
    return { sha: result.sha };
  }

  private async createRefWrite(ctx: RepoWriteContext<RefArgs>, ref: string): Promise<{ sha: string }> {
    const dir = this.repoDir(ctx);
    const sha = ctx.args.sha ? await resolveRef(dir, ctx.args.sha) : undefined;
    if (!sha) throw new PermanentWriteError(`${ctx.args.sha ?? '(no target)'} is not a commit of ${ctx.repo.owner}/${ctx.repo.name}`, 404);
    const result = await this.logged(ctx, dir, () => createRef(dir, ref, sha));
    // On a redelivery the event may have gone out already: its id makes the re-publish a no-op.
    await this.publish(ctx, { type: 'ref.created', actor: ctx.args.author, payload: { ref, sha } });
    return { sha: result.sha };
  }
}
