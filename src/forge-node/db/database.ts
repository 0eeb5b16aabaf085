import type { OutboxStore } from '../../index.js';

export const DATABASE = Symbol('DATABASE');

/** Statements with `?` placeholders, the same text on SQLite and PostgreSQL. */
export interface SqlRunner {
  all<T>(sql: string, params?: readonly unknown[]): Promise<T[]>;
  get<T>(sql: string, params?: readonly unknown[]): Promise<T | undefined>;
  run(sql: string, params?: readonly unknown[]): Promise<{ changes: number }>;
}

/**
 * The forge's database: SQLite in the data directory (one machine: the default of `npm start`) or
 * PostgreSQL (FORGE_DATABASE_URL: several machines). Services write portable SQL; the few
 * differences are named here.
 */
export interface ForgeDatabase extends SqlRunner {
  readonly kind: 'sqlite' | 'postgres';
  /**
   * Appended to a SELECT inside a transaction that will update what it read: PostgreSQL then
   * locks the rows (` FOR UPDATE`); SQLite's write transactions already hold the whole database.
   */
  readonly forUpdate: string;
  /** Runs `work` in one transaction: committed when it resolves, rolled back when it throws. */
  transaction<T>(work: (tx: SqlRunner) => Promise<T>): Promise<T>;
  /** The outbox in this database; `append` takes the runner of the transaction it belongs to. */
  readonly outbox: OutboxStore<SqlRunner>;
  /** Whether `err` is a primary-key or unique violation. */
  isUniqueViolation(err: unknown): boolean;
  close(): Promise<void>;
}

/** The database could not be opened; the message says what to do. */
export class DatabaseUnavailableError extends Error {
  readonly code = 'DATABASE_UNAVAILABLE';
  constructor(message: string) {
    super(message);
    this.name = 'DatabaseUnavailableError';
  }
}

/**
 * The tables of the example forge. `${bigint}` is INTEGER on SQLite (64-bit anyway) and BIGINT on
 * PostgreSQL; `"user"` is quoted because it is a reserved word in PostgreSQL.
 */
export function forgeSchema(bigint: string): string {
  return `
CREATE TABLE IF NOT EXISTS repos (
  owner TEXT NOT NULL,
  name TEXT NOT NULL,
  private INTEGER NOT NULL DEFAULT 0,
  next_issue INTEGER NOT NULL DEFAULT 1,
  created_at TEXT NOT NULL,
  PRIMARY KEY (owner, name)
);
CREATE TABLE IF NOT EXISTS collaborators (
  owner TEXT NOT NULL,
  name TEXT NOT NULL,
  "user" TEXT NOT NULL,
  PRIMARY KEY (owner, name, "user"),
  FOREIGN KEY (owner, name) REFERENCES repos(owner, name) ON DELETE CASCADE
);
CREATE TABLE IF NOT EXISTS issues (
  owner TEXT NOT NULL,
  name TEXT NOT NULL,
  number INTEGER NOT NULL,
  title TEXT NOT NULL,
  body TEXT NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('open', 'closed')),
  author TEXT NOT NULL,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  PRIMARY KEY (owner, name, number),
  FOREIGN KEY (owner, name) REFERENCES repos(owner, name) ON DELETE CASCADE
);
CREATE TABLE IF NOT EXISTS repo_stats (
  owner TEXT NOT NULL,
  name TEXT NOT NULL,
  open_issues INTEGER NOT NULL,
  size_bytes ${bigint} NOT NULL,
  computed_at TEXT NOT NULL,
  PRIMARY KEY (owner, name),
  FOREIGN KEY (owner, name) REFERENCES repos(owner, name) ON DELETE CASCADE
);
`;
}

/** Opens the configured database and creates what is missing. */
export async function openDatabase(config: { dataDir: string; databaseUrl?: string }): Promise<ForgeDatabase> {
  if (config.databaseUrl) {
    const { openPostgres } = await import('./postgres-database.js');
    return openPostgres(config.databaseUrl);
  }
  const { openSqlite } = await import('./sqlite-database.js');
  return openSqlite(config.dataDir);
}
