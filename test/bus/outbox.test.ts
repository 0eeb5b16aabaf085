import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import {
  EventFactory,
  ForgeBus,
  OutboxRelay,
  silentLogger,
  type EventEnvelope,
  type EventInput,
  type OutboxRow,
  type OutboxStore,
} from '../../src/bus/index.js';
import { eventually, startTestNats, type TestNats } from '../support/nats.js';
import { MemoryLogger, readStream, sleep } from './helpers.js';

/**
 * An outbox table in memory: an autoincrement position, the envelope and the time the row was
 * written (what a SQL outbox keeps in a created_at column). Rows are copied in and out so the
 * relay cannot change them behind the store's back.
 */
class MemoryOutboxStore implements OutboxStore {
  private readonly rows: { position: number; envelope: EventEnvelope; recordedAt: number }[] = [];
  private nextPosition = 1;
  readonly removeCalls: number[][] = [];

  append(envelope: EventEnvelope): void {
    this.record(envelope, Date.now());
  }

  /** A row written earlier (e.g. by a node that died before relaying it). */
  record(envelope: EventEnvelope, recordedAt: number): void {
    this.rows.push({ position: this.nextPosition++, envelope: structuredClone(envelope), recordedAt });
  }

  pending(origin: string, orphanBefore: Date, limit: number, liveOrigins: readonly string[] = []): OutboxRow[] {
    return this.rows
      .filter((r) => r.envelope.origin === origin || (r.recordedAt < orphanBefore.getTime() && !liveOrigins.includes(r.envelope.origin)))
      .sort((a, b) => a.position - b.position)
      .slice(0, limit)
      .map((r) => ({ position: r.position, envelope: structuredClone(r.envelope) }));
  }

  remove(positions: number[]): void {
    this.removeCalls.push([...positions]);
    const gone = new Set(positions);
    for (let i = this.rows.length - 1; i >= 0; i--) if (gone.has(this.rows[i]!.position)) this.rows.splice(i, 1);
  }

  get size(): number {
    return this.rows.length;
  }

  ids(): string[] {
    return this.rows.map((r) => r.envelope.id);
  }
}

const web = { owner: 'acme', name: 'web' };
const issue = (n: number): EventInput => ({ type: 'issue.created', repo: web, payload: { number: n, title: `#${n}` } });

describe('outbox relay', () => {
  let nats: TestNats;
  let bus: ForgeBus;
  let nc: NatsConnection;
  const relays: OutboxRelay[] = [];

  before(async () => {
    nats = await startTestNats();
    bus = await ForgeBus.connect({
      nodeId: 'outbox-node',
      connection: { servers: nats.url, reconnectDelayMs: 50, maxReconnectDelayMs: 250 },
      // Give up on an ack quickly so that an outage shows up as relay failures (a slow ack only
      // means a retry: the relay goes on until every row is acknowledged).
      publisher: { ackTimeoutMs: 250, maxAttempts: 2 },
      logger: silentLogger,
    });
    nc = await connect({ servers: nats.url, name: 'outbox-test-observer', reconnectTimeWait: 50, maxReconnectAttempts: -1 });
  });

  afterEach(async () => {
    await Promise.all(relays.splice(0).map((r) => r.stop()));
  });

  after(async () => {
    await nc?.close();
    await bus?.close();
    await nats?.dispose();
  });

  function newRelay(store: OutboxStore, options: ConstructorParameters<typeof OutboxRelay>[3] = {}): OutboxRelay {
    const relay = new OutboxRelay(store, bus.publisher, bus.events, { pollIntervalMs: 50, logger: silentLogger, ...options });
    relays.push(relay);
    return relay;
  }

  /** The stream's copies of the given events, in stream order. */
  async function storedCopies(ids: string[]) {
    const wanted = new Set(ids);
    return (await readStream(nc)).filter((m) => wanted.has(m.envelope.id));
  }

  it('publishes rows in order and removes them once acknowledged', async () => {
    const store = new MemoryOutboxStore();
    const envelopes = Array.from({ length: 1_200 }, (_, i) => bus.events.create(issue(i + 1)));
    for (const e of envelopes) store.append(e);
    const relay = newRelay(store, { batchSize: 500 });
    relay.start();
    relay.notify();

    await eventually(() => store.size === 0, 15_000, 'the outbox to empty');
    assert.equal(relay.stats.relayed, envelopes.length);
    // Removal happens per acknowledged batch, in position order.
    assert.deepEqual(store.removeCalls.flat(), envelopes.map((_, i) => i + 1));

    const stored = await storedCopies(envelopes.map((e) => e.id));
    assert.deepEqual(stored.map((m) => m.envelope.id), envelopes.map((e) => e.id), 'stored once each, in outbox order');
    assert.deepEqual(stored[0]!.envelope, envelopes[0], 'stored unchanged');
    assert.equal(stored[0]!.subject, 'forge.repo.acme.web.issue.created');

    // Rows appended later go out on notify().
    const more = [bus.events.create(issue(5_000)), bus.events.create(issue(5_001))];
    for (const e of more) store.append(e);
    relay.notify();
    await eventually(() => store.size === 0, 10_000, 'the later rows');
    assert.deepEqual((await storedCopies(more.map((e) => e.id))).map((m) => m.envelope.id), more.map((e) => e.id));
  });

  it('keeps the rows while NATS is down and relays them all, in order, once, after it is back', async () => {
    const store = new MemoryOutboxStore();
    const logger = new MemoryLogger();
    const relay = newRelay(store, { batchSize: 25, logger });
    relay.start();

    const early = Array.from({ length: 10 }, (_, i) => bus.events.create(issue(100 + i)));
    for (const e of early) store.append(e);
    relay.notify();
    await eventually(() => store.size === 0, 10_000, 'the rows written before the outage');

    await nc.close();
    await nats.stop();
    const during = Array.from({ length: 60 }, (_, i) => bus.events.create(issue(200 + i)));
    for (const [i, e] of during.entries()) {
      store.append(e);
      if (i % 10 === 0) relay.notify();
    }
    await eventually(() => relay.stats.failures >= 2, 15_000, 'the relay to report failed attempts');
    assert.equal(store.size, during.length, 'no row is removed without an ack');
    assert.deepEqual(store.ids(), during.map((e) => e.id));
    assert.ok(logger.matching(/outbox relay will retry/).length >= 1);
    assert.ok(relay.stats.lastError);
    await sleep(300); // several more failed passes

    nats = await nats.restart();
    nc = await connect({ servers: nats.url, name: 'outbox-test-observer' });
    await eventually(() => store.size === 0, 20_000, 'the outbox to empty after the restart');

    const ids = [...early, ...during].map((e) => e.id);
    const stored = await storedCopies(ids);
    assert.deepEqual(stored.map((m) => m.envelope.id), ids, 'every row stored exactly once, in outbox order');
    assert.equal(relay.stats.relayed, ids.length);
  });

  it('relays orphan rows of another origin once they are older than orphanAfterMs, not before', async () => {
    const store = new MemoryOutboxStore();
    const dead = new EventFactory(bus.catalog, 'dead-node');
    const alive = new EventFactory(bus.catalog, 'other-live-node');
    const now = Date.now();
    const oldOrphan = dead.create(issue(1));
    const youngOther = alive.create(issue(2));
    const own = bus.events.create(issue(3));
    const oldOrphan2 = dead.create(issue(4));
    store.record(oldOrphan, now - 60_000);
    store.record(youngOther, now);
    store.record(own, now);
    store.record(oldOrphan2, now - 45_000);

    const relay = newRelay(store, { orphanAfterMs: 2_000 });
    await relay.flush();

    assert.deepEqual(store.ids(), [youngOther.id], 'the young row of another node stays');
    const stored = await storedCopies([oldOrphan.id, youngOther.id, own.id, oldOrphan2.id]);
    assert.deepEqual(stored.map((m) => m.envelope.id), [oldOrphan.id, own.id, oldOrphan2.id], 'relayed in outbox order');
    assert.equal(stored[0]!.envelope.origin, 'dead-node', 'relayed as written, origin kept');

    // Once it is old enough (its node evidently did not relay it), this node takes it too.
    relay.start();
    await eventually(() => store.size === 0, 10_000, 'the row to become an orphan and be relayed');
    const later = await storedCopies([youngOther.id]);
    assert.equal(later.length, 1);
    assert.equal(later[0]!.envelope.origin, 'other-live-node');
  });

  it('does not relay old rows of nodes that are alive (membership): an outage makes no stampede', async () => {
    const store = new MemoryOutboxStore();
    const live = new EventFactory(bus.catalog, 'live-node');
    const dead = new EventFactory(bus.catalog, 'gone-node');
    const now = Date.now();
    // After a long outage every node's backlog is "old"; only the dead node's rows are orphans.
    const liveRows = Array.from({ length: 600 }, (_, i) => live.create(issue(100 + i)));
    for (const e of liveRows) store.record(e, now - 120_000);
    const orphan = dead.create(issue(1));
    store.record(orphan, now - 120_000);
    const own = bus.events.create(issue(2));
    store.record(own, now);

    const relay = newRelay(store, { orphanAfterMs: 2_000, batchSize: 100, liveOrigins: () => ['live-node', bus.events.origin] });
    await relay.flush();
    assert.deepEqual(store.ids(), liveRows.map((e) => e.id), 'the live node keeps its rows (even with 600 of them ahead of ours)');
    assert.deepEqual((await storedCopies([orphan.id, own.id])).map((m) => m.envelope.id), [orphan.id, own.id]);
  });
});
