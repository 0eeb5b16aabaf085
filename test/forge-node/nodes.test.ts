import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { apiClient, startForgeNode, tokenFor, type TestForgeNode } from '../support/forge-node.js';
import { eventually, startTestNats, type TestNats } from '../support/nats.js';

describe('GET /api/nodes: the live members of the cluster', () => {
  let nats: TestNats;
  let dataDir: string;
  const nodes: TestForgeNode[] = [];
  const env = { FORGE_NODE_TTL_MS: '2000' };

  before(async () => {
    nats = await startTestNats();
    dataDir = mkdtempSync(join(tmpdir(), 'forgebus-nodes-'));
    nodes.push(await startForgeNode({ id: 'n1', natsUrl: nats.url, dataDir, env }));
    nodes.push(await startForgeNode({ id: 'n2', natsUrl: nats.url, dataDir, env: { ...env, FORGE_ROLES: 'web' } }));
    nodes.push(await startForgeNode({ id: 'n3', natsUrl: nats.url, dataDir, env }));
  });

  after(async () => {
    for (const node of nodes) await node.kill('SIGKILL');
    await nats?.dispose();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  it('lists every node with its address and roles; a stopped node leaves at once, a killed one within the TTL', async () => {
    const api = apiClient(nodes[0]!.url, await tokenFor('alice'));
    const list = async () => ((await api('GET', '/api/nodes')).body as { nodes: { id: string; address: string; roles: string[]; counters: Record<string, number> }[] }).nodes;
    // The address is known once a node listens, and published with its next refresh.
    await eventually(async () => (await list()).filter((m) => m.address).length === 3, 10_000, 'three members with their addresses');
    const members = await list();
    assert.deepEqual(members.map((m) => [m.id, m.address, m.roles.join(',')]), [
      ['n1', nodes[0]!.url, 'web,writer'],
      ['n2', nodes[1]!.url, 'web'],
      ['n3', nodes[2]!.url, 'web,writer'],
    ]);
    assert.equal(typeof members[0]!.counters.sseStreams, 'number');
    assert.equal(members[0]!.counters.runningTasks, 0, 'running tasks are counted');
    assert.equal((await apiClient(nodes[0]!.url)('GET', '/api/nodes')).status, 401, 'signed-in users only');

    await nodes[1]!.stop();
    await eventually(async () => (await list()).length === 2, 1_500, 'n2 to leave at once (SIGTERM)');
    await nodes[2]!.kill('SIGKILL');
    await eventually(async () => (await list()).map((m) => m.id).join() === 'n1', 8_000, 'n3 to be found gone');
  });
});
