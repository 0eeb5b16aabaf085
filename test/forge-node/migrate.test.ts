import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { alive, commOf, descendants } from '../fixtures/process-tree.js';
import { buildGitSource, serveSlowly, type GitSource, type SlowGitServer } from '../fixtures/slow-git-http.js';
import { apiClient, startForgeNode, tokenFor, type TestForgeNode } from '../support/forge-node.js';
import { eventually, startTestNats, type TestNats } from '../support/nats.js';

const TTL_MS = 2_000;

// Migrations as tasks across real nodes: POST …/migrate, GET/DELETE /api/tasks, crash recovery.
describe('POST /api/repos/:owner/:name/migrate and /api/tasks across nodes', () => {
  let nats: TestNats;
  let dataDir: string;
  let sourceDir: string;
  let source: GitSource;
  let slow: SlowGitServer;
  const nodes: TestForgeNode[] = [];
  const strays: number[] = [];
  let alice: ReturnType<typeof apiClient>[];
  const as = async (user: string, node = 0) => apiClient(nodes[node]!.url, await tokenFor(user));

  before(async () => {
    nats = await startTestNats();
    dataDir = mkdtempSync(join(tmpdir(), 'forgebus-migrate-'));
    sourceDir = mkdtempSync(join(tmpdir(), 'forgebus-migrate-src-'));
    // 400 kB trickled at 20 kB/s: a clone takes ~20 s unless stopped.
    source = buildGitSource(sourceDir, 400);
    slow = await serveSlowly(source.bareDir, { chunkBytes: 2_048, everyMs: 100 });
    const env = { FORGE_NODE_TTL_MS: String(TTL_MS) };
    for (const id of ['n1', 'n2', 'n3']) nodes.push(await startForgeNode({ id, natsUrl: nats.url, dataDir, env }));
    alice = await Promise.all([0, 1, 2].map((i) => as('alice', i)));
    await eventually(async () => ((await alice[0]!('GET', '/api/nodes')).body.nodes as unknown[]).length === 3, 10_000, 'three members');
  });

  after(async () => {
    for (const node of nodes) await node.kill('SIGKILL');
    for (const pid of strays) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
    await slow?.close();
    await nats?.dispose();
    for (const dir of [dataDir, sourceDir]) if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /**
   * n1's git processes once the clone fetches: git, its fetch child and git-remote-http. Waiting
   * for the helper matters: a cancel that kills only the first git leaves the other two running
   * as orphans (reparented away from n1), which only a list taken before the cancel can catch.
   */
  const gitCloneOf = (node: TestForgeNode) =>
    eventually(() => {
      // Only once the pack downloads: earlier, orphans of a half-killed clone die of a broken pipe on their own.
      if (!slow.paths.slice(fetchesBefore).some((p) => p.endsWith('.pack'))) return undefined;
      const pids = descendants(node.child.pid!, 'git');
      return pids.some((pid) => commOf(pid) === 'git-remote-http') ? pids : undefined;
    }, 8_000, `git clone (with git-remote-http) under ${node.id}, fetching the pack`);
  let fetchesBefore = 0;
  const repoDir = (name: string) => join(dataDir, 'repos', 'alice', `${name}.git`);
  const tmpLeft = () => (existsSync(join(dataDir, 'tmp')) ? readdirSync(join(dataDir, 'tmp')) : []);

  it('refuses bad sources, other owners and existing repositories, without echoing server paths', async () => {
    const post = (from: unknown, name = 'bad', api = alice[0]!) => api('POST', `/api/repos/alice/${name}/migrate`, { from });
    for (const from of ['--upload-pack=touch /tmp/x', 'ext::sh -c touch% /tmp/x', 'ssh://h/r.git', 'relative/path', 42, `${dataDir}/repos/bob/secret.git`, `file://${dataDir}/repos`]) {
      const res = await post(from);
      assert.equal(res.status, 400, `refused: ${JSON.stringify(from)}`);
      assert.ok(!JSON.stringify(res.body).includes(dataDir), 'no server path in the answer');
    }
    assert.equal((await (await as('bob'))('POST', '/api/repos/alice/bad/migrate', { from: source.bareDir })).status, 403, 'only the owner');
    assert.equal((await alice[0]!('POST', '/api/repos', { name: 'taken' })).status, 201);
    assert.equal((await post(source.bareDir, 'taken')).status, 409, 'the repository exists');
    // A source git cannot read: the task fails with a clean reason and leaves nothing behind.
    const missing = await post(join(sourceDir, 'nope.git'), 'nope');
    assert.equal(missing.status, 202);
    const failed = await eventually(async () => {
      const t = (await alice[1]!('GET', `/api/tasks/${missing.body.task.id}`)).body?.task;
      return t?.state === 'failed' ? t : undefined;
    }, 10_000, 'the migration of a missing source to fail');
    assert.match(failed.error, /cannot clone the source/);
    assert.ok(!failed.error.includes(sourceDir), 'no server path or raw git output in the error');
    assert.equal((await alice[0]!('GET', '/api/repos/alice/nope')).status, 404);
    assert.ok(!existsSync(repoDir('nope')));
  });

  it('migrates from a local path: 202, the task succeeds, the repository has the source history and takes writes', async () => {
    const res = await alice[1]!('POST', '/api/repos/alice/copy/migrate', { from: source.bareDir });
    assert.equal(res.status, 202);
    assert.deepEqual(Object.keys(res.body.task).sort(), ['id', 'kind', 'node', 'state']);
    assert.deepEqual([res.body.task.kind, res.body.task.node], ['migrate', 'n2']);
    await eventually(async () => (await alice[0]!('GET', `/api/tasks/${res.body.task.id}`)).body?.task?.state === 'succeeded', 15_000, 'the migration to succeed');
    assert.deepEqual((await alice[2]!('GET', '/api/repos/alice/copy/branches/main')).body, { sha: source.head });
    const commit = await alice[2]!('POST', '/api/repos/alice/copy/commits', { branch: 'main', path: 'a.txt', content: 'x', message: 'after the migration' });
    assert.equal(commit.status, 201, JSON.stringify(commit.body));
    assert.equal(commit.body.parent, source.head);
  });

  it('cancels a migration running on n1 through n3: git is gone within 2 s, cancelled everywhere, no repository left', async () => {
    fetchesBefore = slow.paths.length;
    const res = await alice[0]!('POST', '/api/repos/alice/slow/migrate', { from: slow.url, private: true });
    assert.equal(res.status, 202, JSON.stringify(res.body));
    const id = res.body.task.id as string;
    assert.deepEqual([res.body.task.node, res.body.task.state], ['n1', 'running']);
    const gits = await gitCloneOf(nodes[0]!);

    // While it runs, writes are refused with the reason (through another node: the marker is shared).
    const commit = await alice[1]!('POST', '/api/repos/alice/slow/commits', { branch: 'main', path: 'a.txt', content: 'x', message: 'too early' });
    assert.deepEqual([commit.status, /being migrated/.test(commit.body.message)], [409, true], JSON.stringify(commit.body));
    assert.equal((await alice[2]!('POST', '/api/repos/alice/slow/migrate', { from: slow.url })).status, 409, 'one migration per repository');
    // Visibility: bob cannot see the private repository's task; carol (collaborator) sees it but may not cancel.
    assert.equal((await alice[0]!('PUT', '/api/repos/alice/slow/collaborators/carol')).status, 200);
    const bob = await as('bob', 2);
    assert.equal((await bob('GET', `/api/tasks/${id}`)).status, 404);
    assert.ok(!((await bob('GET', '/api/tasks')).body.tasks as { id: string }[]).some((t) => t.id === id));
    assert.equal((await bob('DELETE', `/api/tasks/${id}`)).status, 404);
    const carol = await as('carol', 2);
    assert.equal((await carol('GET', `/api/tasks/${id}`)).body.task.state, 'running');
    assert.equal((await carol('DELETE', `/api/tasks/${id}`)).status, 403);
    assert.ok(((await alice[2]!('GET', '/api/tasks')).body.tasks as { id: string }[]).some((t) => t.id === id), 'listed on n3');

    const cancelledAt = performance.now();
    const cancel = await alice[2]!('DELETE', `/api/tasks/${id}`);
    assert.equal(cancel.status, 200, JSON.stringify(cancel.body));
    assert.equal(cancel.body.task.state, 'cancelled');
    await eventually(() => gits.every((pid) => !alive(pid)) && descendants(nodes[0]!.child.pid!, 'git').length === 0, 2_000, "n1's git processes to be gone");
    assert.ok(performance.now() - cancelledAt < 2_000);
    for (const api of alice) {
      assert.equal((await api('GET', `/api/tasks/${id}`)).body.task.state, 'cancelled');
      assert.equal((await api('GET', '/api/repos/alice/slow')).status, 404, 'no repository record');
    }
    assert.ok(!existsSync(repoDir('slow')), 'no repository directory');
    assert.deepEqual(tmpLeft(), [], 'no partial clone');
    assert.equal((await alice[1]!('DELETE', `/api/tasks/${id}`)).status, 409, 'already finished');
    assert.equal((await alice[1]!('DELETE', '/api/tasks/no-such-task')).status, 404);
  });

  it('SIGKILL of the node running a migration: within the TTL the task reads failed, naming it, on every survivor; nothing left', async () => {
    fetchesBefore = slow.paths.length;
    const res = await alice[0]!('POST', '/api/repos/alice/crash/migrate', { from: slow.url });
    assert.equal(res.status, 202);
    const id = res.body.task.id as string;
    const gits = await gitCloneOf(nodes[0]!);
    strays.push(...gits);
    // The node dies with its machine: its git processes too (a separate process group would outlive it).
    const killedAt = performance.now();
    await nodes[0]!.kill('SIGKILL');
    for (const pid of gits) process.kill(pid, 'SIGKILL');
    const reads = await eventually(async () => {
      const tasks = await Promise.all([alice[1]!, alice[2]!].map(async (api) => (await api('GET', `/api/tasks/${id}`)).body?.task));
      return tasks.every((t) => t?.state === 'failed') ? tasks : undefined;
    }, 10_000, 'the task to read failed on n2 and n3');
    const elapsed = performance.now() - killedAt;
    assert.ok(elapsed < TTL_MS + TTL_MS / 3 + 1_500, `recovered ${Math.round(elapsed)} ms after the kill`);
    for (const t of reads) assert.match(t.error, /node n1 died while running it/);
    assert.ok(['n2', 'n3'].includes(reads[0].recoveredBy));
    // The survivor that recovered it removed the repository.
    await eventually(async () => (await alice[1]!('GET', '/api/repos/alice/crash')).status === 404 && !existsSync(repoDir('crash')), 5_000, 'the repository to be removed');
    assert.deepEqual(tmpLeft(), []);
  });
});
