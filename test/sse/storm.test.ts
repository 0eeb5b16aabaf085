import assert from 'node:assert/strict';
import { fork, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { SseCluster, topicOf } from '../fixtures/sse-cluster.js';
import { eventually } from '../support/nats.js';
import { RoundRobinBalancer } from '../support/round-robin-balancer.js';

/**
 * Issue 10, the reconnect storm: CLIENTS SSE streams, all on node 2 through a round-robin load
 * balancer, watching repositories of a few users while events are created through node 1's API at
 * a steady rate. Node 2 is SIGKILLed: every client reconnects, through the balancer, to node 1 or
 * 3 with its Last-Event-ID, and must end with exactly its events, in order, compared with what
 * FORGE_EVENTS holds. Three forge node processes on one nats-server and one data directory; the
 * clients live in CLIENT_PROCESSES processes of their own (test/fixtures/storm-clients.ts).
 */

const CLIENTS = Number(process.env.FORGEBUS_STORM_CLIENTS ?? 5_000);
const CLIENT_PROCESSES = 3;
const USERS = 20;
/** Issues created per second through node 1, the whole time. */
const RATE = 20;
/** The reconnect delay the nodes tell clients (FORGE_SSE_RETRY_MS): the storm starts this long after the kill. */
const RETRY_MS = 500;
/** Events published after every client resumed, so that live delivery after the replays is checked too. */
const EVENTS_AFTER_RESUME = 3 * RATE;
/** Bound of the publishing loop (90 s worth): the test ends long before, or fails. */
const MAX_EVENTS = 90 * RATE;

/** Longest a client process may take to answer a question (opening its share of clients takes longest). */
const ASK_TIMEOUT_MS = 60_000;
/** The test's own bound: below the runner's 300 s, so that after() still stops every process. */
const TEST_TIMEOUT_MS = 240_000;

const STORM_CLIENTS = fileURLToPath(new URL('../fixtures/storm-clients.js', import.meta.url));

const userName = (u: number) => `u${String(u).padStart(2, '0')}`;

/** Client i: a user's default stream (its two repositories), or public repositories of two other users plus its own private one. */
function plan(i: number): { user: string; path: string; topics: string[] } {
  const u = i % USERS;
  const user = userName(u);
  const own = [`${user}/pub`, `${user}/priv`, `user:${user}`, 'site'];
  if (i % 2 === 0) return { user, path: '/api/events', topics: own };
  const others = [`${userName((u + 1) % USERS)}/pub`, `${userName((u + 7) % USERS)}/pub`];
  return { user, path: `/api/events?repos=${[...others, `${user}/priv`].join(',')}`, topics: [...others, `${user}/priv`, `user:${user}`, 'site'] };
}

/** utime + stime of a process, in ms (Linux /proc; USER_HZ is 100 on every Linux ABI Node runs on). */
function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

/** CPU time the whole machine spent busy (all cores, /proc/stat), in ms. */
function machineBusyMs(): number {
  const [, ...ticks] = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!.trim().split(/\s+/).map(Number);
  const [user, nice, system, , , irq, softirq, steal] = ticks as number[];
  return (user! + nice! + system! + irq! + softirq! + steal!) * 10;
}

const ownCpuMs = () => {
  const { user, system } = process.cpuUsage();
  return Math.round((user + system) / 1000);
};

/**
 * A forked storm-clients process. Replies come back in the order of the questions (one IPC
 * channel, one event loop), so the waiters of each reply type form a queue; a question the process
 * does not answer within ASK_TIMEOUT_MS fails instead of hanging the test.
 */
class ClientProcess {
  private readonly waiting = new Map<string, { resolve: (m: any) => void; reject: (err: Error) => void }[]>();
  readonly exited: Promise<void>;
  readonly ready: Promise<any>;

  private constructor(private readonly child: ChildProcess) {
    this.ready = this.next('ready');
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()));
    const failAll = (err: Error) => {
      for (const queue of this.waiting.values()) for (const { reject } of queue) reject(err);
      this.waiting.clear();
    };
    child.on('message', (m: any) => {
      if (m.type === 'error') return failAll(new Error(`storm client process: ${m.message}`));
      this.waiting.get(m.type)?.shift()?.resolve(m);
    });
    child.once('exit', (code, signal) => failAll(new Error(`storm client process exited (${code ?? signal})`)));
  }

  static start(): ClientProcess {
    return new ClientProcess(fork(STORM_CLIENTS, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv: [] }));
  }

  private next(type: string, timeoutMs = ASK_TIMEOUT_MS): Promise<any> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no "${type}" from a storm client process within ${timeoutMs} ms`)), timeoutMs);
      const queue = this.waiting.get(type) ?? [];
      this.waiting.set(type, queue);
      queue.push({ resolve: (m) => (clearTimeout(timer), resolve(m)), reject: (err) => (clearTimeout(timer), reject(err)) });
    });
  }

  ask(message: { type: string; [k: string]: unknown }, replyType: string, timeoutMs?: number): Promise<any> {
    const reply = this.next(replyType, timeoutMs);
    this.child.send(message);
    return reply;
  }

  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
    await this.exited;
  }
}

/** Issues created through one node's API at a steady rate, a few requests in flight at most. */
class SteadyPublisher {
  published = 0;
  readonly failures: string[] = [];
  private stopped = false;
  private readonly done: Promise<void>;

  constructor(private readonly publishOne: (n: number) => Promise<void>) {
    this.done = this.run();
  }

  private async run(): Promise<void> {
    const t0 = performance.now();
    const inFlight = new Set<Promise<void>>();
    for (let n = 0; n < MAX_EVENTS && !this.stopped; n++) {
      const wait = t0 + (n * 1000) / RATE - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      while (inFlight.size >= 8) await Promise.race(inFlight);
      const p: Promise<void> = this.publishOne(n)
        .then(() => void this.published++)
        .catch((err: Error) => void this.failures.push(err.message))
        .finally(() => inFlight.delete(p));
      inFlight.add(p);
    }
    await Promise.all(inFlight);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.done;
  }
}

describe(`reconnect storm: ${CLIENTS} SSE clients on node 2 behind a load balancer, node 2 SIGKILLed`, () => {
  let cluster: SseCluster;
  let balancer: RoundRobinBalancer;
  let publisher: SteadyPublisher | undefined;
  const processes: ClientProcess[] = [];

  before(async () => {
    cluster = await SseCluster.start({ count: 3, prefix: 'sse-storm', env: () => ({ FORGE_SSE_RETRY_MS: String(RETRY_MS) }) });
    const repos = Array.from({ length: USERS }, (_, u) => [
      [userName(u), { name: 'pub' }],
      [userName(u), { name: 'priv', private: true }],
    ] as const).flat();
    await Promise.all([0, 1, 2, 3].map(async (w) => {
      for (let i = w; i < repos.length; i += 4) await cluster.call(1, repos[i]![0], 'POST', '/api/repos', repos[i]![1]);
    }));
    balancer = await RoundRobinBalancer.start([cluster.url(2)]);
    for (let p = 0; p < CLIENT_PROCESSES; p++) processes.push(ClientProcess.start());
    await Promise.all(processes.map((p) => p.ready));
  }, { timeout: 90_000 });

  after(async () => {
    await publisher?.stop();
    await Promise.all(processes.map((p) => p.stop()));
    await balancer?.close();
    await cluster?.dispose();
  });

  const progress = async () => {
    const all = await Promise.all(processes.map((p) => p.ask({ type: 'progress' }, 'progress')));
    return {
      minEvents: Math.min(...all.map((a) => a.minEvents)),
      reconnected: all.reduce((n, a) => n + a.reconnected, 0),
      firstReconnectAt: Math.min(...all.map((a) => a.firstReconnectAt ?? Infinity)),
      lastReconnectAt: Math.max(...all.map((a) => a.lastReconnectAt)),
      failed: all.reduce((n, a) => n + a.failed, 0),
      resets: all.reduce((n, a) => n + a.resets, 0),
      maxAnswers: Math.max(...all.map((a) => a.maxAnswers)),
      cpuMs: all.reduce((n, a) => n + a.cpuMs, 0),
      lastDisconnectAt: Math.max(...all.map((a) => a.lastDisconnectAt)),
      /** Per process: p50 and max ms from sending a reconnect to its answer's head. */
      headWaits: all.map((a) => a.headWait),
    };
  };
  const survivors = async () => Promise.all([cluster.sseStats(1), cluster.sseStats(3)]);

  it('every client resumes on node 1 or 3 and ends with exactly its events, in order', { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const start = await cluster.settle();
    const tokens = new Map<string, string>();
    for (let u = 0; u < USERS; u++) tokens.set(userName(u), await cluster.token(userName(u)));

    // 1. Every client connects through the balancer, which knows only node 2 for now.
    const openedAt = performance.now();
    const specs = Array.from({ length: CLIENTS }, (_, i) => {
      const { user, path, topics } = plan(i);
      return { path, token: tokens.get(user)!, topics };
    });
    const opened = await Promise.all(
      processes.map((p, k) => p.ask({ type: 'open', url: balancer.url, clients: specs.filter((_, i) => i % CLIENT_PROCESSES === k), concurrency: 32 }, 'opened')),
    );
    const openMs = performance.now() - openedAt;
    assert.deepEqual(opened.map((o) => o.failed), opened.map(() => 0), JSON.stringify(opened.map((o) => o.errors)));
    await eventually(async () => (await cluster.sseStats(2)).clients === CLIENTS, 30_000, `${CLIENTS} streams on node 2`);
    // From now on the balancer spreads new connections over every node that answers.
    balancer.setBackends([cluster.url(1), cluster.url(2), cluster.url(3)]);

    // 2. Events at a steady rate through node 1, until every client has read some on node 2.
    publisher = new SteadyPublisher(async (n) => {
      const u = Math.floor(n / 2) % USERS;
      await cluster.call(1, userName(u), 'POST', `/api/repos/${userName(u)}/${n % 2 ? 'priv' : 'pub'}/issues`, { title: `storm ${n}` });
    });
    const steadyFrom = { at: performance.now(), cpu: [cpuMs(cluster.node(1).child.pid!), cpuMs(cluster.node(3).child.pid!)] };
    await eventually(async () => (await progress()).minEvents >= 2, 30_000, 'every client to read 2 events on node 2');

    // 3. SIGKILL node 2; measure until every client is back and no replay is left.
    const killAt = Date.now();
    const killPerf = performance.now();
    const cpuAtKill = [cpuMs(cluster.node(1).child.pid!), cpuMs(cluster.node(3).child.pid!)];
    const othersAtKill = { nats: cpuMs(cluster.nats.process.pid!), test: ownCpuMs(), clients: (await progress()).cpuMs, machine: machineBusyMs() };
    const steadyCpuPerSecond = cpuAtKill.map((c, i) => ((c - steadyFrom.cpu[i]!) / (killPerf - steadyFrom.at)) * 1000);
    await cluster.node(2).kill('SIGKILL');
    // Once a second until the storm is over: clients back, streams and replays per survivor, CPU.
    const timeline: string[] = [];
    let sampling = true;
    const sampler = (async () => {
      let before = cpuAtKill;
      for (let i = 0; sampling && i < 120; i++) {
        await new Promise((r) => setTimeout(r, 1_000));
        const now = [cpuMs(cluster.node(1).child.pid!), cpuMs(cluster.node(3).child.pid!)];
        const [[s1, s3], p] = await Promise.all([survivors(), progress()]);
        timeline.push(`${Date.now() - killAt} ms: ${p.reconnected} back; node 1 ${s1.clients} streams, ${s1.replaying} replaying, ${now[0]! - before[0]!} ms CPU; node 3 ${s3.clients}, ${s3.replaying}, ${now[1]! - before[1]!} ms`);
        before = now;
      }
    })();
    const reconnected = await eventually(async () => {
      const p = await progress();
      return p.reconnected === CLIENTS || p.failed > 0 ? p : undefined;
    }, 90_000, `all ${CLIENTS} clients to reconnect`);
    assert.equal(reconnected.failed, 0, 'no reconnect was refused (an EventSource would give up for good)');
    await eventually(async () => {
      const [s1, s3] = await survivors();
      return s1.clients + s3.clients === CLIENTS && s1.replaying + s3.replaying === 0;
    }, 90_000, 'every replay on nodes 1 and 3 to finish');
    const resumedAt = Date.now();
    const cpuAtResume = [cpuMs(cluster.node(1).child.pid!), cpuMs(cluster.node(3).child.pid!)];
    const othersAtResume = { nats: cpuMs(cluster.nats.process.pid!), test: ownCpuMs(), clients: (await progress()).cpuMs, machine: machineBusyMs() };
    sampling = false;
    await sampler;
    const publishedAtResume = publisher.published;

    // 4. Live events after the storm, then the load stops and the stream is the reference.
    await eventually(() => publisher!.published >= publishedAtResume + EVENTS_AFTER_RESUME, 30_000, 'events after the storm');
    await publisher.stop();
    assert.deepEqual(publisher.failures, [], 'every publish through node 1 succeeded');
    const end = await cluster.settle([1, 3], 30_000);
    const stored = await cluster.storedEvents(start + 1, end);
    assert.equal(stored.length, publisher.published, 'the stream holds exactly the events published during the run');
    const lines = stored.map((e) => ({ seq: e.seq, type: e.envelope.type, topic: topicOf(e.envelope), json: e.json }));
    const verdicts = await Promise.all(processes.map((p) => p.ask({ type: 'verify', stored: lines, timeoutMs: 30_000 }, 'verified', 45_000)));
    const problems = verdicts.flatMap((v) => v.problems as string[]);
    const problemCount = verdicts.reduce((n, v) => n + v.problemCount, 0);
    assert.equal(problemCount, 0, `${problemCount} clients did not get exactly their events over exactly one resume:\n${problems.join('\n')}`);
    assert.equal(verdicts.reduce((n, v) => n + v.exact, 0), CLIENTS);

    const [s1, s3] = await survivors();
    assert.equal(s1.clients + s3.clients, CLIENTS);
    assert.ok(s1.clients > 0 && s3.clients > 0, `the balancer spread the storm: node 1 ${s1.clients}, node 3 ${s3.clients}`);
    for (const [name, s] of [['node 1', s1], ['node 3', s3]] as const) {
      assert.deepEqual([s.resets, s.slowDisconnects, s.replayFailures, s.rejected], [0, 0, 0, 0], `${name}: ${JSON.stringify(s)}`);
    }
    const final = await progress();
    assert.deepEqual([final.resets, final.failed, final.maxAnswers], [0, 0, 2]);

    const stormMs = resumedAt - killAt;
    const cpu = cpuAtResume.map((c, i) => c - cpuAtKill[i]!);
    const share = (ms: number) => `${((ms / stormMs) * 100).toFixed(0)}%`;
    const others = (k: keyof typeof othersAtKill) => othersAtResume[k] - othersAtKill[k];
    const measured = cpu[0]! + cpu[1]! + others('nats') + others('test') + others('clients');
    const retries = verdicts.reduce((n, v) => n + v.retries, 0);
    for (const line of [
      `${CLIENTS} clients (${CLIENT_PROCESSES} processes) opened on node 2 through the balancer in ${(openMs / 1000).toFixed(1)} s`,
      `SIGKILL -> every stream cut ${reconnected.lastDisconnectAt - killAt} ms -> all reconnected (200) ${reconnected.lastReconnectAt - killAt} ms (first ${reconnected.firstReconnectAt - killAt} ms; retry ${RETRY_MS} ms) -> all replays done ${stormMs} ms`,
      `reconnect request -> response head, ms per client process (p50/max): ${reconnected.headWaits.map((w: { p50: number; max: number }) => `${w.p50}/${w.max}`).join(', ')}; ${retries} reconnects retried after a network error`,
      `clients resumed per second: ${((CLIENTS / stormMs) * 1000).toFixed(0)} from the kill, ${((CLIENTS / Math.max(1, reconnected.lastReconnectAt - reconnected.firstReconnectAt)) * 1000).toFixed(0)} from first to last reconnect`,
      `survivors' CPU during the storm: node 1 ${cpu[0]} ms, node 3 ${cpu[1]} ms (${share(cpu[0]!)} / ${share(cpu[1]!)} of a core; ` +
        `before the kill ${(steadyCpuPerSecond[0]! / 10).toFixed(0)}% / ${(steadyCpuPerSecond[1]! / 10).toFixed(0)}%); ${(((cpu[0]! + cpu[1]!) / CLIENTS) * 1000).toFixed(0)} µs per resumed client`,
      `the rest during the storm (share of one core): nats-server ${share(others('nats'))}, balancer + test ${share(others('test'))}, client processes ${share(others('clients'))}; ` +
        `whole machine ${share(others('machine'))} of 200%, other programs ${share(Math.max(0, others('machine') - measured))}`,
      `node 1: ${s1.clients} clients, ${s1.replays} replays, ${s1.replayedEvents} events replayed; node 3: ${s3.clients} clients, ${s3.replays} replays, ${s3.replayedEvents} events replayed`,
      `events: ${stored.length} published at ${RATE}/s (seq ${start + 1}..${end}), ${verdicts.reduce((n, v) => n + v.expectedEvents, 0)} deliveries checked; balancer: ${JSON.stringify(balancer.stats)}`,
      `timeline after the kill: ${timeline.join(' | ')}`,
    ]) {
      t.diagnostic(line);
    }
  });
});
