import { ForgeBusError } from '../bus/index.js';

/**
 * Thrown by a handler when retrying cannot help (a conflict, a missing branch): the write fails at
 * once. `status` is an HTTP-like code passed to the submitter (409 conflict, 404, 400).
 */
export class PermanentWriteError extends ForgeBusError {
  constructor(
    message: string,
    readonly status = 409,
  ) {
    super('PERMANENT_WRITE', message);
  }
}

/** The write was applied by no one: its handler failed for good (or there is no handler). */
export class WriteFailedError extends ForgeBusError {
  constructor(
    readonly writeId: string,
    readonly operation: string,
    readonly reason: string,
    readonly deliveries: number,
    /** The handler's PermanentWriteError status, if it gave one. */
    readonly status?: number,
  ) {
    super('WRITE_FAILED', `repository write ${writeId} (${operation}) failed after ${deliveries} attempt(s): ${reason}`);
  }
}

/** No result arrived in time. The write stays queued and may still be applied. */
export class WriteTimeoutError extends ForgeBusError {
  constructor(
    readonly writeId: string,
    timeoutMs: number,
  ) {
    super(
      'WRITE_TIMEOUT',
      `no result for repository write ${writeId} within ${timeoutMs} ms; it is still queued and may yet be applied ` +
        `(look it up by id in the results, or increase the timeout)`,
    );
  }
}

/**
 * The write is larger than one NATS message may be (the server's max_payload): it was not queued.
 * Large contents belong in shared storage, with the write carrying a reference.
 */
export class WriteTooLargeError extends ForgeBusError {
  constructor(
    readonly bytes: number,
    readonly maxBytes: number,
  ) {
    super('WRITE_TOO_LARGE', `the repository write is ${bytes} bytes encoded, more than the ${maxBytes} bytes a NATS message may carry (max_payload)`);
  }
}

/** The write queue did not accept the write (stream missing, NATS unreachable). */
export class WriteQueueUnavailableError extends ForgeBusError {
  constructor(detail: string, options?: { cause?: unknown }) {
    super('WRITE_QUEUE_UNAVAILABLE', `the repository write queue did not accept the write: ${detail}`, options);
  }
}
