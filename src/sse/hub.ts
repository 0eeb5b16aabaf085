import pLimit, { type LimitFunction } from 'p-limit';
import {
  checkOptions,
  consoleLogger,
  decodeDeliveredEvent,
  integer,
  logger,
  millis,
  RateLimitedLog,
  type OptionRules,
  type BusLogger,
  type DeliveredEvent,
  type FeedGap,
  type FeedReset,
  type FeedSubscription,
  type ForgeBus,
  type RepoRef,
} from '../bus/index.js';
import type { AccessChange, SseAccessPolicy } from './access.js';
import { SseClient, type SseResponse } from './client.js';
import type { LastEventId } from './errors.js';
import { controlFrame, eventFrame, eventId, HEARTBEAT_FRAME, preambleFrame, SHUTDOWN_RETRY_MS, turnAwayFrame, type WireFrame } from './frames.js';
import { StreamRangeReader } from './replay.js';
import { repoTopic, SITE_TOPIC, topicOf, topicOfSubject, TopicIndex, userTopic, type TopicKey } from './topics.js';

const STREAM_HEADERS = {
  'Content-Type': 'text/event-stream; charset=utf-8',
  'Cache-Control': 'no-cache, no-transform',
  Connection: 'keep-alive',
  'X-Accel-Buffering': 'no',
};

/**
 * Clients written to in one go before the hub yields to the event loop: a fan-out to 10,000
 * streams (or a heartbeat to all of them) must not hold everything else for a quarter second.
 */
const SLICE = 500;
const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

const closedClient = (user: string, res: SseResponse): SseClient => {
  const client = new SseClient(user, res, undefined, 0);
  client.closed = true;
  return client;
};

export interface SseHubOptions {
  /** Comment line sent to every stream this often (default 15 s). */
  heartbeatMs?: number;
  /** `retry:` hint: how long a browser waits before reconnecting (default 2 s). */
  retryMs?: number;
  /** Bytes a client may have unsent before it is disconnected as too slow (default 256 KiB). */
  maxBufferedBytes?: number;
  /** Live events a resuming client may have waiting behind its replay (default 10,000). */
  maxHeldEvents?: number;
  /** Replays reading the stream at once; the others wait their turn (default 16). */
  maxConcurrentReplays?: number;
  /** Streams this process serves; the next one gets a 503 (default 50,000). */
  maxClients?: number;
  /** How long a replay waits for a client to read before giving up on it (default 30 s). */
  replayStallMs?: number;
  logger?: BusLogger;
}

/** What the application decided about a new stream (after authenticating and authorizing it). */
export interface SseStreamRequest {
  user: string;
  /**
   * Repositories to watch, each already checked readable. With `defaultRepos` set these are the
   * user's default set, which then follows grants and removals.
   */
  repos: RepoRef[];
  defaultRepos: boolean;
  /**
   * Last-Event-ID: resume after this position (parseLastEventId). A number is a sequence of the
   * stream the cluster first saw (what ids were before streams carried epochs).
   */
  lastEventId?: LastEventId | number;
}

export interface SseHubStats {
  clients: number;
  /** Resuming clients whose replay runs or waits for a turn. */
  replaying: number;
  opened: number;
  closed: number;
  /** Event frames written, replays included. */
  deliveries: number;
  replays: number;
  replayedEvents: number;
  replayFailures: number;
  /** `reset` events sent (Last-Event-ID too old, or events lost by the feed). */
  resets: number;
  /** Clients disconnected because they fell behind (buffer, held events, or a stalled replay). */
  slowDisconnects: number;
  accessGranted: number;
  accessRevoked: number;
  /** Streams turned away because the process was full, shutting down, or not started. */
  rejected: number;
  /** Stream messages a replay dropped as malformed. */
  malformed: number;
}

/**
 * The SSE fan-out of one process. The process's single event feed drives an index from topic
 * (repository, user, site) to clients; each event is formatted once and written to every
 * client of its topic. Event ids are stream sequences, so a client can resume on any node:
 * it gets the events after its Last-Event-ID from the stream, then the live ones, with live
 * events held back during the replay and anything at or below the last id sent skipped.
 */
export const SSE_HUB_OPTION_RULES: OptionRules<SseHubOptions> = {
  heartbeatMs: millis(10),
  retryMs: millis(0),
  maxBufferedBytes: integer(1_024),
  maxHeldEvents: integer(1),
  maxConcurrentReplays: integer(1, 10_000),
  maxClients: integer(1),
  replayStallMs: millis(1),
  logger,
};

export class SseHub {
  readonly stats: SseHubStats = {
    clients: 0, replaying: 0, opened: 0, closed: 0, deliveries: 0, replays: 0, replayedEvents: 0, replayFailures: 0,
    resets: 0, slowDisconnects: 0, accessGranted: 0, accessRevoked: 0, rejected: 0, malformed: 0,
  };
  private readonly clients = new Set<SseClient>();
  private readonly replayingClients = new Set<SseClient>();
  private readonly index = new TopicIndex<SseClient>();
  private readonly reader: StreamRangeReader;
  private readonly replayLimit: LimitFunction;
  private readonly logger: BusLogger;
  private readonly errorLog: RateLimitedLog;
  private readonly options: Required<Omit<SseHubOptions, 'logger'>>;
  private readonly corked: SseClient[] = [];
  private subscriptions: FeedSubscription[] = [];
  private heartbeat?: NodeJS.Timeout;
  /** Sequence whose dispatch is waiting on the access policy: not yet "live" for new clients. */
  private dispatching?: number;
  private closing = false;

  constructor(
    private readonly bus: ForgeBus,
    private readonly policy: SseAccessPolicy,
    options: SseHubOptions = {},
  ) {
    checkOptions('SseHub', options, SSE_HUB_OPTION_RULES);
    this.options = {
      heartbeatMs: options.heartbeatMs ?? 15_000,
      retryMs: options.retryMs ?? 2_000,
      maxBufferedBytes: options.maxBufferedBytes ?? 256 * 1024,
      maxHeldEvents: options.maxHeldEvents ?? 10_000,
      maxConcurrentReplays: options.maxConcurrentReplays ?? 16,
      maxClients: options.maxClients ?? 50_000,
      replayStallMs: options.replayStallMs ?? 30_000,
    };
    this.logger = options.logger ?? consoleLogger;
    this.errorLog = new RateLimitedLog((m) => this.logger.warn(m));
    this.reader = new StreamRangeReader(bus.nc, bus.streamName, 512, `forge_replay_${bus.nodeId}`);
    this.replayLimit = pLimit(this.options.maxConcurrentReplays);
  }

  /** Subscribes to the process's event feed (which the application starts) and starts heartbeats. */
  start(): void {
    if (this.subscriptions.length > 0) return;
    this.subscriptions = [
      this.bus.feed.subscribe('*', (event) => this.dispatch(event)),
      this.bus.feed.onGap((gap) => this.onGap(gap)),
      this.bus.feed.onReset((reset) => this.onStreamReset(reset)),
    ];
    this.heartbeat = setInterval(() => this.beat(), this.options.heartbeatMs);
    this.heartbeat.unref();
  }

  /** The SSE id of a stream position, in the current incarnation of the stream. */
  private idOf(seq: number): string {
    return eventId(seq, this.bus.feed.epoch);
  }

  /** The last sequence every live client has been given (or would have, had it matched). */
  get position(): number {
    return this.dispatching !== undefined ? this.dispatching - 1 : this.bus.feed.stats.lastSeq;
  }

  /**
   * Starts a stream on `res` (headers, preamble) and registers the client. A process that is
   * shutting down, full, or not started turns the client away instead (see turnAwayFrame): the
   * returned client is then already closed.
   */
  open(res: SseResponse, request: SseStreamRequest): SseClient {
    const refusal = this.closing
      ? { reason: 'this node is shutting down: reconnect to another node', retryMs: SHUTDOWN_RETRY_MS }
      : !this.bus.feed.running
        ? { reason: 'this node has not started its event feed yet: retry shortly', retryMs: 1_000 }
        : this.clients.size >= this.options.maxClients
          ? { reason: `this node serves its maximum of ${this.options.maxClients} event streams: reconnect to another node`, retryMs: 5_000 }
          : undefined;
    if (refusal) {
      this.stats.rejected++;
      if (!res.destroyed) {
        res.writeHead(200, { ...STREAM_HEADERS, 'Retry-After': String(Math.ceil(refusal.retryMs / 1000)) });
        res.write(turnAwayFrame(refusal.retryMs, refusal.reason));
        res.end();
      }
      return closedClient(request.user, res);
    }
    // The browser left while the application was authorizing it: 'close' has fired already.
    if (res.destroyed) return closedClient(request.user, res);
    res.writeHead(200, STREAM_HEADERS);
    // Headers go out now; from here on the hub writes frames to the socket itself.
    res.flushHeaders();
    const position = this.position;
    const resumeFrom = typeof request.lastEventId === 'number' ? { seq: request.lastEventId, epoch: '' } : request.lastEventId;
    // An id of another incarnation of the stream (deleted and re-created since): its number means
    // nothing here, so the client is reset to the present instead of replayed from it.
    const foreign = resumeFrom !== undefined && resumeFrom.epoch !== this.bus.feed.epoch;
    const last = foreign ? undefined : resumeFrom?.seq;
    const requested = request.defaultRepos ? undefined : new Set(request.repos.map(repoTopic));
    const client = new SseClient(request.user, res, requested, last ?? position);
    client.chunked = res.chunkedEncoding;
    this.subscribe(client, SITE_TOPIC);
    this.subscribe(client, userTopic(request.user));
    for (const repo of request.repos) this.subscribe(client, repoTopic(repo));
    this.clients.add(client);
    this.stats.clients = this.clients.size;
    this.stats.opened++;
    res.once('close', () => this.remove(client));
    if (foreign) {
      this.write(client, preambleFrame(this.options.retryMs));
      this.stats.resets++;
      this.write(client, controlFrame('reset', { reason: 'stream-recreated', position }, this.idOf(position)));
    } else if (last === undefined || last === position) {
      this.write(client, preambleFrame(this.options.retryMs, last === undefined ? { seq: position, id: this.idOf(position) } : undefined));
    } else {
      this.write(client, preambleFrame(this.options.retryMs));
      client.held = [];
      this.markReplaying(client, true);
      void this.replayLimit(() => this.resume(client, last, position)).finally(() => this.markReplaying(client, false));
    }
    return client;
  }

  /** Ends every stream (clients reconnect to another node at once) and stops listening. */
  async close(): Promise<void> {
    this.closing = true;
    for (const s of this.subscriptions) s.unsubscribe();
    this.subscriptions = [];
    clearInterval(this.heartbeat);
    this.replayLimit.clearQueue();
    const goodbye = preambleFrame(SHUTDOWN_RETRY_MS);
    for (const client of [...this.clients]) {
      this.write(client, goodbye);
      this.end(client);
    }
  }

  // ---- live fan-out -------------------------------------------------------------------------

  private dispatch(event: DeliveredEvent): Promise<void> | void {
    const change = this.policy.accessChange(event);
    if (change) return this.dispatchAccessChange(event, change);
    return this.deliver(event);
  }

  /** Synchronous for the usual handful of watchers; in slices (and awaited by the feed) for many. */
  private deliver(event: DeliveredEvent): Promise<void> | void {
    const topic = topicOf(event.envelope);
    const members = this.membersOf(topic);
    if (!members || members.size === 0) return;
    const frame = eventFrame(this.idOf(event.seq), event.envelope.type, JSON.stringify(event.envelope));
    if (members.size <= SLICE) {
      for (const client of members) this.send(client, event.seq, frame);
      return;
    }
    return this.deliverInSlices(topic, members, event.seq, frame);
  }

  private async deliverInSlices(topic: TopicKey, members: ReadonlySet<SseClient>, seq: number, frame: WireFrame): Promise<void> {
    // A client that connects between slices starts before this event: the loop below, which
    // walks the live set (new members come last), gives it the event too.
    const outer = this.dispatching;
    this.dispatching = seq;
    try {
      let n = 0;
      for (const client of members) {
        this.send(client, seq, frame);
        if (++n % SLICE === 0) await nextTurn();
      }
      // Had the topic emptied meanwhile, new watchers are in a new set: they need the event too
      // (send skips whoever has it already).
      const current = this.membersOf(topic);
      if (current && current !== members) for (const client of current) this.send(client, seq, frame);
    } finally {
      this.dispatching = outer;
    }
  }

  /** Every client receives site events; the index holds the others. */
  private membersOf(topic: TopicKey): ReadonlySet<SseClient> | undefined {
    return topic === SITE_TOPIC ? this.clients : this.index.get(topic);
  }

  /** Writes (or holds, during a replay) one frame; never a sequence the client already has. */
  private send(client: SseClient, seq: number, frame: WireFrame): void {
    if (seq <= client.lastSentSeq || client.closed) return;
    if (client.held) {
      if (client.held.length >= this.options.maxHeldEvents) return this.dropSlow(client, 'too many live events waiting behind its replay');
      client.held.push({ seq, frame });
      return;
    }
    client.lastSentSeq = seq;
    this.stats.deliveries++;
    this.write(client, frame);
  }

  /** A frame without an id (access-revoked): in order behind a replay, like the events. */
  private sendControl(client: SseClient, frame: WireFrame): void {
    if (client.closed) return;
    if (client.held) {
      if (client.held.length >= this.options.maxHeldEvents) return this.dropSlow(client, 'too many live events waiting behind its replay');
      client.held.push({ seq: undefined, frame });
    } else this.write(client, frame);
  }

  /**
   * Writes are corked until the end of the tick, so a burst of events leaves in one syscall per
   * client; the slow-client check runs after the flush, on what the socket could not take.
   */
  private write(client: SseClient, frame: WireFrame): boolean {
    const socket = client.res.socket;
    if (client.closed || !socket) return true;
    if (!client.corked) {
      socket.cork();
      client.corked = true;
      if (this.corked.push(client) === 1) process.nextTick(() => this.uncorkAll());
    }
    client.wrote = true;
    const bytes = client.chunked ? frame.chunked() : frame.body;
    client.tickBytes += bytes.length;
    return socket.write(bytes);
  }

  private uncorkAll(): void {
    const clients = this.corked.splice(0);
    for (const client of clients) {
      const socket = client.res.socket;
      if (!client.corked || !socket) continue;
      client.corked = false;
      socket.uncork();
      // Slow = more unsent than the limit AND than this tick's own writes: an event larger than
      // the limit, still on its way to a client that reads, is not a reason to drop it.
      const unsent = socket.writableLength;
      if (!client.closed && client.held === undefined && unsent > this.options.maxBufferedBytes && unsent > client.tickBytes) {
        this.dropSlow(client, `${unsent} bytes unsent`);
      }
      client.tickBytes = 0;
    }
  }

  /** Only streams that were silent since the last beat need one; in slices, not all at once. */
  private beat(): void {
    const silent: SseClient[] = [];
    for (const client of this.clients) {
      if (!client.wrote) silent.push(client);
      client.wrote = false;
    }
    void (async () => {
      for (let i = 0; i < silent.length; i += SLICE) {
        if (i > 0) await nextTurn();
        for (const client of silent.slice(i, i + SLICE)) this.write(client, HEARTBEAT_FRAME);
      }
    })();
  }

  private onGap(gap: FeedGap): void {
    // The stream no longer holds what the feed missed: nobody here can replay it.
    const frame = controlFrame('reset', { reason: 'events-lost', from: gap.from, to: gap.to }, this.idOf(gap.to));
    for (const client of this.clients) {
      if (gap.to > client.lastSentSeq) this.stats.resets++;
      this.send(client, gap.to, frame);
    }
  }

  /**
   * The stream was re-created and numbers its events from 1 again. A live client gets a `reset`
   * whose id is the new position, so its Last-Event-ID moves into the new numbering and it goes on
   * receiving. A client in the middle of a replay (of the old stream) is closed and resumes.
   */
  private onStreamReset(reset: FeedReset): void {
    const frame = controlFrame('reset', { reason: 'stream-recreated', position: reset.position }, this.idOf(reset.position));
    for (const client of [...this.clients]) {
      this.stats.resets++;
      if (client.held) {
        this.end(client);
        continue;
      }
      client.lastSentSeq = reset.position;
      this.write(client, frame);
    }
  }

  // ---- access changes -----------------------------------------------------------------------

  /**
   * Grants before the event and revocations after it, so everyone concerned sees the event that
   * changed their access (an added collaborator sees "added", a removed one sees "removed").
   * The feed waits for this: later events go out under the new permissions.
   */
  private async dispatchAccessChange(event: DeliveredEvent, change: AccessChange): Promise<void> {
    this.dispatching = event.seq;
    try {
      const topic = repoTopic(change.repo);
      const decisions = await this.review(change, topic);
      for (const [client, allowed] of decisions) {
        if (allowed && !client.closed && !client.topics.has(topic)) {
          this.subscribe(client, topic);
          this.stats.accessGranted++;
        }
      }
      await this.deliver(event);
      const revoked = controlFrame('access-revoked', { repo: change.repo });
      for (const [client, allowed] of decisions) {
        if (!allowed && !client.closed && client.topics.has(topic)) {
          this.unsubscribe(client, topic);
          this.stats.accessRevoked++;
          this.sendControl(client, revoked);
        }
      }
    } finally {
      this.dispatching = undefined;
    }
  }

  private async review(change: AccessChange, topic: TopicKey): Promise<Map<SseClient, boolean>> {
    const candidates = new Set<SseClient>(this.index.get(topic));
    for (const user of change.users ?? []) for (const client of this.index.get(userTopic(user)) ?? []) candidates.add(client);
    const defaults = new Map<string, Promise<boolean>>();
    const reads = new Map<string, Promise<boolean>>();
    const ask = (cache: Map<string, Promise<boolean>>, user: string, question: () => Promise<boolean>) => {
      let answer = cache.get(user);
      if (!answer) {
        // Fail closed: when the policy cannot answer, the client loses the repository.
        answer = question().catch((err: unknown) => {
          this.errorLog.line(`SSE access check for ${user} on ${change.repo.owner}/${change.repo.name} failed: ${(err as Error).message}`);
          return false;
        });
        cache.set(user, answer);
      }
      return answer;
    };
    const decisions = new Map<SseClient, boolean>();
    for (const client of candidates) {
      const user = client.user;
      const allowed = client.requested
        ? client.requested.has(topic) && (await ask(reads, user, () => this.policy.canRead(user, change.repo)))
        : await ask(defaults, user, async () => (await this.policy.defaultRepos(user)).some((r) => repoTopic(r) === topic));
      decisions.set(client, allowed);
    }
    return decisions;
  }

  // ---- resume -------------------------------------------------------------------------------

  /** Replays (last, position] from the stream, or sends `reset` when that is gone; then goes live. */
  private async resume(client: SseClient, last: number, position: number): Promise<void> {
    if (client.closed) return;
    try {
      const { firstSeq, lastSeq } = await this.reader.window();
      if (last > lastSeq || last + 1 < firstSeq) {
        const reason = last > lastSeq ? 'unknown-id' : 'too-old';
        // Live from where this node is; the id moves the client past the id it can no longer use.
        client.lastSentSeq = position;
        this.stats.resets++;
        this.write(client, controlFrame('reset', { reason, lastEventId: last, firstAvailable: firstSeq }, this.idOf(position)));
      } else if (last < position) {
        this.stats.replays++;
        await this.replay(client, last + 1, position);
      }
    } catch (err) {
      if (client.closed) return;
      this.stats.replayFailures++;
      this.errorLog.line(`SSE replay for ${client.user} after ${last} failed: ${(err as Error).message}; closing the stream so it resumes`);
      this.end(client);
      return;
    }
    this.goLive(client);
  }

  private async replay(client: SseClient, from: number, until: number): Promise<void> {
    for await (const msg of this.reader.read(from, until)) {
      if (client.closed) return;
      let event: DeliveredEvent;
      try {
        // The subject names the topic: most of a busy stream is skipped without being decoded.
        const topic = topicOfSubject(msg.subject);
        if (topic !== SITE_TOPIC && !client.topics.has(topic)) continue;
        // decode also checks that the envelope belongs on this subject (so on this topic).
        event = decodeDeliveredEvent(msg, this.bus.catalog, this.bus.events);
      } catch {
        this.stats.malformed++;
        continue;
      }
      client.lastSentSeq = event.seq;
      this.stats.deliveries++;
      this.stats.replayedEvents++;
      if (!this.write(client, eventFrame(this.idOf(event.seq), event.envelope.type, JSON.stringify(event.envelope)))) {
        if (client.res.socket!.writableLength > this.options.maxBufferedBytes && !(await this.drained(client))) {
          return this.dropSlow(client, 'it did not read its replay');
        }
      }
    }
    // Whatever the replay skipped (other topics) is behind the client too.
    client.lastSentSeq = Math.max(client.lastSentSeq, until);
  }

  private goLive(client: SseClient): void {
    const held = client.held ?? [];
    client.held = undefined;
    for (const { seq, frame } of held) {
      if (seq === undefined) this.write(client, frame);
      else this.send(client, seq, frame);
    }
  }

  /** Resolves true when the client has read its buffer, false when it closed or stalled. */
  private drained(client: SseClient): Promise<boolean> {
    const socket = client.res.socket;
    if (!socket) return Promise.resolve(false);
    return new Promise((resolve) => {
      const done = (ok: boolean) => {
        clearTimeout(timer);
        socket.removeListener('drain', onDrain);
        client.res.removeListener('close', onClose);
        resolve(ok);
      };
      const onDrain = () => done(true);
      const onClose = () => done(false);
      const timer = setTimeout(() => done(false), this.options.replayStallMs);
      socket.once('drain', onDrain);
      client.res.once('close', onClose);
    });
  }

  // ---- bookkeeping --------------------------------------------------------------------------

  private subscribe(client: SseClient, topic: TopicKey): void {
    client.topics.add(topic);
    if (topic !== SITE_TOPIC) this.index.add(topic, client);
  }

  private unsubscribe(client: SseClient, topic: TopicKey): void {
    client.topics.delete(topic);
    this.index.remove(topic, client);
  }

  private dropSlow(client: SseClient, why: string): void {
    if (client.closed) return;
    this.stats.slowDisconnects++;
    this.errorLog.line(`SSE client of ${client.user} disconnected as too slow (${why}); it can resume with Last-Event-ID`);
    client.res.destroy();
    this.remove(client);
  }

  private end(client: SseClient): void {
    // After our own socket writes: end() adds the last chunk; corked data goes out first.
    if (client.corked) {
      client.corked = false;
      client.res.socket?.uncork();
    }
    client.res.end();
    this.remove(client);
  }

  private remove(client: SseClient): void {
    if (client.closed) return;
    client.closed = true;
    client.held = undefined;
    for (const topic of client.topics) this.index.remove(topic, client);
    this.clients.delete(client);
    this.stats.clients = this.clients.size;
    this.stats.closed++;
    this.markReplaying(client, false);
  }

  /**
   * `stats.replaying` counts clients, not promises: a replay queued behind the limit when the hub
   * closes never settles (its queue is cleared), and must not stay counted.
   */
  private markReplaying(client: SseClient, replaying: boolean): void {
    if (replaying) this.replayingClients.add(client);
    else this.replayingClients.delete(client);
    this.stats.replaying = this.replayingClients.size;
  }
}
