import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import {
  ForgeBus,
  silentLogger,
  type DeliveredEvent,
  type EventInput,
  type FeedGap,
  type ForgeBusOptions,
} from '../../src/bus/index.js';
import { eventually, startTestNats, type TestNats } from '../support/nats.js';
import { TcpProxy } from '../support/tcp-proxy.js';
import { MemoryLogger, sleep } from './helpers.js';

const web = { owner: 'acme', name: 'web' };
const dotted = { owner: 'acme', name: 'my.repo' };
const issueCreated = (n: number, repo = web): EventInput => ({ type: 'issue.created', repo, payload: { number: n, title: `#${n}` } });

describe('event feed', () => {
  let nats: TestNats;
  let nc: NatsConnection;
  const buses: ForgeBus[] = [];

  async function newBus(nodeId: string, options: Partial<ForgeBusOptions> = {}): Promise<ForgeBus> {
    const bus = await ForgeBus.connect({ nodeId, connection: { servers: nats.url }, logger: silentLogger, ...options });
    buses.push(bus);
    return bus;
  }

  before(async () => {
    nats = await startTestNats();
    nc = await connect({ servers: nats.url, name: 'feed-test-raw' });
  });

  afterEach(async () => {
    await Promise.all(buses.splice(0).map((b) => b.close()));
  });

  after(async () => {
    await nc?.close();
    await nats?.dispose();
  });

  it('keeps going when handlers throw or reject, and counts the failures', async () => {
    const bus = await newBus('throwing');
    const seen: number[] = [];
    const seenAfterAsync: number[] = [];
    bus.on('*', () => {
      throw new Error('sync handler failure');
    });
    bus.on('issue.created', async (e) => {
      await sleep(1);
      if ((e.envelope.payload as { number: number }).number % 2 === 0) throw new Error('async handler failure');
    });
    bus.on('*', (e) => {
      seen.push(e.seq);
    });
    bus.on('*', async (e) => {
      await Promise.resolve();
      seenAfterAsync.push(e.seq);
    });
    await bus.start();

    const acks = [];
    for (let i = 1; i <= 20; i++) acks.push(await bus.publish(issueCreated(i)));
    // The handlers of one event run concurrently: wait for the slowest one (the rejecting one) too.
    await eventually(() => seenAfterAsync.length === 20 && bus.feed.stats.handlerErrors >= 30, 10_000, 'all 20 events and their failures');

    const seqs = acks.map((a) => a.seq);
    assert.deepEqual(seen, seqs);
    assert.deepEqual(seenAfterAsync, seqs);
    assert.equal(bus.feed.stats.handlerErrors, 20 + 10, '20 sync throws + 10 async rejections');
    assert.equal(bus.feed.stats.delivered, 20);
    assert.equal(bus.feed.running, true);

    // Still alive afterwards.
    const later = await bus.publish(issueCreated(21));
    await eventually(() => seen.at(-1) === later.seq, 10_000, 'the event after the failures');
  });

  it('counts and drops 1,000 malformed messages without passing them on, and still delivers the next valid event', async () => {
    const logger = new MemoryLogger();
    const bus = await newBus('malformed', { logger });
    const received: DeliveredEvent[] = [];
    bus.on('*', (e) => {
      received.push(e);
    });
    await bus.start();

    const js = jetstream(nc);
    const enc = (v: unknown) => new TextEncoder().encode(typeof v === 'string' ? v : JSON.stringify(v));
    const valid = bus.events.create(issueCreated(1));
    const notice = bus.events.create({ type: 'user.notification_count', user: 'bob', payload: { count: 1 } });
    // JSON.stringify cannot write an own __proto__ key: splice it into the text, as an attacker would.
    const withPayloadKey = (envelope: object, key: string) => JSON.stringify(envelope).replace('"payload":{', `"payload":{"${key}":{"polluted":true},`);
    const kinds: [string, (i: number) => { subject: string; data: Uint8Array }][] = [
      ['bad JSON', (i) => ({ subject: 'forge.repo.acme.web.issue.created', data: enc(`{"id": "x${i}", "type": `) })],
      ['not an object', (i) => ({ subject: 'forge.repo.acme.web.issue.created', data: enc(`[${i}]`) })],
      ['missing envelope field', (i) => ({ subject: 'forge.repo.acme.web.issue.created', data: enc({ ...valid, id: `m${i}`, occurredAt: undefined }) })],
      ['payload fails validation', (i) => ({ subject: 'forge.repo.acme.web.issue.created', data: enc({ ...valid, id: `v${i}`, payload: { number: -i, title: 't' } }) })],
      ['unknown type', (i) => ({ subject: 'forge.repo.acme.web.wiki.edited', data: enc({ ...valid, id: `t${i}`, type: 'wiki.edited' }) })],
      ['unknown version', (i) => ({ subject: 'forge.repo.acme.web.issue.created', data: enc({ ...valid, id: `u${i}`, version: 2 + (i % 5) }) })],
      ['wrong repository subject', (i) => ({ subject: 'forge.repo.evil.web.issue.created', data: enc({ ...valid, id: `w${i}` }) })],
      ['wrong type subject', (i) => ({ subject: 'forge.repo.acme.web.issue.deleted', data: enc({ ...valid, id: `s${i}` }) })],
      ['repo event on a user subject', (i) => ({ subject: 'forge.user.bob.issue.created', data: enc({ ...valid, id: `x${i}` }) })],
      ['empty body', () => ({ subject: 'forge.site.repo.created', data: new Uint8Array(0) })],
      // Live SSE would route it by `repo` to that repository's watchers, a replay by subject to the user.
      ['user event that also names a repository', (i) => ({ subject: 'forge.user.bob.user.notification_count', data: enc({ ...notice, id: `r${i}`, repo: web }) })],
      ['repository event that also names a user', (i) => ({ subject: 'forge.repo.acme.web.issue.created', data: enc({ ...valid, id: `n${i}`, user: 'bob' }) })],
      ['prototype key in the payload', (i) => ({ subject: 'forge.repo.acme.web.issue.created', data: enc(withPayloadKey({ ...valid, id: `p${i}` }, '__proto__')) })],
      ['constructor key in the payload', (i) => ({ subject: 'forge.repo.acme.web.issue.created', data: enc(withPayloadKey({ ...valid, id: `c${i}` }, 'constructor')) })],
    ];
    const total = 1_000;
    for (let start = 0; start < total; start += 200) {
      await Promise.all(
        Array.from({ length: 200 }, (_, j) => {
          const i = start + j;
          const { subject, data } = kinds[i % kinds.length]![1](i);
          return js.publish(subject, data);
        }),
      );
    }
    const good = await bus.publishEnvelope(bus.events.create(issueCreated(2)));

    await eventually(() => received.length >= 1, 15_000, 'the valid event after the malformed ones');
    await sleep(100);
    assert.equal(received.length, 1, 'no malformed message reached a handler');
    assert.equal(received[0]!.seq, good.seq);
    assert.equal(received[0]!.envelope.id, good.envelope.id);
    assert.equal(bus.feed.stats.malformed, total);
    assert.equal(bus.feed.stats.delivered, 1);
    assert.equal(bus.feed.stats.received, total + 1);
    assert.equal(bus.feed.stats.lastSeq, good.seq);
    assert.equal(bus.feed.stats.gaps, 0);
    // The flood is visible in the log without drowning it.
    const drops = logger.matching(/dropped malformed message/);
    assert.ok(drops.length >= 1 && drops.length < total / 10, `rate-limited malformed log (${drops.length} lines)`);
  });

  it('re-reads events its consumer skipped while the stream still holds them (no gap, no loss)', async () => {
    const bus = await newBus('rewind', { logger: silentLogger });
    const received: number[] = [];
    bus.on('*', (e) => {
      received.push(e.seq);
    });
    await bus.start();
    const first = await bus.publishEnvelope(bus.events.create(issueCreated(1)));
    await eventually(() => received.includes(first.seq), 5_000, 'the first event');
    // Make the next consumer start 5 sequences too far, once: what nats.js's ordered consumer
    // does when it re-creates itself after the last message it buffered, not the last we processed.
    const feed = bus.feed as unknown as { open(seq: number): Promise<unknown>; messages: { close(): Promise<void> } };
    const open = feed.open.bind(feed);
    let skip = true;
    feed.open = (seq: number) => {
      const start = skip ? seq + 5 : seq;
      skip = false;
      return open(start);
    };
    // The consumer ends; while the feed waits to re-open it (a second), events are stored; the
    // server would start a consumer beyond the stream's end at its end, so they must exist first.
    await feed.messages.close();
    const later: number[] = [];
    for (let n = 2; n <= 12; n++) later.push((await bus.publishEnvelope(bus.events.create(issueCreated(n)))).seq);
    assert.equal(skip, true, 'published before the feed re-opened');
    await eventually(() => received.includes(later.at(-1)!), 10_000, 'the last event');
    assert.deepEqual(received, [first.seq, ...later], 'every event once, in order');
    assert.equal(bus.feed.stats.rewinds, 1);
    assert.equal(bus.feed.stats.gaps, 0, 'not reported as lost');
  });

  it('selects handlers by type pattern and by repository / user filter', async () => {
    const bus = await newBus('patterns');
    const got: Record<string, string[]> = {};
    const record = (name: string) => (e: DeliveredEvent) => {
      (got[name] ??= []).push(`${e.envelope.type}@${e.envelope.repo ? `${e.envelope.repo.owner}/${e.envelope.repo.name}` : e.envelope.user}`);
    };
    bus.on('issue.*', record('issue.*'));
    bus.on('*.deleted', record('*.deleted'));
    bus.on('issue.deleted', record('issue.deleted'));
    bus.on(['repo.deleted', 'user.logged_out'], record('list'));
    bus.on('*.*', record('*.*'));
    bus.on('*', record('*'));
    bus.on('*', record('repo acme/my.repo'), { repo: dotted });
    bus.on('issue.*', record('issue.* in acme/web'), { repo: web });
    bus.on('*', record('user bob'), { user: 'bob' });
    bus.on('*', record('user b.o.b'), { user: 'b.o.b' });
    const sub = bus.on('*', record('unsubscribed'));
    sub.unsubscribe();
    await bus.start();

    const inputs: EventInput[] = [
      issueCreated(1),
      { type: 'issue.deleted', repo: web, payload: { number: 1 } },
      { type: 'issue.deleted', repo: dotted, payload: { number: 2 } },
      { type: 'repo.deleted', repo: { owner: 'acme', name: 'api' }, payload: {} },
      { type: 'comment.deleted', repo: dotted, payload: { issueNumber: 2, commentId: 3 } },
      { type: 'comment.created', repo: { owner: 'acme', name: 'my' }, payload: { issueNumber: 2, commentId: 3 } },
      { type: 'user.logged_out', user: 'bob', payload: {} },
      { type: 'user.notification_count', user: 'b.o.b', payload: { count: 3 } },
      { type: 'user.notification_count', user: 'bob', payload: { count: 4 } },
    ];
    for (const input of inputs) await bus.publish(input);
    await eventually(() => got['*']?.length === inputs.length, 10_000, 'every event at the catch-all handler');

    assert.deepEqual(got, {
      'issue.*': ['issue.created@acme/web', 'issue.deleted@acme/web', 'issue.deleted@acme/my.repo'],
      '*.deleted': ['issue.deleted@acme/web', 'issue.deleted@acme/my.repo', 'repo.deleted@acme/api', 'comment.deleted@acme/my.repo'],
      'issue.deleted': ['issue.deleted@acme/web', 'issue.deleted@acme/my.repo'],
      list: ['repo.deleted@acme/api', 'user.logged_out@bob'],
      '*.*': [
        'issue.created@acme/web',
        'issue.deleted@acme/web',
        'issue.deleted@acme/my.repo',
        'repo.deleted@acme/api',
        'comment.deleted@acme/my.repo',
        'comment.created@acme/my',
        'user.logged_out@bob',
        'user.notification_count@b.o.b',
        'user.notification_count@bob',
      ],
      '*': [
        'issue.created@acme/web',
        'issue.deleted@acme/web',
        'issue.deleted@acme/my.repo',
        'repo.deleted@acme/api',
        'comment.deleted@acme/my.repo',
        'comment.created@acme/my',
        'user.logged_out@bob',
        'user.notification_count@b.o.b',
        'user.notification_count@bob',
      ],
      'repo acme/my.repo': ['issue.deleted@acme/my.repo', 'comment.deleted@acme/my.repo'],
      'issue.* in acme/web': ['issue.created@acme/web', 'issue.deleted@acme/web'],
      'user bob': ['user.logged_out@bob', 'user.notification_count@bob'],
      'user b.o.b': ['user.notification_count@b.o.b'],
    });
  });

  it('catches up after a disconnect: every missed event, in order, once, no gap', async () => {
    const proxy = await TcpProxy.start(nats.port);
    try {
      const bus = await newBus('reconnecting', { connection: { servers: proxy.url, reconnectDelayMs: 50, maxReconnectDelayMs: 200 } });
      const publisher = await newBus('reconnecting-publisher', { provisionStream: false });
      const seen: number[] = [];
      bus.on('*', (e) => {
        seen.push(e.seq);
      });
      await bus.start();

      const acks = [];
      for (let i = 1; i <= 20; i++) acks.push(await publisher.publish(issueCreated(i)));
      await eventually(() => seen.length === 20, 10_000, 'the events before the disconnect');
      proxy.cut();
      await eventually(() => !bus.connected, 10_000, 'the node to notice the disconnect');
      acks.push(...(await Promise.all(Array.from({ length: 200 }, (_, i) => publisher.publish(issueCreated(100 + i))))));
      proxy.restore();
      for (let i = 0; i < 20; i++) acks.push(await publisher.publish(issueCreated(1_000 + i)));

      const expected = acks.map((a) => a.seq).sort((a, b) => a - b);
      await eventually(() => seen.length >= expected.length, 15_000, `all ${expected.length} events (have ${seen.length})`);
      await sleep(100);
      assert.deepEqual(seen, expected);
      assert.equal(bus.feed.stats.gaps, 0);
    } finally {
      await proxy.close();
    }
  });

  it('reports a gap when a disconnected node missed events the stream no longer holds', async () => {
    const proxy = await TcpProxy.start(nats.port);
    try {
      const gaps: FeedGap[] = [];
      const bus = await newBus('gap-disconnected', {
        connection: { servers: proxy.url, reconnectDelayMs: 50, maxReconnectDelayMs: 200 },
        feed: { onGap: (g) => gaps.push(g) },
      });
      const publisher = await newBus('gap-publisher', { provisionStream: false });
      const seen: number[] = [];
      bus.on('*', (e) => {
        seen.push(e.seq);
      });
      await bus.start();

      const before = await publisher.publish(issueCreated(1));
      await eventually(() => seen.includes(before.seq), 10_000, 'the event before the disconnect');
      assert.equal(bus.feed.stats.gaps, 0);

      proxy.cut();
      await eventually(() => !bus.connected, 10_000, 'the node to notice the disconnect');
      // While it is away: five events, then they are gone from the stream (purge = retention ran out).
      const missed = [];
      for (let i = 2; i <= 6; i++) missed.push(await publisher.publish(issueCreated(i)));
      await (await jetstreamManager(nc)).streams.purge('FORGE_EVENTS');
      const afterPurge = await publisher.publish(issueCreated(7));
      proxy.restore();

      await eventually(() => seen.includes(afterPurge.seq), 15_000, 'the event after the gap');
      assert.deepEqual(seen, [before.seq, afterPurge.seq], 'the missed events are not invented');
      assert.equal(bus.feed.stats.gaps, 1);
      assert.deepEqual(gaps, [{ from: missed[0]!.seq, to: missed.at(-1)!.seq }]);
      assert.equal(bus.feed.stats.lastSeq, afterPurge.seq);
    } finally {
      await proxy.close();
    }
  });

  it('reports a gap even when the missed events are the first ones of the stream', async () => {
    // A node that started on an empty stream (nothing processed yet) and then missed events.
    const fresh = await startTestNats();
    const proxy = await TcpProxy.start(fresh.port);
    try {
      const gaps: FeedGap[] = [];
      const bus = await newBus('gap-first', {
        connection: { servers: proxy.url, reconnectDelayMs: 50, maxReconnectDelayMs: 200 },
        feed: { onGap: (g) => gaps.push(g) },
      });
      const publisher = await newBus('gap-first-publisher', { connection: { servers: fresh.url }, provisionStream: false });
      const seen: number[] = [];
      bus.on('*', (e) => {
        seen.push(e.seq);
      });
      await bus.start();
      assert.equal(bus.feed.stats.lastSeq, 0);

      proxy.cut();
      await eventually(() => !bus.connected, 10_000, 'the node to notice the disconnect');
      for (let i = 1; i <= 3; i++) await publisher.publish(issueCreated(i));
      await (await jetstreamManager(publisher.nc)).streams.purge('FORGE_EVENTS');
      const next = await publisher.publish(issueCreated(4));
      assert.equal(next.seq, 4);
      proxy.restore();

      await eventually(() => seen.includes(next.seq), 15_000, 'the event after the gap');
      assert.deepEqual(seen, [4]);
      assert.deepEqual(gaps, [{ from: 1, to: 3 }]);
      assert.equal(bus.feed.stats.gaps, 1);
    } finally {
      await Promise.all(buses.splice(0).map((b) => b.close()));
      await proxy.close();
      await fresh.dispose();
    }
  });

  it('reports a gap when a slow node falls behind the stream retention (max_bytes)', async () => {
    // A server of its own: the stream is configured small for this test only.
    const small = await startTestNats();
    try {
      const gaps: FeedGap[] = [];
      const options = { connection: { servers: small.url }, stream: { maxBytes: 8 * 1024 } };
      const bus = await newBus('gap-slow', { ...options, feed: { bufferMessages: 4, onGap: (g) => gaps.push(g) } });
      const publisher = await newBus('gap-slow-publisher', options);
      let release!: () => void;
      const released = new Promise<void>((resolve) => (release = resolve));
      const seen: number[] = [];
      bus.on('*', async (e) => {
        seen.push(e.seq);
        if (seen.length === 1) await released; // stuck on the first event
      });
      await bus.start();

      const first = await publisher.publish(issueCreated(1));
      await eventually(() => seen.length === 1, 10_000, 'the first event');
      const burst = [];
      for (let i = 2; i <= 400; i++) burst.push(await publisher.publish(issueCreated(i)));
      const info = await (await jetstreamManager(publisher.nc)).streams.info('FORGE_EVENTS');
      assert.ok(info.state.first_seq > first.seq + 50, `the stream dropped old events (first_seq ${info.state.first_seq})`);
      release();

      const last = burst.at(-1)!.seq;
      await eventually(() => seen.at(-1) === last, 15_000, 'the newest event');
      assert.ok(bus.feed.stats.gaps >= 1, 'gap counted');
      assert.equal(gaps.length, bus.feed.stats.gaps);
      // Sequences only move forward; every sequence is either seen or inside a reported gap.
      for (let i = 1; i < seen.length; i++) assert.ok(seen[i]! > seen[i - 1]!, `in order at ${i}`);
      const reported = new Set<number>();
      for (const g of gaps) for (let s = g.from; s <= g.to; s++) reported.add(s);
      for (let s = first.seq; s <= last; s++) {
        assert.ok(seen.includes(s) !== reported.has(s), `seq ${s} is either delivered or reported missing, not both or neither`);
      }
      assert.ok(gaps.every((g) => g.to < info.state.first_seq), 'only events the stream lost are reported missing');
    } finally {
      await Promise.all(buses.splice(0).map((b) => b.close()));
      await small.dispose();
    }
  });
});
