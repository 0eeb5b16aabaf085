import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { jetstreamManager } from '@nats-io/jetstream';
import { ForgeBus, SettingsDriftError, silentLogger } from '../../src/bus/index.js';
import { RepoWriteQueue, WRITES_STREAM } from '../../src/repo-writes/index.js';
import { startTestNats, type TestNats } from '../support/nats.js';

const cli = fileURLToPath(new URL('../../src/ops/settings-cli.js', import.meta.url));

function settings(natsUrl: string, ...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [cli, '--nats', natsUrl, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

// The documented way to change the partition count: drain, drop the old consumers, record.
describe('npm run settings: changing cluster-wide settings deliberately', () => {
  let nats: TestNats;
  let bus: ForgeBus;
  const queues: RepoWriteQueue[] = [];
  before(async () => {
    nats = await startTestNats();
    bus = await ForgeBus.connect({ nodeId: 'repartition', connection: { servers: nats.url }, logger: silentLogger });
  });
  after(async () => {
    for (const q of queues) await q.stop();
    await bus?.close();
    await nats?.dispose();
  });

  const queue = (partitions: number) => {
    const q = new RepoWriteQueue(bus, { partitions, logger: silentLogger });
    queues.push(q);
    return q;
  };

  it('repartition waits for the queue to drain, then moves the cluster to the new count', async () => {
    const old = queue(4);
    await old.init();
    old.handle('touch', (ctx) => ctx.args);
    const results = Array.from({ length: 5 }, (_, i) => old.submit({ owner: 'acme', name: `r${i}` }, 'touch', { i }));

    const early = await settings(nats.url, 'repartition', '8', '--timeout', '1');
    assert.equal(early.code, 1, early.stdout + early.stderr);
    assert.match(early.stderr, /still holds 5 write\(s\)/);
    assert.equal((await settings(nats.url, 'show', '--json')).stdout.includes('"writes.partitions": 4'), true, 'nothing changed');

    await old.startWorkers(); // a worker with the old count drains the queue
    assert.deepEqual(await Promise.all(results), [0, 1, 2, 3, 4].map((i) => ({ i })));
    const done = await settings(nats.url, 'repartition', '8');
    assert.equal(done.code, 0, done.stderr);
    assert.match(done.stdout, /writes\.partitions: 4 -> 8/);
    await old.stop();

    const shown = JSON.parse((await settings(nats.url, 'show', '--json')).stdout) as Record<string, unknown>;
    assert.equal(shown['writes.partitions'], 8);
    await assert.rejects(queue(4).init(), (err: unknown) => err instanceof SettingsDriftError && err.setting === 'writes.partitions');
    const next = queue(8);
    await next.init();
    const names: string[] = [];
    for await (const c of (await jetstreamManager(bus.nc)).consumers.list(WRITES_STREAM)) names.push(c.name);
    assert.equal(names.length, 8, 'only the new layout’s consumers exist');
  });

  it('set records a limit; the partition count and unknown names are refused with the way to go', async () => {
    const set = await settings(nats.url, 'set', 'events.maxAgeMs', '86400000');
    assert.equal(set.code, 0, set.stderr);
    assert.equal(JSON.parse((await settings(nats.url, 'show', '--json')).stdout)['events.maxAgeMs'], 86_400_000);
    const partitions = await settings(nats.url, 'set', 'writes.partitions', '3');
    assert.equal(partitions.code, 1);
    assert.match(partitions.stderr, /use `repartition <count>`/);
    const unknown = await settings(nats.url, 'set', 'events.colour', 'blue');
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /settable: events\.maxAgeMs/);
  });

  it('an unreachable NATS is a one-line reason and exit code 1', async () => {
    const down = await settings('nats://127.0.0.1:1', 'show');
    assert.equal(down.code, 1);
    assert.match(down.stderr, /^forgebus-settings: cannot reach NATS/);
  });
});
