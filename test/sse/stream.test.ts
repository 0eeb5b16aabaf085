import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { SseCluster, type StoredEvent } from '../fixtures/sse-cluster.js';
import { apiClient, startForgeNode, tokenFor, type TestForgeNode } from '../support/forge-node.js';
import { eventually, startTestNats, type TestNats } from '../support/nats.js';
import { TcpProxy } from '../support/tcp-proxy.js';
import { lbEventSource, RawSseStream, type SseEvent } from '../support/sse-client.js';

/**
 * Issue 4: GET /api/events on every node. Three real forge node processes on one nats-server;
 * what the streams carry is compared with what FORGE_EVENTS holds.
 */

const RETRY_MS = 700;
const HEARTBEAT_MS = 300;

/** What a client must have received: the stored events of `repos` after `from`, as SSE events. */
function expectedFor(stored: StoredEvent[], repos: string[], from = 0): SseEvent[] {
  return stored
    .filter((e) => e.seq > from && e.envelope.repo && repos.includes(`${e.envelope.repo.owner}/${e.envelope.repo.name}`))
    .map((e) => ({ id: String(e.seq), type: e.envelope.type, data: e.json }));
}

/** `promise`, or a failure naming `what` after `ms`. */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms)));
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** SSE events with the data parsed, so that key order of the JSON does not matter. */
const parsed = (events: SseEvent[]) => events.map((e) => ({ id: e.id, type: e.type, data: JSON.parse(e.data) as unknown }));

describe('GET /api/events: live events through any node', () => {
  let cluster: SseCluster;
  const open: { close(): void }[] = [];
  const track = <T extends { close(): void }>(c: T): T => (open.push(c), c);

  before(async () => {
    cluster = await SseCluster.start({
      count: 3,
      prefix: 'sse-stream',
      env: (i) => ({
        FORGE_SSE_RETRY_MS: String(RETRY_MS),
        ...(i === 1 ? { FORGE_SSE_MAX_CLIENTS: '2' } : {}),
        ...(i === 3 ? { FORGE_SSE_HEARTBEAT_MS: String(HEARTBEAT_MS) } : {}),
      }),
    });
    await cluster.call(1, 'alice', 'POST', '/api/repos', { name: 'web' });
    await cluster.call(1, 'alice', 'POST', '/api/repos', { name: 'tools' });
    await cluster.settle();
  });

  after(async () => {
    for (const c of open) c.close();
    await cluster?.dispose();
  });

  const events = async (from: number, to?: number) => cluster.storedEvents(from, to ?? (await cluster.streamInfo()).state.last_seq);
  const auth = async (user = 'alice') => ({ authorization: `Bearer ${await cluster.token(user)}` });

  it('an EventSource on node 2 receives the issue events caused by requests on node 1, with the stream sequence as id', async () => {
    const start = await cluster.settle();
    const client = track(lbEventSource({ path: '/api/events', token: await cluster.token('alice'), nodes: () => [cluster.url(2)] }));
    await client.opened;
    const issue = await cluster.call(1, 'alice', 'POST', '/api/repos/alice/web/issues', { title: 'seen on node 2', body: 'from node 1' });
    await client.waitForCount(1, 10_000, 'the issue.created event on node 2');
    await cluster.call(1, 'alice', 'DELETE', `/api/repos/alice/web/issues/${issue.number}`);
    await client.waitForCount(2, 10_000, 'the issue.deleted event on node 2');

    const stored = await events(start + 1);
    assert.deepEqual(
      stored.map((e) => [e.envelope.type, e.envelope.origin]),
      [['issue.created', 'sse-stream-1'], ['issue.deleted', 'sse-stream-1']],
      'the stream holds exactly the two events, published by node 1',
    );
    // id = FORGE_EVENTS sequence, data = the stored envelope, event = its type.
    assert.deepEqual(parsed(client.events), parsed(expectedFor(stored, ['alice/web'], start)));
    assert.equal(client.es.readyState, client.es.OPEN);
    assert.deepEqual(client.connections.map((c) => c.node), [cluster.url(2)]);
    const created = JSON.parse(client.events[0]!.data);
    assert.deepEqual(created.payload, { number: issue.number, title: 'seen on node 2' });
    client.close();
  });

  it('answers text/event-stream, no-cache, X-Accel-Buffering: no, uncompressed, and starts with retry and its position', async () => {
    const position = await cluster.settle();
    const stream = track(await RawSseStream.open(`${cluster.url(2)}/api/events`, { ...(await auth()), 'accept-encoding': 'gzip, deflate, br' }));
    assert.equal(stream.status, 200);
    assert.match(stream.headers.get('content-type') ?? '', /^text\/event-stream\b/);
    assert.match(stream.headers.get('cache-control') ?? '', /(^|,\s*)no-cache(,|$)/);
    assert.equal(stream.headers.get('x-accel-buffering'), 'no');
    assert.equal(stream.headers.get('content-encoding'), null, 'no compression, although the client accepts gzip');
    await stream.waitFor((s) => s.frames.length >= 1, 5_000, 'the preamble');
    // The first frame: reconnect delay, and the position the stream starts at as id (so that a
    // client that drops before its first event resumes from there); nothing a listener would get.
    const [first] = stream.frames;
    assert.equal(first?.retry, String(RETRY_MS));
    assert.equal(first?.id, String(position));
    assert.ok(first?.data === undefined || (first.event !== undefined && !first.event.includes('.')), JSON.stringify(first));
    stream.close();
  });

  it('?repos= limits the stream to the named repositories; the default stream has all of the user\'s own', async () => {
    const start = await cluster.settle();
    const named = track(lbEventSource({ path: '/api/events?repos=alice/tools', token: await cluster.token('alice'), nodes: () => [cluster.url(2)] }));
    const spaced = track(await RawSseStream.open(`${cluster.url(3)}/api/events?repos=${encodeURIComponent(' alice/web , alice/tools,alice/web ')}`, await auth()));
    const all = track(lbEventSource({ path: '/api/events', token: await cluster.token('alice'), nodes: () => [cluster.url(3)] }));
    await Promise.all([named.opened, all.opened]);
    assert.equal(spaced.status, 200);
    for (let i = 0; i < 3; i++) {
      await cluster.call(1, 'alice', 'POST', '/api/repos/alice/web/issues', { title: `web ${i}` });
      await cluster.call(1, 'alice', 'POST', '/api/repos/alice/tools/issues', { title: `tools ${i}` });
    }
    const last = await cluster.settle();
    const stored = await events(start + 1, last);
    assert.equal(stored.length, 6);
    const onlyTools = expectedFor(stored, ['alice/tools'], start);
    const both = expectedFor(stored, ['alice/web', 'alice/tools'], start);
    assert.equal(onlyTools.length, 3);
    await named.waitForCount(3);
    await all.waitForCount(6);
    await spaced.waitFor((s) => s.events.length >= 6, 10_000, 'both repositories on the spaced list');
    // One more event after the last expected: nothing else may have slipped in before it.
    await cluster.call(1, 'alice', 'POST', '/api/repos/alice/tools/issues', { title: 'marker' });
    const marker = await cluster.settle();
    await named.waitForCount(4);
    await all.waitForCount(7);
    assert.deepEqual(parsed(named.events.slice(0, 3)), parsed(onlyTools));
    assert.deepEqual(parsed(all.events.slice(0, 6)), parsed(both));
    assert.deepEqual(parsed(spaced.events.slice(0, 6)), parsed(both));
    assert.deepEqual([named.events[3]!.id, all.events[3 + 3]!.id], [String(marker), String(marker)]);
    named.close();
    all.close();
    spaced.close();
  });

  it('400 for a malformed repos list or Last-Event-ID (with the reason), before any stream starts', async () => {
    const headers = await auth();
    const bad: [string, Record<string, string>, RegExp][] = [
      ['?repos=alice', {}, /not owner\/name/],
      ['?repos=alice/web/x', {}, /not owner\/name/],
      ['?repos=,,', {}, /owner\/name pairs/],
      ['?repos=alice/..', {}, /"alice\/\.\."/],
      ['?repos=alice/web.git', {}, /\.git/],
      ['?repos=alice/web&repos=alice/tools', {}, /once/],
      [`?repos=${Array.from({ length: 101 }, (_, i) => `alice/r${i}`).join(',')}`, {}, /at most 100/],
      ['', { 'last-event-id': 'abc' }, /Last-Event-ID/],
      ['', { 'last-event-id': '-1' }, /Last-Event-ID/],
      ['', { 'last-event-id': '1.5' }, /Last-Event-ID/],
      ['', { 'last-event-id': '1e3' }, /Last-Event-ID/],
      ['?lastEventId=12x', {}, /Last-Event-ID/],
      ['?lastEventId=9999999999999999', {}, /Last-Event-ID/],
    ];
    for (const [query, extra, message] of bad) {
      const res = await RawSseStream.open(`${cluster.url(2)}/api/events${query}`, { ...headers, ...extra });
      assert.equal(res.status, 400, `${query} ${JSON.stringify(extra)}: ${res.body}`);
      assert.match(res.headers.get('content-type') ?? '', /application\/json/);
      assert.match(String(res.json().message), message, `${query} ${JSON.stringify(extra)}`);
    }
    const stats = await cluster.sseStats(2);
    assert.equal(stats.clients, 0, 'no stream was opened by the refused requests (and every earlier one is closed)');
  });

  it('resumes on another node from the lastEventId query parameter: exactly what came after, then live', async () => {
    // The client's last event is one of its repository's: it must not get that one again.
    await cluster.call(1, 'alice', 'POST', '/api/repos/alice/web/issues', { title: 'read before the switch' });
    const start = await cluster.settle();
    assert.equal((await events(start, start))[0]!.envelope.repo?.name, 'web');
    for (let i = 0; i < 4; i++) await cluster.call(1, 'alice', 'POST', `/api/repos/alice/${i % 2 ? 'web' : 'tools'}/issues`, { title: `missed ${i}` });
    const last = await cluster.settle();
    const stream = track(await RawSseStream.open(`${cluster.url(3)}/api/events?repos=alice/web&lastEventId=${start}`, await auth()));
    assert.equal(stream.status, 200);
    const expected = expectedFor(await events(start + 1, last), ['alice/web'], start);
    assert.equal(expected.length, 2);
    await stream.waitFor((s) => s.events.length >= 2, 10_000, 'the replay');
    await cluster.call(2, 'alice', 'POST', '/api/repos/alice/web/issues', { title: 'live after replay' });
    const live = await cluster.settle();
    await stream.waitFor((s) => s.events.length >= 3, 10_000, 'the live event');
    assert.deepEqual(parsed(stream.events), parsed([...expected, ...expectedFor(await events(live, live), ['alice/web'])]));
    // A resumed stream does not announce a position of its own: its id is the client's.
    assert.deepEqual(stream.frames[0], { retry: String(RETRY_MS), comments: [] });
    stream.close();
  });

  it('Last-Event-ID older than the stream holds: a reset event (with the new position as id), then live; just inside the window: replay', async () => {
    await cluster.call(1, 'alice', 'POST', '/api/repos/alice/web/issues', { title: 'old 1' });
    await cluster.call(1, 'alice', 'POST', '/api/repos/alice/web/issues', { title: 'old 2' });
    const keptFrom = await cluster.settle();
    // Retention dropped everything before keptFrom (the last event recorded).
    await cluster.purgeBelow(keptFrom);
    const info = await cluster.streamInfo();
    assert.equal(info.state.first_seq, keptFrom);
    const position = info.state.last_seq;

    const tooOld = track(await RawSseStream.open(`${cluster.url(2)}/api/events?repos=alice/web`, { ...(await auth()), 'last-event-id': String(keptFrom - 2) }));
    const edge = track(await RawSseStream.open(`${cluster.url(2)}/api/events?repos=alice/web`, { ...(await auth()), 'last-event-id': String(keptFrom - 1) }));
    const future = track(await RawSseStream.open(`${cluster.url(3)}/api/events?repos=alice/web`, { ...(await auth()), 'last-event-id': String(position + 1000) }));
    await tooOld.waitFor((s) => s.events.length >= 1, 10_000, 'the reset event');
    await future.waitFor((s) => s.events.length >= 1, 10_000, 'the reset event for an unknown id');
    await edge.waitFor((s) => s.events.length >= 1, 10_000, 'the replay of the one event kept');
    assert.deepEqual(parsed(tooOld.events), [
      { id: String(position), type: 'reset', data: { reason: 'too-old', lastEventId: keptFrom - 2, firstAvailable: keptFrom } },
    ]);
    assert.deepEqual(parsed(future.events), [
      { id: String(position), type: 'reset', data: { reason: 'unknown-id', lastEventId: position + 1000, firstAvailable: keptFrom } },
    ]);
    assert.deepEqual(parsed(edge.events), parsed(expectedFor(await events(keptFrom, keptFrom), ['alice/web'])));

    await cluster.call(1, 'alice', 'POST', '/api/repos/alice/web/issues', { title: 'after the reset' });
    const live = await cluster.settle();
    for (const s of [tooOld, future, edge]) await s.waitFor((x) => x.events.length >= 2, 10_000, 'the live event after a reset');
    const liveEvent = parsed(expectedFor(await events(live, live), ['alice/web']));
    assert.deepEqual(parsed(tooOld.events.slice(1)), liveEvent);
    assert.deepEqual(parsed(future.events.slice(1)), liveEvent);
    assert.deepEqual(parsed(edge.events.slice(1)), liveEvent);
    assert.ok((await cluster.sseStats(2)).resets >= 1);
    for (const s of [tooOld, future, edge]) s.close();
  });

  it('a node at FORGE_SSE_MAX_CLIENTS (2 on node 1) turns a stream away with a retry hint, and takes one again when one left', async () => {
    const headers = await auth();
    const first = track(await RawSseStream.open(`${cluster.url(1)}/api/events`, headers));
    const second = track(await RawSseStream.open(`${cluster.url(1)}/api/events`, headers));
    assert.deepEqual([first.status, second.status], [200, 200]);
    // A 200 that ends at once: an EventSource treats any other status as final and stops.
    const third = await RawSseStream.open(`${cluster.url(1)}/api/events`, headers);
    assert.equal(third.status, 200);
    assert.equal(await third.ended, 'end');
    assert.equal(third.headers.get('retry-after'), '5');
    assert.deepEqual(third.frames.map((f) => f.retry), ['5000']);
    assert.match(third.frames[0]!.comments.join(' '), /maximum of 2 event streams/);
    assert.equal(third.frames.filter((f) => f.data !== undefined).length, 0);
    const before = await cluster.sseStats(1);
    assert.deepEqual([before.clients, before.rejected], [2, 1]);
    first.close();
    await eventually(async () => (await cluster.sseStats(1)).clients === 1, 10_000, 'the closed stream to be let go');
    const again = track(await RawSseStream.open(`${cluster.url(1)}/api/events`, headers));
    assert.equal(again.status, 200);
    again.close();
    second.close();
  });

  it(`sends a heartbeat comment every FORGE_SSE_HEARTBEAT_MS (${HEARTBEAT_MS} ms on node 3)`, async () => {
    const stream = track(await RawSseStream.open(`${cluster.url(3)}/api/events`, await auth()));
    const heartbeats = () => stream.frames.filter((f) => f.comments.length > 0 && f.data === undefined && f.id === undefined && f.retry === undefined);
    await stream.waitFor(() => heartbeats().length >= 3, 10_000, 'three heartbeats');
    assert.deepEqual(heartbeats()[0], { comments: [''] });
    stream.close();
  });

  it('SIGTERM ends the node\'s streams before it exits; an EventSource reconnects to another node with its Last-Event-ID and misses nothing', async () => {
    const start = await cluster.settle();
    const raw = track(await RawSseStream.open(`${cluster.url(3)}/api/events?repos=alice/web`, await auth()));
    const client = track(lbEventSource({ path: '/api/events?repos=alice/web', token: await cluster.token('alice'), nodes: () => [cluster.url(3), cluster.url(2)] }));
    await client.opened;
    await cluster.call(1, 'alice', 'POST', '/api/repos/alice/web/issues', { title: 'before the shutdown' });
    await client.waitForCount(1);
    await raw.waitFor((s) => s.events.length >= 1);

    const node3 = cluster.node(3);
    let exitedAt = 0;
    node3.child.once('exit', () => (exitedAt = performance.now()));
    const termAt = performance.now();
    const stopped = node3.stop();
    // Far below any timeout a client or proxy would use (and the test's own 300 s).
    assert.equal(await within(raw.ended, 10_000, 'the stream to end after SIGTERM'), 'end', 'the stream ends cleanly (not reset, not cut)');
    const streamEndedMs = raw.endedAt! - termAt;
    await within(stopped, 10_000, 'node 3 to exit after SIGTERM');
    const exitedMs = exitedAt - termAt;
    // The last thing on the stream is a short reconnect hint.
    assert.deepEqual(raw.frames.at(-1), { retry: '250', comments: [] });
    assert.ok(raw.endedAt! <= exitedAt, `the stream ended (${streamEndedMs.toFixed(0)} ms) before the process exited (${exitedMs.toFixed(0)} ms)`);

    // While node 3 was going down, more happened on node 1.
    await cluster.call(1, 'alice', 'POST', '/api/repos/alice/web/issues', { title: 'during the switch' });
    await eventually(() => client.connections.some((c) => c.node === cluster.url(2) && c.status === 200), 15_000, 'the EventSource to reconnect to node 2');
    await cluster.call(1, 'alice', 'POST', '/api/repos/alice/web/issues', { title: 'after the switch' });
    const last = await cluster.settle([1, 2]);
    await client.waitForCount(3, 10_000, 'all three events');
    const expected = expectedFor(await events(start + 1, last), ['alice/web'], start);
    assert.equal(expected.length, 3);
    assert.deepEqual(parsed(client.events), parsed(expected));
    const reconnect = client.connections.find((c) => c.node === cluster.url(2))!;
    assert.equal(reconnect.lastEventId, expected[0]!.id, 'the reconnect carried the id of the last event received on node 3');
    assert.deepEqual(
      client.connections.map((c) => ({ node: c.node, status: c.status })),
      [{ node: cluster.url(3), status: 200 }, { node: cluster.url(2), status: 200 }],
      'one connect to node 3, one reconnect to node 2, nothing refused in between',
    );
    console.log(`# SIGTERM: stream ended after ${streamEndedMs.toFixed(0)} ms, process exited after ${exitedMs.toFixed(0)} ms`);
    client.close();
  });
});

/**
 * The outbox's shutdown hook waits for the publish in flight: about 10 s when NATS is
 * unreachable (which is also when /health says 503 and an orchestrator restarts the node). The
 * streams must not wait for it: clients reconnect elsewhere at once.
 */
describe('SIGTERM while NATS is unreachable and an event waits in the outbox', () => {
  let nats: TestNats;
  let proxy: TcpProxy;
  let dataDir: string;
  let node: TestForgeNode;
  let raw: RawSseStream;

  before(async () => {
    nats = await startTestNats();
    proxy = await TcpProxy.start(nats.port);
    dataDir = mkdtempSync(join(tmpdir(), 'forgebus-sse-stream-cut-'));
    node = await startForgeNode({ id: 'sse-cut-1', natsUrl: proxy.url, dataDir, env: { FORGE_SSE_RETRY_MS: '100' } });
    const token = await tokenFor('alice');
    const api = apiClient(node.url, token);
    assert.equal((await api('POST', '/api/repos', { name: 'web' })).status, 201);
    raw = await RawSseStream.open(`${node.url}/api/events`, { authorization: `Bearer ${token}` });
    proxy.cut();
    await eventually(async () => (await fetch(`${node.url}/health`)).status === 503, 15_000, 'the node to notice NATS is gone');
    // Recorded in the outbox, not yet published: the relay keeps trying.
    assert.equal((await api('POST', '/api/repos/alice/web/issues', { title: 'waits in the outbox' })).status, 201);
    node.child.kill('SIGTERM');
  });

  after(async () => {
    raw?.close();
    await node?.kill('SIGKILL');
    await proxy?.close();
    await nats?.dispose();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  it('ends its streams at once', async () => {
    const ended = await Promise.race([raw.ended, new Promise<'still open'>((r) => setTimeout(() => r('still open'), 3_000))]);
    assert.equal(ended, 'end', `the stream is ${ended} 3 s after SIGTERM`);
  });
});
