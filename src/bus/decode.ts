import type { EventCatalog } from './catalog/catalog.js';
import { assertEnvelopeShape, type DeliveredEvent } from './envelope.js';
import { MalformedEventError } from './errors.js';
import type { EventFactory } from './event-factory.js';

const decoder = new TextDecoder();

/** What a stream message must offer to be read as an event. */
export interface StoredEventMessage {
  seq: number;
  subject: string;
  data: Uint8Array;
}

/**
 * Reads one stream message as an event: JSON, envelope shape, payload against the catalog, and
 * the subject the envelope belongs on. Throws (with the reason) on anything malformed; callers
 * count and drop.
 */
export function decodeDeliveredEvent(msg: StoredEventMessage, catalog: EventCatalog, factory: EventFactory): DeliveredEvent {
  const envelope: unknown = JSON.parse(decoder.decode(msg.data));
  assertEnvelopeShape(envelope);
  catalog.validatePayload(envelope.type, envelope.version, envelope.payload);
  const expected = factory.subjectOf(envelope);
  if (expected !== msg.subject) throw new MalformedEventError(`envelope belongs on ${expected}, not on ${msg.subject}`);
  return { seq: msg.seq, subject: msg.subject, envelope };
}
