import { Inject, Injectable, Logger, type OnModuleDestroy, type OnModuleInit } from '@nestjs/common';
import { existsSync } from 'node:fs';
import { rename, writeFile } from 'node:fs/promises';
import type { EventInput } from '../../index.js';
import { RepoWriteHandler } from '../../nest/index.js';
import { PermanentWriteError, type RepoWriteContext } from '../../repo-writes/index.js';
import { FORGE_NODE_CONFIG, type ForgeNodeConfig } from '../config.js';
import { repoPath } from '../git/bare-repos.js';
import { isMigrating } from '../migrate/marker.js';
import { ForgeEventsService } from '../outbox/forge-events.service.js';
import { applyPush, BadPushError, commitsBetween, ReceivePackError, type AppliedPush } from './apply-push.js';
import { encodePushResponse, isZeroId } from './pkt-line.js';
import { installPushHooks } from './protected-branches.js';
import { PushSpool } from './spool.js';

/**
 * Spool files older than this are abandoned: far beyond any push's timeout and the queue's
 * redeliveries (a push still queued then has been answered as timed out long ago).
 */
const SPOOL_MAX_AGE_MS = 24 * 3600 * 1000;
const SPOOL_SWEEP_MS = 3600 * 1000;

/** A push queued as a repository write: where its request is spooled, and who pushes. */
export interface PushArgs {
  spool: string;
  user: string;
}

export interface PushResult {
  /** Spool id of git's answer (`<id>.res`), for the node that received the push. */
  response: string;
  /** Refs the push moved (now or in an earlier delivery). */
  accepted: number;
}

/**
 * Applies pushes (`git receive-pack` on the spooled request) on whichever node pulls them from
 * the write queue: one at a time per repository, cluster-wide, and in order with the API's
 * commits and ref changes. Each accepted ref publishes its events once: ids derive from the
 * write id and the ref, so a redelivery's second record is dropped by the stream.
 */
@Injectable()
export class PushHandler implements OnModuleInit, OnModuleDestroy {
  private readonly logger = new Logger('PushHandler');
  private readonly spool: PushSpool;
  private hooksDir?: Promise<string>;
  private sweeper?: NodeJS.Timeout;

  constructor(
    @Inject(FORGE_NODE_CONFIG) private readonly config: ForgeNodeConfig,
    private readonly events: ForgeEventsService,
  ) {
    this.spool = new PushSpool(config.dataDir);
  }

  onModuleInit(): void {
    this.hooksDir = installPushHooks(this.config.dataDir);
    this.hooksDir.catch((err: Error) => this.logger.error(`cannot install the protected-branch hook: ${err.message}`));
    // Requests and answers of pushes whose receiving node died before it cleaned up.
    const sweep = () =>
      void this.spool
        .sweep(SPOOL_MAX_AGE_MS)
        .then((n) => n > 0 && this.logger.log(`removed ${n} abandoned push file(s) from the spool`))
        .catch((err: Error) => this.logger.warn(`cannot sweep the push spool: ${err.message}`));
    sweep();
    this.sweeper = setInterval(sweep, SPOOL_SWEEP_MS);
    this.sweeper.unref();
  }

  onModuleDestroy(): void {
    clearInterval(this.sweeper);
  }

  @RepoWriteHandler('push')
  async push(ctx: RepoWriteContext<PushArgs>): Promise<PushResult> {
    const { repo, args } = ctx;
    const dir = repoPath(this.config.dataDir, repo.owner, repo.name);
    if (!existsSync(dir)) throw new PermanentWriteError(`repository ${repo.owner}/${repo.name} does not exist (deleted?)`, 404);
    if (isMigrating(dir)) throw new PermanentWriteError(`repository ${repo.owner}/${repo.name} is being migrated: pushes are refused until the migration ends`, 409);
    if (!existsSync(this.spool.request(args.spool))) {
      // Answered already (a redelivery after the answer was written), or cleaned up: either way
      // there is nothing left to apply.
      if (existsSync(this.spool.response(args.spool))) return { response: args.spool, accepted: 0 };
      throw new PermanentWriteError('the push request is no longer on the spool (it timed out and was removed): push again', 410);
    }
    let applied: AppliedPush;
    try {
      applied = await applyPush(dir, this.spool, args.spool, {
        hooksDir: await this.hooksDir!,
        protectedBranches: this.config.git.protectedBranches,
        timeoutMs: this.config.git.pushTimeoutMs,
      });
    } catch (err) {
      if (err instanceof BadPushError) throw new PermanentWriteError(err.message, 400);
      if (err instanceof ReceivePackError) this.logger.warn(`push ${ctx.writeId} to ${repo.owner}/${repo.name} (attempt ${ctx.deliveryCount}): ${err.message}: ${err.detail}`);
      throw err;
    }
    await this.publish(ctx, dir, applied);
    const response = this.spool.response(args.spool);
    // Written aside and renamed: the receiving node must never read half an answer.
    await writeFile(`${response}.part`, encodePushResponse(applied.report, applied.capabilities, applied.messages), { mode: 0o600 });
    await rename(`${response}.part`, response);
    return { response: args.spool, accepted: applied.accepted.length };
  }

  private async publish(ctx: RepoWriteContext<PushArgs>, dir: string, applied: AppliedPush): Promise<void> {
    const actor = ctx.args.user;
    const inputs: Omit<EventInput, 'repo'>[] = [];
    for (const c of applied.accepted) {
      const id = (type: string) => `${ctx.writeId}.${c.ref}.${type}`;
      if (isZeroId(c.new)) {
        inputs.push({ id: id('ref.deleted'), type: 'ref.deleted', actor, payload: { ref: c.ref, sha: c.old } });
        continue;
      }
      if (isZeroId(c.old)) inputs.push({ id: id('ref.created'), type: 'ref.created', actor, payload: { ref: c.ref, sha: c.new } });
      if (c.ref.startsWith('refs/heads/')) {
        const commitCount = await commitsBetween(dir, c.old, c.new);
        inputs.push({ id: id('repo.pushed'), type: 'repo.pushed', actor, payload: { ref: c.ref, before: c.old, after: c.new, commitCount } });
      }
    }
    if (inputs.length === 0) return;
    await this.events.transaction((record) => {
      for (const input of inputs) record({ ...input, repo: ctx.repo } as EventInput);
    });
  }
}
