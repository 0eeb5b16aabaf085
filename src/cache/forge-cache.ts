import { jetstreamManager } from '@nats-io/jetstream';
import type { Status } from '@nats-io/transport-node';
import { boolean, checkOptions, consoleLogger, fn, logger, oneOf, RateLimitedLog, recordOf, type OptionRules, type BusLogger, type DeliveredEvent, type EventEnvelope, type FeedSubscription, type ForgeBus } from '../bus/index.js';
import { InvalidationRules, type InvalidationRule } from './rules.js';
import { TAGGED_CACHE_OPTION_RULES, TaggedCache, type TaggedCacheOptions, type TaggedCacheStats } from './tagged-cache.js';

/**
 * What a node does with its cache while it cannot prove it saw every event:
 * - `bypass` (default): read the source, do not store;
 * - `serve-stale`: keep serving cached entries, with a warning in the log and a counter.
 */
export type DisconnectedReads = 'bypass' | 'serve-stale';

export type CacheState =
  /** Every event up to the stream's end has been applied: entries may be served. */
  | 'live'
  /** Not connected to NATS: events may be missed. */
  | 'disconnected'
  /** Reconnected; replaying what was missed, up to `catchUpTarget`. */
  | 'catching-up'
  /** The feed is not running (not started, or stopped). */
  | 'stopped';

export interface ForgeCacheOptions extends TaggedCacheOptions {
  /** false: every read goes to the source (counted as bypassed); invalidation still runs. Default true. */
  enabled?: boolean;
  disconnectedReads?: DisconnectedReads;
  /** Extra invalidation rules of the forge, by event type (added to the defaults). */
  rules?: Record<string, InvalidationRule>;
  logger?: BusLogger;
}

export interface ForgeCacheStats extends TaggedCacheStats {
  state: CacheState;
  /** Reads that went to the source because the cache could not be trusted. */
  bypassedReads: number;
  /** Reads served from the cache while not live (serve-stale mode). */
  staleReads: number;
  /** Events applied from the feed. */
  eventsApplied: number;
  /** Local changes applied before their event came back through the stream. */
  localInvalidations: number;
  /** Flushes caused by a feed gap (events the stream no longer holds). */
  gapFlushes: number;
  /** Flushes because the stream was deleted and re-created. */
  streamResets: number;
  /** Invalidation rules that threw: each flushed the whole cache (what was stale is unknown). */
  ruleFailures: number;
  /** Stream sequence of the newest event applied. */
  lastAppliedSeq: number;
  /** ms between the newest applied event's occurredAt and now; null before the first one. */
  newestAppliedEventAgeMs: number | null;
}

export const FORGE_CACHE_OPTION_RULES: OptionRules<ForgeCacheOptions> = {
  ...TAGGED_CACHE_OPTION_RULES,
  enabled: boolean,
  disconnectedReads: oneOf('bypass', 'serve-stale'),
  rules: recordOf(fn, 'an object of invalidation rules by event type: { "wiki.edited": (event) => [tags] }'),
  logger,
};

/**
 * The node-local cache of a forge: a TaggedCache kept correct by the event feed.
 *
 * - Every event of the feed is turned into tags by the rules and invalidated.
 * - The node that made a change calls `applyLocal(envelope)` right after its commit, so its own
 *   next read never sees the old value (read-your-writes), without waiting for the round trip.
 * - While disconnected, and after a reconnect until the feed has replayed up to the stream's end
 *   as it was at the reconnect, entries are not served (or served with a warning). A gap in the
 *   feed (the stream dropped events the node had not seen) flushes everything.
 */
export class ForgeCache {
  readonly entries: TaggedCache;
  readonly rules: InvalidationRules;
  private readonly disconnectedReads: DisconnectedReads;
  private readonly enabled: boolean;
  private readonly logger: BusLogger;
  private readonly staleLog: RateLimitedLog;
  private state: Exclude<CacheState, 'stopped'>;
  private catchUpPoll?: NodeJS.Timeout;
  private catchUpTarget = 0;
  private catchUpRetry?: NodeJS.Timeout;
  private lastAppliedSeq = 0;
  /** Stream sequence up to which lost events were already answered with a flush. */
  private flushedThroughSeq = 0;
  private newestOccurredAt?: number;
  private readonly counters = { bypassedReads: 0, staleReads: 0, eventsApplied: 0, localInvalidations: 0, gapFlushes: 0, ruleFailures: 0, streamResets: 0 };
  private readonly ruleLog: RateLimitedLog;
  private readonly subscriptions: FeedSubscription[] = [];

  constructor(
    private readonly bus: ForgeBus,
    options: ForgeCacheOptions = {},
  ) {
    checkOptions('ForgeCache', options, FORGE_CACHE_OPTION_RULES);
    const { enabled: _enabled, disconnectedReads: _reads, rules: _rules, logger: _logger, ...taggedCacheOptions } = options;
    this.entries = new TaggedCache(taggedCacheOptions);
    this.rules = new InvalidationRules();
    for (const [type, rule] of Object.entries(options.rules ?? {})) this.rules.add(type, rule);
    this.disconnectedReads = options.disconnectedReads ?? 'bypass';
    this.enabled = options.enabled ?? true;
    this.logger = options.logger ?? consoleLogger;
    this.staleLog = new RateLimitedLog((m) => this.logger.warn(m), 5);
    this.ruleLog = new RateLimitedLog((m) => this.logger.error(m), 5);
    this.state = bus.connected ? 'live' : 'disconnected';
    this.subscriptions.push(
      bus.on('*', (event) => this.applyEvent(event)),
      bus.feed.onGap((gap) => {
        // Already flushed for these when the reconnect found them gone (see flushIfTailLost).
        if (gap.to <= this.flushedThroughSeq) return;
        this.counters.gapFlushes++;
        this.logger.warn(`cache flushed: the feed missed events ${gap.from}..${gap.to} (no longer in the stream)`);
        this.entries.flush();
      }),
      bus.feed.onReset((reset) => {
        // Events of the old stream after the feed's position may never arrive: trust nothing.
        this.counters.streamResets++;
        this.logger.warn(`cache flushed: stream re-created (the feed had processed ${reset.lastSeqBefore} events of the old one)`);
        this.entries.flush();
      }),
      bus.onStatus((status) => this.onStatus(status)),
    );
  }

  get cacheState(): CacheState {
    return this.bus.feed.running ? this.state : 'stopped';
  }

  /** Whether entries may be served now: only while the feed runs and has seen every event. */
  get servable(): boolean {
    return this.state === 'live' && this.bus.feed.running;
  }

  get stats(): ForgeCacheStats {
    return {
      ...this.entries.stats,
      ...this.counters,
      state: this.cacheState,
      lastAppliedSeq: this.lastAppliedSeq,
      newestAppliedEventAgeMs: this.newestOccurredAt === undefined ? null : Date.now() - this.newestOccurredAt,
    };
  }

  /**
   * The cached value of `key`, or `load()`'s result (stored under `tags` when that is safe).
   * Works with synchronous and asynchronous loaders alike.
   */
  getOrLoad<T>(key: string, tags: readonly string[], load: () => T): T {
    if (!this.enabled) {
      this.counters.bypassedReads++;
      return load();
    }
    if (!this.servable) {
      const stale = this.disconnectedReads === 'serve-stale' && this.bus.feed.running ? this.entries.get(key) : undefined;
      if (stale !== undefined) {
        this.counters.staleReads++;
        this.staleLog.line(`serving possibly stale cache entry ${key} (cache state: ${this.state})`);
        return unwrap(stale as CachedResult<T>);
      }
      this.counters.bypassedReads++;
      return load();
    }
    const cached = this.entries.get(key) as CachedResult<T> | undefined;
    if (cached !== undefined) return unwrap(cached);
    const ticket = this.entries.beginFill();
    const seq = this.lastAppliedSeq;
    const result = load();
    if (result instanceof Promise) {
      return result.then((value: unknown) => {
        this.store(key, { value, async: true }, tags, ticket, seq);
        return value;
      }) as T;
    }
    this.store(key, { value: result, async: false }, tags, ticket, seq);
    return result;
  }

  /** Applies the invalidation rules of an event this node produced, before it returns. */
  applyLocal(envelope: EventEnvelope): void {
    const tags = this.tagsOf(envelope, 'a local change');
    if (tags.length === 0) return;
    this.counters.localInvalidations++;
    this.entries.invalidate(tags);
  }

  /**
   * The tags an event invalidates. A rule that throws must not leave stale entries behind, nor
   * stop the feed or the caller: what the event made stale is unknown, so everything is flushed.
   */
  private tagsOf(envelope: EventEnvelope, what: string): string[] {
    try {
      return this.rules.tagsFor(envelope);
    } catch (err) {
      this.counters.ruleFailures++;
      this.ruleLog.line(`cache flushed: the invalidation rule for "${envelope.type}" threw on ${what}: ${(err as Error).message}`);
      this.entries.flush();
      return [];
    }
  }

  /** Drops every entry with one of `tags` (for changes that have no event). */
  invalidate(tags: readonly string[]): number {
    return this.entries.invalidate(tags);
  }

  close(): void {
    clearTimeout(this.catchUpRetry);
    clearInterval(this.catchUpPoll);
    for (const s of this.subscriptions.splice(0)) s.unsubscribe();
  }

  private store(key: string, result: CachedResult<unknown>, tags: readonly string[], ticket: number, seq: number): void {
    // A read that ended after the node lost its connection may have raced with a missed event.
    if (!this.servable) return;
    this.entries.set(key, result, tags, ticket, seq);
  }

  private applyEvent(event: DeliveredEvent): void {
    this.lastAppliedSeq = event.seq;
    this.counters.eventsApplied++;
    const occurredAt = Date.parse(event.envelope.occurredAt);
    if (this.newestOccurredAt === undefined || occurredAt > this.newestOccurredAt) this.newestOccurredAt = occurredAt;
    const tags = this.tagsOf(event.envelope, `event ${event.seq}`);
    if (tags.length > 0) this.entries.invalidate(tags);
    if (this.state === 'catching-up' && event.seq >= this.catchUpTarget) this.goLive();
  }

  private onStatus(status: Status): void {
    switch (status.type) {
      case 'disconnect':
      case 'reconnecting':
      case 'staleConnection':
        clearTimeout(this.catchUpRetry);
        clearInterval(this.catchUpPoll);
        this.state = 'disconnected';
        break;
      case 'reconnect':
        void this.startCatchUp();
        break;
    }
  }

  /** After a reconnect: serve again once the feed has applied everything up to the stream's end. */
  private async startCatchUp(): Promise<void> {
    this.state = 'catching-up';
    this.catchUpTarget = Number.POSITIVE_INFINITY; // until the stream says where its end is
    try {
      const stream = await this.streamState();
      if (this.state !== 'catching-up') return;
      this.catchUpTarget = stream.last_seq;
      if (this.bus.feed.stats.lastSeq >= this.catchUpTarget) return this.goLive();
      if (this.flushIfTailLost(stream)) return;
      // Events advance the state in applyEvent; this also covers a stream that ends with
      // messages the feed drops as malformed (they move the feed, not applyEvent).
      clearInterval(this.catchUpPoll);
      let ticks = 0;
      this.catchUpPoll = setInterval(() => {
        if (this.state !== 'catching-up') return;
        if (this.bus.feed.stats.lastSeq >= this.catchUpTarget) return this.goLive();
        // What the feed still had to read may have expired since the reconnect.
        if (++ticks % 20 === 0) {
          this.streamState().then(
            (s) => void (this.state === 'catching-up' && this.flushIfTailLost(s)),
            () => undefined,
          );
        }
      }, 50);
      this.catchUpPoll.unref();
    } catch (err) {
      if (this.state !== 'catching-up') return;
      this.logger.warn(`cache cannot read the stream position after a reconnect (${(err as Error).message}); retrying`);
      this.catchUpRetry = setTimeout(() => void this.startCatchUp(), 500);
      this.catchUpRetry.unref();
    }
  }

  private async streamState(): Promise<{ messages: number; last_seq: number }> {
    const jsm = await jetstreamManager(this.bus.nc);
    return (await jsm.streams.info(this.bus.streamName)).state;
  }

  /**
   * The stream is empty but its end is beyond what the feed has seen: every event the node
   * missed is gone (retention ran out during the outage). The feed would notice only at the next
   * event, which a quiet cluster may not send for a long time; flush now and serve again.
   */
  private flushIfTailLost(stream: { messages: number; last_seq: number }): boolean {
    const seen = this.bus.feed.stats.lastSeq;
    if (stream.messages > 0 || stream.last_seq <= seen) return false;
    this.counters.gapFlushes++;
    this.flushedThroughSeq = stream.last_seq;
    this.logger.warn(`cache flushed: the feed missed events ${seen + 1}..${stream.last_seq} (no longer in the stream)`);
    this.entries.flush();
    this.goLive();
    return true;
  }

  private goLive(): void {
    clearInterval(this.catchUpPoll);
    this.state = 'live';
    this.logger.log(`cache live again at sequence ${this.lastAppliedSeq}`);
  }
}

interface CachedResult<T> {
  value: T;
  async: boolean;
}

/** A cached async result is handed out as a promise again, so callers see one shape. */
const unwrap = <T>(cached: CachedResult<T>): T => (cached.async ? (Promise.resolve(cached.value) as T) : cached.value);
