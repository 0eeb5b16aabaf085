import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { jetstreamManager } from '@nats-io/jetstream';
import { ForgeBus, silentLogger, type DeliveredEvent, type EventInput, type FeedReset } from '../../src/bus/index.js';
import { CacheTags, ForgeCache } from '../../src/cache/index.js';
import { parseLastEventId, SseHub } from '../../src/sse/index.js';
import { eventually, startTestNats, type TestNats } from '../support/nats.js';
import { RawSseStream } from '../support/sse-client.js';

const web = { owner: 'acme', name: 'web' };
const issueUpdated = (n: number, title: string): EventInput => ({ type: 'issue.updated', repo: web, actor: 'alice', payload: { number: n, changed: [title] } });

// FORGE_EVENTS deleted (as `nats stream rm` does) and created again while processes run: its
// sequences start over at 1. Before, every feed skipped the new stream's events up to its old
// position, silently, and caches kept serving what those events would have invalidated.
describe('a re-created event stream', () => {
  let nats: TestNats;
  let origin: ForgeBus;
  let reader: ForgeBus;
  let cache: ForgeCache;
  let hub: SseHub;
  let server: Server;
  const received: DeliveredEvent[] = [];
  const resets: FeedReset[] = [];

  before(async () => {
    nats = await startTestNats();
    const connect = (nodeId: string) =>
      ForgeBus.connect({ nodeId, connection: { servers: nats.url }, logger: silentLogger, feed: { streamCheckMs: 200 } });
    origin = await connect('origin');
    reader = await connect('reader');
    cache = new ForgeCache(reader, { logger: silentLogger });
    hub = new SseHub(reader, { canRead: async () => true, defaultRepos: async () => [web], accessChange: () => undefined }, { logger: silentLogger });
    reader.on('*', (event) => {
      received.push(event);
    });
    reader.feed.onReset((reset) => resets.push(reset));
    await reader.start();
    hub.start();
    server = createServer((req, res) =>
      hub.open(res, { user: 'alice', repos: [web], defaultRepos: false, lastEventId: parseLastEventId(req.headers['last-event-id'] as string | undefined) }),
    );
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  });

  after(async () => {
    server?.closeAllConnections();
    await new Promise((resolve) => server?.close(resolve));
    await hub?.close();
    cache?.close();
    await reader?.close();
    await origin?.close();
    await nats?.dispose();
  });

  it('is noticed: the feed goes on from its first event, caches flush, live SSE streams move to the new numbering', async () => {
    const stream = await RawSseStream.open(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`);
    // Enough history that the new stream's numbers stay below the old position for a while.
    let last = 0;
    for (let i = 1; i <= 20; i++) last = (await origin.publish(issueUpdated(i, 'before'))).seq;
    await eventually(() => reader.feed.stats.lastSeq >= last, 10_000, 'the feed to catch up');
    let loads = 0;
    const read = () => cache.getOrLoad('issue:3', [CacheTags.issue(web, 3)], () => ++loads);
    read();
    read();
    assert.equal(loads, 1, 'served from the cache');
    await stream.waitFor((s) => s.events.some((e) => e.id === String(last)), 10_000, 'the SSE stream to be live');

    const jsm = await jetstreamManager(origin.nc);
    await jsm.streams.delete('FORGE_EVENTS');
    // Nobody re-creates it by hand: the buses' feeds notice it is missing and provision it again.
    await eventually(async () => (await jsm.streams.info('FORGE_EVENTS').catch(() => undefined)) !== undefined, 10_000, 'the stream to be re-provisioned');
    await eventually(() => resets.length === 1, 10_000, 'the feed to notice the re-creation');
    assert.equal(resets[0]!.lastSeqBefore, last);
    assert.equal(reader.feed.stats.resets, 1);

    const after = await origin.publish(issueUpdated(3, 'after'));
    assert.ok(after.seq < last, `the new stream numbers from 1 again (${after.seq})`);
    await eventually(() => received.some((e) => e.envelope.id === after.envelope.id), 10_000, 'the first event of the new stream');
    assert.equal(received.at(-1)!.seq, after.seq);
    assert.equal(cache.stats.streamResets, 1);
    read();
    assert.equal(loads, 2, 'the cached read was flushed, not served stale');

    const epoch = reader.feed.epoch;
    assert.match(epoch, /^[0-9a-z]+$/, 'the re-created stream has an epoch');
    await stream.waitFor((s) => s.events.some((e) => e.id === `${after.seq}-${epoch}`), 10_000, 'the new event on the SSE stream, its id with the epoch');
    const reset = stream.events.find((e) => e.type === 'reset');
    assert.ok(reset, 'the client was told');
    assert.equal(JSON.parse(reset.data).reason, 'stream-recreated');
    assert.match(reset.id, new RegExp(`^\\d+-${epoch}$`), 'its Last-Event-ID moved into the new numbering');

    // More events on the new stream, so an old id's number exists in it too.
    for (let i = 0; i < 5; i++) await origin.publish(issueUpdated(4, `new ${i}`));
    const newest = (await origin.publish(issueUpdated(5, 'newest'))).seq;
    await eventually(() => reader.feed.stats.lastSeq >= newest, 10_000, 'the feed to catch up');
    // A browser that was away during the re-creation comes back with an old stream's id: its number
    // also exists in the new stream, but means something else there. It gets a reset, not a replay.
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
    const returning = await RawSseStream.open(url, { 'last-event-id': String(after.seq + 1) });
    await returning.waitFor((s) => s.events.some((e) => e.type === 'reset'), 10_000, 'a reset for the old id');
    assert.equal(JSON.parse(returning.events.find((e) => e.type === 'reset')!.data).reason, 'stream-recreated');
    assert.equal(returning.events.filter((e) => e.type !== 'reset').length, 0, 'nothing replayed from a meaningless position');
    returning.close();
    // An id of the new stream resumes exactly.
    const resuming = await RawSseStream.open(url, { 'last-event-id': `${after.seq}-${epoch}` });
    await resuming.waitFor((s) => s.events.some((e) => e.id === `${newest}-${epoch}`), 10_000, 'the replay to the newest event');
    assert.deepEqual(
      resuming.events.map((e) => e.id),
      Array.from({ length: newest - after.seq }, (_, i) => `${after.seq + 1 + i}-${epoch}`),
      'exactly the events after its id',
    );
    resuming.close();
    stream.close();
  });
});
