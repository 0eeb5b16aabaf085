import { Inject, Injectable, Logger, Module, type DynamicModule, type InjectionToken, type OnApplicationBootstrap, type OnModuleDestroy, type Provider } from '@nestjs/common';
import { ModuleRef } from '@nestjs/core';
import { boolean, checkOptions, ForgeBus, InvalidOptionError, type OptionRule, type OptionRules } from '../../bus/index.js';
import { SSE_HUB_OPTION_RULES } from '../../sse/hub.js';
import { SseHub, type SseAccessPolicy } from '../../sse/index.js';
import { assertOneOptionsSource, type ForgeModuleExtras } from '../configurable-module.js';
import { ConfigurableSseModule, SSE_OPTIONS, type SseModuleAsyncOptions, type SseModuleOptions } from './sse.module-definition.js';

const injectionToken: OptionRule = (value) =>
  typeof value === 'string' || typeof value === 'symbol' || typeof value === 'function' ? undefined : 'an injection token (a class, string or symbol)';

const MODULE_OPTION_RULES: OptionRules<SseModuleOptions & ForgeModuleExtras> = { ...SSE_HUB_OPTION_RULES, policy: injectionToken, isGlobal: boolean };

function checkModuleOptions(options: SseModuleOptions & ForgeModuleExtras): void {
  if (options?.policy === undefined) {
    throw new InvalidOptionError('SseModule', 'policy', undefined, "given: the provider (class or token) that answers the hub's access questions");
  }
  checkOptions('SseModule', options, MODULE_OPTION_RULES);
}

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
  inject: [ForgeBus, SSE_OPTIONS, ModuleRef],
  useFactory: (bus: ForgeBus, { policy, ...options }: SseModuleOptions, moduleRef: ModuleRef) => {
    checkModuleOptions({ policy, ...options });
    return new SseHub(bus, lazyPolicy(moduleRef, policy), { logger: new Logger('SseHub'), ...options });
  },
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

function withHub(definition: DynamicModule): DynamicModule {
  return {
    ...definition,
    providers: [...(definition.providers ?? []), hubProvider, SseHubLifecycle],
    exports: [SseHub, SSE_OPTIONS],
  };
}

/**
 * `SseModule.forRoot({ policy })` / `forRootAsync(...)`: the process's SseHub (needs ForgeBus,
 * i.e. ForgeBusModule). Controllers authenticate and authorize a request, then hand the
 * response to `hub.open(res, request)`.
 *
 * Global by default (`isGlobal: true`), as it always was: one hub per process serves every
 * stream, whichever module's controller opens it. With `isGlobal: false`, import it where SseHub
 * is injected.
 */
@Module({})
export class SseModule extends ConfigurableSseModule {
  static override forRoot(options: SseModuleOptions & ForgeModuleExtras): DynamicModule {
    checkModuleOptions(options);
    return withHub(super.forRoot(options));
  }

  static override forRootAsync(options: SseModuleAsyncOptions): DynamicModule {
    assertOneOptionsSource('SseModule', options);
    return withHub(super.forRootAsync(options));
  }
}
