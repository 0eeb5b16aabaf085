/**
 * `forgebus` — the framework-free core: one NATS connection per process (`ForgeBus.connect`),
 * typed and validated domain events (the built-in catalog plus your own `defineEvent`s),
 * acknowledged publishing, the per-process ordered event feed, the transactional outbox, and the
 * typed errors every part of the library throws.
 *
 * The capabilities have their own entries: `forgebus/cache`, `forgebus/sse`,
 * `forgebus/repo-writes`; the NestJS face is `forgebus/nest`. Nothing else is public: the
 * modules behind these lists may change between minor versions.
 */

// The bus and its options.
export { ForgeBus, type ForgeBusOptions, type PublishedEvent } from './bus/bus.js';
export { DEFAULT_NATS_URL, type BusConnectionOptions, type BusCredentials } from './bus/connection.js';
export { EVENTS_STREAM, EVENT_STREAM_DEFAULTS, type EventStreamOptions, type ProvisionResult } from './bus/streams.js';
export type { AckedPublish, PublishAck, PublisherOptions, EventPublisher } from './bus/publisher.js';
export type { EventFeed, EventFeedOptions, EventHandler, FeedGap, FeedReset, FeedStats, FeedSubscription } from './bus/feed.js';
export type { EventFilter, TypePattern } from './bus/patterns.js';
export { silentLogger, type BusLogger } from './bus/logger.js';

// Events: envelopes, the catalog, the built-in event payloads.
export type { DeliveredEvent, EventEnvelope } from './bus/envelope.js';
export type { EventFactory, EventInput, KnownEventInput } from './bus/event-factory.js';
export { defineEvent, type EventCatalog, type EventDefinition, type EventScopeKind, type PayloadClass } from './bus/catalog/catalog.js';
export {
  CollaboratorChangedEvent,
  CommentCreatedEvent,
  CommentDeletedEvent,
  CommentUpdatedEvent,
  IssueCreatedEvent,
  IssueDeletedEvent,
  IssueStatusChangedEvent,
  IssueUpdatedEvent,
  PullRequestClosedEvent,
  PullRequestMergedEvent,
  PullRequestOpenedEvent,
  RefCreatedEvent,
  RefDeletedEvent,
  RepoCreatedEvent,
  RepoDeletedEvent,
  RepoPushedEvent,
  RepoRenamedEvent,
  RepoTransferredEvent,
  UserLoggedOutEvent,
  UserNotificationCountEvent,
  UserStopwatchChangedEvent,
  type ForgeEventPayloads,
} from './bus/catalog/events.js';

// Subjects: how names become NATS subject tokens (for tools that read the stream directly).
export {
  decodeToken,
  encodeToken,
  eventSubject,
  parseEventSubject,
  repoSubjectFilter,
  userSubjectFilter,
  type EventScope,
  type ParsedEventSubject,
  type RepoRef,
} from './bus/subjects.js';

// The transactional outbox.
export { OutboxRelay, type OutboxRelayOptions, type OutboxRelayStats, type OutboxRow, type OutboxStore } from './bus/outbox.js';
export { PostgresOutboxStore, type PgQueryable, type PostgresOutboxStoreOptions } from './bus/outbox-postgres.js';

// Settings every node of a cluster must agree on (recorded by the first node).
export { SETTINGS_BUCKET, SettingsDriftError, type ClusterSetting, type SettingValue } from './bus/cluster-settings.js';
export { ReplicasUnavailableError, type ReplicasOption } from './bus/replication.js';

// Errors: every error forgebus throws derives from ForgeBusError and has a stable `code`.
export {
  ForgeBusConfigError,
  ForgeBusError,
  InvalidEventError,
  InvalidOptionError,
  InvalidTypePatternError,
  MalformedEventError,
  PublishError,
  PublishTimeoutError,
  StreamConfigConflictError,
  SubjectCodecError,
  UnknownEventTypeError,
} from './bus/errors.js';
