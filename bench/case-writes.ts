/**
 * Issue #5 benchmark: the repository write queue against a per-repository NATS KV lock
 * (acquire with kv.create, write, release with kv.delete) under the same load.
 *
 * Both run in this process (3 worker queues on 3 connections for the queue; the same submitter
 * window for the lock), against the bench's nats-server, with a no-op write and with a real git
 * commit (the example forge's `commitFile`, on bare repositories in a temporary directory).
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Kvm, type KV } from '@nats-io/kv';
import { ForgeBus, silentLogger, type RepoRef } from '../src/bus/index.js';
import { commitFile } from '../src/forge-node/git/git-writes.js';
import { RepoWriteQueue, type RepoWriteContext } from '../src/repo-writes/index.js';
import type { BenchContext, Row } from './cases.js';
import { log, percentile, sleep, windowed } from './common.js';

export interface WritesRow {
  method: 'queue' | 'kv-lock';
  write: 'no-op' | 'git commit';
  repos: number;
  writes: number;
  /** Writes in flight at once (submitted and waiting, or waiting for the lock). */
  window: number;
  perSecond: number;
  p50Ms: number;
  p99Ms: number;
  /** kv-lock only: failed acquisition attempts per write. */
  retriesPerWrite?: number;
}

export interface WritesOptions {
  noopWrites: number;
  gitWrites: number;
  /** Writes in flight at once, one row set per value (both methods get the same load). */
  windows: number[];
}

type Work = (repo: RepoRef, i: number, writeId: string) => Promise<unknown>;

const repoList = (n: number, prefix: string): RepoRef[] => Array.from({ length: n }, (_, i) => ({ owner: 'bench', name: `${prefix}${i}` }));

async function measure(writes: number, window: number, run: (i: number) => Promise<unknown>): Promise<{ perSecond: number; p50Ms: number; p99Ms: number }> {
  const latencies = new Float64Array(writes);
  const started = performance.now();
  await windowed(writes, window, async (i) => {
    const t0 = performance.now();
    await run(i);
    latencies[i] = performance.now() - t0;
  });
  const seconds = (performance.now() - started) / 1000;
  latencies.sort();
  return { perSecond: writes / seconds, p50Ms: percentile(latencies, 0.5), p99Ms: percentile(latencies, 0.99) };
}

async function acquire(kv: KV, key: string, owner: string, counters: { retries: number }): Promise<void> {
  let delay = 1;
  for (;;) {
    try {
      await kv.create(key, owner);
      return;
    } catch {
      counters.retries++;
      await sleep(delay * (0.5 + Math.random()));
      delay = Math.min(delay * 2, 20);
    }
  }
}

export async function runWritesCases(url: string, options: WritesOptions): Promise<WritesRow[]> {
  const gitDir = mkdtempSync(join(tmpdir(), 'forgebus-bench-git-'));
  const buses = await Promise.all(['bw-1', 'bw-2', 'bw-3'].map((id) => ForgeBus.connect({ nodeId: id, connection: { servers: url }, logger: silentLogger })));
  const queues = buses.map((bus) => new RepoWriteQueue(bus, { logger: silentLogger, timeoutMs: 120_000 }));
  const rows: WritesRow[] = [];
  let work: Work = async () => null;
  try {
    for (const q of queues) {
      await q.init();
      q.handle('bench', (ctx: RepoWriteContext<{ i: number }>) => work(ctx.repo, ctx.args.i, ctx.writeId));
      await q.startWorkers();
    }
    const kv = await new Kvm(buses[0]!.nc).create('BENCH_REPO_LOCKS', { ttl: 60_000 });
    const gitRepoPath = (r: RepoRef) => join(gitDir, `${r.name}.git`);
    const gitWork: Work = (repo, i, writeId) =>
      commitFile(gitRepoPath(repo), { writeId, branch: 'main', path: `f${i % 5}.txt`, content: `write ${i}`, message: `write ${i}`, author: 'bench', date: new Date().toISOString() });

    // One repository serializes everything, whatever the method: fewer writes keep that row short.
    const noop: Work = async () => null;
    const cases: [WritesRow['write'], number, number, Work, number][] = options.windows.flatMap((window) => [
      ['no-op', 1, Math.ceil(options.noopWrites / 6), noop, window] as [WritesRow['write'], number, number, Work, number],
      ['no-op', 10, options.noopWrites, noop, window],
      ['no-op', 100, options.noopWrites, noop, window],
    ]);
    cases.push(['git commit', 1, Math.ceil(options.gitWrites / 2), gitWork, options.windows[0]!], ['git commit', 10, options.gitWrites, gitWork, options.windows[0]!]);
    for (const [write, repoCount, writes, caseWork, window] of cases) {
      const repos = repoList(repoCount, write === 'no-op' ? 'noop' : 'git');
      if (write === 'git commit') {
        for (const r of repos) {
          rmSync(gitRepoPath(r), { recursive: true, force: true });
          execFileSync('git', ['init', '--bare', '--quiet', '--initial-branch=main', gitRepoPath(r)]);
        }
      }
      work = caseWork;
      const q = await measure(writes, window, (i) => queues[i % 3]!.submit(repos[i % repoCount]!, 'bench', { i }));
      rows.push({ method: 'queue', write, repos: repoCount, writes, window, ...q });
      log(`writes: queue, ${write}, ${repoCount} repos: ${Math.round(q.perSecond)} writes/s, p99 ${q.p99Ms.toFixed(1)} ms`);

      if (write === 'git commit') {
        for (const r of repos) {
          rmSync(gitRepoPath(r), { recursive: true, force: true });
          execFileSync('git', ['init', '--bare', '--quiet', '--initial-branch=main', gitRepoPath(r)]);
        }
      }
      const counters = { retries: 0 };
      const l = await measure(writes, window, async (i) => {
        const repo = repos[i % repoCount]!;
        const key = `${repo.owner}.${repo.name}`;
        await acquire(kv, key, `w${i % 3}`, counters);
        try {
          await caseWork(repo, i, `lock-${i}`);
        } finally {
          await kv.delete(key);
        }
      });
      rows.push({ method: 'kv-lock', write, repos: repoCount, writes, window, ...l, retriesPerWrite: counters.retries / writes });
      log(`writes: kv-lock, ${write}, ${repoCount} repos: ${Math.round(l.perSecond)} writes/s, p99 ${l.p99Ms.toFixed(1)} ms`);
    }
  } finally {
    for (const q of queues) await q.stop().catch(() => undefined);
    for (const b of buses) await b.close().catch(() => undefined);
    rmSync(gitDir, { recursive: true, force: true });
  }
  return rows;
}

export function writesTable(rows: WritesRow[]): string {
  const lines = [
    '| write | repos | in flight | writes | queue writes/s | queue p50 / p99 ms | kv-lock writes/s | kv-lock p50 / p99 ms | lock retries/write | queue / lock |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const q of rows.filter((r) => r.method === 'queue')) {
    const l = rows.find((r) => r.method === 'kv-lock' && r.write === q.write && r.repos === q.repos && r.window === q.window)!;
    lines.push(
      `| ${q.write} | ${q.repos} | ${q.window} | ${q.writes} | ${Math.round(q.perSecond).toLocaleString('en-US')} | ${q.p50Ms.toFixed(1)} / ${q.p99Ms.toFixed(1)} | ` +
        `${Math.round(l.perSecond).toLocaleString('en-US')} | ${l.p50Ms.toFixed(1)} / ${l.p99Ms.toFixed(1)} | ${(l.retriesPerWrite ?? 0).toFixed(1)} | ${(q.perSecond / l.perSecond).toFixed(2)}x |`,
    );
  }
  return lines.join('\n');
}

/** `npm run bench -- --only writes`: the cases above as a report of the main bench. */
export async function caseWrites(ctx: BenchContext): Promise<Row[]> {
  const rows = await runWritesCases(ctx.url, { noopWrites: 3000, gitWrites: 150, windows: [100, 500] });
  const byKey = (method: WritesRow['method'], write: WritesRow['write'], repos: number, window: number) =>
    rows.find((r) => r.method === method && r.write === write && r.repos === repos && r.window === window);
  const notes: string[] = [];
  for (const window of [100, 500]) {
    const q = byKey('queue', 'no-op', 100, window);
    const l = byKey('kv-lock', 'no-op', 100, window);
    if (q && l) {
      notes.push(
        `  goal, ${window} in flight, 100 repositories: queue >= 2,000 no-op writes/s: ${Math.round(q.perSecond).toLocaleString('en-US')} ${q.perSecond >= 2000 ? 'met' : 'NOT MET'}; ` +
          `queue >= 1.5x kv-lock: ${(q.perSecond / l.perSecond).toFixed(2)}x ${q.perSecond >= 1.5 * l.perSecond ? 'met' : 'NOT MET'}`,
      );
    }
  }
  const table = writesTable(rows).split('\n');
  const split = (line: string) => line.split('|').slice(1, -1).map((c) => c.trim());
  ctx.reports.push({
    id: 'writes',
    title: 'writes: repository write queue vs per-repository KV lock (3 workers; same writes in flight for both)',
    header: split(table[0]!),
    rows: table.slice(2).map(split),
    numeric: [1, 2, 3, 4, 5, 6, 7, 8, 9],
    notes,
    incomplete: [],
    data: rows,
  });
  return [];
}
