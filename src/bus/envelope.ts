import { randomUUID } from 'node:crypto';
import { InvalidEventError } from './errors.js';
import type { RepoRef } from './subjects.js';

/**
 * What travels on the bus. The envelope is the same for every event type; `payload` is
 * validated against the catalog entry for (`type`, `version`).
 */
export interface EventEnvelope<P = unknown> {
  /** Unique id; also the JetStream `Nats-Msg-Id`, so a retried publish is stored once. */
  id: string;
  /** `<entity>.<action>`, e.g. `issue.deleted`. */
  type: string;
  /** Schema version of the payload. */
  version: number;
  /** ISO-8601 time the change happened (not the time it was published). */
  occurredAt: string;
  /** Id of the node that produced the event. */
  origin: string;
  /** User who caused the change, when there is one. */
  actor: string | null;
  /** Repository the event is about (repo-scoped events). */
  repo?: RepoRef;
  /** User the event is addressed to (user-scoped events). */
  user?: string;
  payload: P;
}

/** An event as received from the stream: the envelope plus where the stream put it. */
export interface DeliveredEvent<P = unknown> {
  /** FORGE_EVENTS stream sequence: a global, gap-free position usable as SSE event id. */
  seq: number;
  subject: string;
  envelope: EventEnvelope<P>;
}

export function newEventId(): string {
  return randomUUID();
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

const nonEmptyString = (v: unknown): v is string => typeof v === 'string' && v.length > 0;

/**
 * Structural check of an envelope that came off the wire. Payload validation is the catalog's
 * job; this only makes sure the envelope fields exist with the right types.
 */
export function assertEnvelopeShape(value: unknown): asserts value is EventEnvelope {
  if (!isObject(value)) throw new InvalidEventError('(envelope)', 'must be a JSON object');
  if (!nonEmptyString(value.id)) throw new InvalidEventError('id', 'must be a non-empty string');
  if (!nonEmptyString(value.type)) throw new InvalidEventError('type', 'must be a non-empty string');
  if (!Number.isInteger(value.version) || (value.version as number) < 1) {
    throw new InvalidEventError('version', 'must be a positive integer', value.type);
  }
  if (!nonEmptyString(value.occurredAt) || Number.isNaN(Date.parse(value.occurredAt))) {
    throw new InvalidEventError('occurredAt', 'must be an ISO-8601 date string', value.type);
  }
  if (!nonEmptyString(value.origin)) throw new InvalidEventError('origin', 'must be a non-empty string', value.type);
  if (value.actor !== null && typeof value.actor !== 'string') {
    throw new InvalidEventError('actor', 'must be a string or null', value.type);
  }
  if (value.repo !== undefined) {
    if (!isObject(value.repo) || !nonEmptyString(value.repo.owner) || !nonEmptyString(value.repo.name)) {
      throw new InvalidEventError('repo', 'must be {owner, name} with non-empty strings', value.type);
    }
  }
  if (value.user !== undefined && !nonEmptyString(value.user)) {
    throw new InvalidEventError('user', 'must be a non-empty string', value.type);
  }
  if (!isObject(value.payload)) throw new InvalidEventError('payload', 'must be a JSON object', value.type);
}
