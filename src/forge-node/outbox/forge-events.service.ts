import { Inject, Injectable, Logger, Optional, type BeforeApplicationShutdown, type OnApplicationBootstrap } from '@nestjs/common';
import { ForgeBus, OutboxRelay, type EventEnvelope, type EventInput, type ForgeEventPayloads, type KnownEventInput } from '../../index.js';
import { ForgeCache } from '../../cache/index.js';
import { Membership } from '../../cluster/index.js';
import { DATABASE, type ForgeDatabase, type SqlRunner } from '../db/database.js';

/** Records an event in the transaction in progress; it goes out only if the transaction commits. */
export type RecordEvent = <K extends keyof ForgeEventPayloads>(input: KnownEventInput<K> | EventInput) => void;

/**
 * Records events in the outbox as part of a database transaction, and relays them to the bus
 * after the commit. Mutations therefore succeed (and their events go out later, in order)
 * even while NATS is down.
 */
@Injectable()
export class ForgeEventsService implements OnApplicationBootstrap, BeforeApplicationShutdown {
  readonly relay: OutboxRelay;

  constructor(
    @Inject(DATABASE) private readonly db: ForgeDatabase,
    private readonly bus: ForgeBus,
    // A worker-only process has no cache.
    @Optional() private readonly cache?: ForgeCache,
    @Optional() membership?: Membership,
  ) {
    this.relay = new OutboxRelay(db.outbox, bus.publisher, bus.events, {
      logger: new Logger('Outbox'),
      // Old rows of a live node are that node's to relay: no stampede after an outage.
      liveOrigins: membership ? () => membership.members().map((m) => m.id) : undefined,
    });
  }

  /**
   * Runs `work` in one database transaction; the events it records are appended to the outbox in
   * that transaction, in the order recorded. After the commit the relay is woken up.
   */
  async transaction<T>(work: (record: RecordEvent, tx: SqlRunner) => Promise<T> | T): Promise<T> {
    let recorded: EventEnvelope[] = [];
    const result = await this.db.transaction(async (tx) => {
      recorded = []; // a transaction run again (PostgreSQL deadlock) records afresh
      const record = (input: EventInput) => {
        recorded.push(this.bus.events.create(input));
      };
      const value = await work(record, tx);
      for (const envelope of recorded) await this.db.outbox.append(envelope, tx);
      return value;
    });
    // Read-your-writes: this node drops what the change invalidates before it answers, without
    // waiting for the event to come back through the stream (every other node does it then).
    for (const envelope of recorded) this.cache?.applyLocal(envelope);
    this.relay.notify();
    return result;
  }

  onApplicationBootstrap(): void {
    this.relay.start();
  }

  // Before the bus module drains the connection (onApplicationShutdown).
  async beforeApplicationShutdown(): Promise<void> {
    // Best effort: publish what this node recorded; anything left is relayed by another node
    // (orphan rows) or by this one at its next start.
    await Promise.race([this.relay.flush().catch(() => undefined), new Promise((r) => setTimeout(r, 2_000))]);
    await this.relay.stop();
  }
}
