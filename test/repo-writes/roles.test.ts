import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { ForgeBus, silentLogger, type DeliveredEvent } from '../../src/bus/index.js';
import { apiClient, startForgeNode, TEST_SECRET, tokenFor, type TestForgeNode } from '../support/forge-node.js';
import { eventually, startTestNats, type TestNats } from '../support/nats.js';

const WORKER_MAIN = fileURLToPath(new URL('../../src/forge-node/worker.js', import.meta.url));

describe('roles: a web-only node and a worker-only process', () => {
  let nats: TestNats;
  let dataDir: string;
  let web: TestForgeNode;
  let watcher: ForgeBus;
  const seen: DeliveredEvent[] = [];
  let worker: ReturnType<typeof spawn> | undefined;

  before(async () => {
    nats = await startTestNats();
    dataDir = mkdtempSync(join(tmpdir(), 'forgebus-roles-'));
    web = await startForgeNode({ id: 'web-only', natsUrl: nats.url, dataDir, env: { FORGE_ROLES: 'web' } });
    watcher = await ForgeBus.connect({ nodeId: 'watcher', connection: { servers: nats.url }, logger: silentLogger });
    watcher.on('*', (e) => void seen.push(e));
    await watcher.start();
  });

  after(async () => {
    if (worker && worker.exitCode === null) {
      const exited = new Promise((r) => worker!.once('exit', r));
      worker.kill('SIGTERM');
      await exited;
    }
    await watcher?.close();
    await web?.stop();
    await nats?.dispose();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('queues writes on a web-only node until a worker process applies them, then publishes repo.pushed', async () => {
    const alice = apiClient(web.url, await tokenFor('alice'));
    assert.equal((await alice('POST', '/api/repos', { name: 'site' })).status, 201);
    const pending = alice('POST', '/api/repos/alice/site/commits', { branch: 'main', path: 'index.html', content: '<h1>hi</h1>', message: 'first page' });
    await eventually(async () => (await alice('GET', '/api/writes/stats')).body.queued === 1, 10_000, 'the write to wait in the queue');

    worker = spawn(process.execPath, [WORKER_MAIN], {
      env: { ...process.env, NODE_ID: 'worker-1', NATS_URL: nats.url, FORGE_DATA_DIR: dataDir, FORGE_SECRET: TEST_SECRET, NO_COLOR: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const output: string[] = [];
    createInterface({ input: worker.stdout! }).on('line', (l) => output.push(l));
    createInterface({ input: worker.stderr! }).on('line', (l) => output.push(l));

    const res = await pending;
    assert.equal(res.status, 201, JSON.stringify(res.body) + output.join('\n'));
    assert.match(res.body.sha, /^[0-9a-f]{40}$/);
    assert.equal(res.body.parent, null);
    assert.equal((await alice('GET', '/api/repos/alice/site/branches/main')).body.sha, res.body.sha);
    const stats = (await alice('GET', '/api/writes/stats')).body;
    assert.equal(stats.applied, 0, 'the web-only node applied nothing itself');
    assert.equal(stats.queued, 0);

    const pushed = await eventually(() => seen.find((e) => e.envelope.type === 'repo.pushed'), 10_000, 'repo.pushed');
    assert.deepEqual(pushed.envelope.payload, { ref: 'refs/heads/main', before: '0'.repeat(40), after: res.body.sha, commitCount: 1 });
    assert.equal(pushed.envelope.origin, 'worker-1', 'the worker process applied the write');
    assert.ok(seen.some((e) => e.envelope.type === 'ref.created'));
    assert.deepEqual((await alice('GET', '/api/writes/failures')).body, []);
  });
});
