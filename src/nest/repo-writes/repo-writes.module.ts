import {
  Global,
  Inject,
  Injectable,
  Logger,
  Module,
  type BeforeApplicationShutdown,
  type DynamicModule,
  type InjectionToken,
  type OnApplicationBootstrap,
  type OptionalFactoryDependency,
  type Provider,
} from '@nestjs/common';
import { DiscoveryModule, DiscoveryService, MetadataScanner, Reflector } from '@nestjs/core';
import { ForgeBus } from '../../bus/index.js';
import { RepoWriteQueue, type RepoWriteHandler as Handler, type RepoWriteQueueOptions } from '../../repo-writes/index.js';
import { findDecoratedMethods } from '../decorated-methods.js';
import { REPO_WRITE_HANDLER } from './repo-write-handler.decorator.js';

export interface RepoWritesModuleOptions extends RepoWriteQueueOptions {
  /** Apply writes in this process (default true); false = only submit them. */
  workers?: boolean;
}

export interface RepoWritesModuleAsyncOptions {
  inject?: (InjectionToken | OptionalFactoryDependency)[];
  useFactory: (...args: any[]) => RepoWritesModuleOptions | Promise<RepoWritesModuleOptions>;
}

const REPO_WRITES_OPTIONS = Symbol('REPO_WRITES_OPTIONS');

@Injectable()
class RepoWritesLifecycle implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private readonly logger = new Logger('RepoWrites');

  constructor(
    private readonly discovery: DiscoveryService,
    private readonly scanner: MetadataScanner,
    private readonly reflector: Reflector,
    private readonly queue: RepoWriteQueue,
    @Inject(REPO_WRITES_OPTIONS) private readonly options: RepoWritesModuleOptions,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    const handlers = findDecoratedMethods<string>({ discovery: this.discovery, scanner: this.scanner, reflector: this.reflector }, REPO_WRITE_HANDLER);
    for (const { instance, method, metadata: operation } of handlers) this.queue.handle(operation, method.bind(instance) as Handler);
    const operations = handlers.map((h) => h.metadata);
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

/** The repository write queue: injectable RepoWriteQueue, @RepoWriteHandler methods, workers. */
@Global()
@Module({})
export class RepoWritesModule {
  static forRoot(options: RepoWritesModuleOptions = {}): DynamicModule {
    return RepoWritesModule.build({ provide: REPO_WRITES_OPTIONS, useValue: options });
  }

  static forRootAsync(options: RepoWritesModuleAsyncOptions): DynamicModule {
    return RepoWritesModule.build({ provide: REPO_WRITES_OPTIONS, inject: options.inject ?? [], useFactory: options.useFactory });
  }

  private static build(optionsProvider: Provider): DynamicModule {
    return {
      module: RepoWritesModule,
      imports: [DiscoveryModule],
      providers: [
        optionsProvider,
        {
          provide: RepoWriteQueue,
          inject: [ForgeBus, REPO_WRITES_OPTIONS],
          useFactory: async (bus: ForgeBus, options: RepoWritesModuleOptions) => {
            const queue = new RepoWriteQueue(bus, { logger: new Logger('RepoWrites'), ...options });
            await queue.init();
            return queue;
          },
        },
        RepoWritesLifecycle,
      ],
      exports: [RepoWriteQueue],
    };
  }
}
