import { Inject, Injectable, Logger, type OnApplicationBootstrap } from '@nestjs/common';
import { DiscoveryService, MetadataScanner, Reflector } from '@nestjs/core';
import { ForgeBus, type DeliveredEvent } from '../bus/index.js';
import { findDecoratedMethods } from './decorated-methods.js';
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
    const handlers = findDecoratedMethods<OnForgeEventMetadata>(
      { discovery: this.discovery, scanner: this.scanner, reflector: this.reflector },
      ON_FORGE_EVENT,
      { controllers: true },
    );
    for (const { instance, method, metadata, label } of handlers) {
      const handler = (event: DeliveredEvent) => method.call(instance, event);
      Object.defineProperty(handler, 'name', { value: label });
      this.bus.on(metadata.patterns, handler, metadata.filter);
    }
    const count = handlers.length;
    if (this.options.startFeed !== false) {
      await this.bus.start();
      this.logger.log(`event feed started with ${count} @OnForgeEvent handler(s) at sequence ${this.bus.feed.stats.lastSeq + 1}`);
    }
  }
}
