import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { apiClient, startForgeNode, tokenFor, type TestForgeNode } from '../support/forge-node.js';
import { startTestNats, type TestNats } from '../support/nats.js';

// A node configured differently from the cluster must not join it: with another partition count
// it would apply writes of a repository at the same time as the others.
describe('a node whose cluster-wide settings differ', () => {
  let nats: TestNats;
  let dataDir: string;
  const nodes: TestForgeNode[] = [];

  before(async () => {
    nats = await startTestNats();
    dataDir = mkdtempSync(join(tmpdir(), 'forgebus-drift-'));
    for (const id of ['d1', 'd2', 'd3']) nodes.push(await startForgeNode({ id, natsUrl: nats.url, dataDir }));
  });

  after(async () => {
    for (const node of nodes) await node.kill('SIGKILL');
    await nats?.dispose();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  it('exits with code 1 naming FORGE_WRITE_PARTITIONS and the value to use; the three running nodes keep serving', async () => {
    await assert.rejects(
      startForgeNode({ id: 'd4', natsUrl: nats.url, dataDir, env: { FORGE_WRITE_PARTITIONS: '16' } }),
      (err: Error) => {
        assert.match(err.message, /exited with code 1 during start-up/);
        assert.match(err.message, /FORGE_WRITE_PARTITIONS=16 differs from the cluster's 32: start this node with FORGE_WRITE_PARTITIONS=32/);
        return true;
      },
    );
    const alice = apiClient(nodes[0]!.url, await tokenFor('alice'));
    assert.equal((await alice('POST', '/api/repos', { name: 'drift' })).status, 201);
    const commit = await alice('POST', '/api/repos/alice/drift/commits', { branch: 'main', path: 'a.txt', content: 'a', message: 'still writing' });
    assert.equal(commit.status, 201, JSON.stringify(commit.body));
    for (const node of nodes) assert.equal((await fetch(`${node.url}/health`)).status, 200, `${node.id} healthy`);
  });
});
