import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { apiClient, startForgeNode, tokenFor, type TestForgeNode } from '../support/forge-node.js';
import { eventually, startTestNats, type TestNats } from '../support/nats.js';

// Routes that need NATS (tasks, cron runs, node control) while NATS does not answer: a 503 that
// says so and when to retry, never a 500.
describe('forge node routes while NATS does not answer', () => {
  let nats: TestNats;
  let node: TestForgeNode;
  let dataDir: string;

  before(async () => {
    nats = await startTestNats();
    dataDir = mkdtempSync(join(tmpdir(), 'forgebus-outage-'));
    node = await startForgeNode({ id: 'out-1', natsUrl: nats.url, dataDir });
  });

  after(async () => {
    await node?.kill('SIGKILL');
    await nats?.dispose();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  it('answers 503 with a reason and Retry-After, then 200 once NATS is back', async () => {
    const token = await tokenFor('alice');
    const alice = apiClient(node.url, token);
    assert.equal((await alice('GET', '/api/tasks')).status, 200);
    await nats.stop();
    await eventually(async () => (await fetch(`${node.url}/health`)).status === 503, 20_000, 'the node to notice');
    for (const path of ['/api/tasks', '/api/cron/runs?job=repo-stats']) {
      const res = await fetch(`${node.url}${path}`, { headers: { authorization: `Bearer ${token}` } });
      const body = (await res.json()) as { statusCode: number; message: string };
      assert.equal(res.status, 503, `${path}: ${JSON.stringify(body)}`);
      assert.match(body.message, /NATS|bus/, path);
      assert.doesNotMatch(body.message, /\/tmp|\/work|at .*\.js/, `${path}: no server detail`);
      assert.ok(Number(res.headers.get('retry-after')) > 0, `${path}: Retry-After`);
    }
    nats = await nats.restart();
    await eventually(async () => (await alice('GET', '/api/tasks')).status === 200, 30_000, 'the route to answer again');
  });
});
