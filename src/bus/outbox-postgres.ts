import type { EventEnvelope } from './envelope.js';
import { ForgeBusConfigError } from './errors.js';
import type { OutboxRow, OutboxStore } from './outbox.js';

/**
 * What the store needs of a PostgreSQL client: node-postgres' `Pool`, `PoolClient` and `Client`
 * all have it. forgebus does not depend on a driver; bring your own.
 */
export interface PgQueryable {
  query(text: string, values?: unknown[]): Promise<{ rows: any[]; rowCount: number | null }>;
}

export interface PostgresOutboxStoreOptions {
  /** Table name, optionally schema-qualified (default `forgebus_outbox`). */
  table?: string;
}

const IDENTIFIER = /^[a-z_][a-z0-9_]{0,62}(\.[a-z_][a-z0-9_]{0,62})?$/;

/**
 * The outbox on PostgreSQL. `append(envelope, client)` inserts with the client of the caller's
 * transaction, so the event commits or rolls back with the change; the relay reads and removes
 * rows through the pool given to the constructor.
 *
 * ```ts
 * const store = new PostgresOutboxStore(pool);
 * await store.createTable();                       // once, at start-up (idempotent)
 * const relay = new OutboxRelay(store, bus.publisher, bus.events);
 * const client = await pool.connect();
 * await client.query('BEGIN');
 * await client.query('UPDATE issues SET state = $1 WHERE id = $2', ['closed', 7]);
 * await store.append(bus.events.create({ type: 'issue.status_changed', … }), client);
 * await client.query('COMMIT');
 * relay.notify();
 * ```
 *
 * Positions come from a sequence, so two concurrent transactions may commit in the opposite
 * order of their positions; the relay then publishes them in the order it sees them committed.
 * Changes that must be ordered (the same row) are serialized by PostgreSQL's row locks anyway.
 */
export class PostgresOutboxStore implements OutboxStore<PgQueryable> {
  readonly table: string;

  constructor(
    private readonly pool: PgQueryable,
    options: PostgresOutboxStoreOptions = {},
  ) {
    const table = options.table ?? 'forgebus_outbox';
    if (!IDENTIFIER.test(table)) {
      throw new ForgeBusConfigError(`PostgresOutboxStore: table must be a lower-case SQL name, optionally schema.name (letters, digits, _), got "${table.slice(0, 100)}"`);
    }
    this.table = table;
  }

  /** The table and its index, for your own migrations (what `createTable` runs). */
  schema(): string {
    const index = `${this.table.replace('.', '_')}_origin`;
    return (
      `CREATE TABLE IF NOT EXISTS ${this.table} (` +
      'position BIGSERIAL PRIMARY KEY, origin TEXT NOT NULL, created_at BIGINT NOT NULL, envelope TEXT NOT NULL);\n' +
      `CREATE INDEX IF NOT EXISTS ${index} ON ${this.table} (origin, position);`
    );
  }

  /**
   * Creates the table if it does not exist. Several nodes may start at once: concurrent
   * `CREATE TABLE IF NOT EXISTS` can fail in PostgreSQL, so it runs under an advisory lock.
   */
  async createTable(): Promise<void> {
    await this.pool.query(`DO $forgebus$ BEGIN PERFORM pg_advisory_xact_lock(hashtext('${this.table}')); ${this.schema()} END $forgebus$`);
  }

  async append(envelope: EventEnvelope, transaction: PgQueryable): Promise<void> {
    if (!transaction || typeof transaction.query !== 'function') {
      // Without the transaction's client the row would commit on its own: not an outbox.
      throw new ForgeBusConfigError("PostgresOutboxStore.append needs the client of the caller's transaction as its second argument");
    }
    await transaction.query(`INSERT INTO ${this.table} (origin, created_at, envelope) VALUES ($1, $2, $3)`, [
      envelope.origin,
      Date.now(),
      JSON.stringify(envelope),
    ]);
  }

  async pending(origin: string, orphanBefore: Date, limit: number, liveOrigins: readonly string[] = []): Promise<OutboxRow[]> {
    const { rows } = await this.pool.query(
      `SELECT position, envelope FROM ${this.table} WHERE origin = $1 OR (created_at < $2 AND NOT (origin = ANY($3::text[]))) ORDER BY position LIMIT $4`,
      [origin, orphanBefore.getTime(), [...liveOrigins], limit],
    );
    return (rows as { position: string | number; envelope: string }[]).map((r) => ({
      position: Number(r.position),
      envelope: JSON.parse(r.envelope) as EventEnvelope,
    }));
  }

  async remove(positions: number[]): Promise<void> {
    if (positions.length === 0) return;
    await this.pool.query(`DELETE FROM ${this.table} WHERE position = ANY($1::bigint[])`, [positions]);
  }
}
