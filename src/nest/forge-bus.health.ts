import { Injectable } from '@nestjs/common';
import { HealthIndicatorService } from '@nestjs/terminus';
import { ForgeBus } from '../bus/index.js';

/**
 * @nestjs/terminus indicator: up while the NATS connection is up and the feed runs. Reports the
 * feed's position and error counters so a health page shows a stuck or noisy node.
 */
@Injectable()
export class ForgeBusHealthIndicator {
  constructor(
    private readonly bus: ForgeBus,
    private readonly health: HealthIndicatorService,
  ) {}

  isHealthy(key = 'forgebus') {
    const indicator = this.health.check(key);
    const { lastSeq, malformed, handlerErrors, gaps } = this.bus.feed.stats;
    const data = {
      nodeId: this.bus.nodeId,
      connected: this.bus.connected,
      server: this.bus.nc.getServer(),
      feedRunning: this.bus.feed.running,
      lastSeq,
      malformed,
      handlerErrors,
      gaps,
      publishesInFlight: this.bus.publisher.inFlight,
    };
    return this.bus.connected ? indicator.up(data) : indicator.down(data);
  }
}
