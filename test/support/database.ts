import { openDatabase, type ForgeDatabase } from '../../src/forge-node/db/database.js';
import { startTestPostgres, type TestPostgres } from './postgres.js';

/**
 * The two databases the example forge runs on, for tests that must pass on both: SQLite in the
 * shared data directory (the default of `npm start`) and a real PostgreSQL (FORGE_DATABASE_URL).
 *
 * ```ts
 * for (const kind of TEST_DATABASES) describe(`… (${kind})`, () => {
 *   let db: TestDatabase;
 *   before(async () => { db = await openTestDatabase(kind, dataDir); … startForgeNode({ …, env: db.env }) });
 *   after(() => db.dispose());
 * });
 * ```
 */
export const TEST_DATABASES = ['sqlite', 'postgres'] as const;
export type TestDatabaseKind = (typeof TEST_DATABASES)[number];

export interface TestDatabase {
  kind: TestDatabaseKind;
  /** Environment for the forge nodes of this test (FORGE_DATABASE_URL on PostgreSQL). */
  env: Record<string, string>;
  /**
   * The database as the nodes see it, to check the truth behind them (`?` placeholders on both).
   * Opened on first use: on SQLite the nodes create the file.
   */
  query<T>(sql: string, params?: readonly unknown[]): Promise<T | undefined>;
  /** Closes the test's connection and stops the PostgreSQL server (call after the nodes stopped). */
  dispose(): Promise<void>;
}

export async function openTestDatabase(kind: TestDatabaseKind, dataDir: string): Promise<TestDatabase> {
  let server: TestPostgres | undefined;
  let databaseUrl: string | undefined;
  if (kind === 'postgres') {
    server = await startTestPostgres();
    databaseUrl = await server.createDatabase();
  }
  let db: ForgeDatabase | undefined;
  return {
    kind,
    env: databaseUrl ? { FORGE_DATABASE_URL: databaseUrl } : {},
    async query<T>(sql: string, params: readonly unknown[] = []) {
      db ??= await openDatabase({ dataDir, databaseUrl });
      return db.get<T>(sql, params);
    },
    async dispose() {
      await db?.close().catch(() => undefined);
      await server?.dispose();
    },
  };
}
