import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { ForgeBus, type PublishedEvent } from '../../src/bus/index.js';
import { rssBytes, SseCluster } from '../fixtures/sse-cluster.js';
import { eventually } from '../support/nats.js';
import { parseSseBlocks, RawHttpStream } from '../support/sse-client.js';

const READER = fileURLToPath(new URL('../fixtures/sse-reader.js', import.meta.url));

/** A stream read by test/fixtures/sse-reader.ts in a process of its own: `<id> <type> <envelope id> <title length>` per event. */
class ReaderProcess {
  readonly events: string[] = [];
  status?: number;
  end?: string;
  readonly exited: Promise<void>;
  private readonly child: ChildProcess;

  constructor(url: string, token: string, lastEventId?: string) {
    this.child = spawn(process.execPath, [READER, url, token, ...(lastEventId ? [lastEventId] : [])], { stdio: ['ignore', 'pipe', 'inherit'] });
    this.exited = new Promise((resolve) => this.child.once('exit', () => resolve()));
    createInterface({ input: this.child.stdout! }).on('line', (line) => {
      if (line.startsWith('open ')) this.status = Number(line.slice(5));
      else if (line === 'end' || line.startsWith('error ')) this.end = line;
      else this.events.push(line);
    });
  }

  async opened(): Promise<number> {
    return eventually(() => this.status ?? (this.end ? -1 : undefined), 10_000, 'the reader to connect');
  }

  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
    await this.exited;
  }
}

/**
 * Issue 4, backpressure: a client that stops reading is disconnected once the node holds more
 * than FORGE_SSE_MAX_BUFFER_BYTES unsent for it, while a client on the same node that reads
 * keeps receiving every event, and the node's memory stays bounded although far more than the
 * bound is published to the stalled client's repository. One forge node process; the events
 * (large issue titles) are published by the SDK in the test process, like another node would.
 */

const MAX_BUFFER_BYTES = 65_536;
/** Title of every event: 24 KiB, so one frame is well below the limit. */
const TITLE_BYTES = 24 * 1024;
const BATCH = 100;
const BATCHES = 90;
/** How much the node's RSS may grow over the run (generous: garbage, JIT, NATS buffers). */
const RSS_BOUND = 100 * 1024 * 1024;

describe('a client that stops reading', () => {
  let cluster: SseCluster;
  let bus: ForgeBus;
  const cleanup: (() => unknown)[] = [];

  before(async () => {
    cluster = await SseCluster.start({ count: 1, prefix: 'sse-slow', env: () => ({ FORGE_SSE_MAX_BUFFER_BYTES: String(MAX_BUFFER_BYTES) }) });
    await cluster.call(1, 'alice', 'POST', '/api/repos', { name: 'big' });
    await cluster.settle();
    bus = await ForgeBus.connect({ nodeId: 'sse-slow-publisher', connection: { servers: cluster.nats.url }, provisionStream: false });
  });

  after(async () => {
    for (const c of cleanup) await c();
    await bus?.close();
    await cluster?.dispose();
  });

  it('is disconnected after the limit, the reading client gets every event, memory stays bounded, and the dropped one resumes', async (t) => {
    const node = cluster.url(1);
    const pid = cluster.node(1).child.pid!;
    const token = await cluster.token('alice');
    const published: PublishedEvent[] = [];
    let n = 0;
    const publishBatch = async () => {
      const batch = await Promise.all(
        Array.from({ length: BATCH }, () => {
          const i = ++n;
          const title = `${String(i).padStart(6, '0')} ${'x'.repeat(TITLE_BYTES - 7)}`;
          return bus.publish({ type: 'issue.created', repo: { owner: 'alice', name: 'big' }, actor: 'alice', payload: { number: i, title } });
        }),
      );
      published.push(...batch);
    };
    const frameBytes = (e: PublishedEvent) => Buffer.byteLength(`id: ${e.seq}\nevent: ${e.envelope.type}\ndata: ${JSON.stringify(e.envelope)}\n\n`);

    const start = await cluster.settle();
    const stalled = await RawHttpStream.get(node, '/api/events?repos=alice/big', { authorization: `Bearer ${token}` }, { pauseAfterHead: true });
    cleanup.push(() => stalled.destroy());
    assert.equal(stalled.status, 200, stalled.head);
    const normal = new ReaderProcess(`${node}/api/events?repos=alice/big`, token);
    cleanup.push(() => normal.stop());
    assert.equal(await normal.opened(), 200);
    await eventually(async () => (await cluster.sseStats(1)).clients === 2, 10_000, 'both streams open');

    // The reading client keeps up with every batch before the next one goes out.
    const caughtUp = async () => {
      try {
        await eventually(() => normal.events.length >= published.length || normal.end, 30_000, `the reading client to get ${published.length} events`);
        if (normal.events.length < published.length) throw new Error(`stream ended: ${normal.end}`);
      } catch (err) {
        const stats = await cluster.sseStats(1).catch((e: Error) => e.message);
        throw new Error(
          `${(err as Error).message}; it has ${normal.events.length}, its stream ${normal.end ?? 'is open'}; ` +
            `node: ${JSON.stringify(stats)}; log: ${cluster.node(1).output.slice(-5).join(' | ')}`,
        );
      }
    };
    await publishBatch();
    await caughtUp();
    const baseline = rssBytes(pid);
    let peak = baseline;
    const sampler = setInterval(() => {
      try {
        peak = Math.max(peak, rssBytes(pid));
      } catch {
        // the process is gone: the assertions below say so
      }
    }, 50);
    cleanup.push(() => clearInterval(sampler));

    let droppedAfter = (await cluster.sseStats(1)).slowDisconnects > 0 ? published.length : -1;
    for (let b = 1; b < BATCHES; b++) {
      await publishBatch();
      await caughtUp();
      if (droppedAfter < 0 && (await cluster.sseStats(1)).slowDisconnects > 0) droppedAfter = published.length;
    }
    clearInterval(sampler);
    peak = Math.max(peak, rssBytes(pid));
    const stats = await cluster.sseStats(1);

    // Everything published went to the stalled client's repository, far more than the bound.
    const publishedBytes = published.reduce((sum, e) => sum + frameBytes(e), 0);
    assert.ok(publishedBytes > 2 * RSS_BOUND, `published ${publishedBytes} bytes, more than twice the ${RSS_BOUND}-byte bound`);

    // Memory: bounded, although the stalled client was sent far more than the bound.
    const growth = peak - baseline;
    t.diagnostic(
      `published ${(publishedBytes / 2 ** 20).toFixed(0)} MiB in ${published.length} events; stalled client dropped after ${droppedAfter}; ` +
        `node RSS baseline ${(baseline / 2 ** 20).toFixed(0)} MiB, peak ${(peak / 2 ** 20).toFixed(0)} MiB (+${(growth / 2 ** 20).toFixed(0)} MiB)`,
    );
    assert.ok(growth < RSS_BOUND, `RSS grew by ${growth} bytes (bound ${RSS_BOUND})`);

    // The stalled client was dropped once (and counted), the reading one never. (`droppedAfter`
    // is known to the batch: the drop happened within that many events.)
    assert.equal(stats.slowDisconnects, 1, JSON.stringify(stats));
    assert.ok(droppedAfter > 0 && droppedAfter < published.length / 2, `dropped after ${droppedAfter} of ${published.length} events`);
    assert.equal(stats.clients, 1);
    assert.equal(normal.end, undefined, 'the reading client is still connected');

    // The reading client got every event, in order, each once.
    const got = normal.events;
    const want = [...published].sort((a, b) => a.seq - b.seq).map((e) => `${e.seq} issue.created ${e.envelope.id} ${TITLE_BYTES}`);
    assert.equal(got.length, want.length);
    assert.deepEqual(got, want);
    assert.equal(want[0]!.split(' ')[0], String(start + 1));

    // The node closed the stalled socket: reading it now yields what the kernel buffered, then the end.
    stalled.read();
    await eventually(() => stalled.closed, 15_000, 'the stalled socket to close');
    const received = parseSseBlocks(stalled.dechunked().toString('utf8')).frames.filter((f) => f.data !== undefined && f.event !== 'position');
    const receivedIds = received.map((f) => f.id);
    const sortedSeqs = [...published].sort((a, b) => a.seq - b.seq).map((e) => String(e.seq));
    assert.ok(received.length > 0 && received.length < sortedSeqs.length / 2, `the stalled client had ${received.length} events in its buffers`);
    assert.deepEqual(receivedIds, sortedSeqs.slice(0, received.length), 'what it got is a gap-free start of the stream');
    assert.ok(stalled.bodyBytes < RSS_BOUND, `${stalled.bodyBytes} bytes were on the way to it`);

    // It comes back with Last-Event-ID and gets the rest: nothing lost, nothing twice.
    const resumed = new ReaderProcess(`${node}/api/events?repos=alice/big`, token, receivedIds.at(-1)!);
    cleanup.push(() => resumed.stop());
    assert.equal(await resumed.opened(), 200);
    const rest = want.slice(received.length);
    await eventually(() => resumed.events.length >= rest.length || resumed.end, 30_000, `the ${rest.length} events it missed`);
    assert.deepEqual(resumed.events, rest);
    const after = await cluster.sseStats(1);
    assert.equal(after.slowDisconnects, 1, 'the replay did not count as slow');
    assert.equal(after.replays, 1);
    await resumed.stop();
    await normal.stop();
  });
});
