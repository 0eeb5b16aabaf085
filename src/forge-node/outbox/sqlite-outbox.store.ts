import type { EventEnvelope, OutboxRow, OutboxStore } from '../../index.js';
import type { Db } from '../db/database.js';

/** OutboxStore on the forge's SQLite database: `append` runs in the caller's transaction. */
export class SqliteOutboxStore implements OutboxStore {
  private readonly insert;
  private readonly select;

  constructor(private readonly db: Db) {
    this.insert = db.prepare('INSERT INTO outbox (origin, created_at, envelope) VALUES (?, ?, ?)');
    // Another node's old rows are orphans only when that node is not alive (liveOrigins).
    this.select = db.prepare(
      'SELECT position, envelope FROM outbox WHERE origin = ? OR (created_at < ? AND origin NOT IN (SELECT value FROM json_each(?))) ORDER BY position LIMIT ?',
    );
  }

  append(envelope: EventEnvelope): void {
    this.insert.run(envelope.origin, Date.now(), JSON.stringify(envelope));
  }

  pending(origin: string, orphanBefore: Date, limit: number, liveOrigins: readonly string[] = []): OutboxRow[] {
    const rows = this.select.all(origin, orphanBefore.getTime(), JSON.stringify(liveOrigins), limit) as { position: number; envelope: string }[];
    return rows.map((r) => ({ position: r.position, envelope: JSON.parse(r.envelope) as EventEnvelope }));
  }

  remove(positions: number[]): void {
    if (positions.length === 0) return;
    this.db.prepare(`DELETE FROM outbox WHERE position IN (${positions.map(() => '?').join(',')})`).run(...positions);
  }
}
