import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { apiClient, startForgeNode, tokenFor, type TestForgeNode } from '../support/forge-node.js';
import { eventually, startTestNats, type TestNats } from '../support/nats.js';
import { openTestDatabase, TEST_DATABASES, type TestDatabase } from '../support/database.js';

const runFile = promisify(execFile);

function history(dataDir: string, repo: string): { sha: string; parents: string[]; subject: string; writeId: string }[] {
  let out: string;
  try {
    out = execFileSync('git', ['--git-dir', join(dataDir, 'repos', 'alice', `${repo}.git`), 'log', '--format=%H%x00%P%x00%s%x00%(trailers:key=Forge-Write-Id,valueonly)%x01', 'main'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    });
  } catch {
    return []; // no commit on main yet
  }
  return out
    .split('\x01')
    .map((l) => l.trim())
    .filter(Boolean)
    .map((line) => {
      const [sha, parents, subject, writeId] = line.split('\0');
      return { sha: sha!, parents: parents ? parents.split(' ') : [], subject: subject!, writeId: (writeId ?? '').trim() };
    });
}

function assertLinear(commits: { parents: string[] }[]): void {
  commits.forEach((c, i) => {
    assert.ok(c.parents.length <= 1, 'no merge commits');
    if (i < commits.length - 1) assert.equal(c.parents[0], (commits[i + 1] as { sha: string } & typeof c).sha, 'each commit sits on the previous one');
  });
}

for (const kind of TEST_DATABASES) describe(`serialized repository writes across forge node processes (real git) (${kind})`, () => {
  let database: TestDatabase | undefined;
  let nats: TestNats;
  let dataDir: string;
  let nodes: TestForgeNode[] = [];
  let token: string;

  before(async () => {
    nats = await startTestNats();
    dataDir = mkdtempSync(join(tmpdir(), 'forgebus-writes-'));
    // A short ack wait so that a write held by a killed worker comes back within the test.
    // 300 commits to one repository are applied one after another (~8 git processes each): on a
    // busy 2-core machine the last may wait more than the default minute for its result.
    const env = { FORGE_WRITE_ACK_WAIT_MS: '2000', FORGE_WRITE_PARTITIONS: '8', FORGE_WRITE_TIMEOUT_MS: '240000' };
    database = await openTestDatabase(kind, dataDir);
    nodes = await Promise.all(['w-1', 'w-2', 'w-3'].map((id) => startForgeNode({ id, natsUrl: nats.url, dataDir, env: { ...env, ...database!.env } })));
    token = await tokenFor('alice');
  });

  after(async () => {
    await Promise.all(nodes.map((n) => n.kill('SIGKILL')));
    await nats?.dispose();
    await database?.dispose();
    rmSync(dataDir, { recursive: true, force: true });
  });

  const commit = (node: TestForgeNode, repo: string, i: number) =>
    apiClient(node.url, token)('POST', `/api/repos/alice/${repo}/commits`, { branch: 'main', path: `files/${i % 7}.txt`, content: `content ${i}`, message: `write ${i}` });

  it('300 concurrent commits to one repository over 3 nodes: 300 commits, linear, each once, each answered with its own sha', async () => {
    assert.equal((await apiClient(nodes[0]!.url, token)('POST', '/api/repos', { name: 'busy' })).status, 201);
    const responses = await Promise.all(Array.from({ length: 300 }, (_, i) => commit(nodes[i % 3]!, 'busy', i)));
    assert.deepEqual(responses.filter((r) => r.status !== 201), [], 'every request succeeded');
    const commits = history(dataDir, 'busy');
    assert.equal(commits.length, 300);
    assertLinear(commits);
    const subjects = commits.map((c) => c.subject).sort();
    assert.deepEqual(subjects, Array.from({ length: 300 }, (_, i) => `write ${i}`).sort(), 'each request applied exactly once');
    const bySha = new Map(commits.map((c) => [c.sha, c]));
    responses.forEach((r, i) => {
      assert.equal(bySha.get(r.body.sha)?.subject, `write ${i}`, `request ${i} got the sha of its own commit`);
      assert.equal(bySha.get(r.body.sha)?.parents[0] ?? null, r.body.parent);
    });
    const branch = await apiClient(nodes[1]!.url, token)('GET', '/api/repos/alice/busy/branches/main');
    assert.equal(branch.body.sha, commits[0]!.sha);
    const listed = await apiClient(nodes[2]!.url, token)('GET', '/api/repos/alice/busy/commits?branch=main');
    assert.deepEqual(listed.body.map((c: { sha: string }) => c.sha), commits.map((c) => c.sha));
  });

  it('with one node SIGKILLed mid-run, every write the queue accepted is in the history exactly once', async () => {
    assert.equal((await apiClient(nodes[0]!.url, token)('POST', '/api/repos', { name: 'crashy' })).status, 201);
    const victim = nodes[2]!;
    const requests = Array.from({ length: 150 }, (_, i) => commit(nodes[i % 3]!, 'crashy', i).catch((err: Error) => ({ status: 0, body: { error: err.message } })));
    // Kill the node while writes are flowing (it is both a web node and a worker).
    await eventually(() => history(dataDir, 'crashy').length >= 20, 30_000, 'the run to be under way').catch(() => undefined);
    await victim.kill('SIGKILL');
    const responses = await Promise.all(requests);
    const ok = responses.map((r, i) => [r, i] as const).filter(([r]) => r.status === 201);
    const survivorsFailed = responses.filter((r, i) => i % 3 !== 2 && r.status !== 201);
    assert.deepEqual(survivorsFailed, [], 'every request to a surviving node succeeded');

    // Everything accepted has been applied or failed: the WorkQueue stream drains.
    const nc = await connect({ servers: nats.url });
    try {
      const jsm = await jetstreamManager(nc);
      await eventually(async () => (await jsm.streams.info('FORGE_REPO_WRITES')).state.messages === 0, 30_000, 'the write queue to drain');
    } finally {
      await nc.close();
    }
    const commits = history(dataDir, 'crashy');
    assertLinear(commits);
    const subjects = commits.map((c) => c.subject);
    assert.equal(new Set(subjects).size, subjects.length, 'no write applied twice');
    assert.equal(new Set(commits.map((c) => c.writeId)).size, commits.length, 'one commit per write id');
    for (const [r, i] of ok) {
      assert.equal(subjects.filter((s) => s === `write ${i}`).length, 1, `acknowledged write ${i} is in the history once`);
      assert.ok(commits.some((c) => c.sha === r.body.sha));
    }
    nodes = nodes.slice(0, 2);
  });

  it('without the queue, concurrent read-modify-write of a branch loses updates (the race this removes)', async () => {
    const repo = join(dataDir, 'naive.git');
    execFileSync('git', ['init', '--bare', '--quiet', '--initial-branch=main', repo]);
    const writer = fileURLToPath(new URL('../fixtures/naive-git-writer.js', import.meta.url));
    const perWriter = 25;
    await Promise.all(['a', 'b', 'c'].map((w) => runFile(process.execPath, [writer, repo, w, String(perWriter)])));
    const count = Number(execFileSync('git', ['--git-dir', repo, 'rev-list', '--count', 'main'], { encoding: 'utf8' }).trim());
    assert.ok(count < 3 * perWriter, `expected lost updates: ${count} commits survived of ${3 * perWriter}`);
  });
});
