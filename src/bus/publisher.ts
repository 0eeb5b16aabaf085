import { headers, type Msg, type NatsConnection, type Status, type Subscription } from '@nats-io/transport-node';
import type { EventEnvelope } from './envelope.js';
import { ForgeBusError, PublishError, PublishTimeoutError } from './errors.js';
import { inboxFor } from './connection.js';
import { checkOptions, integer, millis, nonEmptyString, type OptionRules } from './options.js';
import { EVENTS_STREAM } from './streams.js';

export interface PublishAck {
  /** Stream sequence the event was stored at (the existing one for a duplicate). */
  seq: number;
  /**
   * True when the stream already held an event with this id, stored by an earlier send of this
   * publish (re-sent after a slow ack or a reconnect) or by another publish of the same id.
   * Either way the event is stored exactly once, at `seq`.
   */
  duplicate: boolean;
}

export interface PublisherOptions {
  /** Stream that must store the events (checked by the server via Nats-Expected-Stream). */
  stream?: string;
  /** Publishes awaiting their ack at once; further publishes wait for room (default 4096). */
  maxInFlight?: number;
  /**
   * Publishes that may wait for room while the window is full (default 65,536): beyond that,
   * publish fails at once with PUBLISH_QUEUE_FULL instead of growing with rate × outage.
   */
  maxWaiting?: number;
  /** How long to wait for one ack before re-sending (default 2000 ms). */
  ackTimeoutMs?: number;
  /** Sends per event before giving up with PublishTimeoutError (default 5). */
  maxAttempts?: number;
}

export const PUBLISHER_OPTION_RULES: OptionRules<PublisherOptions> = {
  stream: nonEmptyString,
  maxInFlight: integer(1, 1_000_000),
  maxWaiting: integer(0, 10_000_000),
  ackTimeoutMs: millis(1),
  maxAttempts: integer(1, 1_000),
};

interface Pending {
  /**
   * The reply token, the same for every attempt: an ack that arrives after its attempt's
   * deadline (a slow link) still settles the publish, instead of being ignored forever.
   */
  token?: string;
  subject: string;
  eventId: string;
  data: Uint8Array;
  attempts: number;
  deadline: number;
  /** Publish order, so that re-sends after a reconnect go out in the original order. */
  order: number;
  /** The event's type, when published as an envelope (for the acked listeners). */
  type?: string;
  /** performance.now() of the publish call. */
  startedAt: number;
  /**
   * Until when "no stream answered" is taken for a stream leader election in progress (re-sent)
   * rather than for a missing stream (failed): the publish's whole budget of attempts.
   */
  electionUntil?: number;
  resolve: (ack: PublishAck) => void;
  reject: (err: Error) => void;
}

const closedError = () => new ForgeBusError('PUBLISHER_CLOSED', 'the publisher is closed: the bus is shutting down');
const decoder = new TextDecoder();

/**
 * Acknowledged JetStream publishing, pipelined.
 *
 * `js.publish` of nats.js makes one request (and one reply subscription lookup, one timer) per
 * message and tops out far below what the server can store. This publisher sends plain core
 * publishes carrying a reply subject under one shared inbox subscription, keeps a bounded window
 * of acks outstanding, and matches acks by token. Every event still gets its own ack; an event
 * whose ack does not come in time is re-sent with the same `Nats-Msg-Id`, so the stream's
 * duplicate window stores it once.
 */
export interface PublisherStats {
  /** Events sent again (ack timeout or reconnect), with the same Nats-Msg-Id. */
  resends: number;
  /** Publishes refused because maxWaiting publishes already waited for room. */
  refusedFull: number;
  /**
   * Attempts answered "no stream answered" (no responders, or JetStream's 503) and sent again: a
   * replicated stream electing a new leader after a server loss answers nothing for seconds.
   */
  leaderWaits: number;
  /**
   * Events the stream stored after an event this publisher published later (an attempt lost in
   * a failover, then re-sent): each is logged. Consumers see them out of publish order.
   */
  reordered: number;
}

/** Delay before an unanswered attempt is sent again (the sweeper's tick rounds it up). */
const LEADER_RETRY_MS = 100;

/** An acknowledged publish, as told to `onAcked` listeners. */
export interface AckedPublish {
  /** The event type (undefined for publishRaw without one). */
  type?: string;
  /** From the publish call to the ack, re-sends included. */
  seconds: number;
  /** The stream had it already (a retry within the duplicate window). */
  duplicate: boolean;
}

export class EventPublisher {
  readonly stats: PublisherStats = { resends: 0, reordered: 0, refusedFull: 0, leaderWaits: 0 };
  /** Publish order and stream sequence of the latest-published event acknowledged so far. */
  private newestAck = { order: -1, seq: 0 };
  private readonly stream: string;
  private readonly maxInFlight: number;
  private readonly maxWaiting: number;
  private readonly ackTimeoutMs: number;
  private readonly maxAttempts: number;
  private readonly inbox: string;
  private subscription?: Subscription;
  private readonly pending = new Map<string, Pending>();
  private readonly waitingForRoom: (() => void)[] = [];
  private readonly ackedListeners = new Set<(ack: AckedPublish) => void>();
  private sweeper?: NodeJS.Timeout;
  private statusWatch?: AsyncIterable<Status>;
  private nextToken = 0;
  private nextOrder = 0;
  private closed = false;

  constructor(
    private readonly nc: NatsConnection,
    options: PublisherOptions = {},
    /** Told (once per event) when an event was stored out of publish order. */
    private readonly onReorder?: (message: string) => void,
  ) {
    checkOptions('EventPublisher', options, PUBLISHER_OPTION_RULES);
    this.stream = options.stream ?? EVENTS_STREAM;
    this.maxInFlight = options.maxInFlight ?? 4096;
    this.maxWaiting = options.maxWaiting ?? 65_536;
    this.ackTimeoutMs = options.ackTimeoutMs ?? 2_000;
    this.maxAttempts = options.maxAttempts ?? 5;
    this.inbox = inboxFor(nc);
  }

  /** Number of publishes sent and not yet acknowledged. */
  get inFlight(): number {
    return this.pending.size;
  }

  /** Publishes one envelope on `subject`; resolves once JetStream stored it. */
  publish(subject: string, envelope: EventEnvelope): Promise<PublishAck> {
    // Buffer.from is several times faster than TextEncoder.encode for short strings on Node 20.
    return this.publishRaw(subject, envelope.id, Buffer.from(JSON.stringify(envelope)), envelope.type);
  }

  /**
   * Adds a listener told of every acknowledged publish: its event type (when known), the time
   * from the publish call to the ack, and whether the stream had it already. For metrics; a
   * listener that throws is ignored.
   */
  onAcked(listener: (ack: AckedPublish) => void): () => void {
    this.ackedListeners.add(listener);
    return () => this.ackedListeners.delete(listener);
  }

  /** Publishes pre-encoded envelope bytes (the outbox stores them encoded). */
  publishRaw(subject: string, eventId: string, data: Uint8Array, type?: string): Promise<PublishAck> {
    // Not async: this is the hot path, and the common case (room in the window) needs no await.
    if (this.closed) return Promise.reject(closedError());
    this.ensureSubscribed();
    if (this.pending.size >= this.maxInFlight) {
      if (this.waitingForRoom.length >= this.maxWaiting) {
        this.stats.refusedFull++;
        return Promise.reject(
          new PublishError(
            subject,
            `${this.maxInFlight} events await their ack and ${this.maxWaiting} more wait for room: JetStream is slow or unreachable. ` +
              'Retry later (or raise publisher.maxWaiting)',
            undefined,
            'PUBLISH_QUEUE_FULL',
          ),
        );
      }
      return this.publishWhenRoom(subject, eventId, data, type);
    }
    return new Promise<PublishAck>((resolve, reject) => {
      this.send({ subject, eventId, data, attempts: 0, deadline: 0, order: this.nextOrder++, type, startedAt: performance.now(), resolve, reject });
    });
  }

  private async publishWhenRoom(subject: string, eventId: string, data: Uint8Array, type?: string): Promise<PublishAck> {
    while (this.pending.size >= this.maxInFlight) {
      await new Promise<void>((resolve) => this.waitingForRoom.push(resolve));
      if (this.closed) throw closedError();
    }
    return this.publishRaw(subject, eventId, data, type);
  }

  /** Stops accepting publishes and fails those still waiting for an ack. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.sweeper);
    (this.statusWatch as { stop?: () => void } | undefined)?.stop?.();
    this.subscription?.unsubscribe();
    const err = new ForgeBusError('PUBLISHER_CLOSED', 'the publisher closed before the ack arrived; the event may or may not be stored');
    for (const entry of this.pending.values()) entry.reject(err);
    this.pending.clear();
    for (const wake of this.waitingForRoom.splice(0)) wake();
  }

  private ensureSubscribed(): void {
    if (this.subscription) return;
    this.subscription = this.nc.subscribe(`${this.inbox}.*`, {
      callback: (err, msg) => {
        if (!err) this.onAck(msg);
      },
    });
    this.sweeper = setInterval(() => this.sweep(), Math.max(50, Math.floor(this.ackTimeoutMs / 4)));
    this.sweeper.unref();
    // nats.js discards whatever was written while disconnected when it reconnects: re-send every
    // unacknowledged event right away instead of waiting for its ack timeout.
    const statusWatch = (this.statusWatch = this.nc.status());
    void (async () => {
      for await (const status of statusWatch) {
        if (this.closed) break;
        if (status.type === 'reconnect') this.resendAll();
      }
    })().catch(() => undefined);
  }

  /**
   * Re-sends every pending event (same Nats-Msg-Id) in publish order. Not counted as an attempt
   * and the deadline stays, so a flapping connection cannot keep a publish waiting forever.
   */
  private resendAll(): void {
    const entries = [...this.pending.values()].sort((a, b) => a.order - b.order);
    this.pending.clear();
    for (const entry of entries) {
      const deadline = entry.deadline;
      entry.attempts--;
      this.send(entry);
      entry.deadline = deadline;
    }
  }

  private send(entry: Pending): void {
    const token = (entry.token ??= (this.nextToken++).toString(36));
    if (entry.attempts > 0) this.stats.resends++;
    entry.attempts++;
    entry.deadline = Date.now() + this.ackTimeoutMs;
    this.pending.set(token, entry);
    const h = headers();
    h.set('Nats-Msg-Id', entry.eventId);
    h.set('Nats-Expected-Stream', this.stream);
    try {
      this.nc.publish(entry.subject, entry.data, { reply: `${this.inbox}.${token}`, headers: h });
    } catch (err) {
      this.settle(token);
      entry.reject(new PublishError(entry.subject, `cannot publish to ${entry.subject}: ${(err as Error).message}`, { cause: err }));
    }
  }

  private settle(token: string): Pending | undefined {
    const entry = this.pending.get(token);
    if (!entry) return undefined;
    this.pending.delete(token);
    this.waitingForRoom.shift()?.();
    return entry;
  }

  private onAck(msg: Msg): void {
    const token = msg.subject.slice(this.inbox.length + 1);
    const entry = this.settle(token);
    if (!entry) return; // a late ack of an attempt we already re-sent
    if (msg.headers?.code === 503) {
      if (this.waitForLeader(token, entry)) return;
      entry.reject(
        new PublishError(
          entry.subject,
          `no JetStream stream captures ${entry.subject} (nothing answered for ${this.maxAttempts * this.ackTimeoutMs} ms): provision the ${this.stream} stream ` +
            '(ForgeBus.connect does it at start), or, in a NATS cluster, check that most servers of the stream are up (/jsz?streams=true)',
        ),
      );
      return;
    }
    let ack: { seq?: number; duplicate?: boolean; error?: { code?: number; err_code?: number; description?: string } };
    try {
      ack = JSON.parse(decoder.decode(msg.data));
    } catch {
      entry.reject(new PublishError(entry.subject, `unreadable JetStream ack for ${entry.subject}`));
      return;
    }
    if (ack.error?.code === 503 && this.waitForLeader(token, entry)) return;
    if (ack.error || typeof ack.seq !== 'number') {
      const description = ack.error?.description ?? 'no sequence in ack';
      entry.reject(new PublishError(entry.subject, `JetStream refused the event on ${entry.subject}: ${description} (err_code ${ack.error?.err_code ?? '?'})`));
      return;
    }
    this.checkOrder(entry, ack.seq, ack.duplicate === true);
    if (this.ackedListeners.size > 0) {
      const acked: AckedPublish = { type: entry.type, seconds: (performance.now() - entry.startedAt) / 1000, duplicate: ack.duplicate === true };
      for (const listener of this.ackedListeners) {
        try {
          listener(acked);
        } catch {
          // a metrics listener must not fail a publish
        }
      }
    }
    entry.resolve({ seq: ack.seq, duplicate: ack.duplicate === true });
  }

  /**
   * Sends again a little later an attempt nobody answered, within the publish's budget: while a
   * stream elects a leader (its last one's server died) no server answers for a few seconds, and
   * that must not fail the publish. Not counted as an attempt; false once the budget is spent.
   */
  private waitForLeader(token: string, entry: Pending): boolean {
    const now = Date.now();
    entry.electionUntil ??= now + this.maxAttempts * this.ackTimeoutMs;
    if (now >= entry.electionUntil || this.closed) return false;
    this.stats.leaderWaits++;
    entry.attempts--;
    entry.deadline = now + LEADER_RETRY_MS;
    this.pending.set(token, entry);
    return true;
  }

  /** Says so when an event was stored after one this publisher published later. */
  private checkOrder(entry: Pending, seq: number, duplicate: boolean): void {
    if (entry.order > this.newestAck.order) {
      this.newestAck = { order: entry.order, seq };
    } else if (!duplicate && seq > this.newestAck.seq) {
      this.stats.reordered++;
      this.onReorder?.(`event ${entry.eventId} on ${entry.subject} was stored at ${seq}, after an event published later (at ${this.newestAck.seq}): an earlier attempt was lost`);
    }
  }

  private sweep(): void {
    const now = Date.now();
    for (const [token, entry] of this.pending) {
      if (entry.deadline > now) continue;
      this.pending.delete(token);
      if (entry.attempts >= this.maxAttempts) {
        this.waitingForRoom.shift()?.();
        entry.reject(new PublishTimeoutError(entry.subject, entry.eventId, entry.attempts, this.ackTimeoutMs));
      } else {
        // Same Nats-Msg-Id: if the first attempt was stored, the server answers "duplicate".
        this.send(entry);
      }
    }
  }
}
