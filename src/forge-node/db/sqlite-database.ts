import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import type { EventEnvelope, OutboxRow, OutboxStore } from '../../index.js';
import { forgeSchema, type ForgeDatabase, type SqlRunner } from './database.js';

const OUTBOX_SCHEMA = `
CREATE TABLE IF NOT EXISTS outbox (
  position INTEGER PRIMARY KEY AUTOINCREMENT,
  origin TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  envelope TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_origin ON outbox(origin, position);
`;

/** Runs statements on the one connection, each compiled once. */
class SqliteRunner implements SqlRunner {
  private readonly statements = new Map<string, Database.Statement>();

  constructor(readonly db: Database.Database) {}

  statement(sql: string): Database.Statement {
    let statement = this.statements.get(sql);
    if (!statement) {
      statement = this.db.prepare(sql);
      this.statements.set(sql, statement);
    }
    return statement;
  }

  async all<T>(sql: string, params: readonly unknown[] = []): Promise<T[]> {
    return this.statement(sql).all(...params) as T[];
  }

  async get<T>(sql: string, params: readonly unknown[] = []): Promise<T | undefined> {
    return this.statement(sql).get(...params) as T | undefined;
  }

  async run(sql: string, params: readonly unknown[] = []): Promise<{ changes: number }> {
    return { changes: this.statement(sql).run(...params).changes };
  }
}

/**
 * SQLite shared by the nodes of one machine (WAL, so readers on one node never block a writer on
 * another; busy_timeout, so concurrent writers queue). A process has one connection: its
 * transactions take turns, and statements outside a transaction wait until the current one ends,
 * so they never read a change that may still roll back.
 */
class SqliteDatabase implements ForgeDatabase {
  readonly kind = 'sqlite' as const;
  readonly forUpdate = '';
  readonly outbox: OutboxStore<SqlRunner>;
  private readonly runner: SqliteRunner;
  /** Resolves when the transaction in progress ends. */
  private busy?: Promise<void>;

  constructor(db: Database.Database) {
    this.runner = new SqliteRunner(db);
    this.outbox = new SqliteOutboxStore(this);
  }

  private async idle(): Promise<void> {
    while (this.busy) await this.busy;
  }

  async all<T>(sql: string, params?: readonly unknown[]): Promise<T[]> {
    if (this.busy) await this.idle();
    return this.runner.all<T>(sql, params);
  }

  async get<T>(sql: string, params?: readonly unknown[]): Promise<T | undefined> {
    if (this.busy) await this.idle();
    return this.runner.get<T>(sql, params);
  }

  async run(sql: string, params?: readonly unknown[]): Promise<{ changes: number }> {
    if (this.busy) await this.idle();
    return this.runner.run(sql, params);
  }

  async transaction<T>(work: (tx: SqlRunner) => Promise<T>): Promise<T> {
    await this.idle();
    let done!: () => void;
    this.busy = new Promise((resolve) => (done = resolve));
    try {
      // IMMEDIATE: take the write lock now (waiting up to busy_timeout for other processes), so
      // a read-then-write transaction never fails to upgrade its lock half-way.
      this.runner.db.exec('BEGIN IMMEDIATE');
      try {
        const result = await work(this.runner);
        this.runner.db.exec('COMMIT');
        return result;
      } catch (err) {
        if (this.runner.db.inTransaction) this.runner.db.exec('ROLLBACK');
        throw err;
      }
    } finally {
      this.busy = undefined;
      done();
    }
  }

  isUniqueViolation(err: unknown): boolean {
    const code = (err as { code?: unknown }).code;
    return code === 'SQLITE_CONSTRAINT_PRIMARYKEY' || code === 'SQLITE_CONSTRAINT_UNIQUE';
  }

  // Nest calls it on the provider's value once the node stopped serving.
  async onApplicationShutdown(): Promise<void> {
    await this.close();
  }

  async close(): Promise<void> {
    await this.idle();
    this.runner.db.close();
  }
}

/**
 * The outbox table in the same SQLite file: `append` runs on the transaction's connection; the
 * relay's reads and removals go through the database, so they wait for a transaction in progress.
 */
class SqliteOutboxStore implements OutboxStore<SqlRunner> {
  constructor(private readonly db: SqlRunner) {}

  async append(envelope: EventEnvelope, tx: SqlRunner): Promise<void> {
    await tx.run('INSERT INTO outbox (origin, created_at, envelope) VALUES (?, ?, ?)', [envelope.origin, Date.now(), JSON.stringify(envelope)]);
  }

  async pending(origin: string, orphanBefore: Date, limit: number, liveOrigins: readonly string[] = []): Promise<OutboxRow[]> {
    // Another node's old rows are orphans only when that node is not alive (liveOrigins).
    const rows = await this.db.all<{ position: number; envelope: string }>(
      'SELECT position, envelope FROM outbox WHERE origin = ? OR (created_at < ? AND origin NOT IN (SELECT value FROM json_each(?))) ORDER BY position LIMIT ?',
      [origin, orphanBefore.getTime(), JSON.stringify(liveOrigins), limit],
    );
    return rows.map((r) => ({ position: r.position, envelope: JSON.parse(r.envelope) as EventEnvelope }));
  }

  async remove(positions: number[]): Promise<void> {
    if (positions.length === 0) return;
    await this.db.run('DELETE FROM outbox WHERE position IN (SELECT value FROM json_each(?))', [JSON.stringify(positions)]);
  }
}

export function openSqlite(dataDir: string): ForgeDatabase {
  mkdirSync(dataDir, { recursive: true });
  const db = new Database(join(dataDir, 'forge.db'));
  db.pragma('busy_timeout = 10000');
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.pragma('foreign_keys = ON');
  // Several nodes may start at once: the schema is created under one write lock.
  db.transaction(() => db.exec(forgeSchema('INTEGER') + OUTBOX_SCHEMA)).immediate();
  return new SqliteDatabase(db);
}
