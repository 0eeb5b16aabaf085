import type { ServerResponse } from 'node:http';
import { HttpException, type LoggerService } from '@nestjs/common';

/**
 * Answers `err` the way Nest's exception filter does, for code that runs outside Nest: an
 * HttpException as its `{statusCode, message, error}` body and status; anything else as a 500
 * `{statusCode, message: 'Internal server error'}`, its details (stack, paths) only in the log.
 * A response whose head is out already cannot change its status: it is cut.
 */
export function replyWithError(res: ServerResponse, err: unknown, logger: LoggerService, what: string): void {
  const known = err instanceof HttpException;
  if (!known) logger.error(`${what} failed: ${(err as Error)?.message ?? String(err)}`, (err as Error)?.stack);
  if (res.headersSent || res.destroyed) {
    res.destroy();
    return;
  }
  let status = 500;
  let body: object = { statusCode: 500, message: 'Internal server error' };
  if (known) {
    status = err.getStatus();
    const response = err.getResponse();
    body = typeof response === 'object' && response !== null ? response : { statusCode: status, message: response };
  }
  const json = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(json) });
  res.end(json);
}
