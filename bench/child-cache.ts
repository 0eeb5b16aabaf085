/**
 * Case inv, one cache node: a separate process with a ForgeBus and a ForgeCache on it, exactly as
 * a forge node wires them (the cache's `*` handler turns every feed event into tags through the
 * invalidation rules). It holds one cached entry per issue, with the key and tags the example
 * forge node's `IssuesService.findIssue` uses, and records when the entry of each
 * `issue.updated` event's issue is gone. Then, as a forge node would on the next GET of that
 * issue, it reads the issue into the cache again (batched, after the current I/O callback), so
 * the cache stays full and the next event of that issue has an entry to remove.
 * Started by bench/main via fork(): argv = url, node id.
 *
 * Protocol (fork IPC):
 *   parent -> child                                   child -> parent
 *   { fill, count }                                   { filled, entries }       issues 1..count cached
 *   { arm, count, base }                              { armed, fromSeq }        record the next `count` events (stream
 *                                                                               sequences fromSeq..fromSeq+count-1)
 *                                                     { done }                  every one of them was seen applied
 *   { report }                                        { report, gone, ... }     gone[i]: ns after `base` at which the entry
 *                                                                               of event fromSeq+i was seen gone (-1: never)
 *   { stop }                                          (exits)
 */
import { ForgeBus } from '../src/bus/bus.js';
import type { DeliveredEvent } from '../src/bus/envelope.js';
import { ForgeCache } from '../src/cache/forge-cache.js';
import { CacheTags } from '../src/cache/tags.js';
import { childArgs, now, REPO, sendToParent, type AnyMessage } from './common.js';

const { url } = childArgs();
const nodeId = process.argv[3] ?? `bench-cache-${process.pid}`;

const bus = await ForgeBus.connect({ nodeId, connection: { servers: url } });
// The forge node's defaults (10,000 entries, 64 MiB).
const cache = new ForgeCache(bus);

/** The forge node's key and tags for GET /api/repos/:owner/:name/issues/:number. */
const keyOf = (n: number): string => `issue:${REPO.owner}/${REPO.name}#${n}`;
const tagsOf = (n: number): string[] => [CacheTags.repo(REPO), CacheTags.issue(REPO, n)];
const issueOf = (n: number) => ({
  number: n,
  title: `Issue ${n}: crash when pushing a signed tag`,
  body: 'Steps to reproduce: push a signed tag to a protected branch; the node answers 500.',
  state: 'open',
  author: 'acme',
  createdAt: '2024-01-01T00:00:00.000Z',
  updatedAt: '2024-01-01T00:00:00.000Z',
});

interface Armed {
  fromSeq: number;
  count: number;
  base: bigint;
  /** ns after `base` at which the entry of event fromSeq+i was seen gone; -1 until then. */
  gone: Float64Array;
  recorded: number;
  /** issue.updated events of an armed issue after which its entry was still cached (must stay 0). */
  stillCached: number;
  invalidatedAtArm: number;
  cpuAtArm: NodeJS.CpuUsage;
}
let armed: Armed | undefined;

/** Issues to read into the cache again after the current I/O callback. */
let toRefill: number[] = [];
const refill = (): void => {
  const numbers = toRefill;
  toRefill = [];
  for (const n of numbers) cache.getOrLoad(keyOf(n), tagsOf(n), () => issueOf(n));
};

// Registered after the ForgeCache's own `*` handler: the feed calls handlers in registration
// order, synchronously, so this runs right after the cache applied the event's invalidation.
bus.on('issue.updated', (event: DeliveredEvent) => {
  const a = armed;
  if (!a) return;
  const i = event.seq - a.fromSeq;
  if (i < 0 || i >= a.count || a.gone[i]! >= 0) return;
  const n = (event.envelope.payload as { number: number }).number;
  if (cache.entries.has(keyOf(n))) {
    a.stillCached++;
    return;
  }
  a.gone[i] = Number(now() - a.base);
  if (toRefill.push(n) === 1) setImmediate(refill);
  if (++a.recorded === a.count) sendToParent({ type: 'done' });
});
await bus.start();

const send = sendToParent;

function onMessage(m: AnyMessage): void {
  switch (m.type) {
    case 'fill': {
      const count = m.count as number;
      let entries = 0;
      for (let n = 1; n <= count; n++) {
        cache.getOrLoad(keyOf(n), tagsOf(n), () => issueOf(n));
        if (cache.entries.has(keyOf(n))) entries++;
      }
      // Collect the garbage of the fill now, not while the run is measured (forked with --expose-gc).
      (globalThis as { gc?: () => void }).gc?.();
      send({ type: 'filled', entries, state: cache.cacheState });
      break;
    }
    case 'arm': {
      const count = m.count as number;
      const fromSeq = bus.feed.stats.lastSeq + 1;
      armed = {
        fromSeq,
        count,
        base: BigInt(m.base as string),
        gone: new Float64Array(count).fill(-1),
        recorded: 0,
        stillCached: 0,
        invalidatedAtArm: cache.entries.stats.invalidatedEntries,
        cpuAtArm: process.cpuUsage(),
      };
      send({ type: 'armed', fromSeq });
      break;
    }
    case 'report': {
      const a = armed;
      const cpu = a ? process.cpuUsage(a.cpuAtArm) : { user: 0, system: 0 };
      const stats = cache.stats;
      send({
        type: 'report',
        gone: a ? Array.from(a.gone) : [],
        recorded: a?.recorded ?? 0,
        stillCached: a?.stillCached ?? 0,
        invalidatedEntries: a ? stats.invalidatedEntries - a.invalidatedAtArm : 0,
        cpuUs: cpu.user + cpu.system,
        cacheEntries: stats.entries,
        state: stats.state,
        gapFlushes: stats.gapFlushes,
        feed: { ...bus.feed.stats },
      });
      armed = undefined;
      break;
    }
    case 'stop':
      exit();
      break;
  }
}

let stopping = false;
function exit(): void {
  if (stopping) return;
  stopping = true;
  setTimeout(() => process.exit(0), 3_000).unref();
  cache.close();
  bus
    .close()
    .catch(() => undefined)
    .finally(() => process.exit(0));
}
process.on('message', (m) => onMessage(m as AnyMessage));
process.on('disconnect', exit); // never outlive the bench
process.on('SIGTERM', exit);
process.on('SIGINT', exit);
sendToParent({ type: 'ready', pid: process.pid });
