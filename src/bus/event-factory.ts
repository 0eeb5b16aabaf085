import type { EventCatalog, EventDefinition } from './catalog/catalog.js';
import type { ForgeEventPayloads } from './catalog/events.js';
import { newEventId, type EventEnvelope } from './envelope.js';
import { InvalidEventError } from './errors.js';
import { eventSubject, type RepoRef } from './subjects.js';

type KnownType = keyof ForgeEventPayloads;

/** What a caller says to publish; the factory fills in id, version, time and origin. */
export interface EventInput<T extends string = string, P extends object = object> {
  type: T;
  payload: P;
  repo?: RepoRef;
  user?: string;
  actor?: string | null;
  /** Give an id to make a retried publish idempotent across process restarts. */
  id?: string;
  /** Defaults to the catalog's latest version of `type`. */
  version?: number;
  occurredAt?: Date | string;
}

export type KnownEventInput<T extends KnownType = KnownType> = EventInput<T, ForgeEventPayloads[T]>;

/** Builds validated envelopes (and their subjects) for one origin node. */
export class EventFactory {
  constructor(
    readonly catalog: EventCatalog,
    readonly origin: string,
  ) {}

  create<T extends KnownType>(input: KnownEventInput<T>): EventEnvelope<ForgeEventPayloads[T]>;
  create(input: EventInput): EventEnvelope;
  create(input: EventInput): EventEnvelope {
    return this.createWithSubject(input).envelope;
  }

  /** Builds a validated envelope and the subject it is published on. */
  createWithSubject(input: EventInput): { envelope: EventEnvelope; subject: string } {
    const def = this.catalog.get(input.type, input.version);
    const version = def.version;
    const envelope: EventEnvelope = {
      id: input.id ?? newEventId(),
      type: input.type,
      version,
      occurredAt: input.occurredAt === undefined ? new Date().toISOString() : new Date(input.occurredAt).toISOString(),
      origin: this.origin,
      actor: input.actor ?? null,
      payload: this.catalog.validatePayload(input.type, version, input.payload),
    };
    assertScopeFields(def, input);
    if (def.scope === 'repo') {
      if (!input.repo) throw new InvalidEventError('repo', 'is required: this event type is about a repository', input.type);
      envelope.repo = { owner: input.repo.owner, name: input.repo.name };
    } else if (def.scope === 'user') {
      if (input.user === undefined) throw new InvalidEventError('user', 'is required: this event type is addressed to a user', input.type);
      envelope.user = input.user;
    }
    // Computed here so that names that cannot become subjects fail now (SubjectCodecError),
    // not later in an outbox relay.
    return { envelope, subject: subjectFor(def, envelope) };
  }

  subjectOf(envelope: EventEnvelope): string {
    return subjectFor(this.catalog.get(envelope.type, envelope.version), envelope);
  }
}

/**
 * A repository event carries no `user`, a user event no `repo`, a site event neither: a field the
 * scope does not allow would route the event one way live and another way on replay.
 */
function assertScopeFields(def: EventDefinition, event: { repo?: unknown; user?: unknown; type: string }): void {
  if (def.scope !== 'repo' && event.repo !== undefined) {
    throw new InvalidEventError('repo', `is not allowed: "${def.type}" is a ${def.scope} event`, event.type);
  }
  if (def.scope !== 'user' && event.user !== undefined) {
    throw new InvalidEventError('user', `is not allowed: "${def.type}" is a ${def.scope} event`, event.type);
  }
}

function subjectFor(def: EventDefinition, envelope: EventEnvelope): string {
  assertScopeFields(def, envelope);
  switch (def.scope) {
    case 'repo':
      if (!envelope.repo) throw new InvalidEventError('repo', 'is required', envelope.type);
      return eventSubject(envelope.type, { kind: 'repo', repo: envelope.repo });
    case 'user':
      if (envelope.user === undefined) throw new InvalidEventError('user', 'is required', envelope.type);
      return eventSubject(envelope.type, { kind: 'user', user: envelope.user });
    case 'site':
      return eventSubject(envelope.type, { kind: 'site' });
  }
}
