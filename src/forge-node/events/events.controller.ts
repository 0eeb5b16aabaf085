import {
  BadRequestException,
  Controller,
  ForbiddenException,
  Get,
  Headers,
  Query,
  Res,
} from '@nestjs/common';
import type { Response } from 'express';
import type { RepoRef } from '../../index.js';
import { InvalidLastEventIdError, parseLastEventId, SseHub, type LastEventId } from '../../sse/index.js';
import { AcceptBrowserTokens, CurrentUser } from '../auth/auth.guard.js';
import { nameProblem } from '../params.js';
import { ReposService } from '../repos/repos.service.js';

/** More than this many repositories on one stream is a mistake (or an attack), not a use. */
const MAX_REPOS_PER_STREAM = 100;

/** `GET /api/events`: the live event stream of whichever node the browser reached (docs/sse.md). */
@Controller('api')
export class EventsController {
  constructor(
    private readonly hub: SseHub,
    private readonly repos: ReposService,
  ) {}

  @Get('events')
  @AcceptBrowserTokens()
  async stream(
    @CurrentUser() user: string,
    @Res() res: Response,
    @Query('repos') reposParam?: string | string[],
    @Query('lastEventId') lastEventIdParam?: string,
    @Headers('last-event-id') lastEventIdHeader?: string,
  ): Promise<void> {
    const lastEventId = this.lastEventId(lastEventIdHeader ?? lastEventIdParam);
    const named = reposParam === undefined ? undefined : this.parseRepos(reposParam);
    if (named) {
      for (const { owner, name } of named) {
        if (!this.repos.canRead(await this.repos.findRepo(owner, name), user)) {
          throw new ForbiddenException(`${user} may not read repository ${owner}/${name} (or it does not exist)`);
        }
      }
    }
    const repos = named ?? this.repos.listWatchable(user);
    this.hub.open(res, { user, repos, defaultRepos: named === undefined, lastEventId });
  }

  /** Counters of this node's SSE hub. */
  @Get('sse/stats')
  stats() {
    return this.hub.stats;
  }

  private lastEventId(value: string | undefined): LastEventId | undefined {
    try {
      return parseLastEventId(value);
    } catch (err) {
      if (err instanceof InvalidLastEventIdError) throw new BadRequestException(err.message);
      throw err;
    }
  }

  private parseRepos(param: string | string[]): RepoRef[] {
    if (Array.isArray(param)) throw new BadRequestException('give repos once, as a comma-separated list of owner/name');
    const parts = param.split(',').map((p) => p.trim()).filter((p) => p !== '');
    if (parts.length === 0) throw new BadRequestException('repos must list owner/name pairs, e.g. repos=alice/tools,bob/site (omit it for your own repositories)');
    if (parts.length > MAX_REPOS_PER_STREAM) throw new BadRequestException(`at most ${MAX_REPOS_PER_STREAM} repositories per stream, got ${parts.length}`);
    const seen = new Map<string, RepoRef>();
    for (const part of parts) {
      const [owner, name, extra] = part.split('/');
      if (owner === undefined || name === undefined || extra !== undefined) {
        throw new BadRequestException(`"${part.slice(0, 200)}" is not owner/name`);
      }
      const problem = nameProblem(owner) ?? nameProblem(name);
      if (problem) throw new BadRequestException(`"${part.slice(0, 200)}": ${problem}`);
      seen.set(`${owner}/${name}`, { owner, name });
    }
    return [...seen.values()];
  }
}
