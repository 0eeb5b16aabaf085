import pg from 'pg';
import { PostgresOutboxStore, type EventEnvelope, type OutboxRow, type OutboxStore, type PgQueryable } from '../../index.js';
import { DatabaseUnavailableError, forgeSchema, type ForgeDatabase, type SqlRunner } from './database.js';

/** `?` placeholders as PostgreSQL's `$1, $2, …` (none of our statements has a `?` in a literal). */
function numbered(sql: string): string {
  let n = 0;
  let inLiteral = false;
  let out = '';
  for (const ch of sql) {
    if (ch === "'") inLiteral = !inLiteral;
    out += ch === '?' && !inLiteral ? `$${++n}` : ch;
  }
  return out;
}

class PgRunner implements SqlRunner {
  private static readonly texts = new Map<string, string>();

  constructor(readonly client: PgQueryable) {}

  private query(sql: string, params: readonly unknown[]) {
    let text = PgRunner.texts.get(sql);
    if (text === undefined) {
      text = numbered(sql);
      PgRunner.texts.set(sql, text);
    }
    return this.client.query(text, [...params]);
  }

  async all<T>(sql: string, params: readonly unknown[] = []): Promise<T[]> {
    return (await this.query(sql, params)).rows as T[];
  }

  async get<T>(sql: string, params: readonly unknown[] = []): Promise<T | undefined> {
    return (await this.query(sql, params)).rows[0] as T | undefined;
  }

  async run(sql: string, params: readonly unknown[] = []): Promise<{ changes: number }> {
    return { changes: (await this.query(sql, params)).rowCount ?? 0 };
  }
}

/** Deadlock and serialization failures: PostgreSQL rolled the transaction back; running it again is safe. */
const RETRYABLE = new Set(['40001', '40P01']);

/** PostgreSQL shared by every node of the cluster, on any machine (FORGE_DATABASE_URL). */
class PostgresDatabase extends PgRunner implements ForgeDatabase {
  readonly kind = 'postgres' as const;
  readonly forUpdate = ' FOR UPDATE';
  readonly outbox: OutboxStore<SqlRunner>;

  constructor(
    private readonly pool: pg.Pool,
    readonly outboxStore: PostgresOutboxStore,
  ) {
    super(pool);
    this.outbox = {
      append: (envelope: EventEnvelope, tx: SqlRunner) => outboxStore.append(envelope, (tx as PgRunner).client),
      pending: (origin: string, orphanBefore: Date, limit: number, liveOrigins?: readonly string[]): Promise<OutboxRow[]> =>
        outboxStore.pending(origin, orphanBefore, limit, liveOrigins),
      remove: (positions: number[]) => outboxStore.remove(positions),
    };
  }

  async transaction<T>(work: (tx: SqlRunner) => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      const client = await this.pool.connect();
      try {
        await client.query('BEGIN');
        const result = await work(new PgRunner(client));
        await client.query('COMMIT');
        client.release();
        return result;
      } catch (err) {
        await client.query('ROLLBACK').catch(() => undefined);
        client.release();
        if (attempt < 3 && RETRYABLE.has((err as { code?: string }).code ?? '')) continue;
        throw err;
      }
    }
  }

  isUniqueViolation(err: unknown): boolean {
    return (err as { code?: unknown }).code === '23505';
  }

  // Nest calls it on the provider's value once the node stopped serving.
  async onApplicationShutdown(): Promise<void> {
    await this.close();
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}

/** Where the URL points, without its password. */
function describeUrl(url: string): string {
  try {
    const u = new URL(url);
    return `PostgreSQL at ${u.hostname}:${u.port || 5432}${u.pathname}${u.username ? ` as ${decodeURIComponent(u.username)}` : ''}`;
  } catch {
    return 'PostgreSQL';
  }
}

/** The operator's reason for a failed connection (pg's own message never holds the password). */
function unavailable(url: string, err: Error & { code?: string }): DatabaseUnavailableError {
  const where = describeUrl(url);
  const why: Record<string, string> = {
    ECONNREFUSED: 'refused the connection: is it running and listening on that address and port?',
    ENOTFOUND: 'has a host name that does not resolve',
    ETIMEDOUT: 'did not answer in time',
    '28P01': 'refused the password: check FORGE_DATABASE_URL',
    '28000': "refused the connection for this user (pg_hba.conf or role): check FORGE_DATABASE_URL and the server's access rules",
    '3D000': 'has no such database: create it (createdb) or fix the name in FORGE_DATABASE_URL',
  };
  return new DatabaseUnavailableError(`${where} ${why[err.code ?? ''] ?? `failed: ${err.message}`}`);
}

export async function openPostgres(url: string): Promise<ForgeDatabase> {
  const pool = new pg.Pool({ connectionString: url, max: 10, connectionTimeoutMillis: 10_000 });
  // An idle client that loses its server emits 'error' on the pool: without a listener it would
  // end the process. The next query gets a fresh connection.
  pool.on('error', () => undefined);
  const outboxStore = new PostgresOutboxStore(pool, { table: 'outbox' });
  try {
    // Several nodes may start at once: concurrent CREATE TABLE IF NOT EXISTS can fail in
    // PostgreSQL, so the schema is created under a transaction-scoped advisory lock.
    const client = await pool.connect();
    try {
      await client.query('BEGIN');
      await client.query("SELECT pg_advisory_xact_lock(hashtext('forgebus_forge_schema'))");
      await client.query(forgeSchema('BIGINT'));
      await client.query(outboxStore.schema());
      await client.query('COMMIT');
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw err;
    } finally {
      client.release();
    }
  } catch (err) {
    await pool.end().catch(() => undefined);
    throw unavailable(url, err as Error & { code?: string });
  }
  return new PostgresDatabase(pool, outboxStore);
}
