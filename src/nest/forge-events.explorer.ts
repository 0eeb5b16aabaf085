import { Inject, Injectable, Logger, type OnApplicationBootstrap } from '@nestjs/common';
import { DiscoveryService, MetadataScanner, Reflector } from '@nestjs/core';
import { ForgeBus, type DeliveredEvent } from '../bus/index.js';
import type { OnForgeEventMetadata } from './on-forge-event.decorator.js';
import type { ForgeBusModuleOptions } from './options.js';
import { FORGE_BUS_OPTIONS, ON_FORGE_EVENT } from './tokens.js';

/** Finds @OnForgeEvent methods at bootstrap, registers them on the feed, then starts the feed. */
@Injectable()
export class ForgeEventsExplorer implements OnApplicationBootstrap {
  private readonly logger = new Logger('ForgeBus');

  constructor(
    private readonly discovery: DiscoveryService,
    private readonly scanner: MetadataScanner,
    private readonly reflector: Reflector,
    private readonly bus: ForgeBus,
    @Inject(FORGE_BUS_OPTIONS) private readonly options: ForgeBusModuleOptions,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    let count = 0;
    for (const wrapper of [...this.discovery.getProviders(), ...this.discovery.getControllers()]) {
      const instance = wrapper.instance as Record<string, unknown> | undefined;
      if (!instance || typeof instance !== 'object' || !wrapper.isDependencyTreeStatic()) continue;
      const prototype = Object.getPrototypeOf(instance) as object;
      for (const methodName of this.scanner.getAllMethodNames(prototype)) {
        const method = instance[methodName];
        if (typeof method !== 'function') continue;
        const meta = this.reflector.get<OnForgeEventMetadata | undefined>(ON_FORGE_EVENT, method);
        if (!meta) continue;
        const handler = (event: DeliveredEvent) => (method as (e: DeliveredEvent) => unknown).call(instance, event);
        Object.defineProperty(handler, 'name', { value: `${wrapper.name}.${methodName}` });
        this.bus.on(meta.patterns, handler, meta.filter);
        count++;
      }
    }
    if (this.options.startFeed !== false) {
      await this.bus.start();
      this.logger.log(`event feed started with ${count} @OnForgeEvent handler(s) at sequence ${this.bus.feed.stats.lastSeq + 1}`);
    }
  }
}
