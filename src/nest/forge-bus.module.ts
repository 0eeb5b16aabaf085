import { Inject, Logger, Module, type DynamicModule, type OnApplicationShutdown, type Provider } from '@nestjs/common';
import { DiscoveryModule } from '@nestjs/core';
import { TerminusModule } from '@nestjs/terminus';
import { boolean, checkOptions, FORGE_BUS_OPTION_RULES, ForgeBus, type OptionRules } from '../bus/index.js';
import { assertOneOptionsSource, type ForgeModuleExtras } from './configurable-module.js';
import { ForgeBusHealthIndicator } from './forge-bus.health.js';
import {
  ConfigurableForgeBusModule,
  FORGE_BUS_OPTIONS,
  type ForgeBusModuleAsyncOptions,
  type ForgeBusModuleOptions,
} from './forge-bus.module-definition.js';
import { ForgeEventsExplorer } from './forge-events.explorer.js';

const MODULE_OPTION_RULES: OptionRules<ForgeBusModuleOptions & ForgeModuleExtras> = { ...FORGE_BUS_OPTION_RULES, startFeed: boolean, isGlobal: boolean };

const busProvider: Provider = {
  provide: ForgeBus,
  inject: [FORGE_BUS_OPTIONS],
  useFactory: ({ startFeed: _startFeed, ...options }: ForgeBusModuleOptions) => {
    checkOptions('ForgeBusModule', options, MODULE_OPTION_RULES);
    return ForgeBus.connect({ logger: new Logger('ForgeBus'), ...options });
  },
};

/** Adds what every ForgeBusModule needs to the definition the builder made from the options. */
function withBus(definition: DynamicModule): DynamicModule {
  return {
    ...definition,
    imports: [...(definition.imports ?? []), DiscoveryModule, TerminusModule],
    providers: [...(definition.providers ?? []), busProvider, ForgeEventsExplorer, ForgeBusHealthIndicator],
    exports: [ForgeBus, ForgeBusHealthIndicator, FORGE_BUS_OPTIONS],
  };
}

/**
 * The NestJS face of forgebus. `ForgeBusModule.forRoot({ nodeId, connection: { servers } })` (or
 * `forRootAsync({ imports, inject, useFactory | useClass | useExisting })`) makes `ForgeBus`
 * injectable (publish, on), wires @OnForgeEvent methods into the feed at bootstrap, and drains
 * the connection at shutdown (call app.enableShutdownHooks()).
 *
 * Global by default (`isGlobal: true`), as it always was: one connection and one feed per
 * process, and ForgeCacheModule, SseModule and RepoWritesModule inject ForgeBus without
 * importing this module. With `isGlobal: false`, import it where ForgeBus is injected.
 */
@Module({})
export class ForgeBusModule extends ConfigurableForgeBusModule implements OnApplicationShutdown {
  constructor(@Inject(ForgeBus) private readonly bus: ForgeBus) {
    super();
  }

  static override forRoot(options: ForgeBusModuleOptions & ForgeModuleExtras): DynamicModule {
    checkOptions('ForgeBusModule', options, MODULE_OPTION_RULES);
    return withBus(super.forRoot(options));
  }

  static override forRootAsync(options: ForgeBusModuleAsyncOptions): DynamicModule {
    assertOneOptionsSource('ForgeBusModule', options);
    return withBus(super.forRootAsync(options));
  }

  async onApplicationShutdown(): Promise<void> {
    await this.bus.close();
  }
}
