import { Controller, Get, Inject, Optional } from '@nestjs/common';
import { ForgeBus } from '../../index.js';
import type { ClusterStatus } from '../../ops/status/cluster-status.js';
import { collectClusterStatus } from '../../ops/status/collect.js';
import { CronScheduler } from '../../cluster/index.js';
import { AcceptBrowserTokens, CurrentUser } from '../auth/auth.guard.js';
import { FORGE_NODE_CONFIG, type ForgeNodeConfig } from '../config.js';
import { ReposService } from '../repos/repos.service.js';
import { taskVisibleTo } from '../tasks/task-visibility.js';
import { SnapshotCache } from './snapshot-cache.js';

/** How long one collected snapshot answers every request (each costs a few dozen JetStream API calls). */
const SNAPSHOT_MAX_AGE_MS = 1_000;

/**
 * `GET /api/ops`: the operations view, the same ClusterStatus `forgebus status --json` prints,
 * collected with this node's own NATS connection and NATS_MONITOR_URL (without it, the NATS
 * server listed is the one this node is connected to). Signed-in users only. Tasks are only those
 * the user may see (as GET /api/tasks); nothing else names a repository (cron errors are left out:
 * GET /api/cron has them).
 */
@Controller('api/ops')
export class OpsController {
  private readonly snapshots: SnapshotCache<ClusterStatus>;

  constructor(
    bus: ForgeBus,
    @Inject(FORGE_NODE_CONFIG) config: ForgeNodeConfig,
    private readonly repos: ReposService,
    @Optional() private readonly cron?: CronScheduler,
  ) {
    this.snapshots = new SnapshotCache(
      () => collectClusterStatus(bus.nc, { monitorUrls: config.natsMonitorUrls, selfNodeId: bus.nodeId, requestTimeoutMs: 3_000, monitorTimeoutMs: 2_000 }),
      SNAPSHOT_MAX_AGE_MS,
    );
  }

  // A read: the web page's session cookie is enough, as for GET /api/events.
  @Get()
  @AcceptBrowserTokens()
  async status(@CurrentUser() user: string): Promise<ClusterStatus> {
    const status = await this.snapshots.get();
    const visible = await Promise.all(status.tasks.map((t) => taskVisibleTo(t, user, this.repos)));
    return {
      ...status,
      tasks: status.tasks.filter((_, i) => visible[i]),
      cron: [
        ...status.cron.map(({ job, lastRun }) => {
          if (!lastRun) return { job };
          const { error: _error, ...run } = lastRun;
          return { job, lastRun: run };
        }),
        // Jobs scheduled here that have not run anywhere yet (the records list only jobs that ran).
        ...(this.cron?.list() ?? []).filter((j) => !status.cron.some((c) => c.job === j.name)).map((j) => ({ job: j.name })),
      ],
    };
  }
}
