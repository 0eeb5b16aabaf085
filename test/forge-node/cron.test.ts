import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { apiClient, startForgeNode, tokenFor, type TestForgeNode } from '../support/forge-node.js';
import { eventually, startTestNats, type TestNats } from '../support/nats.js';

describe('the repo-stats cron job of the example node', () => {
  let nats: TestNats;
  let dataDir: string;
  const nodes: TestForgeNode[] = [];
  const env = { FORGE_CRON_REPO_STATS: '* * * * * *' };

  before(async () => {
    nats = await startTestNats();
    dataDir = mkdtempSync(join(tmpdir(), 'forgebus-repostats-'));
    nodes.push(await startForgeNode({ id: 'rs1', natsUrl: nats.url, dataDir, env }));
    nodes.push(await startForgeNode({ id: 'rs2', natsUrl: nats.url, dataDir, env }));
  });

  after(async () => {
    for (const node of nodes) await node.kill('SIGKILL');
    await nats?.dispose();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  it('recounts open issues and sizes once per tick in the cluster; GET /api/cron and /api/cron/runs show it', async () => {
    const alice = apiClient(nodes[0]!.url, await tokenFor('alice'));
    assert.equal((await alice('POST', '/api/repos', { name: 'stats' })).status, 201);
    for (const title of ['a', 'b', 'c']) assert.equal((await alice('POST', '/api/repos/alice/stats/issues', { title })).status, 201);
    assert.equal((await alice('PATCH', '/api/repos/alice/stats/issues/2', { state: 'closed' })).status, 200);

    const db = new Database(join(dataDir, 'forge.db'), { readonly: true });
    try {
      const row = await eventually(
        () => db.prepare('SELECT open_issues, size_bytes FROM repo_stats WHERE owner = ? AND name = ?').get('alice', 'stats') as { open_issues: number; size_bytes: number } | undefined,
        10_000,
        'a repo-stats run',
      );
      await eventually(() => (db.prepare('SELECT open_issues FROM repo_stats WHERE owner = ? AND name = ?').get('alice', 'stats') as { open_issues: number }).open_issues === 2, 10_000, 'the recount after the close');
      assert.ok(row.size_bytes > 0, 'the bare repository has a size on disk');
    } finally {
      db.close();
    }

    const jobs = (await alice('GET', '/api/cron')).body.jobs as { name: string; schedule: string; lastRun: { outcome: string } | null; nextTick: string }[];
    assert.deepEqual(jobs.map((j) => [j.name, j.schedule]), [['repo-stats', '* * * * * *']]);
    assert.ok(Date.parse(jobs[0]!.nextTick) > Date.now() - 2_000);
    assert.ok(jobs[0]!.lastRun);
    await eventually(async () => ((await alice('GET', '/api/cron/runs?job=repo-stats')).body.runs as unknown[]).length >= 4, 10_000, 'a few runs');
    const runs = (await apiClient(nodes[1]!.url, await tokenFor('bob'))('GET', '/api/cron/runs?job=repo-stats')).body.runs as { tick: string; node: string; startedAt: string; finishedAt: string; outcome: string }[];
    const ticks = runs.map((r) => r.tick);
    assert.equal(new Set(ticks).size, ticks.length, 'each tick once');
    assert.deepEqual([...ticks].sort().reverse(), ticks, 'newest first');
    assert.ok(runs.every((r) => ['rs1', 'rs2'].includes(r.node) && r.startedAt && (r.outcome === 'running' || r.finishedAt)));
    assert.equal((await alice('GET', '/api/cron/runs?job=nope')).status, 400);
  });
});
