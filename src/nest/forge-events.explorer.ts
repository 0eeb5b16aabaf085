import { Inject, Injectable, Logger, type OnApplicationBootstrap } from '@nestjs/common';
import { DiscoveryService, MetadataScanner } from '@nestjs/core';
import { ForgeBus, type DeliveredEvent } from '../bus/index.js';
import { findDecoratedMethods } from './decorated-methods.js';
import { FORGE_BUS_OPTIONS, type ForgeBusModuleOptions } from './forge-bus.module-definition.js';
import { ForgeEventHandlerMark } from './on-forge-event.decorator.js';

/** Finds @OnForgeEvent methods at bootstrap, registers them on the feed, then starts the feed. */
@Injectable()
export class ForgeEventsExplorer implements OnApplicationBootstrap {
  private readonly logger = new Logger('ForgeBus');

  constructor(
    private readonly discovery: DiscoveryService,
    private readonly scanner: MetadataScanner,
    private readonly bus: ForgeBus,
    @Inject(FORGE_BUS_OPTIONS) private readonly options: ForgeBusModuleOptions,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    const handlers = findDecoratedMethods({ discovery: this.discovery, scanner: this.scanner }, ForgeEventHandlerMark, { controllers: true });
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
