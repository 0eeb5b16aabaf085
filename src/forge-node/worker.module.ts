import { Module } from '@nestjs/common';
import { configProvider, databaseProvider, forgeCoreImports } from './app.module.js';
import { GitWriteHandlers } from './git/repo-writes.service.js';
import { PushHandler } from './git-http/push.handler.js';
import { ForgeEventsService } from './outbox/forge-events.service.js';
import { RepoStatsJob } from './cron/repo-stats.job.js';
import { MigrationCleanup } from './migrate/migration-cleanup.js';

/** A worker-only process: applies repository writes (their events go through the outbox), serves no HTTP. */
@Module({
  imports: [...forgeCoreImports],
  providers: [configProvider, databaseProvider, ForgeEventsService, GitWriteHandlers, PushHandler, RepoStatsJob, MigrationCleanup],
})
export class ForgeWorkerModule {}
