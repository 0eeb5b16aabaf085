import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect, headers, type NatsConnection } from '@nats-io/transport-node';
import { apiClient, startForgeNode, tokenFor, type TestForgeNode } from '../support/forge-node.js';
import { eventually, startTestNats, type TestNats } from '../support/nats.js';
import { readStream } from '../bus/helpers.js';
import { RawSseStream } from '../support/sse-client.js';
import { TcpProxy } from '../support/tcp-proxy.js';

/** The same on every node (a node that differs is refused: that is one of the faults). */
const NODE_ENV = { FORGE_WRITE_PARTITIONS: '8', FORGE_WRITE_ACK_WAIT_MS: '3000', FORGE_WRITE_TIMEOUT_MS: '20000' };
const REPOS = ['c0', 'c1', 'c2'];
const WORKERS = 6;

type Api = ReturnType<typeof apiClient>;

/** Requests from several loops against the three nodes, and what each answered. */
class Load {
  running = true;
  readonly statuses = new Map<number, number>();
  /** Commits answered 2xx: their sha and unique message, per repository. */
  readonly commits = new Map<string, { sha: string; message: string }[]>(REPOS.map((r) => [r, []]));
  /** The title each loop's own issue was last set to by a 2xx answer. */
  readonly titles = new Map<number, string>();
  private loops: Promise<void>[] = [];
  private sent = 0;

  constructor(private readonly apis: () => Api[]) {}

  start(issueOfLoop: number[]): void {
    this.loops = issueOfLoop.map((issue, loop) => this.loop(loop, issue));
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
  }

  get committed(): number {
    return [...this.commits.values()].reduce((n, list) => n + list.length, 0);
  }

  private async loop(loop: number, issue: number): Promise<void> {
    while (this.running) {
      const n = ++this.sent;
      const apis = this.apis();
      const api = apis[n % apis.length]!;
      try {
        if (n % 2 === 0) {
          const repo = REPOS[n % REPOS.length]!;
          const message = `chaos commit ${n}`;
          const res = await api('POST', `/api/repos/alice/${repo}/commits`, { branch: 'main', path: `f${n}.txt`, content: `${n}`, message });
          this.count(res.status);
          if (res.status === 201) this.commits.get(repo)!.push({ sha: res.body.sha, message });
        } else {
          const title = `loop ${loop} #${n}`;
          const res = await api('PATCH', `/api/repos/alice/chaos/issues/${issue}`, { title });
          this.count(res.status);
          if (res.status === 200) this.titles.set(issue, title);
        }
      } catch {
        this.count(0); // connection refused: the node is down (it is being killed)
      }
    }
  }

  private count(status: number): void {
    this.statuses.set(status, (this.statuses.get(status) ?? 0) + 1);
  }
}

// One live 3-node cluster under a steady load of commits and issue edits meets the faults of
// issue 10 one after another; at the end every guarantee is checked on what the cluster holds.
describe('chaos: faults one after another against a live 3-node cluster under load', () => {
  let nats: TestNats;
  let nc: NatsConnection;
  let dataDir: string;
  const proxies: TcpProxy[] = [];
  const nodes: TestForgeNode[] = [];
  let load: Load;
  let stream: RawSseStream;

  const startNode = (i: number, env: Record<string, string> = {}) =>
    startForgeNode({ id: `chaos-${i + 1}`, natsUrl: proxies[i]!.url, dataDir, env: { ...NODE_ENV, ...env } });

  before(async () => {
    nats = await startTestNats();
    nc = await connect({ servers: nats.url, name: 'chaos-observer', maxReconnectAttempts: -1, reconnectTimeWait: 100 });
    dataDir = mkdtempSync(join(tmpdir(), 'forgebus-chaos-'));
    for (let i = 0; i < 3; i++) proxies.push(await TcpProxy.start(nats.port));
    nodes.push(await startNode(0));
    nodes.push(...(await Promise.all([startNode(1), startNode(2)])));
  });

  after(async () => {
    if (load) await load.stop();
    stream?.close();
    for (const node of nodes) await node.kill('SIGKILL');
    for (const proxy of proxies) await proxy.close();
    await nc?.close();
    await nats?.dispose();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  it('keeps every guarantee', async () => {
    const token = await tokenFor('alice');
    const apis = () => nodes.map((n) => apiClient(n.url, token));
    const alice = () => apis()[0]!;
    for (const repo of [...REPOS, 'chaos']) assert.equal((await alice()('POST', '/api/repos', { name: repo })).status, 201);
    const issues: number[] = [];
    for (let w = 0; w < WORKERS; w++) issues.push((await alice()('POST', '/api/repos/alice/chaos/issues', { title: `issue of loop ${w}` })).body.number);
    // A browser on node 3 (never killed) watching everything of the test.
    stream = await RawSseStream.open(`${nodes[2]!.url}/api/events?repos=${[...REPOS, 'chaos'].map((r) => `alice/${r}`).join(',')}`, { authorization: `Bearer ${token}` });

    load = new Load(apis);
    load.start(issues);
    const progress = async (what: string, more = 15) => {
      const target = load.committed + more;
      await eventually(() => load.committed >= target, 90_000, `${more} more commits after ${what}`);
    };
    await progress('the start');

    // 1. A flood of malformed messages on event and write subjects.
    const js = jetstream(nc);
    for (let i = 0; i < 300; i++) {
      const h = headers();
      h.set('Nats-Msg-Id', `chaos-garbage-${i}`);
      await js.publish(i % 3 === 0 ? 'forge.write.1.alice.c0' : 'forge.repo.alice.c0.issue.created', new TextEncoder().encode(i % 2 ? '{"id":' : `[${i}]`), { headers: h });
    }
    await progress('the malformed flood');

    // 2. A fourth node with another partition count: refused, the others go on.
    await assert.rejects(startForgeNode({ id: 'chaos-4', natsUrl: nats.url, dataDir, env: { ...NODE_ENV, FORGE_WRITE_PARTITIONS: '16' } }), /FORGE_WRITE_PARTITIONS=16 differs/);
    await progress('the refused node');

    // 3. Every write-queue consumer deleted.
    const jsm = await jetstreamManager(nc);
    for await (const c of jsm.consumers.list('FORGE_REPO_WRITES')) await jsm.consumers.delete('FORGE_REPO_WRITES', c.name);
    await progress('the consumers were deleted');

    // 4. FORGE_EVENTS deleted (the nodes provision it again and start over on it).
    await jsm.streams.delete('FORGE_EVENTS');
    await progress('the event stream was deleted');

    // 5. Acks to node 1 arrive late (a slow link): its publishes are re-sent, order kept.
    proxies[0]!.downstreamDelayMs = 2_500;
    await progress('acks slowed down', 5);
    proxies[0]!.downstreamDelayMs = 0;

    // 6. Node 2 killed mid-write and started again.
    await nodes[1]!.kill('SIGKILL');
    await progress('node 2 was killed', 5);
    nodes[1] = await startNode(1);
    await progress('node 2 came back', 5);

    // 7. The NATS server itself stops and comes back.
    await nats.stop();
    // Up again once every node noticed the outage (its health says so).
    await eventually(async () => (await Promise.all(nodes.map(async (n) => (await fetch(`${n.url}/health`)).status))).every((s) => s === 503), 30_000, 'every node to notice the outage');
    nats = await nats.restart();
    await progress('NATS came back');

    await load.stop();
    const statuses = Object.fromEntries(load.statuses);
    console.log(`# answers: ${JSON.stringify(statuses)}; commits answered 201: ${load.committed}`);
    assert.equal(load.statuses.get(500) ?? 0, 0, `no 500 (${JSON.stringify(statuses)})`);

    // Guarantee: every accepted commit is in its repository's history exactly once, and nothing
    // was committed twice (each request's message is unique).
    for (const repo of REPOS) {
      const history = await eventually(async () => {
        const res = await alice()('GET', `/api/repos/alice/${repo}/commits?branch=main`);
        return res.status === 200 ? (res.body as { sha: string; message: string }[]) : undefined;
      }, 20_000, `the history of ${repo}`);
      const shas = new Set(history.map((c) => c.sha));
      for (const { sha, message } of load.commits.get(repo)!) assert.ok(shas.has(sha), `${repo}: accepted commit "${message}" (${sha}) is in the history`);
      const messages = history.map((c) => c.message.split('\n')[0]);
      const twice = messages.filter((m, i) => messages.indexOf(m) !== i);
      assert.deepEqual(twice, [], `${repo}: no commit applied twice`);
    }

    // Guarantee: every node reads every issue as it was last written (no stale cache anywhere).
    for (const [issue, title] of load.titles) {
      for (const [k, api] of apis().entries()) {
        await eventually(async () => (await api('GET', `/api/repos/alice/chaos/issues/${issue}`)).body?.title === title, 20_000, `node ${k + 1} to read issue ${issue} as "${title}"`);
      }
    }

    // Guarantee: the browser on node 3 got the new stream's events of its repositories exactly,
    // in order, after the reset that moved it onto the new stream.
    const resetAt = stream.events.findIndex((e) => e.type === 'reset' && JSON.parse(e.data).reason === 'stream-recreated');
    assert.ok(resetAt >= 0, 'the browser was told the stream was re-created');
    const after = stream.events.slice(resetAt + 1).filter((e) => e.type !== 'reset');
    const seqOf = (id: string) => Number(id.split('-')[0]);
    const last = (await jsm.streams.info('FORGE_EVENTS')).state.last_seq;
    await stream.waitFor((s) => s.events.some((e) => seqOf(e.id) === last), 20_000, 'the browser to catch up').catch(async (err: Error) => {
      const feeds = await Promise.all(apis().map(async (api) => (await api('GET', '/api/bus/stats')).body.feed.lastSeq));
      throw new Error(`${err.message}: stream at ${last}, feeds at ${feeds.join(', ')}, browser at ${stream.events.at(-1)?.id}; node 3 said:\n${nodes[2]!.output.filter((l) => /WARN|ERROR/.test(l)).slice(-25).join('\n')}`);
    });
    const watched = new Set([...REPOS, 'chaos']);
    const resetSeq = seqOf(stream.events[resetAt]!.id);
    const expected = (await readStream(nc))
      .filter((m) => m.seq > resetSeq && m.seq <= last && watched.has(m.envelope.repo?.name ?? ''))
      .map((m) => String(m.seq));
    const received = stream.events.slice(resetAt + 1).filter((e) => e.type !== 'reset' && seqOf(e.id) <= last).map((e) => String(seqOf(e.id)));
    assert.ok(after.length > 0);
    if (JSON.stringify(received) !== JSON.stringify(expected)) {
      const feeds = await Promise.all(apis().map(async (api) => (await api('GET', '/api/bus/stats')).body.feed));
      const tail = stream.frames.slice(-6).map((f) => ({ id: f.id, event: f.event, data: f.data?.slice(0, 120) }));
      console.log(`# chaos diagnostics: feeds ${JSON.stringify(feeds)}; browser tail ${JSON.stringify(tail)}; node 3 said:\n${nodes[2]!.output.filter((l) => /WARN|ERROR/.test(l) && !/malformed|outbox relay/.test(l)).slice(-20).join('\n')}`);
    }
    assert.deepEqual(received, expected, 'exactly the events of the new stream, in order, once each');

    for (const node of nodes) assert.equal((await fetch(`${node.url}/health`)).status, 200, `${node.id} healthy at the end`);
    const feeds = await Promise.all(apis().map(async (api) => (await api('GET', '/api/bus/stats')).body.feed));
    console.log(`# feeds: ${feeds.map((f) => `resets ${f.resets}, stalls ${f.stalls}, malformed ${f.malformed}`).join(' | ')}`);
  });
});
