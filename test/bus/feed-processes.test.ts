import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { ForgeBus, silentLogger, type EventInput } from '../../src/bus/index.js';
import { eventually, startTestNats, type TestNats } from '../support/nats.js';

const LISTENER = fileURLToPath(new URL('../fixtures/feed-listener.js', import.meta.url));

interface Listener {
  name: string;
  child: ChildProcess;
  events: { seq: number; id: string; type: string }[];
  ready: Promise<void>;
  stderr: string[];
}

function startListener(name: string, natsUrl: string): Listener {
  const child = spawn(process.execPath, [LISTENER], {
    env: { ...process.env, NATS_URL: natsUrl, NODE_ID: name, RECONNECT_DELAY_MS: '50' },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const listener: Listener = { name, child, events: [], stderr: [], ready: undefined as unknown as Promise<void> };
  listener.ready = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name} did not print "ready" within 15 s; stderr: ${listener.stderr.join('\n')}`)), 15_000);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited early (code ${code}, signal ${signal}); stderr: ${listener.stderr.join('\n')}`));
    });
    createInterface({ input: child.stdout! }).on('line', (line) => {
      if (line === 'ready') {
        clearTimeout(timer);
        resolve();
        return;
      }
      listener.events.push(JSON.parse(line) as Listener['events'][number]);
    });
  });
  listener.ready.catch(() => undefined);
  createInterface({ input: child.stderr! }).on('line', (line) => listener.stderr.push(line));
  return listener;
}

async function stopListener(listener: Listener): Promise<void> {
  const { child } = listener;
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
  await exited;
  clearTimeout(timer);
}

/** A mix of repository- and user-scoped events, some on names that need escaping. */
function eventNumber(i: number): EventInput {
  switch (i % 5) {
    case 0:
      return { type: 'issue.created', repo: { owner: 'acme', name: 'web' }, payload: { number: i + 1, title: `issue ${i}` } };
    case 1:
      return { type: 'issue.deleted', repo: { owner: 'acme', name: 'my.repo' }, payload: { number: i + 1 } };
    case 2:
      return { type: 'comment.created', repo: { owner: 'Zoë', name: 'api' }, payload: { issueNumber: 1, commentId: i + 1 } };
    case 3:
      return { type: 'user.notification_count', user: 'bob', payload: { count: i } };
    default:
      return { type: 'repo.deleted', repo: { owner: 'acme', name: `r${i}` }, payload: {} };
  }
}

describe('event feed across processes', () => {
  let nats: TestNats;
  let bus: ForgeBus;
  const listeners: Listener[] = [];

  before(async () => {
    nats = await startTestNats();
    bus = await ForgeBus.connect({
      nodeId: 'publisher',
      connection: { servers: nats.url, reconnectDelayMs: 50, maxReconnectDelayMs: 250 },
      logger: silentLogger,
    });
  });

  after(async () => {
    await Promise.all(listeners.map(stopListener));
    await bus?.close();
    await nats?.dispose();
  });

  it('delivers every acknowledged event to two other processes, in stream order, exactly once', async () => {
    // Some history first: the listeners start after it and must not replay it.
    const history = await Promise.all([0, 1, 2].map((i) => bus.publish(eventNumber(i))));

    listeners.push(startListener('listener-a', nats.url), startListener('listener-b', nats.url));
    await Promise.all(listeners.map((l) => l.ready));

    const total = 500;
    const acks = await Promise.all(Array.from({ length: total }, (_, i) => bus.publish(eventNumber(i))));
    const expected = acks
      .map((a) => ({ seq: a.seq, id: a.envelope.id, type: a.envelope.type }))
      .sort((a, b) => a.seq - b.seq);
    assert.equal(new Set(expected.map((e) => e.seq)).size, total, 'every publish got its own sequence');
    assert.ok(expected[0]!.seq > Math.max(...history.map((h) => h.seq)));

    for (const listener of listeners) {
      await eventually(() => listener.events.length >= total, 20_000, `${listener.name} to receive ${total} events (has ${listener.events.length})`);
    }
    // Anything extra (a duplicate) would arrive right behind the last event: give it a moment.
    await new Promise((r) => setTimeout(r, 200));

    for (const listener of listeners) {
      assert.equal(listener.events.length, total, `${listener.name} received each event exactly once`);
      // Same ids, same sequences, same order as the stream assigned at publish time.
      assert.deepEqual(listener.events, expected, `${listener.name} saw the stream in order`);
      assert.equal(listener.stderr.filter((l) => /ERROR|WARN/.test(l)).length, 0, listener.stderr.join('\n'));
    }
  });

  it('keeps delivering in order, once, across a NATS server restart', async () => {
    assert.equal(listeners.length, 2, 'the listeners of the previous test are still running');
    const offset = listeners.map((l) => l.events.length);

    await nats.stop();
    // Published while the server is down: acknowledged once it is back.
    const during = Array.from({ length: 100 }, (_, i) => bus.publish(eventNumber(i)));
    await new Promise((r) => setTimeout(r, 300));
    nats = await nats.restart();
    const acks = await Promise.all(during);
    // The listeners may still be reconnecting: these must reach them too.
    acks.push(...(await Promise.all(Array.from({ length: 100 }, (_, i) => bus.publish(eventNumber(100 + i))))));
    const expected = acks
      .map((a) => ({ seq: a.seq, id: a.envelope.id, type: a.envelope.type }))
      .sort((a, b) => a.seq - b.seq);

    for (const [i, listener] of listeners.entries()) {
      await eventually(
        () => listener.events.length >= offset[i]! + expected.length,
        20_000,
        `${listener.name} to receive the ${expected.length} events around the restart (has ${listener.events.length - offset[i]!})`,
      );
    }
    await new Promise((r) => setTimeout(r, 200));
    for (const [i, listener] of listeners.entries()) {
      assert.deepEqual(listener.events.slice(offset[i]), expected, `${listener.name}: in order, exactly once, nothing missing`);
      assert.ok(listener.child.exitCode === null, `${listener.name} is still running`);
    }
  });
});
