import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { ForgeBus } from '../../src/index.js';
import { readStream } from '../bus/helpers.js';
import { apiClient, startForgeNode, tokenFor, type TestForgeNode } from '../support/forge-node.js';
import { eventually } from '../support/nats.js';
import { startTestNatsCluster, type TestNatsCluster } from '../support/nats-cluster.js';
import { RawSseStream } from '../support/sse-client.js';

// Issue 12's proof: three NATS servers, three forge nodes, a steady load of events, repository
// writes, SSE clients and cached reads. The server leading FORGE_EVENTS is killed and brought
// back, then the JetStream meta leader, then every server is restarted in turn; the forge nodes
// are never restarted. At the end every guarantee is checked on what the cluster holds.

const EVENT_REPOS = Array.from({ length: 10 }, (_, i) => `ev${i}`);
const WRITE_REPOS = Array.from({ length: 6 }, (_, i) => `w${i}`);
const SSE_CLIENTS = 100;
const EVENTS_PER_SECOND = 200;
const WRITES_PER_SECOND = 20;
const WRITE_LOOPS = 8;
const CACHE_LOOPS = 2;
const NODE_ENV = { FORGE_WRITE_PARTITIONS: '8', FORGE_WRITE_ACK_WAIT_MS: '5000', FORGE_WRITE_TIMEOUT_MS: '45000' };
const quiet = { log: () => undefined, warn: () => undefined, error: () => undefined };
const now = () => performance.now();

type Api = ReturnType<typeof apiClient>;

/** Largest gap between consecutive instants, and where it started (ms since the run began). */
function longestPause(times: number[], from: number, to: number): { ms: number; at: number } {
  const sorted = [from, ...times.filter((t) => t >= from && t <= to).sort((a, b) => a - b), to];
  let best = { ms: 0, at: 0 };
  for (let i = 1; i < sorted.length; i++) if (sorted[i]! - sorted[i - 1]! > best.ms) best = { ms: sorted[i]! - sorted[i - 1]!, at: sorted[i - 1]! };
  return best;
}

/** Events published straight to the bus at a steady rate; what was acknowledged, and when. */
class EventLoad {
  readonly acked = new Map<number, number>(); // commentId -> seq
  readonly ackTimes: number[] = [];
  failed = 0;
  private next = 1;
  private timer?: NodeJS.Timeout;
  private readonly inflight = new Set<Promise<void>>();

  constructor(private readonly bus: ForgeBus) {}

  start(): void {
    const perTick = EVENTS_PER_SECOND / 100;
    this.timer = setInterval(() => {
      for (let i = 0; i < perTick; i++) this.publishOne();
    }, 10);
  }

  private publishOne(): void {
    const commentId = this.next++;
    const repo = EVENT_REPOS[commentId % EVENT_REPOS.length]!;
    const p = this.bus
      .publish({ type: 'comment.created', repo: { owner: 'alice', name: repo }, payload: { issueNumber: 1, commentId } })
      .then((ack) => {
        this.acked.set(commentId, ack.seq);
        this.ackTimes.push(now());
      })
      .catch(() => {
        this.failed++;
      })
      .finally(() => this.inflight.delete(p));
    this.inflight.add(p);
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    while (this.inflight.size > 0) await Promise.all([...this.inflight]);
  }
}

/** Commits through the write queue from several loops, paced to a total rate, round-robin over the nodes. */
class WriteLoad {
  running = true;
  readonly statuses = new Map<number, number>();
  readonly commits = new Map<string, { sha: string; message: string }[]>(WRITE_REPOS.map((r) => [r, []]));
  readonly doneTimes: number[] = [];
  private loops: Promise<void>[] = [];
  private sent = 0;

  constructor(private readonly apis: Api[]) {}

  start(): void {
    this.loops = Array.from({ length: WRITE_LOOPS }, (_, i) => this.loop(i));
  }

  private async loop(loop: number): Promise<void> {
    const interval = (1000 * WRITE_LOOPS) / WRITES_PER_SECOND;
    let due = now() + (loop * interval) / WRITE_LOOPS;
    while (this.running) {
      const wait = due - now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      due += interval;
      const n = ++this.sent;
      const repo = WRITE_REPOS[n % WRITE_REPOS.length]!;
      const message = `ha commit ${n}`;
      try {
        const res = await this.apis[n % this.apis.length]!('POST', `/api/repos/alice/${repo}/commits`, { branch: 'main', path: `f${n}.txt`, content: `${n}`, message });
        this.count(res.status);
        if (res.status === 201) {
          this.commits.get(repo)!.push({ sha: res.body.sha, message });
          this.doneTimes.push(now());
        }
      } catch {
        this.count(0);
      }
    }
  }

  private count(status: number): void {
    this.statuses.set(status, (this.statuses.get(status) ?? 0) + 1);
  }

  get committed(): number {
    return this.doneTimes.length;
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
  }
}

/** One SSE client: the load events it received, with their arrival times. */
interface Watcher {
  repo: string;
  node: number;
  stream: RawSseStream;
  received: { seq: number; commentId: number; at: number }[];
  /** Issue numbers of the issue.updated events received, in order. */
  updates: number[];
  other: string[];
}

async function watch(url: string, token: string, repo: string, node: number): Promise<Watcher> {
  const w: Watcher = { repo, node, stream: undefined as unknown as RawSseStream, received: [], updates: [], other: [] };
  w.stream = await RawSseStream.open(`${url}/api/events?repos=alice/${repo}`, { authorization: `Bearer ${token}` }, {
    summarize: (frame) => {
      const commentId = /"commentId":(\d+)/.exec(frame.data ?? '');
      if (frame.event === 'comment.created' && commentId && frame.id) w.received.push({ seq: Number(frame.id), commentId: Number(commentId[1]), at: now() });
      else if (frame.event === 'issue.updated') w.updates.push(Number(/"number":(\d+)/.exec(frame.data ?? '')?.[1]));
      else if (frame.event && frame.event !== 'message' && frame.event !== 'position') w.other.push(`${frame.event} ${frame.id ?? ''} ${frame.data?.slice(0, 100) ?? ''}`);
      return { id: frame.id, event: frame.event, comments: [] };
    },
  });
  assert.equal(w.stream.status, 200);
  return w;
}

/**
 * Cached reads: each loop owns an issue, sets its title on one node and reads it back there (a
 * node reads its own write at once), then, once that node's feed delivered the change to a
 * browser on the next node, reads it there: no read may return an older title.
 */
class CacheLoad {
  running = true;
  readonly violations: string[] = [];
  reads = 0;
  private loops: Promise<void>[] = [];

  constructor(
    private readonly apis: Api[],
    private readonly observers: Watcher[][],
    private readonly issues: number[],
  ) {}

  start(): void {
    this.loops = this.issues.map((issue, i) => this.loop(i, issue));
  }

  private async loop(loop: number, issue: number): Promise<void> {
    let version = 0;
    while (this.running) {
      const writer = (loop + version) % this.apis.length;
      const reader = (writer + 1) % this.apis.length;
      const title = `loop ${loop} v${version + 1}`;
      let res: { status: number };
      try {
        res = await this.apis[writer]!('PATCH', `/api/repos/alice/cache/issues/${issue}`, { title });
      } catch {
        continue;
      }
      if (res.status !== 200) continue;
      version++;
      await this.expect(writer, issue, title, `own node after its write`);
      // The browser on the reader node has seen this change (its `version`-th update of the issue).
      const seen = await eventually(() => !this.running || this.updatesSeen(reader, issue) >= version, 60_000, `node ${reader + 1} to deliver update ${version} of issue ${issue}`).catch(() => false);
      if (!this.running) break;
      if (!seen) {
        this.violations.push(`node ${reader + 1} never delivered update ${version} of issue ${issue}`);
        continue;
      }
      await this.expect(reader, issue, title, `node ${reader + 1} after its feed delivered the change`);
    }
  }

  private updatesSeen(node: number, issue: number): number {
    return this.observers[node]!.flatMap((o) => o.updates).filter((n) => n === issue).length;
  }

  private async expect(node: number, issue: number, title: string, when: string): Promise<void> {
    try {
      const res = await this.apis[node]!('GET', `/api/repos/alice/cache/issues/${issue}`);
      this.reads++;
      if (res.status !== 200) this.violations.push(`${when}: GET answered ${res.status}`);
      else if (res.body.title !== title) this.violations.push(`${when}: read "${res.body.title}", expected "${title}"`);
    } catch (err) {
      this.violations.push(`${when}: ${(err as Error).message}`);
    }
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
  }
}

describe('HA: three NATS servers lose their leaders and restart in turn under load; nothing is lost', () => {
  let cluster: TestNatsCluster;
  let dataDir: string;
  const nodes: TestForgeNode[] = [];
  let publisherBus: ForgeBus | undefined;
  let observer: NatsConnection | undefined;
  const watchers: Watcher[] = [];
  /** The servers' log lines, with seconds since the start: shown when a guarantee fails. */
  const serverLog: string[] = [];
  const started = now();

  before(async () => {
    cluster = await startTestNatsCluster({ auth: true, onLog: (server, line) => serverLog.push(`${((now() - started) / 1000).toFixed(1)} ${server} ${line}`) });
    dataDir = mkdtempSync(join(tmpdir(), 'forgebus-ha-'));
    const env = { ...NODE_ENV, NATS_USER: cluster.forgeAuth.user!, NATS_PASSWORD: cluster.forgeAuth.pass! };
    nodes.push(await startForgeNode({ id: 'ha-1', natsUrl: cluster.url, dataDir, env }));
    nodes.push(...(await Promise.all([2, 3].map((i) => startForgeNode({ id: `ha-${i}`, natsUrl: cluster.url, dataDir, env })))));
  });

  after(async () => {
    if (process.env.FORGEBUS_HA_LOG) writeFileSync(process.env.FORGEBUS_HA_LOG, [...serverLog, ...nodes.flatMap((n) => n.output.map((l) => `${n.id} ${l}`))].join('\n'));
    for (const w of watchers) w.stream.close();
    await publisherBus?.close().catch(() => undefined);
    await observer?.close().catch(() => undefined);
    for (const node of nodes) await node.kill('SIGKILL');
    await cluster?.dispose();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  it('keeps every guarantee through leader kills and a rolling restart', async () => {
    const token = await tokenFor('alice');
    const apis = nodes.map((n) => apiClient(n.url, token));
    for (const repo of [...EVENT_REPOS, ...WRITE_REPOS, 'cache']) assert.equal((await apis[0]!('POST', '/api/repos', { name: repo })).status, 201);
    const issues: number[] = [];
    for (let i = 0; i < CACHE_LOOPS; i++) issues.push((await apis[0]!('POST', '/api/repos/alice/cache/issues', { title: `issue ${i}` })).body.number);

    // 100 browsers spread over the nodes, each on one event repository; one per node on the issues.
    for (let i = 0; i < SSE_CLIENTS; i++) watchers.push(await watch(nodes[i % 3]!.url, token, EVENT_REPOS[i % EVENT_REPOS.length]!, i % 3));
    const observers = await Promise.all(nodes.map(async (n, i) => [await watch(n.url, token, 'cache', i)]));

    publisherBus = await ForgeBus.connect({ nodeId: 'ha-load', connection: { servers: cluster.url, ...cluster.forgeAuth }, logger: quiet });
    observer = await connect({ servers: cluster.url.split(','), ...cluster.forgeAuth, maxReconnectAttempts: -1, reconnectTimeWait: 100 });
    const events = new EventLoad(publisherBus);
    const writes = new WriteLoad(apis);
    const reads = new CacheLoad(apis, observers, issues);
    const t0 = now();
    // A timeline every 2 s (shown when FORGEBUS_HA_LOG is set): where a pause comes from.
    const timeline: string[] = [];
    const sampler = setInterval(() => {
      void (async () => {
        const feeds = await Promise.all(apis.map((api) => api('GET', '/api/bus/stats').then((r) => r.body.feed.lastSeq as number, () => -1)));
        timeline.push(`${((now() - t0) / 1000).toFixed(1)} s: acked ${events.acked.size} (in flight ${publisherBus!.publisher.inFlight}), writes ${writes.committed}, feeds ${feeds.join('/')}, sse ${watchers.reduce((n, w) => n + w.received.length, 0)}`);
      })();
    }, 2_000);
    serverLog.push(`${((t0 - started) / 1000).toFixed(1)} load starts`);
    events.start();
    writes.start();
    reads.start();
    const marks: { what: string; at: number }[] = [];
    const mark = (what: string) => {
      marks.push({ what, at: now() - t0 });
      console.log(`# ${((now() - t0) / 1000).toFixed(1)} s: ${what}`);
    };
    /** Waits until the load made progress: `n` more acknowledged events and `w` more writes. */
    const progress = async (what: string, n = 400, w = 20) => {
      const [e0, w0, started] = [events.acked.size, writes.committed, now()];
      const report = setInterval(() => {
        console.log(`#   ${((now() - t0) / 1000).toFixed(1)} s: waiting for progress after ${what}: events +${events.acked.size - e0}/${n}, writes +${writes.committed - w0}/${w} ${JSON.stringify(Object.fromEntries(writes.statuses))}`);
      }, 5_000);
      try {
        await eventually(() => events.acked.size >= e0 + n && writes.committed >= w0 + w, 120_000, `progress after ${what} (events ${events.acked.size}/${e0 + n}, writes ${writes.committed}/${w0 + w})`);
      } finally {
        clearInterval(report);
      }
      if (now() - started > 10_000) console.log(`#   progress after ${what} took ${((now() - started) / 1000).toFixed(1)} s`);
    };

    let t1 = 0;
    try {
      await progress('the start');
      mark('steady load');

      const eventsLeader = await cluster.streamLeader('FORGE_EVENTS');
      mark(`SIGKILL ${eventsLeader}, leader of FORGE_EVENTS`);
      await cluster.server(eventsLeader).kill();
      await progress(`${eventsLeader} was killed`);
      await cluster.server(eventsLeader).start();
      mark(`${eventsLeader} restarted`);
      await cluster.waitCurrent('FORGE_EVENTS');
      await progress(`${eventsLeader} came back`);

      const metaLeader = await cluster.metaLeader();
      mark(`SIGKILL ${metaLeader}, JetStream meta leader`);
      await cluster.server(metaLeader).kill();
      await progress(`${metaLeader} was killed`);
      await cluster.server(metaLeader).start();
      mark(`${metaLeader} restarted`);
      await cluster.waitCurrent('FORGE_EVENTS');
      await cluster.waitCurrent('FORGE_REPO_WRITES');
      await progress(`${metaLeader} came back`);

      for (const server of cluster.servers) {
        mark(`rolling restart: stopping ${server.name}`);
        await server.stop();
        await progress(`${server.name} stopped`, 200, 10);
        await server.start();
        await cluster.waitCurrent('FORGE_EVENTS');
        await cluster.waitCurrent('FORGE_REPO_WRITES');
        mark(`rolling restart: ${server.name} back and current`);
      }
      await progress('the rolling restart');
    } finally {
      await events.stop();
      t1 = now();
      await writes.stop();
      await reads.stop();
    }
    clearInterval(sampler);
    if (process.env.FORGEBUS_HA_LOG) serverLog.push(...timeline);
    mark('load stopped');

    // No forge node was restarted, and none died.
    for (const node of nodes) assert.equal(node.child.exitCode, null, `${node.id} still runs`);

    // 1. Every acknowledged event is in the stream exactly once, at the acknowledged sequence.
    const stored = await readStream(observer);
    const storedLoad = stored.filter((m) => m.envelope.type === 'comment.created');
    const types = new Map<string, number>();
    for (const m of stored) types.set(`${m.envelope.type} by ${m.envelope.origin}`, (types.get(`${m.envelope.type} by ${m.envelope.origin}`) ?? 0) + 1);
    console.log(`# stored: ${JSON.stringify(Object.fromEntries(types))}`);
    const byComment = new Map<number, number[]>();
    for (const m of storedLoad) {
      const id = (m.envelope.payload as { commentId: number }).commentId;
      byComment.set(id, [...(byComment.get(id) ?? []), m.seq]);
    }
    const twice = [...byComment].filter(([, seqs]) => seqs.length > 1);
    assert.deepEqual(twice, [], 'no event stored twice');
    for (const [commentId, seq] of events.acked) assert.deepEqual(byComment.get(commentId), [seq], `acknowledged event ${commentId} stored once at ${seq}`);
    assert.equal(events.failed, 0, 'no publish failed');

    // 2. Every node's feed read the whole stream, in order, with no gap.
    const last = stored.at(-1)!.seq;
    for (const [i, api] of apis.entries()) {
      const stats = await eventually(async () => {
        const s = (await api('GET', '/api/bus/stats')).body;
        return s.feed.lastSeq >= last ? s : undefined;
      }, 30_000, `node ${i + 1}'s feed to reach ${last}`);
      assert.equal(stats.feed.gaps, 0, `node ${i + 1}: no gap`);
      assert.equal(stats.feed.resets, 0, `node ${i + 1}: no reset`);
    }

    // 3. Every browser received every event of its repository exactly once, in stream order.
    for (const [i, w] of watchers.entries()) {
      const expected = storedLoad.filter((m) => m.envelope.repo?.name === w.repo).map((m) => m.seq);
      await eventually(() => (w.received.at(-1)?.seq ?? 0) >= expected.at(-1)!, 30_000, `browser ${i} to catch up`).catch(() => undefined);
      assert.deepEqual(w.received.map((r) => r.seq), expected, `browser ${i} (node ${w.node + 1}, ${w.repo}): every event once, in order (other frames: ${w.other.slice(0, 3).join(' | ')})`);
    }

    // 4. Every accepted write applied exactly once.
    const statuses = Object.fromEntries(writes.statuses);
    assert.equal(writes.statuses.get(500) ?? 0, 0, `no 500 (${JSON.stringify(statuses)})`);
    for (const repo of WRITE_REPOS) {
      const history = (await apis[2]!('GET', `/api/repos/alice/${repo}/commits?branch=main`)).body as { sha: string; message: string }[];
      const shas = new Set(history.map((c) => c.sha));
      for (const { sha, message } of writes.commits.get(repo)!) assert.ok(shas.has(sha), `${repo}: accepted "${message}" is in the history`);
      const messages = history.map((c) => c.message.split('\n')[0]);
      assert.deepEqual(messages.filter((m, i) => messages.indexOf(m) !== i), [], `${repo}: no commit applied twice`);
    }

    // 5. No read returned a value older than a completed write.
    assert.deepEqual(reads.violations, [], 'no stale read');
    assert.ok(reads.reads > 20, `cached reads ran (${reads.reads})`);

    // The figures for BENCHMARKS.md.
    const seconds = (t1 - t0) / 1000;
    const deliveries = watchers.flatMap((w) => w.received.map((r) => r.at));
    const sseGap = watchers.map((w) => longestPause(w.received.map((r) => r.at), t0 + 1_000, t1)).reduce((a, b) => (b.ms > a.ms ? b : a));
    const publishGap = longestPause(events.ackTimes, t0 + 1_000, t1);
    const writeGap = longestPause(writes.doneTimes, t0 + 1_000, t1);
    const when = (at: number) => `${((at - t0) / 1000).toFixed(1)} s`;
    console.log(
      `# HA run: ${seconds.toFixed(0)} s; events acknowledged ${events.acked.size} (${(events.acked.size / seconds).toFixed(0)}/s), ` +
        `writes applied ${writes.committed} (${(writes.committed / seconds).toFixed(1)}/s; answers ${JSON.stringify(statuses)}), ` +
        `SSE deliveries ${deliveries.length}, cached reads checked ${reads.reads}; publisher re-sends ${publisherBus.publisher.stats.resends}, leader waits ${publisherBus.publisher.stats.leaderWaits}`,
    );
    console.log(
      `# longest pause: publishing ${publishGap.ms.toFixed(0)} ms (at ${when(publishGap.at)}), writes ${writeGap.ms.toFixed(0)} ms (at ${when(writeGap.at)}), ` +
        `SSE delivery ${sseGap.ms.toFixed(0)} ms (at ${when(sseGap.at)}); faults at ${marks.map((m) => `${(m.at / 1000).toFixed(1)} s ${m.what}`).join('; ')}`,
    );
  });
});
