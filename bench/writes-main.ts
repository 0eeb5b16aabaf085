/**
 * The write-queue benchmark on its own: `npm run build && node dist/bench/writes-main.js
 * [--writes N] [--git-writes N]`: in-flight windows of 100 and 500 writes. `npm run bench` runs the same cases (--only writes).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startNatsServer } from '../src/ops/nats-server.js';
import { runWritesCases, writesTable } from './case-writes.js';

const arg = (flag: string, fallback: number) => {
  const i = process.argv.indexOf(flag);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
};
const storeDir = mkdtempSync(join(tmpdir(), 'forgebus-bench-writes-'));
const server = await startNatsServer({ storeDir, monitorPort: -1 });
try {
  const rows = await runWritesCases(server.url, { noopWrites: arg('--writes', 3000), gitWrites: arg('--git-writes', 200), windows: [100, 500] });
  console.log(writesTable(rows));
} finally {
  await server.stop();
  rmSync(storeDir, { recursive: true, force: true });
}
