import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { SseCluster, topicOf } from '../fixtures/sse-cluster.js';
import { eventually } from '../support/nats.js';
import { lbEventSource, type LbEventSource } from '../support/sse-client.js';

/**
 * Issue 4, "Done when": 100 EventSource clients (the `eventsource` package) on node 2 read live
 * events published through node 1; node 2 is SIGKILLed mid-run; events keep being published;
 * the load balancer sends each EventSource's own reconnect, with its Last-Event-ID header, to
 * node 3; every client ends with exactly the events it may see, in stream order, no duplicate,
 * no gap. 1,000 events in all, compared with FORGE_EVENTS as the server holds it.
 */

const CLIENTS = 100;
const EVENTS = 1_000;
/** Published while every client is on node 2 (the kill comes during this phase). */
const BEFORE_KILL = 300;
/** Published while node 2 is dead and the load balancer has not yet moved anyone. */
const DURING_OUTAGE = 300;
const RETRY_MS = 300;
/** Replays node 3 runs at once (FORGE_SSE_MAX_REPLAYS): 100 clients resume through 4 at a time. */
const MAX_REPLAYS = 4;

/** Where event i of the run goes: alice's three repositories, and every tenth one bob's private one. */
function target(i: number): { owner: string; repo: string } {
  const slot = i % 10;
  if (slot === 9) return { owner: 'bob', repo: 'noise' };
  return { owner: 'alice', repo: ['r0', 'r1', 'r2'][Math.floor(slot / 3)]! };
}

/** The three kinds of client, by index: what they ask for and what they may see. */
function kind(index: number): { user: string; path: string; topics: string[] } {
  switch (index % 3) {
    case 0:
      return { user: 'alice', path: '/api/events', topics: ['alice/r0', 'alice/r1', 'alice/r2'] };
    case 1:
      return { user: 'alice', path: '/api/events?repos=alice/r1', topics: ['alice/r1'] };
    default:
      // bob names alice's public repositories; r2 is private and his own bob/noise he did not name.
      return { user: 'bob', path: '/api/events?repos=alice/r0,alice/r1', topics: ['alice/r0', 'alice/r1'] };
  }
}

describe(`resume across nodes: ${CLIENTS} EventSource clients, ${EVENTS} events, node 2 SIGKILLed`, () => {
  let cluster: SseCluster;
  const clients: LbEventSource[] = [];

  before(async () => {
    cluster = await SseCluster.start({
      count: 3,
      prefix: 'sse-resume',
      env: (i) => ({ FORGE_SSE_RETRY_MS: String(RETRY_MS), ...(i === 3 ? { FORGE_SSE_MAX_REPLAYS: String(MAX_REPLAYS) } : {}) }),
    });
    for (const name of ['r0', 'r1']) await cluster.call(1, 'alice', 'POST', '/api/repos', { name });
    await cluster.call(1, 'alice', 'POST', '/api/repos', { name: 'r2', private: true });
    await cluster.call(1, 'bob', 'POST', '/api/repos', { name: 'noise', private: true });
  });

  after(async () => {
    for (const c of clients) c.close();
    await cluster?.dispose();
  });

  it('every client gets exactly its events, in order, across the kill, the outage and the reconnect', async (t) => {
    const start = await cluster.settle();
    const node2 = cluster.url(2);
    const node3 = cluster.url(3);
    let node2Alive = true;
    // The load balancer: node 2 while it is up, then node 3 once it has noticed node 2 is gone.
    let lbNoticed!: () => void;
    const noticed = new Promise<void>((resolve) => (lbNoticed = resolve));
    const tokens = { alice: await cluster.token('alice'), bob: await cluster.token('bob') };
    for (let i = 0; i < CLIENTS; i++) {
      const { user, path } = kind(i);
      clients.push(
        lbEventSource({
          path,
          token: tokens[user as 'alice' | 'bob'],
          nodes: () => (node2Alive ? [node2, node3] : [node3]),
          beforeReconnect: () => noticed,
        }),
      );
    }
    await Promise.all(clients.map((c) => c.opened));
    await eventually(async () => (await cluster.sseStats(2)).clients === CLIENTS, 10_000, `${CLIENTS} streams on node 2`);

    // The publisher: issues created through node 1's API, a few requests at a time.
    let next = 0;
    const publishUntil = async (end: number, concurrency = 4) => {
      const worker = async () => {
        while (next < end) {
          const i = next++;
          const { owner, repo } = target(i);
          await cluster.call(1, owner, 'POST', `/api/repos/${owner}/${repo}/issues`, { title: `event ${i}`, body: `published as number ${i} of the run` });
        }
      };
      await Promise.all(Array.from({ length: concurrency }, worker));
    };

    // Phase 1: live on node 2; SIGKILL once every client has read some events, while publishing goes on.
    const phase1 = publishUntil(BEFORE_KILL);
    await eventually(() => clients.every((c) => c.events.length >= 20), 30_000, 'every client to read 20 events on node 2');
    const publishedAtKill = next;
    await cluster.node(2).kill('SIGKILL');
    node2Alive = false;
    const receivedAtKill = clients.reduce((n, c) => n + c.events.length, 0);
    await phase1;

    // Phase 2: node 2 is dead; the load balancer has not moved anyone yet; events keep coming.
    await publishUntil(BEFORE_KILL + DURING_OUTAGE);
    const outageEnd = await cluster.settle([1, 3]);
    await eventually(() => clients.every((c) => c.connections.length === 2), 10_000, 'every EventSource to try to reconnect');

    // Phase 3: the load balancer sends the reconnects to node 3; publishing goes on meanwhile.
    // Every replay reads the stream through a consumer of its own: count them while they run.
    const consumersBefore = (await cluster.streamInfo()).state.consumer_count;
    let consumersPeak = consumersBefore;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        consumersPeak = Math.max(consumersPeak, (await cluster.streamInfo()).state.consumer_count);
        await new Promise((r) => setTimeout(r, 10));
      }
    })();
    lbNoticed();
    await publishUntil(EVENTS);
    const end = await cluster.settle([1, 3]);
    await eventually(async () => clients.every((c) => c.opens === 2) && (await cluster.sseStats(3)).replaying === 0, 30_000, 'every replay to finish');
    sampling = false;
    await sampler;

    const stored = await cluster.storedEvents(start + 1, end);
    assert.equal(stored.length, EVENTS, 'the stream holds the 1,000 events of the run, nothing else');
    assert.deepEqual(
      stored.map((e) => (e.envelope.payload as { title: string }).title).sort(),
      Array.from({ length: EVENTS }, (_, i) => `event ${i}`).sort(),
    );

    const expectedFor = (topics: string[]) =>
      stored.filter((e) => topics.includes(topicOf(e.envelope))).map((e) => `${e.seq} ${e.envelope.type} ${e.json}`);
    const expected = [0, 1, 2].map((k) => expectedFor(kind(k).topics));
    await eventually(
      () => clients.every((c, i) => c.events.length >= expected[i % 3]!.length),
      30_000,
      'every client to receive all of its events',
    );

    for (const [i, client] of clients.entries()) {
      const { user, path } = kind(i);
      const what = `client ${i} (${user} ${path})`;
      const got = client.events.map((e) => `${e.id} ${e.type} ${e.data}`);
      const want = expected[i % 3]!;
      if (got.length !== want.length || got.some((g, j) => g !== want[j])) {
        const ids = client.events.map((e) => Number(e.id));
        const wantIds = want.map((w) => Number(w.split(' ')[0]));
        const duplicates = ids.filter((id, j) => ids.indexOf(id) !== j);
        const missing = wantIds.filter((id) => !ids.includes(id));
        const extra = ids.filter((id) => !wantIds.includes(id));
        assert.fail(`${what}: ${got.length} events, ${want.length} expected; duplicates ${JSON.stringify(duplicates.slice(0, 10))}, missing ${JSON.stringify(missing.slice(0, 10))}, not allowed ${JSON.stringify(extra.slice(0, 10))}; first difference at ${got.findIndex((g, j) => g !== want[j])}; connections ${JSON.stringify(client.connections)}`);
      }
      // One connect to node 2, one reconnect to node 3 carrying the id of the last event read on node 2.
      assert.equal(client.connections.length, 2, `${what}: ${JSON.stringify(client.connections)}`);
      const [first, second] = client.connections as [(typeof client.connections)[0], (typeof client.connections)[0]];
      assert.deepEqual([first.node, first.status, first.lastEventId], [node2, 200, undefined], what);
      assert.deepEqual([second.node, second.status], [node3, 200], what);
      assert.ok(second.receivedBefore >= 20, what);
      assert.equal(second.lastEventId, client.events[second.receivedBefore - 1]!.id, `${what}: Last-Event-ID of the reconnect`);
      // It missed events (at least those of the outage) and got them from node 3's replay.
      const missed = want.filter((w) => Number(w.split(' ')[0]) > Number(second.lastEventId) && Number(w.split(' ')[0]) <= outageEnd).length;
      assert.ok(missed >= DURING_OUTAGE / 10, `${what}: ${missed} events to replay`);
      assert.equal(client.opens, 2, what);
      assert.equal(client.es.readyState, client.es.OPEN, what);
    }

    const stats3 = await cluster.sseStats(3);
    assert.equal(stats3.clients, CLIENTS);
    assert.equal(stats3.replays, CLIENTS, 'every client resumed through a replay on node 3');
    assert.equal(stats3.resets, 0);
    assert.equal(stats3.slowDisconnects, 0);
    assert.equal(stats3.replayFailures, 0);
    assert.ok(stats3.replayedEvents >= CLIENTS * (DURING_OUTAGE / 10), `replayed ${stats3.replayedEvents}`);
    // At most MAX_REPLAYS replay consumers at once (plus as many whose deletion is still on its way).
    const replayConsumers = consumersPeak - consumersBefore;
    assert.ok(replayConsumers >= 1 && replayConsumers <= 2 * MAX_REPLAYS, `${replayConsumers} replay consumers at once (FORGE_SSE_MAX_REPLAYS ${MAX_REPLAYS})`);
    t.diagnostic(
      `at most ${replayConsumers} replay consumers at once; published ${publishedAtKill} events before the SIGKILL (clients had read ${receivedAtKill} in all), ${DURING_OUTAGE} during the outage (up to seq ${outageEnd}), ` +
        `${EVENTS} in all (seq ${start + 1}..${end}); node 3: ${stats3.replays} replays, ${stats3.replayedEvents} events replayed, ${stats3.deliveries} deliveries`,
    );
    for (const c of clients) c.close();
  });

  // The first frame is a `position` event whose id is where the stream starts: the `eventsource`
  // package (unlike browsers) takes ids only from frames with data.
  it('an EventSource that read nothing before its node died still gets what was published meanwhile', async () => {
    const node1 = cluster.url(1);
    const node3 = cluster.url(3);
    await cluster.settle([1, 3]);
    let node3Alive = true;
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    const client = lbEventSource({
      path: '/api/events?repos=alice/r1',
      token: await cluster.token('alice'),
      nodes: () => (node3Alive ? [node3, node1] : [node1]),
      beforeReconnect: () => released,
    });
    clients.push(client);
    let positionSeen = false;
    client.es.addEventListener('position', () => (positionSeen = true));
    // Killed before the client parsed the position frame, it would have nothing to resume from
    // (that is a different case): on a loaded machine 'open' can come well before that frame.
    await eventually(() => positionSeen, 10_000, "the stream's position event");
    await cluster.node(3).kill('SIGKILL');
    node3Alive = false;
    await eventually(() => client.connections.length === 2, 10_000, 'the EventSource to try to reconnect');
    await cluster.call(1, 'alice', 'POST', '/api/repos/alice/r1/issues', { title: 'while it was away' });
    const missed = await cluster.settle([1]);
    release();
    await eventually(() => client.opens === 2, 10_000, 'the reconnect to node 1');
    await cluster.call(1, 'alice', 'POST', '/api/repos/alice/r1/issues', { title: 'live again' });
    const live = await cluster.settle([1]);
    await client.waitForCount(1, 10_000, 'the live event');
    await eventually(() => client.events.some((e) => e.id === String(live)), 10_000, 'the live event');
    assert.equal(client.connections[1]!.node, node1);
    assert.deepEqual(
      client.events.map((e) => [e.id, (JSON.parse(e.data) as { payload: { title: string } }).payload.title]),
      [
        [String(missed), 'while it was away'],
        [String(live), 'live again'],
      ],
      `the reconnect sent Last-Event-ID ${JSON.stringify(client.connections[1]!.lastEventId)}`,
    );
    client.close();
  });
});
