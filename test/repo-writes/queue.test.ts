import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ForgeBus, silentLogger } from '../../src/bus/index.js';
import { PermanentWriteError, RepoWriteQueue, WriteFailedError, partitionOf, type RepoWriteContext } from '../../src/repo-writes/index.js';
import { startTestNats, type TestNats } from '../support/nats.js';

// Three queues on three connections stand for three nodes; the multi-process and kill -9 proofs
// are in git-cluster.test.ts.
describe('repository write queue', () => {
  let nats: TestNats;
  const nodes: { bus: ForgeBus; queue: RepoWriteQueue }[] = [];
  /** [repo, start, end, seq] of every applied write. */
  const spans: [string, number, number, number][] = [];
  let poisonAttempts = 0;

  before(async () => {
    nats = await startTestNats();
    for (const id of ['w1', 'w2', 'w3']) {
      const bus = await ForgeBus.connect({ nodeId: id, connection: { servers: nats.url }, logger: silentLogger });
      const queue = new RepoWriteQueue(bus, { logger: silentLogger, maxDeliver: 3, retryDelayMs: 20, timeoutMs: 30_000 });
      await queue.init();
      queue.handle('append', async (ctx: RepoWriteContext<{ i: number; ms?: number }>) => {
        const start = performance.now();
        await new Promise((r) => setTimeout(r, ctx.args.ms ?? 1));
        spans.push([`${ctx.repo.owner}/${ctx.repo.name}`, start, performance.now(), ctx.seq]);
        return { i: ctx.args.i, by: id };
      });
      queue.handle('poison', () => {
        poisonAttempts++;
        throw new Error('this write always fails');
      });
      queue.handle('conflict', () => {
        throw new PermanentWriteError('branch moved', 409);
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

  it('applies writes of one repository one at a time, in acceptance order, spread over the workers', async () => {
    spans.length = 0;
    const repo = { owner: 'acme', name: 'one' };
    const results = await Promise.all(Array.from({ length: 120 }, (_, i) => nodes[i % 3]!.queue.submit<{ i: number; by: string }>(repo, 'append', { i })));
    assert.deepEqual(results.map((r) => r.i), Array.from({ length: 120 }, (_, i) => i), 'each submitter got its own result');
    assert.equal(spans.length, 120, 'each write applied once');
    const sorted = [...spans].sort((a, b) => a[1] - b[1]);
    for (let k = 1; k < sorted.length; k++) {
      assert.ok(sorted[k]![1] >= sorted[k - 1]![2], `writes ${k - 1} and ${k} overlapped in time`);
      assert.ok(sorted[k]![3] > sorted[k - 1]![3], 'applied in stream (acceptance) order');
    }
    assert.ok(new Set(results.map((r) => r.by)).size > 1, 'more than one worker applied writes');
  });

  it('writes 50 repositories at once: overlap between repositories, never within one', async () => {
    spans.length = 0;
    const repos = Array.from({ length: 50 }, (_, i) => ({ owner: 'many', name: `r${i}` }));
    assert.ok(new Set(repos.map((r) => partitionOf(r, nodes[0]!.queue.partitions))).size > 10, 'the repositories span many partitions');
    await Promise.all(repos.flatMap((repo, r) => Array.from({ length: 6 }, (_, i) => nodes[(r + i) % 3]!.queue.submit(repo, 'append', { i, ms: 5 }))));
    assert.equal(spans.length, 300);
    const byRepo = new Map<string, [number, number][]>();
    for (const [repo, start, end] of spans) byRepo.set(repo, [...(byRepo.get(repo) ?? []), [start, end]]);
    for (const [repo, list] of byRepo) {
      list.sort((a, b) => a[0] - b[0]);
      for (let k = 1; k < list.length; k++) assert.ok(list[k]![0] >= list[k - 1]![1], `${repo}: two writes overlapped`);
    }
    // Peak number of writes in progress at once, across repositories.
    const edges = spans.flatMap(([, s, e]) => [[s, 1] as const, [e, -1] as const]).sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    let current = 0;
    let peak = 0;
    for (const [, d] of edges) peak = Math.max(peak, (current += d));
    assert.ok(peak >= 3, `writes to different repositories should run in parallel (peak ${peak})`);
  });

  it('reports a poisoned write failed after max_deliver, records it, and goes on with the repository', async () => {
    const repo = { owner: 'acme', name: 'poisoned' };
    poisonAttempts = 0;
    const poisoned = nodes[0]!.queue.submit(repo, 'poison', { x: 1 });
    const after1 = nodes[1]!.queue.submit<{ i: number }>(repo, 'append', { i: 1 });
    const after2 = nodes[2]!.queue.submit<{ i: number }>(repo, 'append', { i: 2 });
    await assert.rejects(poisoned, (err: unknown) => err instanceof WriteFailedError && err.deliveries === 3 && /always fails/.test(err.message));
    assert.equal(poisonAttempts, 3);
    assert.deepEqual([(await after1).i, (await after2).i], [1, 2]);
    const failures = await nodes[2]!.queue.listFailures();
    const failure = failures.find((f) => f.repo.name === 'poisoned');
    assert.ok(failure, 'the failure is listed for operators');
    assert.equal(failure.operation, 'poison');
    assert.deepEqual(failure.args, { x: 1 });
  });

  it('fails a permanent error at once with its status, without retries or an operator record', async () => {
    const repo = { owner: 'acme', name: 'conflicted' };
    await assert.rejects(
      nodes[1]!.queue.submit(repo, 'conflict', {}),
      (err: unknown) => err instanceof WriteFailedError && err.status === 409 && err.deliveries === 1,
    );
    assert.equal((await nodes[1]!.queue.listFailures()).some((f) => f.repo.name === 'conflicted'), false);
  });

  it('stores a retried submit (same write id) once and answers both submitters', async () => {
    spans.length = 0;
    const repo = { owner: 'acme', name: 'retried' };
    const writeId = 'retry-me-0001';
    const [a, b] = await Promise.all([
      nodes[0]!.queue.submit<{ i: number }>(repo, 'append', { i: 7, ms: 50 }, { writeId }),
      nodes[1]!.queue.submit<{ i: number }>(repo, 'append', { i: 7, ms: 50 }, { writeId }),
    ]);
    assert.deepEqual([a.i, b.i], [7, 7]);
    assert.equal(spans.filter(([r]) => r === 'acme/retried').length, 1, 'applied once');
  });

  it('refuses an operation nobody handles, as a failure', async () => {
    await assert.rejects(nodes[0]!.queue.submit({ owner: 'acme', name: 'x' }, 'no-such-operation', {}), /no handler for operation "no-such-operation"/);
  });
});
