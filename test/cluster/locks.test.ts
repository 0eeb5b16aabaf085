import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { ForgeBus, silentLogger } from '../../src/bus/index.js';
import { Locks, LockTimeoutError } from '../../src/cluster/index.js';
import { FencedCounter } from '../fixtures/fenced-counter.js';
import { eventually, startTestNats, type TestNats } from '../support/nats.js';

const WORKER = fileURLToPath(new URL('../fixtures/lock-worker.js', import.meta.url));

interface Worker {
  child: ChildProcess;
  lines: string[];
  exited: Promise<number | null>;
}

function startWorker(env: Record<string, string>): Worker {
  const child = spawn(process.execPath, [WORKER], { env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'inherit'] });
  const lines: string[] = [];
  createInterface({ input: child.stdout! }).on('line', (l) => lines.push(l));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, lines, exited };
}

describe('cluster locks with fencing tokens', () => {
  let nats: TestNats;
  let dir: string;
  const workers: Worker[] = [];

  before(async () => {
    nats = await startTestNats();
    dir = mkdtempSync(join(tmpdir(), 'forgebus-locks-'));
  });
  after(async () => {
    for (const w of workers) {
      w.child.kill('SIGCONT');
      w.child.kill('SIGKILL');
      await w.exited;
    }
    await nats?.dispose();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('3 processes × 100 increments of a counter file under withLock end at exactly 300', async () => {
    const file = join(dir, 'count.json');
    const env = (i: number) => ({ NATS_URL: nats.url, NODE_ID: `counter-${i}`, COUNTER_FILE: file, TTL_MS: '5000', ITERATIONS: '100', MODE: 'count' });
    const started = [1, 2, 3].map((i) => startWorker(env(i)));
    workers.push(...started);
    assert.deepEqual(await Promise.all(started.map((w) => w.exited)), [0, 0, 0]);
    const counter = new FencedCounter(file).read();
    assert.equal(counter.value, 300, 'no increment lost: the lock excluded the others every time');
    assert.equal(counter.refused, 0);
    assert.ok(started.every((w) => w.lines.some((l) => l.startsWith('done'))));
  });

  it('a holder frozen past its TTL loses the lock; the next holder gets a higher token; the frozen one is refused and told', async () => {
    const file = join(dir, 'fenced.json');
    const ttlMs = 1_000;
    const holder = startWorker({ NATS_URL: nats.url, NODE_ID: 'frozen', COUNTER_FILE: file, TTL_MS: String(ttlMs), MODE: 'hold' });
    workers.push(holder);
    await eventually(() => holder.lines.some((l) => l.startsWith('holding')), 15_000, 'the first holder');
    const oldToken = Number(holder.lines.find((l) => l.startsWith('holding'))!.split(' ')[1]);
    holder.child.kill('SIGSTOP');

    const bus = await ForgeBus.connect({ nodeId: 'next-holder', connection: { servers: nats.url }, logger: silentLogger });
    try {
      const locks = new Locks(bus, { logger: silentLogger });
      // While the lease is fresh, nobody else gets it.
      await assert.rejects(locks.withLock('counter', () => undefined, { ttlMs, waitMs: 0 }), LockTimeoutError);
      const counter = new FencedCounter(file);
      const newToken = await locks.withLock('counter', ({ token }) => {
        assert.ok(counter.write(1, token), 'the new holder writes');
        return token;
      }, { ttlMs, waitMs: 10_000 });
      assert.ok(newToken > oldToken, `the token grew (${oldToken} -> ${newToken})`);
      assert.equal(locks.stats.takenOver, 1);
    } finally {
      await bus.close();
    }

    holder.child.kill('SIGCONT');
    holder.child.stdin!.write('write\n');
    await eventually(() => holder.lines.some((l) => l.startsWith('{')), 15_000, 'the woken holder to report');
    assert.deepEqual(JSON.parse(holder.lines.find((l) => l.startsWith('{'))!), { accepted: false, aborted: true });
    assert.deepEqual(new FencedCounter(file).read(), { value: 1, token: new FencedCounter(file).read().token, refused: 1 });
  });
});
