import { Controller, Get } from '@nestjs/common';
import { HealthCheck, HealthCheckService } from '@nestjs/terminus';
import { ForgeBus } from '../../index.js';
import { ForgeBusHealthIndicator } from '../../nest/index.js';
import { Public } from '../auth/auth.guard.js';
import { ForgeEventsService } from '../outbox/forge-events.service.js';

@Controller()
export class HealthController {
  constructor(
    private readonly health: HealthCheckService,
    private readonly busHealth: ForgeBusHealthIndicator,
    private readonly bus: ForgeBus,
    private readonly events: ForgeEventsService,
  ) {}

  /** Liveness and bus state (503 while NATS is unreachable). */
  @Get('health')
  @Public()
  @HealthCheck()
  check() {
    return this.health.check([() => this.busHealth.isHealthy('bus')]);
  }

  /** Counters of this node's bus: feed, outbox relay, publisher. */
  @Get('api/bus/stats')
  stats() {
    return {
      nodeId: this.bus.nodeId,
      connected: this.bus.connected,
      feed: this.bus.feed.stats,
      outbox: this.events.relay.stats,
      publishesInFlight: this.bus.publisher.inFlight,
    };
  }
}
