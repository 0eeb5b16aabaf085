import { Controller, Get, Header, Inject, Injectable, Res } from '@nestjs/common';
import type { Response } from 'express';
import type { Registry } from 'prom-client';
import { ForgeBus } from '../../index.js';
import { ForgeCache } from '../../cache/index.js';
import { CronScheduler, TaskRegistry } from '../../cluster/index.js';
import { RepoWriteQueue } from '../../repo-writes/index.js';
import { SseHub } from '../../sse/index.js';
import { Public } from '../auth/auth.guard.js';
import { forgeMetrics } from './forge-metrics.js';

/** The node's metrics registry, built once from the components the node runs. */
@Injectable()
export class ForgeMetrics {
  readonly registry: Registry;

  constructor(bus: ForgeBus, cache: ForgeCache, sse: SseHub, queue: RepoWriteQueue, tasks: TaskRegistry, cron: CronScheduler) {
    this.registry = forgeMetrics({ bus, cache, sse, queue, tasks, cron });
  }
}

/**
 * `GET /metrics` in Prometheus's text format, without a token (like /health): scrapers rarely
 * carry one. Restrict it at the load balancer or network (docs/operations.md).
 */
@Controller()
export class MetricsController {
  constructor(@Inject(ForgeMetrics) private readonly metrics: ForgeMetrics) {}

  @Get('metrics')
  @Public()
  @Header('Cache-Control', 'no-store')
  async metricsText(@Res() res: Response): Promise<void> {
    res.setHeader('Content-Type', this.metrics.registry.contentType);
    res.send(await this.metrics.registry.metrics());
  }
}
