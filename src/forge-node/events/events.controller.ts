import { Controller, Get, Headers, Query, Req, Res } from '@nestjs/common';
import type { Request, Response } from 'express';
import { SseHub } from '../../sse/index.js';
import { AcceptBrowserTokens, CurrentUser } from '../auth/auth.guard.js';
import { ReposService } from '../repos/repos.service.js';
import { EventStreamService } from './event-stream.service.js';

/** The live event stream of whichever node the browser reached (docs/sse.md), and its counters. */
@Controller('api')
export class EventsController {
  private readonly streams: EventStreamService;

  constructor(
    private readonly hub: SseHub,
    repos: ReposService,
  ) {
    this.streams = new EventStreamService(hub, repos);
  }

  /**
   * `GET /api/events` itself never gets here: the node:http listener in front of Nest serves it
   * (src/forge-node/http/event-stream.route.ts, installed by main.ts). This route keeps serving,
   * with the same service, what Express also matches and the listener leaves to it: `/api/events/`
   * and other letter cases (Express routes are case-insensitive and ignore a trailing slash).
   */
  @Get('events')
  @AcceptBrowserTokens()
  async stream(
    @CurrentUser() user: string,
    @Req() req: Request,
    @Res() res: Response,
    @Query('repos') repos?: unknown,
    @Query('lastEventId') lastEventId?: unknown,
    @Headers('last-event-id') lastEventIdHeader?: string,
  ): Promise<void> {
    await this.streams.open(user, { repos, lastEventId, lastEventIdHeader }, res, req.method === 'HEAD' ? 'HEAD' : 'GET');
  }

  /** Counters of this node's SSE hub. */
  @Get('sse/stats')
  stats() {
    return this.hub.stats;
  }
}
