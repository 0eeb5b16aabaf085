import {
  Inject,
  Injectable,
  Logger,
  Module,
  type BeforeApplicationShutdown,
  type DynamicModule,
  type OnApplicationBootstrap,
  type Provider,
} from '@nestjs/common';
import { DiscoveryModule, DiscoveryService, MetadataScanner } from '@nestjs/core';
import { boolean, checkOptions, ForgeBus, type OptionRules } from '../../bus/index.js';
import { REPO_WRITE_QUEUE_OPTION_RULES } from '../../repo-writes/write-queue.js';
import { RepoWriteQueue, type RepoWriteHandler as Handler } from '../../repo-writes/index.js';
import { assertOneOptionsSource, type ForgeModuleExtras } from '../configurable-module.js';
import { findDecoratedMethods } from '../decorated-methods.js';
import { RepoWriteHandlerMark } from './repo-write-handler.decorator.js';
import {
  ConfigurableRepoWritesModule,
  REPO_WRITES_OPTIONS,
  type RepoWritesModuleAsyncOptions,
  type RepoWritesModuleOptions,
} from './repo-writes.module-definition.js';

@Injectable()
class RepoWritesLifecycle implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private readonly logger = new Logger('RepoWrites');

  constructor(
    private readonly discovery: DiscoveryService,
    private readonly scanner: MetadataScanner,
    private readonly queue: RepoWriteQueue,
    @Inject(REPO_WRITES_OPTIONS) private readonly options: RepoWritesModuleOptions,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    const handlers = findDecoratedMethods({ discovery: this.discovery, scanner: this.scanner }, RepoWriteHandlerMark);
    for (const { instance, method, metadata } of handlers) this.queue.handle(metadata.operation, method.bind(instance) as Handler);
    const operations = handlers.map((h) => h.metadata.operation);
    if (this.options.workers !== false) {
      await this.queue.startWorkers();
      this.logger.log(`applying repository writes (${operations.join(', ') || 'no handlers'}) from ${this.queue.partitions} partitions`);
    }
  }

  // Before ForgeBusModule drains the connection: let the write in progress finish and ack.
  async beforeApplicationShutdown(): Promise<void> {
    await this.queue.stop();
  }
}

const MODULE_OPTION_RULES: OptionRules<RepoWritesModuleOptions & ForgeModuleExtras> = { ...REPO_WRITE_QUEUE_OPTION_RULES, workers: boolean, isGlobal: boolean };

const queueProvider: Provider = {
  provide: RepoWriteQueue,
  inject: [ForgeBus, REPO_WRITES_OPTIONS],
  useFactory: async (bus: ForgeBus, { workers: _workers, ...options }: RepoWritesModuleOptions) => {
    checkOptions('RepoWritesModule', options, MODULE_OPTION_RULES);
    const queue = new RepoWriteQueue(bus, { logger: new Logger('RepoWrites'), ...options });
    await queue.init();
    return queue;
  },
};

function withQueue(definition: DynamicModule): DynamicModule {
  return {
    ...definition,
    imports: [...(definition.imports ?? []), DiscoveryModule],
    providers: [...(definition.providers ?? []), queueProvider, RepoWritesLifecycle],
    exports: [RepoWriteQueue, REPO_WRITES_OPTIONS],
  };
}

/**
 * `RepoWritesModule.forRoot(options)` / `forRootAsync(...)`: the repository write queue
 * (needs ForgeBus, i.e. ForgeBusModule): injectable RepoWriteQueue, @RepoWriteHandler methods
 * registered at bootstrap, workers started unless `workers: false`, stopped before the bus drains.
 *
 * Global by default (`isGlobal: true`), as it always was: any module may submit writes to the
 * process's one queue. With `isGlobal: false`, import it where RepoWriteQueue is injected.
 */
@Module({})
export class RepoWritesModule extends ConfigurableRepoWritesModule {
  static override forRoot(options: RepoWritesModuleOptions & ForgeModuleExtras = {}): DynamicModule {
    checkOptions('RepoWritesModule', options, MODULE_OPTION_RULES);
    return withQueue(super.forRoot(options));
  }

  static override forRootAsync(options: RepoWritesModuleAsyncOptions): DynamicModule {
    assertOneOptionsSource('RepoWritesModule', options);
    return withQueue(super.forRootAsync(options));
  }
}
