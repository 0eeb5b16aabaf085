import { Module, ValidationPipe, type MiddlewareConsumer, type NestModule, type Provider } from '@nestjs/common';
import { ConfigModule, ConfigService } from '@nestjs/config';
import { APP_FILTER, APP_GUARD, APP_PIPE } from '@nestjs/core';
import { BusUnavailableFilter } from './http/bus-unavailable.filter.js';
import { TerminusModule } from '@nestjs/terminus';
import { ClusterModule, ForgeBusModule, ForgeCacheModule, RepoWritesModule, SseModule } from '../nest/index.js';
import { AuthGuard } from './auth/auth.guard.js';
import { FORGE_NODE_CONFIG, loadForgeNodeConfig, type ForgeNodeConfig } from './config.js';
import { DATABASE, openDatabase } from './db/database.js';
import { DbLatency } from './db/latency.js';
import { CacheController } from './cache/cache.controller.js';
import { EventsController } from './events/events.controller.js';
import { ForgeAccessPolicy } from './events/forge-access.policy.js';
import { GitController } from './git/git.controller.js';
import { GitWriteHandlers } from './git/repo-writes.service.js';
import { PushHandler } from './git-http/push.handler.js';
import { ForgeMetrics, MetricsController } from './metrics/metrics.controller.js';
import { WritesController } from './git/writes.controller.js';
import { HealthController } from './health/health.controller.js';
import { JsonBodyMiddleware } from './http/json-body.middleware.js';
import { NodeInfo } from './nodes/node-info.js';
import { NodeInfoModule } from './nodes/nodes.module.js';
import { NodesController } from './nodes/nodes.controller.js';
import { CronController } from './cron/cron.controller.js';
import { RepoStatsJob } from './cron/repo-stats.job.js';
import { IssuesController } from './issues/issues.controller.js';
import { IssuesService } from './issues/issues.service.js';
import { ForgeEventsService } from './outbox/forge-events.service.js';
import { ReposController } from './repos/repos.controller.js';
import { ReposService } from './repos/repos.service.js';
import { WebController } from './web/web.controller.js';
import { MigrateController } from './migrate/migrate.controller.js';
import { MigrationCleanup } from './migrate/migration-cleanup.js';
import { MigrationsService } from './migrate/migrations.service.js';
import { TasksController } from './tasks/tasks.controller.js';
import { OpsController } from './ops/ops.controller.js';

/** Configuration, the bus and the repository write queue: shared by web nodes and workers. */
export const configProvider = {
  provide: FORGE_NODE_CONFIG,
  inject: [ConfigService],
  useFactory: (config: ConfigService) => config.get<ForgeNodeConfig>('forge'),
};

/** The shared database, with the outbox the write handlers record their events in. */
export const databaseProvider: Provider = {
  provide: DATABASE,
  inject: [FORGE_NODE_CONFIG],
  useFactory: (config: ForgeNodeConfig) => openDatabase(config),
};

export const forgeCoreImports = [
  ConfigModule.forRoot({
    isGlobal: true,
    ignoreEnvFile: true,
    // Fails start-up with the reason when the environment is unusable.
    validate: (env) => ({ ...env, forge: loadForgeNodeConfig(env) }),
  }),
  ForgeBusModule.forRootAsync({
    inject: [ConfigService],
    useFactory: (config: ConfigService) => {
      const forge = config.get<ForgeNodeConfig>('forge')!;
      return {
        nodeId: forge.nodeId,
        connection: forge.nats,
        replicas: forge.replicas,
        stream: forge.eventsMaxAgeMs === undefined ? undefined : { maxAgeMs: forge.eventsMaxAgeMs },
      };
    },
  }),
  RepoWritesModule.forRootAsync({
    inject: [ConfigService],
    useFactory: (config: ConfigService) => {
      const forge = config.get<ForgeNodeConfig>('forge')!;
      return {
        partitions: forge.writePartitions,
        ackWaitMs: forge.writeAckWaitMs,
        timeoutMs: forge.writeTimeoutMs,
        workers: forge.roles.writer,
      };
    },
  }),
  // Membership: who is alive (GET /api/nodes), and whose outbox rows are orphans.
  ClusterModule.forRootAsync({
    imports: [NodeInfoModule],
    inject: [ConfigService, NodeInfo],
    useFactory: (config: ConfigService, info: NodeInfo) => {
      const forge = config.get<ForgeNodeConfig>('forge')!;
      return {
        ttlMs: forge.nodeTtlMs,
        roles: [...(forge.roles.web ? ['web'] : []), ...(forge.roles.writer ? ['writer'] : [])],
        version: info.version,
        address: () => info.address,
        counters: () => info.counters(),
      };
    },
  }),
];

@Module({
  imports: [
    ...forgeCoreImports,
    ForgeCacheModule.forRootAsync({
      inject: [ConfigService],
      useFactory: (config: ConfigService) => {
        const { cache } = config.get<ForgeNodeConfig>('forge')!;
        return { disconnectedReads: cache.disconnectedReads, enabled: cache.maxEntries > 0, maxEntries: Math.max(1, cache.maxEntries) };
      },
    }),
    SseModule.forRootAsync({
      inject: [ConfigService],
      useFactory: (config: ConfigService) => ({ ...config.get<ForgeNodeConfig>('forge')!.sse, policy: ForgeAccessPolicy }),
    }),
    TerminusModule,
  ],
  controllers: [
    HealthController,
    MetricsController,
    NodesController,
    CronController,
    CacheController,
    ReposController,
    IssuesController,
    GitController,
    WritesController,
    EventsController,
    WebController,
    MigrateController,
    TasksController,
    OpsController,
  ],
  providers: [
    configProvider,
    databaseProvider,
    { provide: APP_GUARD, useClass: AuthGuard },
    { provide: APP_FILTER, useClass: BusUnavailableFilter },
    {
      provide: APP_PIPE,
      useValue: new ValidationPipe({ whitelist: true, forbidNonWhitelisted: true }),
    },
    DbLatency,
    ForgeAccessPolicy,
    GitWriteHandlers,
    PushHandler,
    ForgeMetrics,
    RepoStatsJob,
    ForgeEventsService,
    ReposService,
    IssuesService,
    MigrationCleanup,
    MigrationsService,
  ],
})
export class ForgeNodeModule implements NestModule {
  configure(consumer: MiddlewareConsumer): void {
    consumer.apply(JsonBodyMiddleware).forRoutes('{*path}');
  }
}

