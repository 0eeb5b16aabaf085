import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { HealthIndicatorService } from '@nestjs/terminus';
import { jetstreamManager } from '@nats-io/jetstream';
import { ForgeBus, silentLogger } from '../../src/bus/index.js';
import { ForgeBusHealthIndicator } from '../../src/nest/index.js';
import { eventually, startTestNats, type TestNats } from '../support/nats.js';

describe('health: a node whose feed is stuck is not healthy', () => {
  let nats: TestNats;
  let bus: ForgeBus;
  before(async () => {
    nats = await startTestNats();
    bus = await ForgeBus.connect({ nodeId: 'stuck-1', connection: { servers: nats.url }, feed: { streamCheckMs: 200 }, logger: silentLogger });
  });
  after(async () => {
    await bus?.close();
    await nats?.dispose();
  });

  it('is up while the feed keeps up, down once it sits behind the stream without moving, and names the feed consumer after the node', async () => {
    let release!: () => void;
    const blocked = new Promise<void>((r) => (release = r));
    // A handler that never returns holds the feed (handlers run in order, each awaited).
    bus.on('issue.deleted', () => blocked);
    await bus.start();
    const health = new ForgeBusHealthIndicator(bus, new HealthIndicatorService());
    const status = () => health.isHealthy('bus', { stuckAfterMs: 1_000 }).bus as { status: string; behind: number; stuckForMs: number; problem?: string };

    const jsm = await jetstreamManager(bus.nc);
    const consumers = [];
    for await (const c of jsm.consumers.list('FORGE_EVENTS')) consumers.push(c.name);
    assert.ok(consumers.some((n) => n.startsWith('forge_feed_stuck-1')), `the feed's consumer says whose it is: ${consumers.join(', ')}`);

    await bus.publish({ type: 'issue.created', repo: { owner: 'a', name: 'w' }, payload: { number: 1, title: 't' } });
    await eventually(() => bus.feed.stats.lastSeq >= 1, 5_000, 'the feed to take the first event');
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(status().status, 'up');

    await bus.publish({ type: 'issue.deleted', repo: { owner: 'a', name: 'w' }, payload: { number: 1 } });
    await bus.publish({ type: 'issue.created', repo: { owner: 'a', name: 'w' }, payload: { number: 2, title: 't' } });
    const down = await eventually(() => (status().status === 'down' ? status() : undefined), 10_000, 'the health to go down');
    assert.equal(down.behind, 1);
    assert.match(down.problem ?? '', /has not moved for \d+ s while 1 event\(s\) wait/);

    release();
    await eventually(() => status().status === 'up', 5_000, 'the health to come back once the feed moves');
  });
});
