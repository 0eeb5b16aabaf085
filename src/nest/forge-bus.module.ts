import {
  Global,
  Inject,
  Logger,
  Module,
  type DynamicModule,
  type OnApplicationShutdown,
  type Provider,
} from '@nestjs/common';
import { DiscoveryModule } from '@nestjs/core';
import { TerminusModule } from '@nestjs/terminus';
import { ForgeBus } from '../bus/index.js';
import { ForgeBusHealthIndicator } from './forge-bus.health.js';
import { ForgeEventsExplorer } from './forge-events.explorer.js';
import type { ForgeBusModuleAsyncOptions, ForgeBusModuleOptions } from './options.js';
import { FORGE_BUS_OPTIONS } from './tokens.js';

const busProvider: Provider = {
  provide: ForgeBus,
  inject: [FORGE_BUS_OPTIONS],
  useFactory: (options: ForgeBusModuleOptions) => ForgeBus.connect({ logger: new Logger('ForgeBus'), ...options }),
};

/**
 * The NestJS face of forgebus. `ForgeBusModule.forRoot({ nodeId, connection: { servers } })`
 * makes `ForgeBus` injectable everywhere (publish, on), wires @OnForgeEvent methods into the
 * feed at bootstrap, and drains the connection at shutdown (call app.enableShutdownHooks()).
 */
@Global()
@Module({})
export class ForgeBusModule implements OnApplicationShutdown {
  constructor(@Inject(ForgeBus) private readonly bus: ForgeBus) {}

  static forRoot(options: ForgeBusModuleOptions): DynamicModule {
    return ForgeBusModule.build([{ provide: FORGE_BUS_OPTIONS, useValue: options }], []);
  }

  static forRootAsync(options: ForgeBusModuleAsyncOptions): DynamicModule {
    return ForgeBusModule.build(
      [{ provide: FORGE_BUS_OPTIONS, useFactory: options.useFactory, inject: options.inject ?? [] }],
      options.imports ?? [],
    );
  }

  private static build(optionProviders: Provider[], imports: NonNullable<DynamicModule['imports']>): DynamicModule {
    return {
      module: ForgeBusModule,
      imports: [DiscoveryModule, TerminusModule, ...imports],
      providers: [...optionProviders, busProvider, ForgeEventsExplorer, ForgeBusHealthIndicator],
      exports: [ForgeBus, ForgeBusHealthIndicator, FORGE_BUS_OPTIONS],
    };
  }

  async onApplicationShutdown(): Promise<void> {
    await this.bus.close();
  }
}
