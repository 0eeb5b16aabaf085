import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';

export type Db = Database.Database;
export const DATABASE = Symbol('DATABASE');

const SCHEMA = `
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
  user TEXT NOT NULL,
  PRIMARY KEY (owner, name, user),
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
  size_bytes INTEGER NOT NULL,
  computed_at TEXT NOT NULL,
  PRIMARY KEY (owner, name),
  FOREIGN KEY (owner, name) REFERENCES repos(owner, name) ON DELETE CASCADE
);
CREATE TABLE IF NOT EXISTS outbox (
  position INTEGER PRIMARY KEY AUTOINCREMENT,
  origin TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  envelope TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_origin ON outbox(origin, position);
`;

/**
 * Opens the SQLite database every node of the local cluster shares (WAL mode, so readers on
 * one node never block a writer on another; busy_timeout, so concurrent writers queue).
 */
export function openDatabase(dataDir: string): Db {
  mkdirSync(dataDir, { recursive: true });
  const db = new Database(join(dataDir, 'forge.db'));
  db.pragma('busy_timeout = 10000');
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.pragma('foreign_keys = ON');
  // Several nodes may start at once: the schema is created under one write lock.
  db.transaction(() => db.exec(SCHEMA)).immediate();
  return db;
}
