import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import pg from 'pg';
import { ForgeBus, ForgeBusConfigError, OutboxRelay, PostgresOutboxStore, silentLogger, type EventEnvelope, type EventInput } from '../../src/bus/index.js';
import { eventually, startTestNats, type TestNats } from '../support/nats.js';
import { startTestPostgres, type TestPostgres } from '../support/postgres.js';
import { readStream } from './helpers.js';

const web = { owner: 'acme', name: 'web' };
const issue = (n: number): EventInput => ({ type: 'issue.created', repo: web, payload: { number: n, title: `#${n}` } });

/**
 * PostgresOutboxStore, the SDK's outbox for PostgreSQL, against a real PostgreSQL server: the row
 * commits and rolls back with the caller's transaction, the relay's selection rules hold in SQL,
 * and a relay on a real nats-server empties it in order.
 */
describe('PostgresOutboxStore (real PostgreSQL)', () => {
  let postgres: TestPostgres;
  let pool: pg.Pool;
  let nats: TestNats;
  let bus: ForgeBus;
  let nc: NatsConnection;

  before(async () => {
    postgres = await startTestPostgres();
    pool = new pg.Pool({ connectionString: await postgres.createDatabase() });
    nats = await startTestNats();
    bus = await ForgeBus.connect({ nodeId: 'pg-outbox', connection: { servers: nats.url }, logger: silentLogger });
    nc = await connect({ servers: nats.url, name: 'pg-outbox-observer' });
  });

  after(async () => {
    await nc?.close();
    await bus?.close();
    await nats?.dispose();
    await pool?.end();
    await postgres?.dispose();
  });

  /** Runs `work` in a transaction on one client of the pool; rolls back when `commit` is false. */
  async function inTransaction(work: (client: pg.PoolClient) => Promise<void>, commit = true): Promise<void> {
    const client = await pool.connect();
    try {
      await client.query('BEGIN');
      await work(client);
      await client.query(commit ? 'COMMIT' : 'ROLLBACK');
    } finally {
      client.release();
    }
  }

  it('creates its table once, however many nodes start at the same moment', async () => {
    const stores = Array.from({ length: 6 }, () => new PostgresOutboxStore(pool, { table: 'race_outbox' }));
    await Promise.all(stores.map((s) => s.createTable()));
    await stores[0]!.createTable();
    const { rows } = await pool.query("SELECT count(*)::int AS n FROM pg_indexes WHERE tablename = 'race_outbox'");
    assert.equal(rows[0].n, 2, 'the primary key and the origin index');
  });

  it('keeps a row only when the transaction that appended it commits, and returns the envelope unchanged', async () => {
    const store = new PostgresOutboxStore(pool, { table: 'tx_outbox' });
    await store.createTable();
    const kept = bus.events.create(issue(1));
    const dropped = bus.events.create(issue(2));
    await inTransaction((client) => store.append(dropped, client), false);
    await inTransaction(async (client) => {
      await store.append(kept, client);
      // Not visible outside the transaction before the commit: the relay cannot publish it early.
      assert.deepEqual(await store.pending(bus.events.origin, new Date(), 10), []);
    });
    const pending = await store.pending(bus.events.origin, new Date(0), 10);
    assert.equal(pending.length, 1);
    assert.deepEqual(pending[0]!.envelope, kept);
    await store.remove(pending.map((r) => r.position));
    assert.deepEqual(await store.pending(bus.events.origin, new Date(), 10), []);
  });

  it("selects its own rows, other nodes' rows only once old, never a live node's", async () => {
    const store = new PostgresOutboxStore(pool, { table: 'select_outbox' });
    await store.createTable();
    const envelopeOf = (origin: string, n: number): EventEnvelope => ({ ...bus.events.create(issue(n)), origin });
    await inTransaction(async (client) => {
      await store.append(envelopeOf('me', 1), client);
      await store.append(envelopeOf('dead', 2), client);
      await store.append(envelopeOf('alive', 3), client);
    });
    const numbers = (rows: { envelope: EventEnvelope }[]) => rows.map((r) => (r.envelope.payload as { number: number }).number);
    assert.deepEqual(numbers(await store.pending('me', new Date(0), 10)), [1], 'young rows of others wait for their node');
    assert.deepEqual(numbers(await store.pending('me', new Date(Date.now() + 60_000), 10, ['alive'])), [1, 2], 'old rows of dead nodes are orphans');
    assert.deepEqual(numbers(await store.pending('me', new Date(Date.now() + 60_000), 1)), [1], 'limit, in position order');
  });

  it('refuses an append without the transaction client, and a table name that is not a plain SQL name', async () => {
    const store = new PostgresOutboxStore(pool);
    await assert.rejects(
      async () => store.append(bus.events.create(issue(1)), undefined as unknown as pg.PoolClient),
      (err: unknown) => err instanceof ForgeBusConfigError && /client of the caller's transaction/.test(err.message),
    );
    assert.throws(() => new PostgresOutboxStore(pool, { table: 'outbox; DROP TABLE x' }), ForgeBusConfigError);
  });

  it('is emptied by an OutboxRelay, in order, each event stored once', async () => {
    const store = new PostgresOutboxStore(pool);
    await store.createTable();
    const envelopes = Array.from({ length: 300 }, (_, i) => bus.events.create(issue(1_000 + i)));
    // Ten transactions of thirty, as ten changes of a forge would record them.
    for (let t = 0; t < 10; t++) {
      await inTransaction(async (client) => {
        for (const e of envelopes.slice(t * 30, t * 30 + 30)) await store.append(e, client);
      });
    }
    const relay = new OutboxRelay(store, bus.publisher, bus.events, { batchSize: 64, pollIntervalMs: 50, logger: silentLogger });
    relay.start();
    relay.notify();
    try {
      await eventually(async () => (await store.pending(bus.events.origin, new Date(0), 1)).length === 0, 15_000, 'the outbox to empty');
    } finally {
      await relay.stop();
    }
    assert.equal(relay.stats.relayed, envelopes.length);
    const wanted = new Set(envelopes.map((e) => e.id));
    const stored = (await readStream(nc)).filter((m) => wanted.has(m.envelope.id));
    assert.deepEqual(stored.map((m) => m.envelope.id), envelopes.map((e) => e.id), 'stored once each, in outbox order');
  });
});
