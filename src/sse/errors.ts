import { ForgeBusError } from '../bus/index.js';

/** A Last-Event-ID that is not an id this gateway gives: answer 400. */
export class InvalidLastEventIdError extends ForgeBusError {
  constructor(value: string) {
    super(
      'INVALID_LAST_EVENT_ID',
      `Last-Event-ID must be an event id of this stream (a stream sequence, optionally with "-<epoch>"), got "${value.slice(0, 40)}"`,
    );
  }
}

/** Where a client left off: a stream sequence, and which incarnation of the stream it belongs to. */
export interface LastEventId {
  seq: number;
  /** '' for the stream the cluster first saw (plain numeric ids), else the re-created stream's tag. */
  epoch: string;
}

/** Parses a Last-Event-ID header or `lastEventId` parameter; undefined when absent or empty. */
export function parseLastEventId(value: string | undefined): LastEventId | undefined {
  if (value === undefined || value === '') return undefined;
  const match = /^(\d{1,15})(?:-([0-9a-z]{1,16}))?$/.exec(value);
  if (!match) throw new InvalidLastEventIdError(value);
  return { seq: Number(match[1]), epoch: match[2] ?? '' };
}
