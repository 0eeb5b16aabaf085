import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** What a running `npm start` records in its data directory, for a second one to find. */
export interface RunningCluster {
  pid: number;
  startedAt: string;
  nodes: string[];
  nats?: string;
}

const lockFile = (dataDir: string) => join(dataDir, 'cluster.lock');

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The cluster already running from `dataDir`, if any (a lock left by a dead one is removed). */
export function runningCluster(dataDir: string): RunningCluster | undefined {
  let running: RunningCluster;
  try {
    running = JSON.parse(readFileSync(lockFile(dataDir), 'utf8')) as RunningCluster;
  } catch {
    return undefined;
  }
  if (running.pid !== process.pid && alive(running.pid)) return running;
  rmSync(lockFile(dataDir), { force: true });
  return undefined;
}

export function recordRunning(dataDir: string, cluster: RunningCluster): void {
  writeFileSync(lockFile(dataDir), `${JSON.stringify(cluster, null, 2)}\n`);
}

/** Why a second `npm start` does not start, and what to do instead. */
export function alreadyRunningMessage(dataDir: string, running: RunningCluster): string {
  return [
    `a forgebus cluster is already running from ${dataDir} (pid ${running.pid}, started ${running.startedAt}):`,
    ...running.nodes.map((url, i) => `  node-${i + 1}: ${url}`),
    ...(running.nats ? [`  NATS: ${running.nats}`] : []),
    `Use it, or stop it first (Ctrl-C where it runs, or kill ${running.pid}); to run a second one beside it, give it its own`,
    `data directory and ports: npm start -- --data-dir .forgebus-data-2 --base-port 3101 --nats-port 4322 --monitor-port 8322 --route-port 6322`,
  ].join('\n');
}
