import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import { jetstreamManager } from '@nats-io/jetstream';
import { ForgeBus, silentLogger, type EventInput, type ForgeBusOptions } from '../../src/bus/index.js';
import { CacheTags, ForgeCache, type ForgeCacheOptions } from '../../src/cache/index.js';
import { MemoryLogger, sleep } from '../bus/helpers.js';
import { eventually, startTestNats, type TestNats } from '../support/nats.js';
import { TcpProxy } from '../support/tcp-proxy.js';

const web = { owner: 'acme', name: 'web' };
const issueKey = (n: number) => `issue:acme/web#${n}`;
const issueTags = (n: number) => [CacheTags.repo(web), CacheTags.issue(web, n)];
const issueUpdated = (n: number): EventInput => ({ type: 'issue.updated', repo: web, actor: 'alice', payload: { number: n, changed: ['title'] } });

/** A loader that counts its calls and answers `value()` (read at call time, like a database). */
function source<T>(value: () => T) {
  const loader = Object.assign(
    () => {
      loader.calls++;
      return value();
    },
    { calls: 0 },
  );
  return loader;
}

/** An issue.updated envelope for issue 3, as the node that made the change applies it locally. */
const localUpdateOf3 = { id: 'local', type: 'issue.updated', version: 1, occurredAt: new Date().toISOString(), origin: 'bad-rule', actor: 'alice', repo: web, payload: { number: 3 } };

describe('ForgeCache on a real ForgeBus and nats-server', () => {
  let nats: TestNats;
  let publisher: ForgeBus;
  const buses: ForgeBus[] = [];
  const caches: ForgeCache[] = [];
  const proxies: TcpProxy[] = [];

  async function newBus(nodeId: string, options: Partial<ForgeBusOptions> = {}): Promise<ForgeBus> {
    const bus = await ForgeBus.connect({ nodeId, connection: { servers: nats.url }, logger: silentLogger, ...options });
    buses.push(bus);
    return bus;
  }

  /** A started node: its bus (optionally through a proxy that can cut it) and its cache. */
  async function newNode(nodeId: string, { proxied, ...options }: ForgeCacheOptions & { proxied?: boolean } = {}) {
    let proxy: TcpProxy | undefined;
    if (proxied) proxies.push((proxy = await TcpProxy.start(nats.port)));
    const bus = await newBus(nodeId, proxy ? { connection: { servers: proxy.url, reconnectDelayMs: 50, maxReconnectDelayMs: 200 } } : {});
    const logger = new MemoryLogger();
    const cache = new ForgeCache(bus, { logger, ...options });
    caches.push(cache);
    await bus.start();
    return { bus, cache, logger, proxy };
  }

  before(async () => {
    nats = await startTestNats();
    publisher = await ForgeBus.connect({ nodeId: 'publisher', connection: { servers: nats.url }, logger: silentLogger });
  });

  afterEach(async () => {
    for (const cache of caches.splice(0)) cache.close();
    await Promise.all(buses.splice(0).map((b) => b.close()));
    await Promise.all(proxies.splice(0).map((p) => p.close()));
  });

  after(async () => {
    await publisher?.close();
    await nats?.dispose();
  });

  it('is "stopped" and bypasses until the feed runs', async () => {
    const bus = await newBus('not-started');
    const cache = new ForgeCache(bus, { logger: silentLogger });
    caches.push(cache);
    const load = source(() => 'v');
    assert.equal(cache.cacheState, 'stopped');
    assert.equal(cache.getOrLoad('k', ['t'], load), 'v');
    assert.equal(cache.getOrLoad('k', ['t'], load), 'v');
    assert.equal(load.calls, 2);
    assert.equal(cache.stats.bypassedReads, 2);
    assert.equal(cache.stats.entries, 0);
    await bus.start();
    assert.equal(cache.cacheState, 'live');
    cache.getOrLoad('k', ['t'], load);
    cache.getOrLoad('k', ['t'], load);
    assert.equal(load.calls, 3, 'cached once the feed runs');
  });

  it('caches synchronous and asynchronous loaders, including an async "not found"', async () => {
    const { cache } = await newNode('loaders');
    const sync = source(() => ({ title: 'sync' }));
    const first = cache.getOrLoad('sync', ['t'], sync);
    assert.deepEqual(first, { title: 'sync' });
    assert.equal(cache.getOrLoad('sync', ['t'], sync), first, 'a sync hit is the value itself');
    assert.equal(sync.calls, 1);

    const asyncLoad = source(async () => {
      await sleep(5);
      return { title: 'async' };
    });
    const a1 = cache.getOrLoad('async', ['t'], asyncLoad);
    assert.ok(a1 instanceof Promise);
    assert.deepEqual(await a1, { title: 'async' });
    const a2 = cache.getOrLoad('async', ['t'], asyncLoad);
    assert.ok(a2 instanceof Promise, 'an async hit is handed out as a promise too');
    assert.deepEqual(await a2, { title: 'async' });
    assert.equal(asyncLoad.calls, 1);

    const notFound = source(async () => undefined);
    assert.equal(await cache.getOrLoad(issueKey(9), issueTags(9), notFound), undefined);
    assert.equal(await cache.getOrLoad(issueKey(9), issueTags(9), notFound), undefined);
    assert.equal(notFound.calls, 1, 'an async "not found" is cached');

    // A rejected load stores nothing and reaches the caller.
    const failing = source(async () => {
      throw new Error('db down');
    });
    await assert.rejects(cache.getOrLoad('failing', ['t'], failing), /db down/);
    await assert.rejects(cache.getOrLoad('failing', ['t'], failing), /db down/);
    assert.equal(failing.calls, 2);

    const s = cache.stats;
    assert.equal(s.state, 'live');
    assert.equal(s.hits, 3);
    assert.equal(s.entries, 3);
  });

  it('applies the rules to every feed event: the entries of the changed issue go, others stay', async () => {
    const { cache } = await newNode('feed-rules');
    let title = 'old';
    const issue3 = source(async () => ({ title }));
    const issue4 = source(async () => ({ title: 'four' }));
    await cache.getOrLoad(issueKey(3), issueTags(3), issue3);
    await cache.getOrLoad(issueKey(4), issueTags(4), issue4);
    assert.equal(cache.stats.newestAppliedEventAgeMs, null);

    title = 'new';
    const ack = await publisher.publish(issueUpdated(3));
    await eventually(() => cache.stats.lastAppliedSeq >= ack.seq, 5_000, 'the event to be applied');
    assert.equal(cache.entries.has(issueKey(3)), false);
    assert.equal(cache.entries.has(issueKey(4)), true);
    assert.deepEqual(await cache.getOrLoad(issueKey(3), issueTags(3), issue3), { title: 'new' });
    assert.equal(issue3.calls, 2);
    assert.equal(issue4.calls, 1);

    // repo.deleted drops everything of the repository.
    const del = await publisher.publish({ type: 'repo.deleted', repo: web, actor: 'alice', payload: {} });
    await eventually(() => cache.stats.lastAppliedSeq >= del.seq, 5_000, 'repo.deleted to be applied');
    assert.equal(cache.stats.entries, 0);

    const s = cache.stats;
    assert.equal(s.eventsApplied, 2);
    assert.equal(s.lastAppliedSeq, del.seq);
    assert.ok(s.newestAppliedEventAgeMs !== null && s.newestAppliedEventAgeMs >= 0 && s.newestAppliedEventAgeMs < 60_000);
    assert.equal(s.invalidations, 2);
    assert.equal(s.invalidatedEntries, 3);
  });

  it('a throwing invalidation rule flushes the cache (what was stale is unknown), and neither the feed nor the caller stops', async () => {
    const logger = new MemoryLogger();
    const { cache } = await newNode('bad-rule', {
      logger,
      rules: {
        'issue.updated': (e) => {
          if ((e.payload as { number: number }).number === 3) throw new Error('rule bug');
          return [];
        },
      },
    });
    const issue3 = source(async () => 'three');
    const issue4 = source(async () => 'four');
    await cache.getOrLoad(issueKey(3), issueTags(3), issue3);
    await cache.getOrLoad(issueKey(4), issueTags(4), issue4);
    const bad = await publisher.publish(issueUpdated(3));
    await eventually(() => cache.stats.lastAppliedSeq >= bad.seq, 5_000, 'the event to be applied');
    assert.equal(cache.stats.ruleFailures, 1);
    assert.equal(cache.stats.entries, 0, 'every entry flushed, not only the ones the rule would have named');
    assert.equal(cache.cacheState, 'live');
    assert.ok(logger.matching(/invalidation rule for "issue.updated" threw/).length === 1);

    await cache.getOrLoad(issueKey(4), issueTags(4), issue4);
    const next = await publisher.publish({ type: 'issue.deleted', repo: web, actor: 'alice', payload: { number: 4 } });
    await eventually(() => cache.stats.lastAppliedSeq >= next.seq, 5_000, 'the feed to go on');
    assert.equal(cache.entries.has(issueKey(4)), false, 'later events still invalidate');

    await cache.getOrLoad(issueKey(4), issueTags(4), issue4);
    assert.doesNotThrow(() => cache.applyLocal(localUpdateOf3));
    assert.equal(cache.stats.ruleFailures, 2);
    assert.equal(cache.stats.entries, 0);
  });

  it('throwing connection status listeners do not freeze the bus or the cache: a later cut is still noticed', async () => {
    const proxy = await TcpProxy.start(nats.port);
    proxies.push(proxy);
    const bus = await newBus('bad-listener', {
      connection: { servers: proxy.url, reconnectDelayMs: 50, maxReconnectDelayMs: 200, onStatus: () => { throw new Error('user listener bug'); } },
    });
    bus.onStatus(() => {
      throw new Error('listener bug');
    });
    const cache = new ForgeCache(bus, { logger: silentLogger });
    caches.push(cache);
    await bus.start();
    for (let round = 1; round <= 2; round++) {
      proxy.cut();
      await eventually(() => cache.cacheState === 'disconnected' && !bus.connected, 10_000, `cut ${round} to be noticed`);
      proxy.restore();
      await eventually(() => cache.cacheState === 'live' && bus.connected, 15_000, `reconnect ${round} to be noticed`);
    }
    assert.ok(bus.statusStats.listenerErrors >= 4, `listener errors counted (${bus.statusStats.listenerErrors})`);
  });

  it('does not store an async fill that an event invalidated while it was loading', async () => {
    const { cache } = await newNode('race');
    let dbTitle = 'old';
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const slow = source(async () => {
      const read = dbTitle; // read now, answered later (like a remote database)
      await gate;
      return { title: read };
    });
    const pending = cache.getOrLoad(issueKey(3), issueTags(3), slow);
    // Meanwhile the issue changes on another node and its event is applied here.
    dbTitle = 'new';
    const ack = await publisher.publish(issueUpdated(3));
    await eventually(() => cache.stats.lastAppliedSeq >= ack.seq, 5_000, 'the event to be applied');
    release();
    assert.deepEqual(await pending, { title: 'old' }, 'the caller that started before gets what it read');
    assert.equal(cache.entries.has(issueKey(3)), false, 'but the old value is not cached');
    assert.equal(cache.stats.staleFillsRefused, 1);
    assert.deepEqual(await cache.getOrLoad(issueKey(3), issueTags(3), slow), { title: 'new' });
    assert.equal(cache.entries.has(issueKey(3)), true);
  });

  it('read-your-writes: applyLocal drops the entries before the event comes back', async () => {
    const { bus, cache } = await newNode('origin', { rules: { 'repo.pushed': (e) => [`custom:${e.repo!.owner}/${e.repo!.name}`] } });
    const issue = source(() => 'cached');
    cache.getOrLoad(issueKey(3), issueTags(3), issue);
    cache.getOrLoad('custom', ['custom:acme/web'], issue);
    cache.getOrLoad('refs', [CacheTags.refs(web)], issue);

    const envelope = bus.events.create(issueUpdated(3));
    cache.applyLocal(envelope); // synchronously, no round trip
    assert.equal(cache.entries.has(issueKey(3)), false);
    assert.equal(cache.stats.localInvalidations, 1);

    // Forge rules add to the defaults: repo.pushed drops refs (default) and the custom tag.
    cache.applyLocal(bus.events.create({ type: 'repo.pushed', repo: web, actor: 'alice', payload: { ref: 'refs/heads/main', before: '0'.repeat(40), after: '1'.repeat(40), commitCount: 1 } }));
    assert.equal(cache.entries.has('custom'), false);
    assert.equal(cache.entries.has('refs'), false);

    // An event without a rule changes nothing and is not counted.
    cache.getOrLoad('user', [CacheTags.user('bob')], issue);
    cache.applyLocal(bus.events.create({ type: 'repo.created', repo: { owner: 'other', name: 'x' }, actor: 'x', payload: { isPrivate: false } }));
    assert.equal(cache.entries.has('user'), true);
    assert.equal(cache.stats.localInvalidations, 3);
  });

  it('while cut from NATS: reads bypass (default), nothing is stored; after the reconnect the missed events are replayed', async () => {
    const { cache, proxy, bus } = await newNode('cut-bypass', { proxied: true });
    let db = 'v1';
    const issue = source(async () => db);
    const other = source(async () => 'other');
    assert.equal(await cache.getOrLoad(issueKey(3), issueTags(3), issue), 'v1');
    assert.equal(await cache.getOrLoad(issueKey(4), issueTags(4), other), 'other');

    proxy!.cut();
    await eventually(() => cache.cacheState === 'disconnected', 10_000, 'the cache to notice the disconnect');
    db = 'v2';
    const missed = await publisher.publish(issueUpdated(3));
    const bypassedBefore = cache.stats.bypassedReads;
    for (let i = 0; i < 5; i++) assert.equal(await cache.getOrLoad(issueKey(3), issueTags(3), issue), 'v2');
    assert.equal(await cache.getOrLoad(issueKey(4), issueTags(4), other), 'other');
    assert.equal(cache.stats.bypassedReads - bypassedBefore, 6);
    assert.equal(issue.calls, 6);
    assert.equal(other.calls, 2, 'even an entry no event touched is not served while disconnected');
    assert.equal(cache.entries.has(issueKey(3)), true, 'the old entry is still held, just not served');
    assert.equal(cache.stats.staleReads, 0);

    proxy!.restore();
    await eventually(() => cache.cacheState === 'live', 15_000, 'the cache to be live again');
    assert.ok(cache.stats.lastAppliedSeq >= missed.seq, 'live only after the missed event was applied');
    assert.equal(cache.entries.has(issueKey(3)), false, 'the replayed event dropped the old entry');
    assert.equal(cache.entries.has(issueKey(4)), true);
    assert.equal(cache.stats.flushes, 0, 'nothing was lost: no flush needed');
    assert.equal(bus.feed.stats.gaps, 0);
    assert.equal(await cache.getOrLoad(issueKey(3), issueTags(3), issue), 'v2');
    assert.equal(await cache.getOrLoad(issueKey(3), issueTags(3), issue), 'v2');
    assert.equal(issue.calls, 7, 'cached again once live');
  });

  it('serve-stale mode: serves held entries while cut, counted and logged', async () => {
    const { cache, proxy, logger } = await newNode('cut-stale', { proxied: true, disconnectedReads: 'serve-stale' });
    const issue = source(async () => 'cached');
    await cache.getOrLoad(issueKey(3), issueTags(3), issue);
    proxy!.cut();
    await eventually(() => cache.cacheState === 'disconnected', 10_000, 'the cache to notice the disconnect');
    for (let i = 0; i < 3; i++) assert.equal(await cache.getOrLoad(issueKey(3), issueTags(3), issue), 'cached');
    assert.equal(issue.calls, 1);
    assert.equal(cache.stats.staleReads, 3);
    assert.equal(cache.stats.bypassedReads, 0);
    // What it does not hold it loads, without storing.
    const miss = source(async () => 'loaded');
    assert.equal(await cache.getOrLoad('miss', ['t'], miss), 'loaded');
    assert.equal(await cache.getOrLoad('miss', ['t'], miss), 'loaded');
    assert.equal(miss.calls, 2);
    assert.equal(cache.stats.bypassedReads, 2);
    assert.ok(logger.matching(/serving possibly stale cache entry issue:acme\/web#3/).length >= 1);
    proxy!.restore();
    await eventually(() => cache.cacheState === 'live', 15_000, 'the cache to be live again');
  });

  it('does not store a read that was in flight when the connection dropped', async () => {
    const { cache, proxy } = await newNode('cut-in-flight', { proxied: true });
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const slow = source(async () => {
      await gate;
      return 'read before the cut';
    });
    const pending = cache.getOrLoad(issueKey(3), issueTags(3), slow);
    proxy!.cut();
    await eventually(() => cache.cacheState === 'disconnected', 10_000, 'the cache to notice the disconnect');
    release();
    assert.equal(await pending, 'read before the cut');
    assert.equal(cache.entries.has(issueKey(3)), false);
    proxy!.restore();
    await eventually(() => cache.cacheState === 'live', 15_000, 'the cache to be live again');
    assert.equal(cache.entries.has(issueKey(3)), false);
  });

  it('flushes everything when the stream no longer holds what it missed (gap), then goes live', async () => {
    const { cache, proxy, logger } = await newNode('gap', { proxied: true });
    const issue = source(async () => 'old');
    const unrelated = source(async () => 'unrelated');
    await cache.getOrLoad(issueKey(3), issueTags(3), issue);
    await cache.getOrLoad('repo:other/x', [CacheTags.repo({ owner: 'other', name: 'x' })], unrelated);
    proxy!.cut();
    await eventually(() => cache.cacheState === 'disconnected', 10_000, 'the cache to notice the disconnect');
    // Events it misses, then lost: the retention ran out.
    for (let i = 0; i < 3; i++) await publisher.publish(issueUpdated(3));
    await (await jetstreamManager(publisher.nc)).streams.purge('FORGE_EVENTS');
    const next = await publisher.publish(issueUpdated(4));
    proxy!.restore();
    await eventually(() => cache.cacheState === 'live' && cache.stats.lastAppliedSeq >= next.seq, 15_000, 'live after the gap');
    const s = cache.stats;
    assert.equal(s.gapFlushes, 1);
    assert.equal(s.flushes, 1);
    assert.equal(s.entries, 0, 'even entries no missed event was about (they cannot know)');
    assert.ok(logger.matching(/cache flushed: the feed missed events/).length === 1);
  });

  it('flushes and goes live when every missed event expired and nothing new came since', async () => {
    const { cache, proxy, bus } = await newNode('gap-quiet', { proxied: true });
    const issue = source(async () => 'old');
    await cache.getOrLoad(issueKey(3), issueTags(3), issue);
    proxy!.cut();
    await eventually(() => cache.cacheState === 'disconnected', 10_000, 'the cache to notice the disconnect');
    for (let i = 0; i < 3; i++) await publisher.publish(issueUpdated(3));
    await (await jetstreamManager(publisher.nc)).streams.purge('FORGE_EVENTS');
    proxy!.restore();
    // Never serves the old entry, whatever the state...
    const deadline = Date.now() + 10_000;
    while (cache.cacheState !== 'live' && Date.now() < deadline) {
      assert.notEqual(await cache.getOrLoad(issueKey(3), issueTags(3), () => Promise.resolve('new')), 'old');
      await sleep(20);
    }
    // ...and does not stay unusable in a quiet cluster: it flushes and is live again.
    assert.equal(cache.cacheState, 'live', 'live again without waiting for a new event');
    assert.equal(cache.stats.flushes, 1);
    assert.equal(cache.stats.gapFlushes, 1);
    assert.equal(cache.entries.has(issueKey(3)), false);

    // The next event shows the feed the gap too; the cache already answered it and keeps what it
    // has filled since (those reads started after the lost events were committed).
    assert.equal(await cache.getOrLoad('repo:other/x', [CacheTags.repo({ owner: 'other', name: 'x' })], () => Promise.resolve('x')), 'x');
    const next = await publisher.publish(issueUpdated(4));
    await eventually(() => cache.stats.lastAppliedSeq >= next.seq, 5_000, 'the next event');
    assert.equal(bus.feed.stats.gaps, 1, 'the feed did see the gap');
    assert.equal(cache.stats.flushes, 1, 'not flushed twice for one gap');
    assert.equal(cache.stats.gapFlushes, 1);
    assert.equal(cache.entries.has('repo:other/x'), true);
  });
});
