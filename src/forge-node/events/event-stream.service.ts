import { BadRequestException, ForbiddenException } from '@nestjs/common';
import type { RepoRef } from '../../index.js';
import { InvalidLastEventIdError, parseLastEventId, type LastEventId, type SseHub, type SseResponse } from '../../sse/index.js';
import { nameProblem } from '../params.js';
import type { ReposService } from '../repos/repos.service.js';

/** More than this many repositories on one stream is a mistake (or an attack), not a use. */
const MAX_REPOS_PER_STREAM = 100;

/**
 * What a HEAD request is answered with: the head of a stream, which SseHub.open would send
 * (src/sse/hub.ts keeps its copy private). A HEAD request gets no stream: the hub writes frames
 * straight to the socket, which after a HEAD response would be read as the next response.
 */
const STREAM_HEAD = {
  'Content-Type': 'text/event-stream; charset=utf-8',
  'Cache-Control': 'no-cache, no-transform',
  'X-Accel-Buffering': 'no',
};

/** The request's parts that choose a stream, as they arrived (query values parsed by node:querystring). */
export interface EventStreamParams {
  /** `repos` query parameter: a string, an array when given more than once, or undefined. */
  repos: unknown;
  /** `lastEventId` query parameter (for clients that cannot send the header). */
  lastEventId: unknown;
  /** `Last-Event-ID` header: wins over the query parameter. */
  lastEventIdHeader: string | undefined;
}

/**
 * `GET /api/events` after authentication: checks the parameters (400) and the repositories the
 * user names (403), then hands the response to the hub. The one place of this logic, used by the
 * plain node:http listener in front of Nest (src/forge-node/http/event-stream.route.ts) and by
 * the Nest route that serves the variants Express also matches (`/api/events/`, other case).
 * Refusals are Nest HttpExceptions, so both entries answer them with the same JSON. A plain class
 * (stateless), built from the container's hub and repository service by each entry.
 */
export class EventStreamService {
  constructor(
    private readonly hub: SseHub,
    private readonly repos: ReposService,
  ) {}

  async open(user: string, params: EventStreamParams, res: SseResponse, method: 'GET' | 'HEAD'): Promise<void> {
    const lastEventId = lastEventIdOf(params.lastEventIdHeader ?? params.lastEventId);
    const named = params.repos === undefined ? undefined : parseRepos(params.repos);
    if (named) {
      for (const { owner, name } of named) {
        if (!this.repos.canRead(await this.repos.findRepo(owner, name), user)) {
          throw new ForbiddenException(`${user} may not read repository ${owner}/${name} (or it does not exist)`);
        }
      }
    }
    if (method === 'HEAD') {
      if (!res.destroyed) {
        res.writeHead(200, STREAM_HEAD);
        res.end();
      }
      return;
    }
    const repos = named ?? (await this.repos.listWatchable(user));
    this.hub.open(res, { user, repos, defaultRepos: named === undefined, lastEventId });
  }
}

function lastEventIdOf(value: unknown): LastEventId | undefined {
  try {
    // A repeated query parameter arrives as an array: its text ("1,2") is refused as an id, as before.
    return parseLastEventId(value === undefined || typeof value === 'string' ? value : String(value));
  } catch (err) {
    if (err instanceof InvalidLastEventIdError) throw new BadRequestException(err.message);
    throw err;
  }
}

function parseRepos(param: unknown): RepoRef[] {
  if (typeof param !== 'string') throw new BadRequestException('give repos once, as a comma-separated list of owner/name');
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
