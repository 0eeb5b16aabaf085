import { DeliverPolicy, jetstream, type ConsumerMessages, type JsMsg } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import type { EventCatalog } from './catalog/catalog.js';
import { decodeDeliveredEvent } from './decode.js';
import type { DeliveredEvent } from './envelope.js';
import type { EventFactory } from './event-factory.js';
import { ForgeBusError } from './errors.js';
import { consoleLogger, RateLimitedLog, type BusLogger } from './logger.js';
import { checkOptions, fn, integer, logger, matching, nonEmptyString, type OptionRules } from './options.js';
import { compileMatcher, type EventFilter, type EventMatcher, type TypePattern } from './patterns.js';
import { EVENTS_STREAM } from './streams.js';
import { streamIdentity, StreamWatch, type StreamIdentity } from './stream-watch.js';
import { recordOnce } from './cluster-settings.js';
import { FAILOVER_PULL } from './pull-liveness.js';
import { describeNatsError } from './transient.js';

/** FORGE_SETTINGS key of the creation time of the event stream the cluster first saw. */
const ORIGINAL_STREAM_KEY = 'events.originalCreated';
/** Pause before re-opening a consumer that ended on its own; doubles while re-opening fails. */
const REOPEN_MIN_MS = 250;
const REOPEN_MAX_MS = 2_000;
const OPEN_TIMEOUT_MS = 2_000;

export type EventHandler = (event: DeliveredEvent) => unknown;

export interface FeedSubscription {
  unsubscribe(): void;
}

/** The feed could not deliver sequences `from`..`to` (the stream no longer holds them). */
export interface FeedGap {
  from: number;
  to: number;
}

/**
 * The stream was deleted and created again: its sequences started over. The feed continues at
 * the new stream's first event; caches must flush (events of the old stream may never have
 * arrived) and SSE clients move to the new numbering.
 */
export interface FeedReset {
  /** Creation times of the stream before and now. */
  previousCreated: string;
  created: string;
  /** The last sequence the feed processed on the old stream. */
  lastSeqBefore: number;
  /** The feed's position on the new stream (its next event is `position + 1`). */
  position: number;
}

export interface FeedStats {
  /** Messages read from the stream. */
  received: number;
  /** Valid events handed to the handlers. */
  delivered: number;
  /** Messages dropped as malformed (bad JSON, failed validation, unknown type/version, wrong subject). */
  malformed: number;
  /** Handler invocations that threw or rejected. */
  handlerErrors: number;
  /** Times the feed found sequences missing (events it can no longer see). */
  gaps: number;
  /** Highest stream sequence processed. */
  lastSeq: number;
  /** Times the stream was found re-created (see FeedReset). */
  resets: number;
  /** Times the consumer stopped moving while the stream had more, and was re-opened. */
  stalls: number;
  /** Times the consumer skipped events the stream still held, and was re-opened before them. */
  rewinds: number;
  /** Events the stream held beyond `lastSeq` at the last check (every `streamCheckMs`): the feed's lag. */
  behind: number;
}

export interface EventFeedOptions {
  stream?: string;
  /** First sequence to read; default: the next event after start (no history). */
  startSeq?: number;
  /** Messages the consumer buffers ahead of the handlers (default 1024). */
  bufferMessages?: number;
  logger?: BusLogger;
  /** Called when sequences were missed: caches must flush, SSE must reset. */
  onGap?: (gap: FeedGap) => void;
  /** How often the stream's identity is checked, to notice that it was re-created (default 2000 ms). */
  streamCheckMs?: number;
  /**
   * Prefix of the feed consumer's name on the server (nats.js adds a counter): ForgeBus gives
   * `forge_feed_<nodeId>`, so that /jsz and `nats consumer ls` say whose feed each one is.
   */
  consumerNamePrefix?: string;
}

export const FEED_OPTION_RULES: OptionRules<EventFeedOptions> = {
  stream: nonEmptyString,
  startSeq: integer(1),
  bufferMessages: integer(1, 1_000_000),
  logger,
  onGap: fn,
  streamCheckMs: integer(100, 3_600_000),
  consumerNamePrefix: matching(/^[A-Za-z0-9_-]{1,64}$/, '1-64 characters of [A-Za-z0-9_-]'),
};

interface Registration {
  matches: EventMatcher;
  handler: EventHandler;
  name: string;
}

/**
 * One ordered consumer per process that feeds every local handler, in stream order. The
 * ordered consumer re-creates itself after a reconnect at the next sequence it expects; the
 * feed notices when the stream could not give it that sequence and reports a gap.
 */
export class EventFeed {
  readonly stats: FeedStats = { received: 0, delivered: 0, malformed: 0, handlerErrors: 0, gaps: 0, lastSeq: 0, resets: 0, stalls: 0, rewinds: 0, behind: 0 };
  /** Since when (performance.now()) the feed has been behind the stream without moving; undefined while it keeps up or moves. */
  private stillSince?: number;
  private readonly registrations: Registration[] = [];
  private readonly gapListeners = new Set<(gap: FeedGap) => void>();
  private readonly resetListeners = new Set<(reset: FeedReset) => void>();
  private readonly listenerLog: RateLimitedLog;
  private readonly watch: StreamWatch;
  private pendingReset?: { now: StreamIdentity; before: StreamIdentity };
  private original?: string;
  private current?: string;
  private readonly stream: string;
  private readonly logger: BusLogger;
  private readonly malformedLog: RateLimitedLog;
  private readonly handlerErrorLog: RateLimitedLog;
  private messages?: ConsumerMessages;
  /** Consumers opened so far, and a tag of this feed object: parts of each consumer's name. */
  private opens = 0;
  private readonly instance = Math.random().toString(36).slice(2, 8);
  private connectionStatus?: AsyncIterable<unknown>;
  private loop?: Promise<void>;
  private stopping = false;
  /** Set by start(): stats.lastSeq is then a known position (startSeq - 1), even when it is 0. */
  private positioned = false;

  constructor(
    private readonly nc: NatsConnection,
    private readonly catalog: EventCatalog,
    private readonly factory: EventFactory,
    private readonly options: EventFeedOptions = {},
    /** Re-creates the stream if it disappears (the bus's provisioning; absent: wait for someone else). */
    ensureStream: () => Promise<unknown> = async () => undefined,
  ) {
    checkOptions('EventFeed', options, FEED_OPTION_RULES);
    this.stream = options.stream ?? EVENTS_STREAM;
    this.logger = options.logger ?? consoleLogger;
    this.malformedLog = new RateLimitedLog((m) => this.logger.warn(m));
    this.handlerErrorLog = new RateLimitedLog((m) => this.logger.error(m));
    this.listenerLog = new RateLimitedLog((m) => this.logger.error(m));
    this.watch = new StreamWatch(
      nc,
      this.stream,
      options.streamCheckMs ?? 2_000,
      {
        recreated: (now, before) => {
          this.pendingReset = { now, before };
          // Ends the consumer's iterator: the run loop applies the reset in stream order.
          void this.messages?.close().catch(() => undefined);
        },
        missing: async () => {
          await ensureStream();
        },
        position: () => this.stats.lastSeq,
        progress: (behind, moved) => {
          this.stats.behind = behind;
          if (behind === 0 || moved) this.stillSince = undefined;
          else this.stillSince ??= performance.now();
        },
        stalled: (behind) => {
          this.stats.stalls++;
          this.logger.warn(`event feed stalled at sequence ${this.stats.lastSeq}, ${behind} event(s) behind the stream: re-opening its consumer`);
          void this.messages?.close().catch(() => undefined);
        },
      },
      this.logger,
      new RateLimitedLog((m) => this.logger.warn(m)),
    );
  }

  get running(): boolean {
    return this.loop !== undefined && !this.stopping;
  }

  /**
   * How long the feed has been behind the stream without processing anything (0 while it keeps
   * up or moves), as of the last stream check: a feed stuck this long serves stale data.
   */
  get stuckForMs(): number {
    return this.stillSince === undefined ? 0 : Math.round(performance.now() - this.stillSince);
  }

  /**
   * Registers a handler for events whose type matches `patterns` (and `filter`). Handlers may
   * be async: the feed waits for them before the next event, so each handler sees events in
   * stream order.
   */
  subscribe(patterns: TypePattern | TypePattern[], handler: EventHandler, filter?: EventFilter): FeedSubscription {
    const registration: Registration = {
      matches: compileMatcher(patterns, filter),
      handler,
      name: handler.name || String(patterns),
    };
    this.registrations.push(registration);
    return {
      unsubscribe: () => {
        const i = this.registrations.indexOf(registration);
        if (i >= 0) this.registrations.splice(i, 1);
      },
    };
  }

  /** Adds a listener for resets (the stream was re-created; see FeedReset). */
  onReset(listener: (reset: FeedReset) => void): FeedSubscription {
    this.resetListeners.add(listener);
    return { unsubscribe: () => this.resetListeners.delete(listener) };
  }

  /**
   * Which incarnation of the stream the feed reads: '' for the one the cluster first saw, else a
   * short tag of its creation time. A position is only meaningful with its epoch: a re-created
   * stream numbers its events from 1 again (SSE ids carry the epoch for that reason).
   */
  get epoch(): string {
    return this.current === undefined || this.current === this.original ? '' : Date.parse(this.current).toString(36);
  }

  /** Compares the stream's identity now (the feed also does so every `streamCheckMs`). */
  checkStream(): Promise<void> {
    return this.watch.check();
  }

  /** Adds a listener for gaps (sequences the feed can no longer deliver). */
  onGap(listener: (gap: FeedGap) => void): FeedSubscription {
    this.gapListeners.add(listener);
    return { unsubscribe: () => this.gapListeners.delete(listener) };
  }

  async start(): Promise<void> {
    if (this.loop) return;
    const identity = await streamIdentity(this.nc, this.stream);
    if (!identity) throw new ForgeBusError('STREAM_NOT_FOUND', `stream ${this.stream} does not exist: provision it (ForgeBus.connect does, unless provisionStream is false)`);
    // The incarnation the cluster first saw: its positions are plain sequences (see `epoch`).
    this.original = String(await recordOnce(this.nc, ORIGINAL_STREAM_KEY, identity.created));
    this.current = identity.created;
    const startSeq = this.options.startSeq ?? identity.lastSeq + 1;
    this.stats.lastSeq = startSeq - 1;
    this.positioned = true;
    this.messages = await this.open(startSeq);
    this.watch.start(identity);
    this.loop = this.run();
    void this.followConnection();
  }

  /**
   * After a reconnect the feed's ephemeral consumer may have lived on the server that went away:
   * re-open it from the next sequence at once instead of waiting for nats.js to find out (it
   * pauses its heartbeat check while disconnected, then probes with backoff: seen taking 13 s).
   */
  private async followConnection(): Promise<void> {
    const status = (this.connectionStatus = this.nc.status());
    try {
      for await (const s of status) {
        if (this.stopping) return;
        if (s.type === 'reconnect') void this.messages?.close().catch(() => undefined);
      }
    } catch {
      // the connection closed
    }
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.watch.stop();
    (this.connectionStatus as { stop?: () => void } | undefined)?.stop?.();
    await this.messages?.close().catch(() => undefined);
    await this.loop;
  }

  private async open(startSeq: number): Promise<ConsumerMessages> {
    // A short API timeout: while the cluster elects a leader no creation is answered, and the run
    // loop's next attempt comes sooner than a 5 s timeout would allow.
    const consumer = await jetstream(this.nc, { timeout: OPEN_TIMEOUT_MS }).consumers.get(this.stream, {
      deliver_policy: DeliverPolicy.StartSequence,
      opt_start_seq: startSeq,
      // Unique per open and per process: nats.js numbers an ordered consumer's names from 1 again
      // for every new one, and a re-opened feed must not collide with its predecessor (which the
      // server may still hold), nor with another process of the same node id.
      ...(this.options.consumerNamePrefix !== undefined && { name_prefix: `${this.options.consumerNamePrefix}_${this.instance}_${(this.opens++).toString(36)}` }),
    });
    const messages = await consumer.consume({ max_messages: this.options.bufferMessages ?? 1024, ...FAILOVER_PULL });
    void this.followHeartbeats(messages);
    return messages;
  }

  /**
   * Two missed heartbeats: the server that held this ephemeral consumer is gone (or it was
   * deleted). nats.js would re-create it on its own, but backs off up to 5 s between attempts
   * that fail while the stream elects a leader; a fresh consumer, opened by the run loop, is
   * tried at once and then every few hundred milliseconds.
   */
  private async followHeartbeats(messages: ConsumerMessages): Promise<void> {
    try {
      for await (const status of messages.status()) {
        if (status.type !== 'heartbeats_missed' || status.count < 2 || this.stopping) continue;
        this.stats.stalls++;
        this.logger.warn(`event feed: no heartbeat from its consumer for ${status.count} s (its server is gone?): re-opening it at ${this.stats.lastSeq + 1}`);
        await messages.close().catch(() => undefined);
        return;
      }
    } catch {
      // the iterator closed: nothing to follow
    }
  }

  private async run(): Promise<void> {
    let reopenDelayMs = REOPEN_MIN_MS;
    while (!this.stopping) {
      let rewind = false;
      try {
        // Undefined after a failed re-open: straight to the next attempt below.
        for await (const msg of this.messages ?? []) {
          reopenDelayMs = REOPEN_MIN_MS;
          // The common case (the next sequence) costs no await here: this loop is the hot path.
          if (this.positioned && msg.seq > this.stats.lastSeq + 1 && (await this.skippedHeldEvents(msg.seq))) {
            rewind = true;
            break;
          }
          const pending = this.process(msg);
          if (pending) await pending;
        }
      } catch (err) {
        if (!this.stopping) this.logger.error(`event feed consumer failed: ${(err as Error).message}`);
      }
      if (this.stopping || this.nc.isClosed()) return;
      if (rewind) {
        // Re-read from the first event we did not process: the stream still has it.
        await this.messages?.close().catch(() => undefined);
        this.messages = undefined;
        try {
          this.messages = await this.open(this.stats.lastSeq + 1);
          continue;
        } catch (err) {
          this.logger.error(`event feed cannot re-open at ${this.stats.lastSeq + 1}: ${(err as Error).message}; retrying`);
        }
      }
      const reset = this.pendingReset;
      if (reset) {
        this.pendingReset = undefined;
        await this.restartOn(reset.now, reset.before);
        continue;
      }
      // The ordered consumer ended without being asked to (its server died, the stream was
      // deleted, …): open a new one where we left off, after a pause that grows while it keeps
      // failing, so a persistent fault does not spin.
      await new Promise((resolve) => setTimeout(resolve, reopenDelayMs));
      reopenDelayMs = Math.min(REOPEN_MAX_MS, reopenDelayMs * 2);
      if (this.stopping) return;
      this.messages = undefined;
      try {
        this.messages = await this.open(this.stats.lastSeq + 1);
        this.logger.warn(`event feed re-opened at sequence ${this.stats.lastSeq + 1}`);
      } catch (err) {
        this.logger.error(`event feed cannot re-open: ${describeNatsError(err)}`);
      }
    }
  }

  /**
   * True when `seq` skips events the stream still holds. nats.js's ordered consumer re-creates
   * itself at the sequence after the last one it *received*, which can be ahead of the last one we
   * *processed* (seen after a server restart under load): those events are not lost, only
   * dropped from its buffer, and must be read again rather than reported as a gap.
   */
  private async skippedHeldEvents(seq: number): Promise<boolean> {
    const next = this.stats.lastSeq + 1;
    try {
      const now = await streamIdentity(this.nc, this.stream);
      if (!now || now.created !== this.current || now.firstSeq > next) return false;
    } catch {
      return false;
    }
    this.stats.rewinds++;
    this.logger.warn(`event feed: its consumer skipped sequences ${next}..${seq - 1}, which the stream still holds: reading them again`);
    return true;
  }

  /** Continues at the first event of a re-created stream, after telling the reset listeners. */
  private async restartOn(now: StreamIdentity, before: StreamIdentity): Promise<void> {
    const reset: FeedReset = {
      previousCreated: before.created,
      created: now.created,
      lastSeqBefore: this.stats.lastSeq,
      position: Math.max(1, now.firstSeq) - 1,
    };
    this.stats.resets++;
    this.stats.lastSeq = reset.position;
    this.current = now.created;
    this.logger.warn(
      `event feed restarts at sequence ${reset.position + 1} of the re-created stream ${this.stream} (it had processed ${reset.lastSeqBefore} of the old one)`,
    );
    this.notify(this.resetListeners, reset, 'reset');
    this.messages = undefined;
    try {
      this.messages = await this.open(reset.position + 1);
    } catch (err) {
      this.logger.error(`event feed cannot open the re-created stream yet: ${(err as Error).message}; retrying`);
      await new Promise((resolve) => setTimeout(resolve, 1_000));
    }
  }

  /** Calls each listener; one that throws is logged and does not keep the others from running. */
  private notify<T>(listeners: Set<(value: T) => void>, value: T, what: string): void {
    for (const listener of listeners) {
      try {
        listener(value);
      } catch (err) {
        this.listenerLog.line(`a feed ${what} listener threw: ${(err as Error).message}`);
      }
    }
  }

  /** Handles one message; returns a promise only when some handler is async. */
  process(msg: Pick<JsMsg, 'seq' | 'subject' | 'data'>): Promise<void> | undefined {
    const seq = msg.seq;
    this.stats.received++;
    if (seq <= this.stats.lastSeq) return undefined; // already processed (defensive: resets)
    if ((this.positioned || this.stats.lastSeq > 0) && seq > this.stats.lastSeq + 1) {
      const gap = { from: this.stats.lastSeq + 1, to: seq - 1 };
      this.stats.gaps++;
      this.logger.warn(`event feed missed sequences ${gap.from}..${gap.to}: the stream no longer holds them`);
      this.notify(new Set([...(this.options.onGap ? [this.options.onGap] : []), ...this.gapListeners]), gap, 'gap');
    }
    this.stats.lastSeq = seq;
    const event = this.decode(msg);
    if (!event) return undefined;
    this.stats.delivered++;
    let waits: Promise<unknown>[] | undefined;
    for (const registration of this.registrations) {
      if (!registration.matches(event)) continue;
      try {
        const result = registration.handler(event);
        if (result instanceof Promise) {
          (waits ??= []).push(result.catch((err: unknown) => this.onHandlerError(registration, event, err)));
        }
      } catch (err) {
        this.onHandlerError(registration, event, err);
      }
    }
    return waits ? Promise.all(waits).then(() => undefined) : undefined;
  }

  private decode(msg: Pick<JsMsg, 'seq' | 'subject' | 'data'>): DeliveredEvent | undefined {
    try {
      return decodeDeliveredEvent(msg, this.catalog, this.factory);
    } catch (err) {
      this.stats.malformed++;
      this.malformedLog.line(`dropped malformed message seq ${msg.seq} on ${msg.subject}: ${(err as Error).message}`);
      return undefined;
    }
  }

  private onHandlerError(registration: Registration, event: DeliveredEvent, err: unknown): void {
    this.stats.handlerErrors++;
    this.handlerErrorLog.line(
      `handler ${registration.name} failed on ${event.envelope.type} (seq ${event.seq}): ${(err as Error)?.message ?? String(err)}`,
    );
  }
}
