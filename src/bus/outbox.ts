import type { EventEnvelope } from './envelope.js';
import type { EventFactory } from './event-factory.js';
import { consoleLogger, type BusLogger } from './logger.js';
import { checkOptions, fn, integer, logger, millis, type OptionRules } from './options.js';
import type { EventPublisher } from './publisher.js';

/** One event waiting in the outbox, in the order it was recorded. */
export interface OutboxRow {
  /** Monotonic position in the outbox (e.g. an autoincrement key). */
  position: number;
  envelope: EventEnvelope;
}

/**
 * Where a forge keeps events it committed together with its own data. `append` must run inside
 * the caller's database transaction: that is the whole point (the change and its event commit
 * or roll back together). The relay reads and removes rows outside of it.
 *
 * `Transaction` is what `append` needs to write in the caller's transaction: nothing for a store
 * bound to one connection (SQLite), the transaction's client for a pooled database
 * (`PostgresOutboxStore.append(envelope, client)`).
 */
export interface OutboxStore<Transaction = void> {
  append(envelope: EventEnvelope, transaction: Transaction): void | Promise<void>;
  /**
   * The oldest rows this node should relay: those it recorded itself, plus rows of any origin
   * older than `orphanBefore` (another node died before relaying them) — except rows of
   * `liveOrigins`, nodes that are alive and relay their own. A store that ignores `liveOrigins`
   * still works (the relay skips those rows), but can fill a batch with rows it will skip.
   */
  pending(origin: string, orphanBefore: Date, limit: number, liveOrigins?: readonly string[]): OutboxRow[] | Promise<OutboxRow[]>;
  remove(positions: number[]): void | Promise<void>;
}

export interface OutboxRelayOptions {
  /** Rows read per pass (default 500). */
  batchSize?: number;
  /** Poll interval when nobody calls notify() (default 1000 ms). */
  pollIntervalMs?: number;
  /** Age after which another node's rows are relayed by this node too (default 30 s). */
  orphanAfterMs?: number;
  /**
   * The other nodes known to be alive (cluster membership): their rows are theirs to relay, however
   * old, so one outage does not make every node re-publish every other node's backlog. Without it,
   * any row older than `orphanAfterMs` is relayed by whichever node sees it.
   */
  liveOrigins?: () => readonly string[];
  logger?: BusLogger;
}

export const OUTBOX_RELAY_OPTION_RULES: OptionRules<OutboxRelayOptions> = {
  batchSize: integer(1, 100_000),
  pollIntervalMs: millis(1),
  orphanAfterMs: millis(0),
  liveOrigins: fn,
  logger,
};

export interface OutboxRelayStats {
  relayed: number;
  failures: number;
  lastError?: string;
}

/**
 * Publishes outbox rows, in order, and removes them once JetStream acknowledged them. With NATS
 * down, rows simply wait; a re-publish after a crash is stored once because the event id is the
 * Nats-Msg-Id (within the stream's duplicate window).
 */
export class OutboxRelay {
  readonly stats: OutboxRelayStats = { relayed: 0, failures: 0 };
  private readonly batchSize: number;
  private readonly pollIntervalMs: number;
  private readonly orphanAfterMs: number;
  private readonly liveOrigins?: () => readonly string[];
  private readonly logger: BusLogger;
  private timer?: NodeJS.Timeout;
  private running?: Promise<void>;
  private again = false;
  private stopped = true;
  /** After a failure, publish one row at a time until one batch went through whole. */
  private cautious = false;

  constructor(
    // The relay only reads and removes, whatever a store's transactions are.
    private readonly store: OutboxStore<never>,
    private readonly publisher: EventPublisher,
    private readonly factory: EventFactory,
    options: OutboxRelayOptions = {},
  ) {
    checkOptions('OutboxRelay', options, OUTBOX_RELAY_OPTION_RULES);
    this.batchSize = options.batchSize ?? 500;
    this.pollIntervalMs = options.pollIntervalMs ?? 1_000;
    this.orphanAfterMs = options.orphanAfterMs ?? 30_000;
    this.liveOrigins = options.liveOrigins;
    this.logger = options.logger ?? consoleLogger;
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.schedule(0);
  }

  /** Relay now (call after committing a transaction that appended rows). */
  notify(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.schedule(0);
  }

  /** Relays until the outbox holds no row of this node, or throws the last publish error. */
  async flush(): Promise<void> {
    await this.running;
    while ((await this.pass()) > 0) {
      /* keep going */
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
  }

  private schedule(delayMs: number): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.running = this.loop().finally(() => {
        this.running = undefined;
      });
    }, delayMs);
    this.timer.unref();
  }

  private async loop(): Promise<void> {
    let delay = this.pollIntervalMs;
    try {
      do {
        this.again = false;
        while (!this.stopped && (await this.pass()) === this.batchSize) {
          /* a full batch: there may be more */
        }
      } while (this.again && !this.stopped);
    } catch (err) {
      this.stats.failures++;
      this.stats.lastError = (err as Error).message;
      this.logger.warn(`outbox relay will retry: ${(err as Error).message}`);
      delay = Math.min(this.pollIntervalMs, 500);
    }
    if (!this.stopped) this.schedule(delay);
  }

  /** One batch: publish pipelined, remove the acknowledged prefix. Returns rows handled. */
  private async pass(): Promise<number> {
    const orphanBefore = new Date(Date.now() - this.orphanAfterMs);
    const own = this.factory.origin;
    const live = (this.liveOrigins?.() ?? []).filter((o) => o !== own);
    const rows = (await this.store.pending(own, orphanBefore, this.batchSize, live)).filter(
      (row) => row.envelope.origin === own || !live.includes(row.envelope.origin),
    );
    if (rows.length === 0) return 0;
    const publishRow = (row: OutboxRow) => this.publisher.publish(this.factory.subjectOf(row.envelope), row.envelope);
    let results: PromiseSettledResult<unknown>[];
    if (this.cautious) {
      // Right after a failure the connection state is unclear: a pipelined batch could store a
      // later row before an earlier one whose first send was lost. One at a time keeps order.
      results = [];
      for (const row of rows) {
        const [result] = await Promise.allSettled([publishRow(row)]);
        results.push(result!);
        if (result!.status === 'rejected') break;
      }
    } else {
      results = await Promise.allSettled(rows.map(publishRow));
    }
    // Remove only the acknowledged prefix: a failed row is retried before anything after it,
    // so a node's events keep their order.
    const firstFailure = results.findIndex((r) => r.status === 'rejected');
    const done = firstFailure === -1 ? rows.length : firstFailure;
    if (done > 0) {
      await this.store.remove(rows.slice(0, done).map((r) => r.position));
      this.stats.relayed += done;
    }
    if (firstFailure !== -1) {
      this.cautious = true;
      throw (results[firstFailure] as PromiseRejectedResult).reason;
    }
    this.cautious = false;
    return done;
  }
}
