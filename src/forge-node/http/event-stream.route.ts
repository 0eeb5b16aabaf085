import type { IncomingMessage, ServerResponse } from 'node:http';
import { parse as parseQuery } from 'node:querystring';
import type { LoggerService } from '@nestjs/common';
import { tokenOfRequest, userOfToken } from '../auth/auth.guard.js';
import type { EventStreamService } from '../events/event-stream.service.js';
import type { FrontRoute } from './front-listener.js';
import { replyWithError } from './json-error.js';

export const EVENTS_PATH = '/api/events';
const EVENTS_PATH_WITH_QUERY = `${EVENTS_PATH}?`;

/**
 * `GET /api/events` (and HEAD) on plain node:http, ahead of Nest and Express: opening a stream
 * through them cost ~0.7 ms of CPU and ~4.5 KB of memory more per stream (BENCHMARKS.md, SSE),
 * which a reconnect storm multiplies by every client of a dead node. Only the exact path is
 * taken; every other request, other methods on this path included, goes on to Express as
 * before. What Express did for this route is done here with the same code: the AuthGuard's
 * token rules (browser tokens accepted), Express's query parser (node:querystring), the
 * EventStreamService that the Nest route also uses, and Nest's JSON error bodies.
 */
export function eventStreamRoute(options: { secret: string; streams: EventStreamService; logger: LoggerService }): FrontRoute {
  const { secret, streams, logger } = options;
  const serve = async (req: IncomingMessage, res: ServerResponse, url: string): Promise<void> => {
    const q = url.indexOf('?');
    const query: Record<string, unknown> = q === -1 ? {} : parseQuery(url.slice(q + 1));
    const user = await userOfToken(secret, tokenOfRequest({ headers: req.headers, query }, true));
    const lastEventIdHeader = req.headers['last-event-id'] as string | undefined;
    await streams.open(user, { repos: query.repos, lastEventId: query.lastEventId, lastEventIdHeader }, res, req.method === 'HEAD' ? 'HEAD' : 'GET');
  };
  return {
    matches: (req) => {
      const url = req.url ?? '';
      return (req.method === 'GET' || req.method === 'HEAD') && (url === EVENTS_PATH || url.startsWith(EVENTS_PATH_WITH_QUERY));
    },
    handle: (req, res) => {
      // Whatever goes wrong, synchronously or not, is answered here and never reaches the process.
      serve(req, res, req.url ?? '').catch((err: unknown) => {
        try {
          replyWithError(res, err, logger, `${req.method} ${EVENTS_PATH}`);
        } catch {
          res.destroy();
        }
      });
    },
  };
}
