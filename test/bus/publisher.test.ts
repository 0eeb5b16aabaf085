import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import {
  ForgeBus,
  InvalidEventError,
  silentLogger,
  UnknownEventTypeError,
  type EventInput,
} from '../../src/bus/index.js';
import { startTestNats, type TestNats } from '../support/nats.js';
import { readStream, sleep } from './helpers.js';

const web = { owner: 'acme', name: 'web' };
const issue = (n: number): EventInput => ({ type: 'issue.created', repo: web, payload: { number: n, title: `issue ${n}` } });

async function messageCount(nc: NatsConnection): Promise<number> {
  return (await (await jetstreamManager(nc)).streams.info('FORGE_EVENTS')).state.messages;
}

describe('publisher', () => {
  let nats: TestNats;
  let bus: ForgeBus;
  let nc: NatsConnection;

  before(async () => {
    nats = await startTestNats();
    bus = await ForgeBus.connect({
      nodeId: 'pub-1',
      connection: { servers: nats.url, reconnectDelayMs: 50, maxReconnectDelayMs: 250 },
      logger: silentLogger,
    });
    nc = await connect({ servers: nats.url, name: 'publisher-test-observer' });
  });

  after(async () => {
    await nc?.close();
    await bus?.close();
    await nats?.dispose();
  });

  it('stores a retried publish with the same event id once', async () => {
    const envelope = bus.events.create(issue(1));
    const first = await bus.publishEnvelope(envelope);
    assert.equal(first.duplicate, false);
    const countAfterFirst = await messageCount(nc);

    const second = await bus.publishEnvelope(envelope);
    assert.equal(second.duplicate, true, 'the server recognised the retry');
    assert.equal(second.seq, first.seq, 'the retry reports the original sequence');
    assert.equal(await messageCount(nc), countAfterFirst, 'the stream did not grow');

    // A different envelope with an explicit id equal to the first is also a duplicate.
    const again = await bus.publish({ ...issue(1), id: envelope.id });
    assert.equal(again.duplicate, true);
    assert.equal(again.seq, first.seq);
    assert.equal(await messageCount(nc), countAfterFirst);

    const stored = (await readStream(nc)).filter((m) => m.envelope.id === envelope.id);
    assert.equal(stored.length, 1);
    assert.equal(stored[0]!.seq, first.seq);
    assert.deepEqual(stored[0]!.envelope, envelope);
    assert.equal(stored[0]!.subject, 'forge.repo.acme.web.issue.created');
  });

  it('refuses invalid events with an error naming the field, and publishes nothing', async () => {
    const before = await messageCount(nc);

    await assert.rejects(
      bus.publish({ type: 'issue.created', repo: web, payload: { number: 0, title: 'zero' } }),
      (err: unknown) => err instanceof InvalidEventError && err.field === 'payload.number' && /payload\.number/.test(err.message),
    );
    await assert.rejects(
      bus.publish({ type: 'issue.created', repo: web, payload: { number: 3 } }),
      (err: unknown) => err instanceof InvalidEventError && err.field === 'payload.title',
    );
    await assert.rejects(
      bus.publish({ type: 'issue.created', repo: web, payload: { number: 3, title: 't', titel: 'typo' } }),
      (err: unknown) => err instanceof InvalidEventError && err.field === 'payload.titel',
      'unknown payload properties are refused',
    );
    await assert.rejects(
      bus.publish({ type: 'user.stopwatch_changed', user: 'bob', payload: { running: true, issue: { owner: 'a', name: 'b', number: -1 } } }),
      (err: unknown) => err instanceof InvalidEventError && err.field === 'payload.issue.number',
      'nested payload errors name the nested path',
    );
    await assert.rejects(
      bus.publish({ type: 'wiki.edited', repo: web, payload: {} }),
      (err: unknown) => err instanceof UnknownEventTypeError && err.eventType === 'wiki.edited' && err.version === undefined,
    );
    await assert.rejects(
      bus.publish({ type: 'issue.created', version: 7, repo: web, payload: { number: 1, title: 't' } }),
      (err: unknown) => err instanceof UnknownEventTypeError && err.version === 7,
    );
    await assert.rejects(
      bus.publish({ type: 'issue.deleted', payload: { number: 1 } }),
      (err: unknown) => err instanceof InvalidEventError && err.field === 'repo',
      'a repository event without repo is refused',
    );
    await assert.rejects(
      bus.publish({ type: 'user.logged_out', payload: {} }),
      (err: unknown) => err instanceof InvalidEventError && err.field === 'user',
      'a user event without user is refused',
    );

    assert.equal(await messageCount(nc), before, 'nothing was stored');
  });

  it('keeps up with 5,000 concurrent publishes: each acked once, all sequences distinct', async () => {
    const before = await (await jetstreamManager(nc)).streams.info('FORGE_EVENTS');
    const total = 5_000;
    const acks = await Promise.all(Array.from({ length: total }, (_, i) => bus.publish(issue(i + 1))));
    const seqs = acks.map((a) => a.seq);
    assert.equal(new Set(seqs).size, total, 'distinct sequences');
    // The sequences are exactly the next `total` positions of the stream.
    assert.equal(Math.min(...seqs), before.state.last_seq + 1);
    assert.equal(Math.max(...seqs), before.state.last_seq + total);
    assert.equal(await messageCount(nc), before.state.messages + total);
    assert.equal(bus.publisher.inFlight, 0);
  });

  it('applies backpressure with a small in-flight window without losing or reordering acks', async () => {
    const small = await ForgeBus.connect({
      nodeId: 'pub-small',
      connection: { servers: nats.url },
      publisher: { maxInFlight: 8 },
      provisionStream: false,
      logger: silentLogger,
    });
    try {
      let maxSeen = 0;
      const total = 1_000;
      const pending = Array.from({ length: total }, (_, i) => {
        const p = small.publish(issue(i + 1));
        maxSeen = Math.max(maxSeen, small.publisher.inFlight);
        return p;
      });
      const acks = await Promise.all(pending);
      assert.ok(maxSeen <= 8, `at most 8 publishes in flight (saw ${maxSeen})`);
      assert.equal(new Set(acks.map((a) => a.seq)).size, total);
      const stored = new Map((await readStream(nc)).map((m) => [m.envelope.id, m.seq]));
      for (const ack of acks) assert.equal(stored.get(ack.envelope.id), ack.seq);
    } finally {
      await small.close();
    }
  });

  it('gets its publishes acknowledged across a server stop and restart, each stored once', async () => {
    const before = await messageCount(nc);
    await nc.close();
    await nats.stop();

    // Publish while the server is down: the publishes wait (buffered, re-sent on ack timeout).
    const envelopes = Array.from({ length: 20 }, (_, i) => bus.events.create(issue(10_000 + i)));
    const acks = envelopes.map((e) => bus.publishEnvelope(e));
    let settled = false;
    void Promise.allSettled(acks).then(() => {
      settled = true;
    });
    await sleep(800);
    assert.equal(settled, false, 'no ack can arrive while the server is down');

    nats = await nats.restart();
    nc = await connect({ servers: nats.url, name: 'publisher-test-observer' });
    const results = await Promise.all(acks);

    assert.equal(new Set(results.map((r) => r.seq)).size, envelopes.length);
    assert.equal(await messageCount(nc), before + envelopes.length, 'each event stored once');
    const stored = (await readStream(nc)).filter((m) => envelopes.some((e) => e.id === m.envelope.id));
    assert.deepEqual(
      stored.map((m) => m.envelope.id).sort(),
      envelopes.map((e) => e.id).sort(),
    );
    for (const r of results) assert.equal(stored.find((m) => m.envelope.id === r.envelope.id)!.seq, r.seq);

    // And the bus goes on working after the reconnect.
    const later = await bus.publish(issue(99_999));
    assert.equal(later.seq, Math.max(...results.map((r) => r.seq)) + 1);
  });

  it('re-sends a publish made during an outage once reconnected, within the same attempt', async () => {
    // The client drops what was written while disconnected, so the re-send must not wait for the
    // ack timeout: with one attempt allowed, only a re-send at reconnect can get this event stored.
    const patient = await ForgeBus.connect({
      nodeId: 'pub-patient',
      connection: { servers: nats.url, reconnectDelayMs: 50, maxReconnectDelayMs: 100 },
      publisher: { ackTimeoutMs: 8_000, maxAttempts: 1 },
      provisionStream: false,
      logger: silentLogger,
    });
    try {
      await patient.publish(issue(1)); // subscribed and working
      await nc.close();
      await nats.stop();
      const envelope = patient.events.create(issue(424_242));
      const ack = patient.publishEnvelope(envelope);
      await sleep(300);
      nats = await nats.restart();
      nc = await connect({ servers: nats.url, name: 'publisher-test-observer' });

      const result = await ack;
      const stored = (await readStream(nc)).filter((m) => m.envelope.id === envelope.id);
      assert.equal(stored.length, 1);
      assert.equal(stored[0]!.seq, result.seq);
    } finally {
      await patient.close();
    }
  });
});
