import { ArgumentsHost, Catch, HttpStatus } from '@nestjs/common';
import { BaseExceptionFilter } from '@nestjs/core';
import { errors } from '@nats-io/transport-node';
import type { Response } from 'express';
import { isTransientNatsError } from '../../bus/index.js';

/** Seconds a client is told to wait: a NATS leader election takes a few. */
const RETRY_AFTER_S = 2;

function busUnavailable(err: unknown): boolean {
  return (
    isTransientNatsError(err) ||
    err instanceof errors.ConnectionError ||
    err instanceof errors.ClosedConnectionError ||
    err instanceof errors.DrainingConnectionError
  );
}

/**
 * A route that needs NATS (tasks, cron runs, node control …) while NATS does not answer (the
 * node is disconnected, or a stream is electing a leader after a server loss) answers 503 with
 * Retry-After, not 500: the request was fine, the bus will be back. Other errors go on to Nest.
 */
@Catch()
export class BusUnavailableFilter extends BaseExceptionFilter {
  override catch(exception: unknown, host: ArgumentsHost): void {
    if (host.getType() !== 'http' || !busUnavailable(exception)) return super.catch(exception, host);
    const res = host.switchToHttp().getResponse<Response>();
    if (res.headersSent) return void res.end();
    res
      .status(HttpStatus.SERVICE_UNAVAILABLE)
      .setHeader('retry-after', String(RETRY_AFTER_S))
      .json({
        statusCode: HttpStatus.SERVICE_UNAVAILABLE,
        error: 'Service Unavailable',
        message: `the cluster's bus (NATS) did not answer: try again in ${RETRY_AFTER_S} s`,
      });
  }
}
