import {
  Global,
  Inject,
  Injectable,
  Logger,
  Module,
  type DynamicModule,
  type InjectionToken,
  type OnApplicationBootstrap,
  type OnModuleDestroy,
  type OptionalFactoryDependency,
  type Provider,
} from '@nestjs/common';
import { ModuleRef } from '@nestjs/core';
import { ForgeBus } from '../../bus/index.js';
import { SseHub, type SseAccessPolicy, type SseHubOptions } from '../../sse/index.js';

export interface SseModuleOptions extends SseHubOptions {
  /**
   * The provider (class or token, anywhere in the application) that answers the hub's access
   * questions. Looked up when first needed, so it may depend on the application's own services.
   */
  policy: InjectionToken;
}

export interface SseModuleAsyncOptions {
  inject?: (InjectionToken | OptionalFactoryDependency)[];
  useFactory: (...args: any[]) => SseModuleOptions | Promise<SseModuleOptions>;
}

const SSE_MODULE_OPTIONS = Symbol('SSE_MODULE_OPTIONS');

/** Defers to the application's policy provider, resolved once on first use. */
function lazyPolicy(moduleRef: ModuleRef, token: InjectionToken): SseAccessPolicy {
  let policy: SseAccessPolicy | undefined;
  const resolve = () => (policy ??= moduleRef.get<SseAccessPolicy>(token, { strict: false }));
  return {
    canRead: (user, repo) => resolve().canRead(user, repo),
    defaultRepos: (user) => resolve().defaultRepos(user),
    accessChange: (event) => resolve().accessChange(event),
  };
}

const hubProvider: Provider = {
  provide: SseHub,
  inject: [ForgeBus, SSE_MODULE_OPTIONS, ModuleRef],
  useFactory: (bus: ForgeBus, { policy, ...options }: SseModuleOptions, moduleRef: ModuleRef) =>
    new SseHub(bus, lazyPolicy(moduleRef, policy), { logger: new Logger('SseHub'), ...options }),
};

/**
 * Starts the hub with the application. Streams end in onModuleDestroy, the first shutdown
 * phase: clients reconnect elsewhere at once, whatever other modules' shutdown hooks wait for
 * (an outbox flush with NATS unreachable can take seconds).
 */
@Injectable()
class SseHubLifecycle implements OnApplicationBootstrap, OnModuleDestroy {
  constructor(@Inject(SseHub) private readonly hub: SseHub) {}

  onApplicationBootstrap(): void {
    this.hub.start();
  }

  async onModuleDestroy(): Promise<void> {
    await this.hub.close();
  }
}

/**
 * `SseModule.forRoot({ policy })`: the process's SseHub (needs ForgeBusModule). Controllers
 * authenticate and authorize a request, then hand the response to `hub.open(res, request)`.
 */
@Global()
@Module({})
export class SseModule {
  static forRoot(options: SseModuleOptions): DynamicModule {
    return SseModule.build({ provide: SSE_MODULE_OPTIONS, useValue: options });
  }

  static forRootAsync(options: SseModuleAsyncOptions): DynamicModule {
    return SseModule.build({ provide: SSE_MODULE_OPTIONS, inject: options.inject ?? [], useFactory: options.useFactory });
  }

  private static build(optionsProvider: Provider): DynamicModule {
    return { module: SseModule, providers: [optionsProvider, hubProvider, SseHubLifecycle], exports: [SseHub] };
  }
}
