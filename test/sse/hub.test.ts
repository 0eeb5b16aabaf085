import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { after, afterEach, before, describe, it } from 'node:test';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { ForgeBus, silentLogger, type DeliveredEvent, type EventInput, type RepoRef } from '../../src/bus/index.js';
import { SseHub, type AccessChange, type SseAccessPolicy, type SseHubOptions } from '../../src/sse/index.js';
import { readStream, sleep } from '../bus/helpers.js';
import { eventually, startTestNats, type TestNats } from '../support/nats.js';

/**
 * Unit tests of the hub: a real nats-server and ForgeBus, with the HTTP response and the
 * forge's permission model faked (the integration tests in this folder use real nodes).
 */

interface Frame {
  id?: string;
  event?: string;
  data?: string;
  retry?: string;
}

const CONTROL_EVENTS = new Set(['position', 'reset', 'access-revoked']);

class FakeSocket extends EventEmitter {
  writableLength = 0;
  constructor(private readonly res: FakeResponse) {
    super();
  }
  cork(): void {}
  uncork(): void {}
  write(chunk: Buffer): boolean {
    return this.res.write(chunk);
  }
}

class FakeResponse extends EventEmitter {
  readonly chunks: string[] = [];
  status?: number;
  headers?: Record<string, string>;
  destroyed = false;
  ended = false;
  readonly chunkedEncoding = false;
  /** A client that stopped reading: everything written stays unsent. */
  stalled = false;
  /** A client that reads, but each write is still on its way when the next check comes. */
  lagging = false;
  readonly socket = new FakeSocket(this);

  writeHead(status: number, headers: Record<string, string>): this {
    this.status = status;
    this.headers = headers;
    return this;
  }

  flushHeaders(): void {}

  onWrite?: (chunk: string) => void;

  write(chunk: Buffer): boolean {
    if (this.destroyed || this.ended) return false;
    this.chunks.push(chunk.toString());
    this.onWrite?.(chunk.toString());
    if (this.stalled) this.socket.writableLength += chunk.length;
    else if (this.lagging) this.socket.writableLength = chunk.length;
    return !this.stalled;
  }

  end(): this {
    this.ended = true;
    this.emit('close');
    return this;
  }

  destroy(): this {
    this.destroyed = true;
    this.emit('close');
    return this;
  }

  frames(): Frame[] {
    return this.chunks
      .join('')
      .split('\n\n')
      .map((block) => block.split('\n').filter((line) => line !== '' && !line.startsWith(':')))
      .filter((lines) => lines.length > 0)
      .map((lines) => {
        const frame: Frame = {};
        for (const line of lines) {
          const i = line.indexOf(': ');
          (frame as Record<string, string>)[line.slice(0, i)] = line.slice(i + 2);
        }
        return frame;
      });
  }

  /** Sequences of the events received (control frames and the preamble left out). */
  eventIds(type?: string): number[] {
    return this.frames()
      .filter((f) => f.data !== undefined && !CONTROL_EVENTS.has(f.event!) && (!type || f.event === type))
      .map((f) => Number(f.id));
  }
}

/** A permission model held in memory: readers per repository, and each user's default set. */
class MemoryPolicy implements SseAccessPolicy {
  readonly readers = new Map<string, Set<string>>();
  readonly defaults = new Map<string, RepoRef[]>();
  gate?: Promise<void>;
  private key = (repo: RepoRef) => `${repo.owner}/${repo.name}`;

  allow(user: string, repo: RepoRef, inDefaultSet = false): void {
    let set = this.readers.get(this.key(repo));
    if (!set) this.readers.set(this.key(repo), (set = new Set()));
    set.add(user);
    if (inDefaultSet) this.defaults.set(user, [...(this.defaults.get(user) ?? []), repo]);
  }

  deny(user: string, repo: RepoRef): void {
    this.readers.get(this.key(repo))?.delete(user);
    this.defaults.set(user, (this.defaults.get(user) ?? []).filter((r) => this.key(r) !== this.key(repo)));
  }

  async canRead(user: string, repo: RepoRef): Promise<boolean> {
    await this.gate;
    return this.readers.get(this.key(repo))?.has(user) ?? false;
  }

  async defaultRepos(user: string): Promise<RepoRef[]> {
    await this.gate;
    return this.defaults.get(user) ?? [];
  }

  accessChange(event: DeliveredEvent): AccessChange | undefined {
    if (event.envelope.type !== 'repo.collaborator_changed') return undefined;
    return { repo: event.envelope.repo!, users: [(event.envelope.payload as { user: string }).user] };
  }
}

const issue = (repo: RepoRef, n: number): EventInput => ({ type: 'issue.created', repo, payload: { number: n, title: `#${n}` } });
const collaborator = (repo: RepoRef, user: string, change: 'added' | 'removed'): EventInput => ({
  type: 'repo.collaborator_changed',
  repo,
  payload: { user, change },
});

describe('SSE hub', () => {
  let nats: TestNats;
  let nc: NatsConnection;
  let bus: ForgeBus;
  const hubs: SseHub[] = [];
  let repoCounter = 0;
  const freshRepo = (): RepoRef => ({ owner: 'acme', name: `r${++repoCounter}` });

  async function newHub(policy: SseAccessPolicy, options: SseHubOptions = {}): Promise<SseHub> {
    const hub = new SseHub(bus, policy, { logger: silentLogger, ...options });
    hub.start();
    hubs.push(hub);
    return hub;
  }

  /** Publishes and waits until the hub's feed has dispatched it. */
  async function publish(input: EventInput): Promise<number> {
    const { seq } = await bus.publish(input);
    await eventually(() => bus.feed.stats.lastSeq >= seq, 5_000, `feed at ${seq}`);
    return seq;
  }

  before(async () => {
    nats = await startTestNats();
    nc = await connect({ servers: nats.url, name: 'sse-hub-test' });
    bus = await ForgeBus.connect({ nodeId: 'hub-test', connection: { servers: nats.url }, logger: silentLogger });
    await bus.start();
  });

  afterEach(async () => {
    await Promise.all(hubs.splice(0).map((h) => h.close()));
  });

  after(async () => {
    await bus.close();
    await nc.close();
    await nats.dispose();
  });

  it('sends each client the events of its repositories and its user, with the stream sequence as id', async () => {
    const policy = new MemoryPolicy();
    const hub = await newHub(policy);
    const [x, y] = [freshRepo(), freshRepo()];
    const a = new FakeResponse();
    const b = new FakeResponse();
    hub.open(a, { user: 'ann', repos: [x], defaultRepos: false });
    hub.open(b, { user: 'ben', repos: [y], defaultRepos: false });
    assert.equal(a.status, 200);
    assert.equal(a.headers!['Content-Type'], 'text/event-stream; charset=utf-8');
    assert.equal(a.frames()[0]!.retry, '2000');
    const sx = await publish(issue(x, 1));
    const sy = await publish(issue(y, 1));
    const su = await publish({ type: 'user.notification_count', user: 'ann', payload: { count: 3 } });
    await publish({ type: 'user.notification_count', user: 'someone-else', payload: { count: 1 } });
    assert.deepEqual(a.eventIds(), [sx, su]);
    assert.deepEqual(b.eventIds(), [sy]);
    const [first] = a.frames().filter((f) => f.data && f.event !== 'position');
    assert.equal(first!.event, 'issue.created');
    assert.deepEqual(JSON.parse(first!.data!).repo, x);
    assert.equal(hub.stats.deliveries, 3);
  });

  it('delivers to more watchers than one slice, in order, every client every event', async () => {
    const hub = await newHub(new MemoryPolicy());
    const x = freshRepo();
    const clients = Array.from({ length: 1_234 }, (_, i) => {
      const res = new FakeResponse();
      hub.open(res, { user: `u${i}`, repos: [x], defaultRepos: false });
      return res;
    });
    const seqs: number[] = [];
    for (let n = 1; n <= 5; n++) seqs.push((await bus.publish(issue(x, n))).seq);
    await eventually(() => clients.every((c) => c.eventIds().length === seqs.length), 10_000, 'every client got every event');
    for (const res of clients) assert.deepEqual(res.eventIds(), seqs);
  });

  it('a stream that opens while an event is being written in slices gets the event, even if every watcher left meanwhile', async () => {
    const hub = await newHub(new MemoryPolicy());
    const x = freshRepo();
    const watchers = Array.from({ length: 600 }, (_, i) => {
      const res = new FakeResponse();
      hub.open(res, { user: `u${i}`, repos: [x], defaultRepos: false });
      return res;
    });
    const latecomer = new FakeResponse();
    let seen = 0;
    for (const res of watchers) {
      res.onWrite = (chunk) => {
        // After the first slice, before the next: everyone leaves and a new stream opens.
        if (chunk.includes('issue.created') && ++seen === 500) {
          setImmediate(() => {
            for (const w of watchers) w.destroy();
            hub.open(latecomer, { user: 'late', repos: [x], defaultRepos: false });
          });
        }
      };
    }
    const seq = await publish(issue(x, 1));
    await eventually(() => latecomer.status === 200, 5_000, 'the latecomer to open');
    const position = Number(latecomer.frames()[0]!.id);
    assert.equal(position, seq - 1, 'the latecomer starts before the event being written');
    await eventually(() => latecomer.eventIds().includes(seq), 5_000, 'the latecomer to get the event');
  });

  it('sends heartbeats only to streams that were silent since the last one', async () => {
    const hub = await newHub(new MemoryPolicy(), { heartbeatMs: 150 });
    const x = freshRepo();
    const busy = new FakeResponse();
    const silent = new FakeResponse();
    hub.open(busy, { user: 'ann', repos: [x], defaultRepos: false });
    hub.open(silent, { user: 'ben', repos: [], defaultRepos: false });
    const heartbeats = (res: FakeResponse) => res.chunks.filter((c) => c === ':\n\n').length;
    const until = Date.now() + 1_000;
    while (Date.now() < until) {
      await bus.publish(issue(x, 1));
      await sleep(20);
    }
    assert.ok(heartbeats(silent) >= 3, `silent stream got ${heartbeats(silent)} heartbeats`);
    assert.equal(heartbeats(busy), 0);
  });

  it('a fresh stream starts at the hub position, so a drop before the first event still resumes exactly', async () => {
    const hub = await newHub(new MemoryPolicy());
    const seq = await publish(issue(freshRepo(), 1));
    const res = new FakeResponse();
    hub.open(res, { user: 'ann', repos: [], defaultRepos: false });
    assert.equal(res.frames()[0]!.id, String(seq));
  });

  it('resuming clients get exactly the events after their id, in order, while events keep coming', async () => {
    const policy = new MemoryPolicy();
    // Two replays at a time: most resuming clients wait their turn while live events pile up.
    const hub = await newHub(policy, { maxConcurrentReplays: 2 });
    const x = freshRepo();
    const other = freshRepo();
    const firstSeq = await publish(issue(x, 1));
    const total = 400;
    const clients: { res: FakeResponse; last: number }[] = [];
    for (let n = 2; n <= total; n++) {
      void bus.publish(issue(n % 3 === 0 ? other : x, n));
      if (n % 25 === 0) {
        await sleep(5);
        const last = firstSeq + Math.floor(Math.random() * (bus.feed.stats.lastSeq - firstSeq + 1));
        const res = new FakeResponse();
        hub.open(res, { user: 'ann', repos: [x], defaultRepos: false, lastEventId: last });
        clients.push({ res, last });
      }
    }
    const stored = (await readStream(nc)).filter((e) => e.envelope.repo?.name === x.name);
    const lastOfX = stored.at(-1)!.seq;
    await eventually(() => clients.every((c) => c.res.eventIds().at(-1) === lastOfX), 15_000, 'every client caught up');
    for (const { res, last } of clients) {
      assert.deepEqual(res.eventIds(), stored.filter((e) => e.seq > last).map((e) => e.seq), `client resumed after ${last}`);
    }
    assert.ok(hub.stats.replays > 0);
    assert.equal(hub.stats.replaying, 0);
  });

  it('sends reset (with a usable id) for an id the stream no longer holds, or never held, then goes live', async () => {
    const hub = await newHub(new MemoryPolicy());
    const x = freshRepo();
    const old = await publish(issue(x, 1));
    for (let n = 2; n <= 5; n++) await publish(issue(x, n));
    const jsm = await jetstreamManager(nc);
    await jsm.streams.purge(bus.streamName, { seq: bus.feed.stats.lastSeq });
    for (const lastEventId of [old, bus.feed.stats.lastSeq + 1_000_000]) {
      const position = bus.feed.stats.lastSeq;
      const res = new FakeResponse();
      hub.open(res, { user: 'ann', repos: [x], defaultRepos: false, lastEventId });
      const reset = await eventually(() => res.frames().find((f) => f.event === 'reset'), 5_000, 'reset');
      assert.equal(reset.id, String(position));
      assert.equal(JSON.parse(reset.data!).reason, lastEventId === old ? 'too-old' : 'unknown-id');
      const live = await publish(issue(x, 100));
      await eventually(() => res.eventIds().includes(live), 5_000, 'live event after reset');
      assert.deepEqual(res.eventIds(), [live]);
    }
    assert.equal(hub.stats.resets, 2);
  });

  it('re-checks access in stream order: grants before the changing event, revokes after it', async () => {
    const policy = new MemoryPolicy();
    const hub = await newHub(policy);
    const secret = freshRepo();
    policy.allow('owner', secret, true);
    const bobDefault = new FakeResponse();
    const bobNamed = new FakeResponse();
    hub.open(bobDefault, { user: 'bob', repos: [], defaultRepos: true });
    hub.open(bobNamed, { user: 'bob', repos: [], defaultRepos: false });
    const hidden = await publish(issue(secret, 1));
    policy.allow('bob', secret, true);
    const added = await publish(collaborator(secret, 'bob', 'added'));
    const seen = await publish(issue(secret, 2));
    policy.deny('bob', secret);
    const removed = await publish(collaborator(secret, 'bob', 'removed'));
    await publish(issue(secret, 3));
    assert.deepEqual(bobDefault.eventIds(), [added, seen, removed]);
    assert.ok(!bobDefault.eventIds().includes(hidden));
    const events = bobDefault.frames().filter((f) => f.event && f.event !== 'position').map((f) => f.event);
    assert.deepEqual(events, ['repo.collaborator_changed', 'issue.created', 'repo.collaborator_changed', 'access-revoked']);
    // A stream that named its repositories does not gain ones it did not ask for.
    assert.deepEqual(bobNamed.eventIds(), []);
    assert.equal(hub.stats.accessGranted, 1);
    assert.equal(hub.stats.accessRevoked, 1);
  });

  it('holds events published while an access check runs until it is decided', async () => {
    const policy = new MemoryPolicy();
    const hub = await newHub(policy);
    const secret = freshRepo();
    const res = new FakeResponse();
    hub.open(res, { user: 'bob', repos: [secret], defaultRepos: false });
    policy.allow('bob', secret);
    let release!: () => void;
    policy.gate = new Promise<void>((resolve) => (release = resolve));
    policy.deny('bob', secret);
    const { seq: removed } = await bus.publish(collaborator(secret, 'bob', 'removed'));
    const { seq: after } = await bus.publish(issue(secret, 1));
    await sleep(100);
    // A client connecting now must not be counted as having seen the event being decided.
    const late = new FakeResponse();
    hub.open(late, { user: 'carol', repos: [], defaultRepos: false });
    assert.equal(late.frames()[0]!.id, String(removed - 1));
    release();
    await eventually(() => bus.feed.stats.lastSeq >= after, 5_000, 'feed past the change');
    await sleep(50);
    assert.deepEqual(res.eventIds(), [removed]);
    assert.equal(res.frames().at(-1)!.event, 'access-revoked');
  });

  it('disconnects a client that stops reading once its unsent bytes pass the limit; the others keep receiving', async () => {
    const hub = await newHub(new MemoryPolicy(), { maxBufferedBytes: 4_096 });
    const x = freshRepo();
    const slow = new FakeResponse();
    const fast = new FakeResponse();
    hub.open(slow, { user: 'ann', repos: [x], defaultRepos: false });
    hub.open(fast, { user: 'ben', repos: [x], defaultRepos: false });
    slow.stalled = true;
    const seqs: number[] = [];
    for (let n = 1; n <= 60; n++) seqs.push((await bus.publish(issue(x, n))).seq);
    await eventually(() => bus.feed.stats.lastSeq >= seqs.at(-1)!, 5_000, 'feed caught up');
    await sleep(20);
    assert.equal(slow.destroyed, true);
    assert.equal(hub.stats.slowDisconnects, 1);
    assert.ok(slow.eventIds().length < seqs.length);
    assert.deepEqual(fast.eventIds(), seqs);
    assert.equal(hub.stats.clients, 1);
  });

  it('does not take one event larger than the limit, on its way to a client that reads, for a slow client', async () => {
    const hub = await newHub(new MemoryPolicy(), { maxBufferedBytes: 4_096 });
    const x = freshRepo();
    const res = new FakeResponse();
    hub.open(res, { user: 'ann', repos: [x], defaultRepos: false });
    res.lagging = true;
    const seqs: number[] = [];
    for (let n = 1; n <= 3; n++) seqs.push(await publish({ type: 'issue.created', repo: x, payload: { number: n, title: 'x'.repeat(10_000) } }));
    await sleep(20);
    assert.equal(res.destroyed, false);
    assert.deepEqual(res.eventIds(), seqs);
    assert.equal(hub.stats.slowDisconnects, 0);
  });

  it('disconnects a resuming client that does not read its replay, and frees the replay slot', async () => {
    const hub = await newHub(new MemoryPolicy(), { maxBufferedBytes: 2_048, replayStallMs: 200, maxConcurrentReplays: 1 });
    const x = freshRepo();
    const from = await publish(issue(x, 1));
    for (let n = 2; n <= 100; n++) await bus.publish(issue(x, n));
    await publish(issue(x, 101));
    const stalled = new FakeResponse();
    stalled.stalled = true;
    hub.open(stalled, { user: 'ann', repos: [x], defaultRepos: false, lastEventId: from });
    const next = new FakeResponse();
    hub.open(next, { user: 'ann', repos: [x], defaultRepos: false, lastEventId: from });
    await eventually(() => stalled.destroyed, 5_000, 'stalled client dropped');
    await eventually(() => next.eventIds().length === 100, 5_000, 'second replay done');
    assert.equal(hub.stats.slowDisconnects, 1);
  });

  it('counts replaying clients, not replay promises: none left after close, even with replays queued', async () => {
    const hub = await newHub(new MemoryPolicy(), { maxConcurrentReplays: 1, replayStallMs: 60_000, maxBufferedBytes: 1_024 });
    const x = freshRepo();
    const from = await publish(issue(x, 1));
    for (let n = 2; n <= 60; n++) await bus.publish(issue(x, n));
    await publish(issue(x, 61));
    const stalled = new FakeResponse();
    stalled.stalled = true; // holds the only replay slot
    hub.open(stalled, { user: 'ann', repos: [x], defaultRepos: false, lastEventId: from });
    for (let i = 0; i < 3; i++) hub.open(new FakeResponse(), { user: 'ann', repos: [x], defaultRepos: false, lastEventId: from });
    assert.equal(hub.stats.replaying, 4);
    await hub.close();
    assert.equal(hub.stats.replaying, 0, 'the queued replays that will never run are not counted');
  });

  it('ends every stream on close (with a short retry hint) and turns new ones away with one', async () => {
    const hub = await newHub(new MemoryPolicy());
    const res = new FakeResponse();
    hub.open(res, { user: 'ann', repos: [], defaultRepos: false });
    await hub.close();
    assert.equal(res.ended, true);
    assert.equal(res.frames().at(-1)!.retry, '250');
    const late = new FakeResponse();
    const client = hub.open(late, { user: 'ann', repos: [], defaultRepos: false });
    // A 200 that ends at once: an EventSource given a 503 would never try another node.
    assert.equal(client.closed, true);
    assert.equal(late.status, 200);
    assert.equal(late.ended, true);
    assert.equal(late.frames().at(-1)!.retry, '250');
    assert.match(late.chunks.join(''), /^: this node is shutting down/);
    assert.equal(hub.stats.clients, 0);
    assert.equal(hub.stats.rejected, 1);
  });

  it('does not register a client whose connection closed before the stream opened', async () => {
    const hub = await newHub(new MemoryPolicy());
    const res = new FakeResponse();
    res.destroy();
    const client = hub.open(res, { user: 'ann', repos: [freshRepo()], defaultRepos: false });
    assert.equal(client.closed, true);
    assert.equal(hub.stats.clients, 0);
    assert.deepEqual(res.chunks, []);
  });

  it('turns streams beyond maxClients away with a longer retry hint', async () => {
    const hub = await newHub(new MemoryPolicy(), { maxClients: 2 });
    hub.open(new FakeResponse(), { user: 'a', repos: [], defaultRepos: false });
    hub.open(new FakeResponse(), { user: 'b', repos: [], defaultRepos: false });
    const third = new FakeResponse();
    assert.equal(hub.open(third, { user: 'c', repos: [], defaultRepos: false }).closed, true);
    assert.equal(third.frames().at(-1)!.retry, '5000');
    assert.equal(third.headers!['Retry-After'], '5');
    assert.equal(hub.stats.rejected, 1);
    assert.equal(hub.stats.clients, 2);
  });
});
