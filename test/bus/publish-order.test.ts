import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { ForgeBus, silentLogger, type EventInput, type PublishedEvent } from '../../src/bus/index.js';
import { eventually, startTestNats, type TestNats } from '../support/nats.js';
import { TcpProxy } from '../support/tcp-proxy.js';
import { readStream, sleep } from './helpers.js';

const web = { owner: 'acme', name: 'order' };
const issue = (n: number): EventInput => ({ type: 'issue.created', repo: web, payload: { number: n + 1, title: `issue ${n}` } });

// One node's events must be stored in the order it published them, whatever happens to the
// acks and the connection: a consumer that sees "deleted" before "created" is wrong for good.
describe('publish order across re-sends', () => {
  let nats: TestNats;
  let observer: NatsConnection;
  const proxies: TcpProxy[] = [];
  const buses: ForgeBus[] = [];

  before(async () => {
    nats = await startTestNats();
    observer = await connect({ servers: nats.url, name: 'order-observer' });
  });
  after(async () => {
    for (const bus of buses) await bus.close();
    for (const proxy of proxies) await proxy.close();
    await observer?.close();
    await nats?.dispose();
  });

  async function proxiedBus(nodeId: string, publisher: { ackTimeoutMs?: number; maxAttempts?: number } = {}) {
    const proxy = await TcpProxy.start(nats.port);
    proxies.push(proxy);
    const bus = await ForgeBus.connect({
      nodeId,
      connection: { servers: proxy.url, reconnectDelayMs: 20, maxReconnectDelayMs: 100 },
      publisher,
      logger: silentLogger,
    });
    buses.push(bus);
    return { bus, proxy };
  }

  /** This node's events of the test, in stream order, as their issue numbers. */
  async function storedOrder(origin: string): Promise<number[]> {
    return (await readStream(observer))
      .filter((m) => m.envelope.origin === origin && m.envelope.repo?.name === web.name)
      .map((m) => (m.envelope.payload as { number: number }).number - 1);
  }

  it('keeps its order when acks arrive late (each event re-sent once or more)', async () => {
    const { bus, proxy } = await proxiedBus('late-acks', { ackTimeoutMs: 150, maxAttempts: 50 });
    await bus.publish(issue(0));
    proxy.downstreamDelayMs = 400;
    const acks: Promise<PublishedEvent>[] = [];
    for (let n = 1; n <= 300; n++) {
      acks.push(bus.publish(issue(n)));
      if (n % 25 === 0) await sleep(30);
    }
    const results = await Promise.all(acks);
    proxy.downstreamDelayMs = 0;
    assert.ok(bus.publisher.stats.resends >= 300, `every event was re-sent at least once (${bus.publisher.stats.resends} re-sends)`);
    assert.equal(bus.publisher.stats.reordered, 0);
    assert.deepEqual(await storedOrder('late-acks'), Array.from({ length: 301 }, (_, n) => n));
    assert.deepEqual(results.map((r) => r.seq), [...results.map((r) => r.seq)].sort((a, b) => a - b), 'sequences grow in publish order');
  });

  it('keeps its order when the connection drops while publishing (what was written is lost, later publishes go first)', async () => {
    const { bus, proxy } = await proxiedBus('dropped', { ackTimeoutMs: 2_000, maxAttempts: 20 });
    await bus.publish(issue(0));
    const acks: Promise<PublishedEvent>[] = [];
    let n = 0;
    for (let round = 0; round < 5; round++) {
      for (let i = 0; i < 100; i++) acks.push(bus.publish(issue(++n)));
      proxy.cut();
      for (let i = 0; i < 50; i++) acks.push(bus.publish(issue(++n)));
      await sleep(20);
      proxy.restore();
      // Publish right as the connection comes back: before the publisher re-sent what was lost.
      await eventually(() => bus.connected, 10_000, 'the reconnect');
      for (let i = 0; i < 50; i++) acks.push(bus.publish(issue(++n)));
    }
    await Promise.all(acks);
    assert.deepEqual(await storedOrder('dropped'), Array.from({ length: n + 1 }, (_, k) => k));
  });
});

// The stream is append-only: an event whose first attempt was lost (a failover) and whose re-send
// lands after a later event cannot be put back in place. It must at least not go unnoticed.
describe('publisher: an event stored out of publish order is reported', () => {
  it('counts and reports it (unit: a fake connection that loses the first attempt)', async () => {
    const { EventPublisher } = await import('../../src/bus/index.js');
    const sent: { subject: string; reply: string }[] = [];
    let deliver!: (msg: { subject: string; data: Uint8Array; headers?: undefined }) => void;
    const fakeNc = {
      subscribe: (_subject: string, opts: { callback: (err: null, msg: unknown) => void }) => {
        deliver = (msg) => opts.callback(null, msg);
        return { unsubscribe: () => undefined };
      },
      publish: (subject: string, _data: Uint8Array, opts: { reply: string }) => sent.push({ subject, reply: opts.reply }),
      status: () => ({ [Symbol.asyncIterator]: () => ({ next: () => new Promise(() => undefined) }) }),
    };
    const reports: string[] = [];
    const publisher = new EventPublisher(fakeNc as never, { ackTimeoutMs: 50, maxAttempts: 5 }, (m) => reports.push(m));
    const ack = (reply: string, seq: number, duplicate = false) =>
      deliver({ subject: reply, data: new TextEncoder().encode(JSON.stringify({ stream: 'FORGE_EVENTS', seq, duplicate })) });
    const first = publisher.publishRaw('forge.site.repo.created', 'event-a', new Uint8Array(1));
    const second = publisher.publishRaw('forge.site.repo.created', 'event-b', new Uint8Array(1));
    ack(sent[1]!.reply, 5); // b stored; a's first attempt was lost
    await eventually(() => sent.length === 3, 5_000, 'the re-send of a');
    assert.equal(sent[2]!.reply, sent[0]!.reply, 're-sent with the same reply token');
    ack(sent[2]!.reply, 6);
    assert.deepEqual(await Promise.all([first, second]), [{ seq: 6, duplicate: false }, { seq: 5, duplicate: false }]);
    assert.equal(publisher.stats.reordered, 1);
    assert.equal(publisher.stats.resends, 1);
    assert.match(reports[0]!, /event event-a .* stored at 6, after an event published later \(at 5\)/);
    publisher.close();
  });
});

describe('publisher: bounded while JetStream does not answer', () => {
  it('refuses publishes beyond maxInFlight + maxWaiting at once, counted, instead of queueing without end', async () => {
    const { EventPublisher, PublishError } = await import('../../src/bus/index.js');
    const silentNc = {
      subscribe: () => ({ unsubscribe: () => undefined }),
      publish: () => undefined,
      status: () => ({ [Symbol.asyncIterator]: () => ({ next: () => new Promise(() => undefined) }) }),
    };
    const publisher = new EventPublisher(silentNc as never, { maxInFlight: 2, maxWaiting: 3, ackTimeoutMs: 60_000 });
    const accepted = Array.from({ length: 5 }, (_, i) => publisher.publishRaw('forge.site.repo.created', `e${i}`, new Uint8Array(1)));
    for (const p of accepted) p.catch(() => undefined);
    await assert.rejects(publisher.publishRaw('forge.site.repo.created', 'e5', new Uint8Array(1)), (err: unknown) => {
      assert.ok(err instanceof PublishError);
      assert.equal(err.code, 'PUBLISH_QUEUE_FULL');
      assert.match(err.message, /2 events await their ack and 3 more wait for room/);
      return true;
    });
    assert.equal(publisher.stats.refusedFull, 1);
    assert.equal(publisher.inFlight, 2);
    publisher.close();
  });
});
