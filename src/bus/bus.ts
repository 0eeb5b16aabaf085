import type { NatsConnection, Status } from '@nats-io/transport-node';
import { EventCatalog, type EventDefinition } from './catalog/catalog.js';
import { BUILTIN_EVENTS, type ForgeEventPayloads } from './catalog/events.js';
import { connectBus, type BusConnectionOptions } from './connection.js';
import type { DeliveredEvent, EventEnvelope } from './envelope.js';
import { InvalidOptionError } from './errors.js';
import { EventFactory, type EventInput, type KnownEventInput } from './event-factory.js';
import { CONNECTION_OPTION_RULES } from './connection.js';
import { EventFeed, FEED_OPTION_RULES, type EventFeedOptions, type EventHandler, type FeedSubscription } from './feed.js';
import { consoleLogger, RateLimitedLog, type BusLogger } from './logger.js';
import type { EventFilter, TypePattern } from './patterns.js';
import { anyOf, arrayOf, boolean, checkOptions, integer, logger, matching, nested, oneOf, type OptionRule, type OptionRules } from './options.js';
import { agreeOnReplicas, MAX_REPLICAS, openBucket, type ReplicasOption } from './replication.js';
import { EventPublisher, PUBLISHER_OPTION_RULES, type PublishAck, type PublisherOptions } from './publisher.js';
import { agreeOnSettings, SETTINGS_BUCKET } from './cluster-settings.js';
import { ensureEventStream, eventStreamSettings, STREAM_OPTION_RULES, type EventStreamOptions, type ProvisionResult } from './streams.js';

export interface ForgeBusOptions {
  /** This process's node id: event origin and part of the connection name. */
  nodeId: string;
  /** Where and how to connect; `name` defaults to `forge-node:<nodeId>`. */
  connection?: Omit<BusConnectionOptions, 'name'> & { name?: string };
  /** FORGE_EVENTS settings; provisioned at connect unless `provisionStream` is false. */
  stream?: Omit<EventStreamOptions, 'replicas'>;
  /**
   * Copies JetStream keeps of every forgebus stream, bucket and durable consumer: a number
   * (1-5), or `auto` (default): min(3, servers in the NATS cluster), never below what the cluster
   * recorded. Agreed cluster-wide in FORGE_SETTINGS (see agreeOnReplicas).
   */
  replicas?: ReplicasOption;
  provisionStream?: boolean;
  /**
   * Refuse to start when the stream limits differ from the ones the cluster recorded (default
   * true; see SettingsDriftError). Turn off only for tools that inspect without provisioning.
   */
  checkSettings?: boolean;
  /** Extra event types of this forge (the built-in catalog is always included). */
  events?: EventDefinition[];
  publisher?: PublisherOptions;
  feed?: Omit<EventFeedOptions, 'stream' | 'logger'>;
  logger?: BusLogger;
}

interface ConnectionState {
  up: boolean;
}

function trackConnection(link: ConnectionState, status: Status): void {
  if (status.type === 'reconnect') link.up = true;
  else if (status.type === 'disconnect' || status.type === 'reconnecting' || status.type === 'staleConnection') link.up = false;
}

export interface PublishedEvent<P = unknown> extends PublishAck {
  envelope: EventEnvelope<P>;
  subject: string;
}

const nodeId = matching(/^[A-Za-z0-9_-]{1,64}$/, '1-64 characters of [A-Za-z0-9_-]');
const eventDefinition: OptionRule = (value) =>
  typeof value === 'object' && value !== null && typeof (value as { type?: unknown }).type === 'string' ? undefined : 'an event definition';
const { stream: _feedStream, logger: _feedLogger, ...feedRules } = FEED_OPTION_RULES;
const { replicas: _streamReplicas, ...streamRules } = STREAM_OPTION_RULES;

export const FORGE_BUS_OPTION_RULES: OptionRules<ForgeBusOptions> = {
  nodeId,
  connection: nested(CONNECTION_OPTION_RULES),
  stream: nested(streamRules),
  replicas: anyOf(oneOf('auto'), integer(1, MAX_REPLICAS)),
  provisionStream: boolean,
  checkSettings: boolean,
  events: arrayOf(eventDefinition, 'an array of event definitions made with defineEvent(...)'),
  publisher: nested(PUBLISHER_OPTION_RULES),
  feed: nested<Omit<EventFeedOptions, 'stream' | 'logger'>>(feedRules),
  logger,
};

/**
 * The forgebus core for one process, framework-free: one connection, the event catalog, the
 * publisher and the per-process event feed. `ForgeBus.connect()` is the entry point for a forge
 * written without NestJS; the Nest module wraps the same object.
 */
export class ForgeBus {
  readonly events: EventFactory;
  readonly publisher: EventPublisher;
  readonly feed: EventFeed;
  /** Connection status listeners that threw (each is isolated: the others and the bus still run). */
  readonly statusStats = { listenerErrors: 0 };
  private readonly statusListeners = new Set<(status: Status) => void>();
  private readonly statusLog: RateLimitedLog;
  private closing?: Promise<void>;

  private constructor(
    readonly nc: NatsConnection,
    readonly catalog: EventCatalog,
    readonly nodeId: string,
    readonly streamName: string,
    readonly provisioned: ProvisionResult | undefined,
    /** The cluster's agreed replica count: what every capability creates its streams and buckets with. */
    readonly replicas: number,
    private readonly link: ConnectionState,
    options: ForgeBusOptions,
  ) {
    const logger = options.logger ?? consoleLogger;
    this.statusLog = new RateLimitedLog((m) => logger.error(m));
    this.events = new EventFactory(catalog, nodeId);
    const reorderLog = new RateLimitedLog((m) => logger.error(m));
    this.publisher = new EventPublisher(nc, { stream: streamName, ...options.publisher }, (m) => reorderLog.line(m));
    this.feed = new EventFeed(
      nc,
      catalog,
      this.events,
      { consumerNamePrefix: `forge_feed_${nodeId}`, ...options.feed, stream: streamName, logger: options.logger ?? consoleLogger },
      // A deleted stream is provisioned again, as at connect (unless this process must not).
      () => (options.provisionStream === false ? Promise.resolve() : ensureEventStream(nc, { ...options.stream, replicas })),
    );
  }

  static async connect(options: ForgeBusOptions): Promise<ForgeBus> {
    checkOptions('ForgeBus.connect', options, FORGE_BUS_OPTION_RULES);
    if (options?.nodeId === undefined) throw new InvalidOptionError('ForgeBus.connect', 'nodeId', undefined, 'given: this process\'s node id, 1-64 characters of [A-Za-z0-9_-]');
    const catalog = new EventCatalog([...BUILTIN_EVENTS, ...(options.events ?? [])]);
    let bus: ForgeBus | undefined;
    // Tracked from the first status on, also while the stream is being provisioned.
    const link: ConnectionState = { up: true };
    const onStatus = options.connection?.onStatus;
    const nc = await connectBus(
      {
        ...options.connection,
        name: options.connection?.name ?? `forge-node:${options.nodeId}`,
        onStatus: (status) => {
          trackConnection(link, status);
          bus?.notifyStatus(status);
          onStatus?.(status);
        },
      },
      options.logger,
    );
    try {
      let provisioned: ProvisionResult | undefined;
      const agreeing = options.provisionStream !== false && options.checkSettings !== false;
      const replicas = await agreeOnReplicas(nc, options.replicas ?? 'auto', { record: agreeing });
      if (options.provisionStream !== false) {
        // Before provisioning: a node with other limits must not change the cluster's stream.
        if (agreeing) {
          await openBucket(nc, SETTINGS_BUCKET, replicas, { history: 1 });
          await agreeOnSettings(nc, eventStreamSettings(options.stream));
        }
        provisioned = await ensureEventStream(nc, { ...options.stream, replicas });
      }
      bus = new ForgeBus(nc, catalog, options.nodeId, options.stream?.name ?? 'FORGE_EVENTS', provisioned, replicas, link, options);
      return bus;
    } catch (err) {
      await nc.close();
      throw err;
    }
  }

  private notifyStatus(status: Status): void {
    for (const listener of this.statusListeners) {
      try {
        listener(status);
      } catch (err) {
        this.statusStats.listenerErrors++;
        this.statusLog.line(`a connection status listener threw on "${status.type}" (the others still ran): ${(err as Error).message}`);
      }
    }
  }

  /** Adds a listener for connection status changes (disconnect, reconnect, …). */
  onStatus(listener: (status: Status) => void): FeedSubscription {
    this.statusListeners.add(listener);
    return { unsubscribe: () => this.statusListeners.delete(listener) };
  }

  /** True while the connection is up (not disconnected, reconnecting or closed). */
  get connected(): boolean {
    return !this.nc.isClosed() && this.link.up;
  }

  /** Validates, publishes with Nats-Msg-Id = event id, resolves with the stream sequence. */
  publish<T extends keyof ForgeEventPayloads>(input: KnownEventInput<T>): Promise<PublishedEvent<ForgeEventPayloads[T]>>;
  publish(input: EventInput): Promise<PublishedEvent>;
  publish(input: EventInput): Promise<PublishedEvent> {
    let created: { envelope: EventEnvelope; subject: string };
    try {
      created = this.events.createWithSubject(input);
    } catch (err) {
      return Promise.reject(err);
    }
    return this.send(created.envelope, created.subject);
  }

  /** Publishes an envelope made earlier (by `events.create`, e.g. kept in an outbox). */
  publishEnvelope(envelope: EventEnvelope): Promise<PublishedEvent> {
    let subject: string;
    try {
      subject = this.events.subjectOf(envelope);
    } catch (err) {
      return Promise.reject(err);
    }
    return this.send(envelope, subject);
  }

  private send(envelope: EventEnvelope, subject: string): Promise<PublishedEvent> {
    return this.publisher
      .publish(subject, envelope)
      .then((ack) => ({ seq: ack.seq, duplicate: ack.duplicate, envelope, subject }));
  }

  /**
   * Registers a feed handler (see EventFeed.subscribe). A single built-in event type gives the
   * handler its typed payload: `bus.on('issue.deleted', ({ envelope }) => envelope.payload.number)`.
   */
  on<T extends keyof ForgeEventPayloads>(type: T, handler: (event: DeliveredEvent<ForgeEventPayloads[T]>) => unknown, filter?: EventFilter): FeedSubscription;
  on(patterns: TypePattern | TypePattern[], handler: EventHandler, filter?: EventFilter): FeedSubscription;
  on(patterns: TypePattern | TypePattern[], handler: EventHandler, filter?: EventFilter): FeedSubscription {
    return this.feed.subscribe(patterns, handler, filter);
  }

  /** Starts the feed: handlers registered so far (and later) receive events from now on. */
  async start(): Promise<void> {
    await this.feed.start();
  }

  /** Stops the feed, fails unacknowledged publishes, drains the connection. Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      await this.feed.stop();
      this.publisher.close();
      if (!this.nc.isClosed()) await this.nc.drain().catch(() => this.nc.close());
    })();
    return this.closing;
  }
}
