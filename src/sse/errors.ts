import { ForgeBusError } from '../bus/index.js';

/** A Last-Event-ID that is not a stream sequence: answer 400. */
export class InvalidLastEventIdError extends ForgeBusError {
  constructor(value: string) {
    super('INVALID_LAST_EVENT_ID', `Last-Event-ID must be a non-negative integer stream sequence, got "${value.slice(0, 40)}"`);
  }
}

/** Parses a Last-Event-ID header or `lastEventId` parameter; undefined when absent or empty. */
export function parseLastEventId(value: string | undefined): number | undefined {
  if (value === undefined || value === '') return undefined;
  if (!/^\d{1,15}$/.test(value)) throw new InvalidLastEventIdError(value);
  return Number(value);
}
