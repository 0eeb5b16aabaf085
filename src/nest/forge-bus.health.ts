import { Injectable } from '@nestjs/common';
import { HealthIndicatorService } from '@nestjs/terminus';
import { ForgeBus } from '../bus/index.js';

/**
 * A feed behind the stream that has not processed anything for this long is stuck: the node
 * would serve what its caches and SSE streams last knew. (Its consumer is re-opened after two
 * still checks, 4 s by default, so a healthy feed is never still this long.)
 */
export const FEED_STUCK_AFTER_MS = 15_000;

/**
 * @nestjs/terminus indicator: up while the NATS connection is up and the feed runs and moves.
 * Reports the feed's position, lag and error counters so a health page shows a stuck or noisy
 * node.
 */
@Injectable()
export class ForgeBusHealthIndicator {
  constructor(
    private readonly bus: ForgeBus,
    private readonly health: HealthIndicatorService,
  ) {}

  /** `stuckAfterMs`: how long a feed may sit behind the stream without moving (default FEED_STUCK_AFTER_MS). */
  isHealthy(key = 'forgebus', options: { stuckAfterMs?: number } = {}) {
    const indicator = this.health.check(key);
    const { lastSeq, malformed, handlerErrors, gaps, behind } = this.bus.feed.stats;
    const stuckForMs = this.bus.feed.stuckForMs;
    // A feed the application never started (startFeed: false) is not stuck; one that stopped moving is.
    const feedStuck = this.bus.feed.running && stuckForMs >= (options.stuckAfterMs ?? FEED_STUCK_AFTER_MS);
    const data = {
      nodeId: this.bus.nodeId,
      connected: this.bus.connected,
      server: this.bus.nc.getServer(),
      feedRunning: this.bus.feed.running,
      lastSeq,
      behind,
      stuckForMs,
      ...(feedStuck && { problem: `the event feed has not moved for ${Math.round(stuckForMs / 1000)} s while ${behind} event(s) wait` }),
      malformed,
      handlerErrors,
      gaps,
      publishesInFlight: this.bus.publisher.inFlight,
    };
    return this.bus.connected && !feedStuck ? indicator.up(data) : indicator.down(data);
  }
}
