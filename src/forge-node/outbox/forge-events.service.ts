import { Inject, Injectable, Logger, Optional, type BeforeApplicationShutdown, type OnApplicationBootstrap } from '@nestjs/common';
import { ForgeBus, OutboxRelay, type EventEnvelope, type EventInput, type ForgeEventPayloads, type KnownEventInput } from '../../index.js';
import { ForgeCache } from '../../cache/index.js';
import { Membership } from '../../cluster/index.js';
import { DATABASE, type Db } from '../db/database.js';
import { SqliteOutboxStore } from './sqlite-outbox.store.js';

/**
 * Records events in the outbox as part of a database transaction, and relays them to the bus
 * after the commit. Mutations therefore succeed (and their events go out later, in order)
 * even while NATS is down.
 */
@Injectable()
export class ForgeEventsService implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private readonly store: SqliteOutboxStore;
  readonly relay: OutboxRelay;

  constructor(
    @Inject(DATABASE) private readonly db: Db,
    private readonly bus: ForgeBus,
    // A worker-only process has no cache.
    @Optional() private readonly cache?: ForgeCache,
    @Optional() membership?: Membership,
  ) {
    this.store = new SqliteOutboxStore(db);
    this.relay = new OutboxRelay(this.store, bus.publisher, bus.events, {
      logger: new Logger('Outbox'),
      // Old rows of a live node are that node's to relay: no stampede after an outage.
      liveOrigins: membership ? () => membership.members().map((m) => m.id) : undefined,
    });
  }

  /**
   * Runs `work` in an IMMEDIATE transaction; events it records commit with it. After the commit
   * the relay is woken up.
   */
  transaction<T>(work: (record: <K extends keyof ForgeEventPayloads>(input: KnownEventInput<K> | EventInput) => void) => T): T {
    let recorded: EventEnvelope[] = [];
    const record = (input: EventInput) => {
      const envelope = this.bus.events.create(input);
      this.store.append(envelope);
      recorded.push(envelope);
    };
    const result = this.db.transaction(() => {
      recorded = []; // better-sqlite3 may not retry, but a thrown transaction records nothing
      return work(record);
    }).immediate();
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
