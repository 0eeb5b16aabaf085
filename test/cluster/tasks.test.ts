import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { ForgeBus, silentLogger } from '../../src/bus/index.js';
import { Membership, NodeControl, TaskFinishedError, TaskNotFoundError, TaskRegistry, type TaskRecord } from '../../src/cluster/index.js';
import { eventually, startTestNats, type TestNats } from '../support/nats.js';

const TTL_MS = 2_000;
const TASKS_NODE = fileURLToPath(new URL('../fixtures/tasks-node.js', import.meta.url));

interface Survivor {
  bus: ForgeBus;
  membership: Membership;
  control: NodeControl;
  tasks: TaskRegistry;
  cleanups: string[];
}

interface TaskChild {
  child: ChildProcess;
  lines: string[];
}

/** A process running one long task; resolves once the task is recorded running. */
function startTaskNode(natsUrl: string, id: string, taskId: string): Promise<TaskChild> {
  const child = spawn(process.execPath, [TASKS_NODE], {
    env: { ...process.env, NATS_URL: natsUrl, NODE_ID: id, NODE_TTL_MS: String(TTL_MS), TASK_ID: taskId },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const lines: string[] = [];
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${id} did not start its task in 15 s`)), 15_000);
    createInterface({ input: child.stdout! }).on('line', (line) => {
      lines.push(line);
      if (line === `running ${taskId}`) {
        clearTimeout(timer);
        resolve({ child, lines });
      }
    });
    child.once('exit', (code) => reject(new Error(`${id} exited with ${code}`)));
  });
}

const exited = (child: ChildProcess) => (child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : new Promise<void>((r) => child.once('exit', () => r())));

describe('tasks: cluster-wide records, cancel on whichever node runs them, crash recovery', () => {
  let nats: TestNats;
  const survivors: Survivor[] = [];
  const children: ChildProcess[] = [];

  before(async () => {
    nats = await startTestNats();
    for (const id of ['s1', 's2', 's3']) {
      const bus = await ForgeBus.connect({ nodeId: id, connection: { servers: nats.url }, logger: silentLogger });
      const membership = new Membership(bus, { ttlMs: TTL_MS, logger: silentLogger });
      await membership.start();
      const control = new NodeControl(bus, membership, { logger: silentLogger });
      const tasks = new TaskRegistry(bus, membership, control, { logger: silentLogger });
      await tasks.open();
      control.start();
      const survivor: Survivor = { bus, membership, control, tasks, cleanups: [] };
      tasks.onRecovered('sleep', (task) => void survivor.cleanups.push(task.id));
      survivors.push(survivor);
    }
  });

  after(async () => {
    for (const child of children) child.kill('SIGKILL');
    await Promise.all(children.map(exited));
    for (const s of survivors) {
      await s.tasks.close();
      s.control.stop();
      await s.membership.stop();
      await s.bus.close();
    }
    await nats?.dispose();
  });

  it('records a task through its states; a late success cannot overwrite cancelled; clear errors', async () => {
    const [s1, s2] = survivors;
    const ok = await s1!.tasks.start('demo', { user: 'alice', repo: 'alice/r', run: async ({ progress }) => progress(50) });
    assert.equal(ok.state, 'running');
    assert.equal((await s1!.tasks.settled(ok.id))!.state, 'succeeded');
    const seen = (await s2!.tasks.get(ok.id))!;
    assert.deepEqual([seen.state, seen.node, seen.user, seen.repo, seen.progress], ['succeeded', 's1', 'alice', 'alice/r', 100], 'every node reads the record');
    assert.ok(seen.startedAt && seen.finishedAt);

    const bad = await s1!.tasks.start('demo', { user: 'alice', run: async () => Promise.reject(new Error('it broke')) });
    const badEnd = await s1!.tasks.settled(bad.id)!;
    assert.deepEqual([badEnd.state, badEnd.error], ['failed', 'it broke']);

    // The run "succeeds" right after its signal fired (it ignores the abort): the record must
    // read cancelled, not succeeded (catches a final write that is not a compare-and-swap or
    // that does not look at the abort).
    const stubborn = await s1!.tasks.start('demo', {
      user: 'alice',
      run: ({ signal }) => new Promise<void>((r) => signal.addEventListener('abort', () => setImmediate(r))),
    });
    assert.equal((await s2!.tasks.cancel(stubborn.id)).state, 'cancelled', 'cancelled through NodeControl: s2 asks s1');
    assert.equal((await s2!.tasks.get(stubborn.id))!.state, 'cancelled', 'the late success did not overwrite cancelled');

    // A node thought dead (partitioned) but still running: a survivor marked its task failed.
    // Its later success must not overwrite that (catches a final write that ignores a finished
    // record), and its next progress report stops the work (its signal fires).
    let report!: (n: number) => void;
    let aborted = false;
    const zombie = await s1!.tasks.start('demo', {
      user: 'alice',
      run: ({ signal, progress }) =>
        new Promise<void>((resolve) => {
          report = progress;
          signal.addEventListener('abort', () => {
            aborted = true;
            resolve();
          });
        }),
    });
    const { Kvm } = await import('@nats-io/kv');
    const kv = await new Kvm(s2!.bus.nc).open('FORGE_TASKS');
    await kv.put(`task.${zombie.id}`, JSON.stringify({ ...(await s2!.tasks.get(zombie.id))!, state: 'failed', error: 'node s1 died while running it', recoveredBy: 's2' }));
    report(50);
    const zombieEnd = await s1!.tasks.settled(zombie.id)!;
    assert.ok(aborted, 'the work was stopped');
    assert.deepEqual([zombieEnd.state, zombieEnd.error], ['failed', 'node s1 died while running it']);
    assert.equal((await s2!.tasks.get(zombie.id))!.state, 'failed');

    await assert.rejects(s2!.tasks.cancel(stubborn.id), (e: unknown) => e instanceof TaskFinishedError && e.code === 'TASK_FINISHED' && e.state === 'cancelled');
    await assert.rejects(s2!.tasks.cancel('no-such-task'), (e: unknown) => e instanceof TaskNotFoundError && e.code === 'TASK_NOT_FOUND');
    const ids = (await s2!.tasks.list()).map((t) => t.id);
    for (const id of [ok.id, bad.id, stubborn.id]) assert.ok(ids.includes(id), `list() shows ${id}`);
  });

  it('cancels a task running in another process; it reads cancelled on every node', async () => {
    const { child, lines } = await startTaskNode(nats.url, 'c1', 'cancel-me');
    children.push(child);
    const final = await survivors[2]!.tasks.cancel('cancel-me');
    assert.equal(final.state, 'cancelled');
    assert.ok(lines.includes('aborted'), 'the task in c1 saw its signal fire');
    for (const s of survivors) assert.equal((await s.tasks.get('cancel-me'))!.state, 'cancelled', `on ${s.bus.nodeId}`);
    child.kill('SIGTERM');
    await exited(child);
  });

  it('a SIGKILLed node: exactly one survivor marks its task failed, naming the node, within the TTL', async () => {
    const { child } = await startTaskNode(nats.url, 'c2', 'orphan');
    children.push(child);
    await eventually(() => survivors.every((s) => s.membership.isMember('c2')), 5_000, 'every survivor to see c2');
    const killedAt = performance.now();
    child.kill('SIGKILL');
    await exited(child);
    const reads = await eventually(
      async () => {
        const records = await Promise.all(survivors.map((s) => s.tasks.get('orphan')));
        return records.every((r) => r?.state === 'failed') ? (records as TaskRecord[]) : undefined;
      },
      10_000,
      'the task to read failed on every survivor',
    );
    const elapsed = performance.now() - killedAt;
    // A departure is noticed between one TTL and a TTL plus a refresh after the last refresh.
    assert.ok(elapsed < TTL_MS + TTL_MS / 3 + 1_000, `recovered ${Math.round(elapsed)} ms after the kill`);
    for (const r of reads) assert.match(r.error!, /node c2 died while running it/);
    // Wait until every survivor has handled the departure, then count who acted.
    await eventually(() => survivors.every((s) => s.tasks.stats.departuresHandled >= 1), 10_000, 'every survivor to handle the departure');
    assert.equal(survivors.reduce((n, s) => n + s.tasks.stats.recovered, 0), 1, 'exactly one recovery');
    assert.equal(survivors.flatMap((s) => s.cleanups).length, 1, 'the clean-up ran once');
    assert.ok(['s1', 's2', 's3'].includes(reads[0]!.recoveredBy!));
  });

  it("a node restarted under the same id (within the TTL, so never seen leaving) fails its earlier process's tasks at once", async () => {
    const first = await startTaskNode(nats.url, 'c4', 'before-restart');
    children.push(first.child);
    first.child.kill('SIGKILL');
    await exited(first.child);
    const second = await startTaskNode(nats.url, 'c4', 'after-restart');
    children.push(second.child);
    const old = (await survivors[0]!.tasks.get('before-restart'))!;
    assert.deepEqual([old.state, old.error, old.recoveredBy], ['failed', 'node c4 restarted while running it', 'c4'], 'marked when the new process opened its registry');
    assert.equal((await survivors[0]!.tasks.get('after-restart'))!.state, 'running', "the new process's own task is untouched");
    second.child.kill('SIGTERM');
    await exited(second.child);
    const closed = (await survivors[0]!.tasks.get('after-restart'))!;
    assert.deepEqual([closed.state, closed.error], ['failed', 'node c4 shut down while running it'], 'a clean shutdown records its running tasks');
  });

  it('survivors racing to recover the same dead node at the same instant: exactly one wins each task', async () => {
    // The departure-driven recoveries above happen at each survivor's own refresh tick, tens of
    // milliseconds apart, so the later ones find the record finished already. Here three
    // registries (departures not followed: only recover() acts) are made to read and write at
    // once, 20 times: a recovery that wrote without compare-and-swap would be counted several times.
    for (const s of survivors) await s.tasks.close(); // they no longer recover on their own
    const racers = survivors.map((s) => new TaskRegistry(s.bus, s.membership, new NodeControl(s.bus, s.membership, { logger: silentLogger }), { logger: silentLogger, followDepartures: false }));
    const cleanups: string[] = [];
    for (const r of racers) {
      await r.open();
      r.onRecovered('sleep', (task) => void cleanups.push(task.id));
    }
    const ids = Array.from({ length: 20 }, (_, i) => `race-${i}`);
    const { child } = await startTaskNode(nats.url, 'c3', ids[0]!);
    children.push(child);
    // The other 19 records as c3 would have written them (running on c3).
    const { Kvm } = await import('@nats-io/kv');
    const kv = await new Kvm(survivors[0]!.bus.nc).open('FORGE_TASKS');
    const base = (await racers[0]!.get(ids[0]!))!;
    for (const id of ids.slice(1)) await kv.create(`task.${id}`, JSON.stringify({ ...base, id }));
    await assert.rejects(racers[0]!.recover('c3'), /live member/, 'a live node is not recovered');
    child.kill('SIGKILL');
    await exited(child);
    await eventually(() => survivors.every((s) => !s.membership.isMember('c3')), 10_000, 'every survivor to see c3 gone');
    const counts = await Promise.all(racers.map((r) => r.recover('c3')));
    assert.equal(counts.reduce((a, b) => a + b, 0), ids.length, `each task recovered once (per racer: ${counts.join(', ')})`);
    assert.deepEqual(cleanups.sort(), [...ids].sort(), 'each clean-up ran once');
    for (const id of ids) assert.match((await racers[1]!.get(id))!.error!, /node c3 died while running it/);
    for (const r of racers) await r.close();
  });
});
