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
    const operations: string[] = [];
    for (const wrapper of this.discovery.getProviders()) {
      const instance = wrapper.instance as Record<string, unknown> | undefined;
      if (!instance || typeof instance !== 'object' || !wrapper.isDependencyTreeStatic()) continue;
      for (const name of this.scanner.getAllMethodNames(Object.getPrototypeOf(instance) as object)) {
        const method = instance[name];
        if (typeof method !== 'function') continue;
        const operation = this.reflector.get<string | undefined>(REPO_WRITE_HANDLER, method);
        if (!operation) continue;
        this.queue.handle(operation, (method as Handler).bind(instance));
        operations.push(operation);
      }
    }
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
            const logger = new Logger('RepoWrites');
            const queue = new RepoWriteQueue(bus, {
              logger: { log: (m) => logger.log(m), warn: (m) => logger.warn(m), error: (m) => logger.error(m) },
              ...options,
            });
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
