import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { jetstreamManager } from '@nats-io/jetstream';
import { ForgeBus, silentLogger } from '../../src/bus/index.js';
import { RepoWriteQueue, WRITES_STREAM, type RepoWriteContext } from '../../src/repo-writes/index.js';
import { eventually, startTestNats, type TestNats } from '../support/nats.js';

// The write workers' consumers are deleted while writes flow: the workers must notice, re-create
// them and go on, with no process restarted (issue 10: a worker loop that ended stayed ended).
describe('repository write workers heal themselves', () => {
  let nats: TestNats;
  const nodes: { bus: ForgeBus; queue: RepoWriteQueue }[] = [];
  const applied = new Map<string, number>();

  before(async () => {
    nats = await startTestNats();
    for (const id of ['h1', 'h2', 'h3']) {
      const bus = await ForgeBus.connect({ nodeId: id, connection: { servers: nats.url }, logger: silentLogger });
      const queue = new RepoWriteQueue(bus, { logger: silentLogger, partitions: 8, timeoutMs: 120_000 });
      await queue.init();
      queue.handle('append', async (ctx: RepoWriteContext<{ key: string }>) => {
        applied.set(ctx.args.key, (applied.get(ctx.args.key) ?? 0) + 1);
        await new Promise((r) => setTimeout(r, 2));
        return ctx.args.key;
      });
      await queue.startWorkers();
      nodes.push({ bus, queue });
    }
  });

  after(async () => {
    for (const { bus, queue } of nodes) {
      await queue.stop();
      await bus.close();
    }
    await nats?.dispose();
  });

  it('every partition consumer deleted twice under load: every write is applied once, the queue drains', async () => {
    const jsm = await jetstreamManager(nodes[0]!.bus.nc);
    const deleteAllConsumers = async () => {
      const names: string[] = [];
      for await (const info of jsm.consumers.list(WRITES_STREAM)) names.push(info.name);
      await Promise.all(names.map((name) => jsm.consumers.delete(WRITES_STREAM, name)));
      return names.length;
    };
    const keys = Array.from({ length: 400 }, (_, i) => `w${i}`);
    const results = Promise.all(keys.map((key, i) => nodes[i % 3]!.queue.submit({ owner: 'heal', name: `r${i % 20}` }, 'append', { key })));
    await eventually(() => applied.size >= 50, 30_000, 'the first writes to be applied');
    assert.equal(await deleteAllConsumers(), 8, 'all partition consumers existed');
    await eventually(() => applied.size >= 200, 60_000, 'writes to be applied again after the first deletion');
    await deleteAllConsumers();
    assert.deepEqual(await results, keys, 'every submitter got its own result');
    assert.deepEqual([...applied.values()].filter((n) => n !== 1), [], 'each write applied exactly once');
    assert.equal(applied.size, keys.length);
    const restarts = nodes.reduce((n, { queue }) => n + queue.stats.workerRestarts, 0);
    assert.ok(restarts >= 8, `workers re-opened their consumers (${restarts} restarts)`);
    const queued = await nodes[0]!.queue.queued();
    assert.deepEqual(Object.values(queued).filter((n) => n !== 0), [], 'the queue drained');
  });
});
