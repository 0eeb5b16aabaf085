// A real PostgreSQL per test file: src/ops/local-postgres.ts (the bench uses it too).
export { startLocalPostgres as startTestPostgres, type LocalPostgres as TestPostgres } from '../../src/ops/local-postgres.js';
