/**
 * The core's internal barrel: what the capabilities (cache, sse, repo-writes), the Nest face,
 * the example node and the tests build on. Not a package entry: users import `forgebus`
 * (src/index.ts), whose export list is the public API.
 */
export {
  FORGE_BUS_OPTION_RULES,
  ForgeBus,
  type ForgeBusOptions,
  type PublishedEvent,
} from './bus.js';
export {
  SETTINGS_BUCKET,
  SettingsDriftError,
  agreeOnSettings,
  recordedSettings,
  recordOnce,
  recordSetting,
  type SettingValue,
  type ClusterSetting,
} from './cluster-settings.js';
export {
  DEFAULT_NATS_URL,
  CONNECTION_OPTION_RULES,
  parseServers,
  reconnectBackoff,
  connectBus,
  inboxFor,
  type BusCredentials,
  type BusConnectionOptions,
} from './connection.js';
export {
  newEventId,
  assertEnvelopeShape,
  type EventEnvelope,
  type DeliveredEvent,
} from './envelope.js';
export {
  ForgeBusError,
  InvalidEventError,
  UnknownEventTypeError,
  SubjectCodecError,
  StreamConfigConflictError,
  PublishError,
  PublishTimeoutError,
  ForgeBusConfigError,
  InvalidOptionError,
  MalformedEventError,
  InvalidTypePatternError,
} from './errors.js';
export {
  EventFactory,
  type EventInput,
  type KnownEventInput,
} from './event-factory.js';
export {
  FEED_OPTION_RULES,
  EventFeed,
  type EventHandler,
  type FeedSubscription,
  type FeedGap,
  type FeedReset,
  type FeedStats,
  type EventFeedOptions,
} from './feed.js';
export {
  decodeDeliveredEvent,
  type StoredEventMessage,
} from './decode.js';
export {
  consoleLogger,
  silentLogger,
  RateLimitedLog,
  type BusLogger,
} from './logger.js';
export {
  integer,
  millis,
  boolean,
  fn,
  nonEmptyString,
  oneOf,
  matching,
  arrayOf,
  anyOf,
  recordOf,
  logger,
  delegated,
  nested,
  checkOptions,
  type OptionRule,
  type OptionPath,
  type OptionRules,
} from './options.js';
export {
  OUTBOX_RELAY_OPTION_RULES,
  OutboxRelay,
  type OutboxRow,
  type OutboxStore,
  type OutboxRelayOptions,
  type OutboxRelayStats,
} from './outbox.js';
export { PostgresOutboxStore, type PgQueryable, type PostgresOutboxStoreOptions } from './outbox-postgres.js';
export {
  compileTypePattern,
  compileMatcher,
  type TypePattern,
  type EventFilter,
  type EventMatcher,
} from './patterns.js';
export {
  PUBLISHER_OPTION_RULES,
  EventPublisher,
  type AckedPublish,
  type PublishAck,
  type PublisherOptions,
  type PublisherStats,
} from './publisher.js';
export {
  EVENTS_STREAM,
  STREAM_OPTION_RULES,
  EVENT_STREAM_DEFAULTS,
  eventStreamConfig,
  ensureStream,
  eventStreamSettings,
  ensureEventStream,
  type EventStreamOptions,
  type ProvisionResult,
} from './streams.js';
export { FAILOVER_PULL } from './pull-liveness.js';
export { describeNatsError, isTransientNatsError, retryTransient } from './transient.js';
export {
  agreeOnReplicas,
  CAS_SERIALIZED_SINCE,
  serializesCompareAndSwap,
  type OpenBucketOptions,
  forgebusStreams,
  MAX_AUTO_REPLICAS,
  MAX_REPLICAS,
  openBucket,
  placementError,
  REPLICAS_SETTING,
  ReplicasUnavailableError,
  rescaleCluster,
  scaleStream,
  visibleServers,
  waitForLeader,
  type ReplicasOption,
} from './replication.js';
export {
  streamIdentity,
  StreamWatch,
  type StreamIdentity,
  type StreamWatchHooks,
} from './stream-watch.js';
export {
  SUBJECT_ROOT,
  encodeToken,
  decodeToken,
  assertEventType,
  eventSubject,
  repoSubjectFilter,
  userSubjectFilter,
  parseEventSubject,
  EVENT_STREAM_SUBJECTS,
  type RepoRef,
  type EventScope,
  type ParsedEventSubject,
} from './subjects.js';
export {
  defineEvent,
  EventCatalog,
  type EventScopeKind,
  type PayloadClass,
  type EventDefinition,
} from './catalog/catalog.js';
export {
  RepoCreatedEvent,
  RepoDeletedEvent,
  RepoRenamedEvent,
  RepoTransferredEvent,
  RepoPushedEvent,
  RefCreatedEvent,
  RefDeletedEvent,
  CollaboratorChangedEvent,
  IssueCreatedEvent,
  IssueUpdatedEvent,
  IssueStatusChangedEvent,
  IssueDeletedEvent,
  CommentCreatedEvent,
  CommentUpdatedEvent,
  CommentDeletedEvent,
  PullRequestOpenedEvent,
  PullRequestMergedEvent,
  PullRequestClosedEvent,
  UserNotificationCountEvent,
  UserStopwatchChangedEvent,
  UserLoggedOutEvent,
  BUILTIN_EVENTS,
  type ForgeEventPayloads,
} from './catalog/events.js';
