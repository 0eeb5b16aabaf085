/**
 * `forgebus/nest` — the NestJS face of forgebus: ForgeBusModule (ForgeBus injectable, @OnForgeEvent
 * handlers on the event feed, drain at shutdown, terminus health indicator), one module per
 * capability (ForgeCacheModule + @Cached, SseModule, RepoWritesModule + @RepoWriteHandler), each
 * with `forRoot`/`forRootAsync` and `isGlobal`, and a @nestjs/microservices transport
 * (ForgeBusServer, ForgeBusClient), and ClusterModule (membership). The core and the capabilities
 * themselves come from `forgebus`, `forgebus/cache`, `forgebus/sse`, `forgebus/repo-writes` and
 * `forgebus/cluster`.
 */
export type { ForgeModuleExtras } from './configurable-module.js';

export { ForgeBusModule } from './forge-bus.module.js';
export {
  FORGE_BUS_OPTIONS,
  type ForgeBusModuleOptions,
  type ForgeBusModuleAsyncOptions,
  type ForgeBusOptionsFactory,
} from './forge-bus.module-definition.js';
export { OnForgeEvent, type OnForgeEventMetadata } from './on-forge-event.decorator.js';
export { ForgeBusHealthIndicator } from './forge-bus.health.js';

export { ForgeCacheModule } from './cache/forge-cache.module.js';
export {
  FORGE_CACHE_OPTIONS,
  type ForgeCacheModuleOptions,
  type ForgeCacheModuleAsyncOptions,
  type ForgeCacheOptionsFactory,
} from './cache/forge-cache.module-definition.js';
export { Cached, type CachedSpec } from './cache/cached.decorator.js';

export { SseModule } from './sse/sse.module.js';
export { SSE_OPTIONS, type SseModuleOptions, type SseModuleAsyncOptions, type SseOptionsFactory } from './sse/sse.module-definition.js';

export { RepoWritesModule } from './repo-writes/repo-writes.module.js';
export {
  REPO_WRITES_OPTIONS,
  type RepoWritesModuleOptions,
  type RepoWritesModuleAsyncOptions,
  type RepoWritesOptionsFactory,
} from './repo-writes/repo-writes.module-definition.js';
export { RepoWriteHandler } from './repo-writes/repo-write-handler.decorator.js';

export { ClusterModule } from './cluster/cluster.module.js';
export { ClusterCron, type ClusterCronMetadata } from './cluster/cluster-cron.decorator.js';
export { CLUSTER_OPTIONS, type ClusterModuleAsyncOptions, type ClusterModuleOptions, type ClusterOptionsFactory } from './cluster/cluster.module-definition.js';

export { ForgeBusServer, type ForgeBusServerOptions } from './transport/forge-bus.server.js';
export { ForgeBusClient, type ForgeBusClientOptions } from './transport/forge-bus.client.js';
export { ForgeBusContext } from './transport/forge-bus.context.js';
export type { ForgeBusServerCodecOptions, ForgeBusClientCodecOptions, ForgeBusWireMessage } from './transport/codec.js';
export { ForgeBusRpcError, type ForgeBusRpcErrorCode } from './transport/errors.js';
