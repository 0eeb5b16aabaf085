import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import { DiscardPolicy, JetStreamApiError, jetstreamManager, RetentionPolicy, StorageType, type JetStreamManager } from '@nats-io/jetstream';
import { connect, nanos, type NatsConnection } from '@nats-io/transport-node';
import {
  ensureEventStream,
  EVENT_STREAM_SUBJECTS,
  ForgeBus,
  recordSetting,
  SettingsDriftError,
  silentLogger,
  StreamConfigConflictError,
} from '../../src/bus/index.js';
import { startTestNats, type TestNats } from '../support/nats.js';

describe('FORGE_EVENTS provisioning', () => {
  let nats: TestNats;
  let nc: NatsConnection;
  let jsm: JetStreamManager;

  before(async () => {
    nats = await startTestNats();
    nc = await connect({ servers: nats.url, name: 'streams-test' });
    jsm = await jetstreamManager(nc);
  });

  beforeEach(async () => {
    // Each test starts without the stream (the event subjects can belong to one stream only).
    await jsm.streams.delete('FORGE_EVENTS').catch((err: unknown) => {
      if (!(err instanceof JetStreamApiError)) throw err;
    });
  });

  after(async () => {
    await nc?.close();
    await nats?.dispose();
  });

  it('creates the stream as designed, then leaves it unchanged', async () => {
    const first = await ensureEventStream(nc);
    assert.equal(first.action, 'created');

    const { config } = await jsm.streams.info('FORGE_EVENTS');
    assert.equal(config.retention, RetentionPolicy.Limits);
    assert.equal(config.storage, StorageType.File);
    assert.equal(config.discard, DiscardPolicy.Old);
    assert.equal(config.duplicate_window, nanos(2 * 60 * 1000));
    assert.equal(config.max_age, nanos(7 * 24 * 3600 * 1000));
    assert.equal(config.max_bytes, 1024 ** 3);
    assert.deepEqual([...config.subjects].sort(), [...EVENT_STREAM_SUBJECTS].sort());

    for (let i = 0; i < 3; i++) {
      const again = await ensureEventStream(nc);
      assert.equal(again.action, 'unchanged');
    }
    // Same through the facade, which provisions at connect.
    const bus = await ForgeBus.connect({ nodeId: 'streams-1', connection: { servers: nats.url }, logger: silentLogger });
    try {
      assert.equal(bus.provisioned?.action, 'unchanged');
    } finally {
      await bus.close();
    }
  });

  it('updates a changed max_age in place, keeping the stored events', async () => {
    const bus = await ForgeBus.connect({ nodeId: 'streams-2', connection: { servers: nats.url }, logger: silentLogger });
    try {
      assert.equal(bus.provisioned?.action, 'created');
      const ack = await bus.publish({ type: 'issue.deleted', repo: { owner: 'acme', name: 'web' }, payload: { number: 1 } });

      const result = await ensureEventStream(nc, { maxAgeMs: 3_600_000, maxBytes: 64 * 1024 * 1024 });
      assert.equal(result.action, 'updated');
      const info = await jsm.streams.info('FORGE_EVENTS');
      assert.equal(info.config.max_age, nanos(3_600_000));
      assert.equal(info.config.max_bytes, 64 * 1024 * 1024);
      assert.equal(info.state.messages, 1, 'updated in place, not re-created');
      assert.equal(info.state.last_seq, ack.seq);

      assert.equal((await ensureEventStream(nc, { maxAgeMs: 3_600_000, maxBytes: 64 * 1024 * 1024 })).action, 'unchanged');
    } finally {
      await bus.close();
    }
  });

  it('refuses a storage change with StreamConfigConflictError naming the field, leaving the stream as it was', async () => {
    assert.equal((await ensureEventStream(nc)).action, 'created');
    await assert.rejects(ensureEventStream(nc, { storage: 'memory' }), (err: unknown) => {
      assert.ok(err instanceof StreamConfigConflictError, String(err));
      assert.deepEqual(err.fields, ['storage']);
      assert.equal(err.code, 'STREAM_CONFIG_CONFLICT');
      assert.match(err.message, /storage/);
      assert.match(err.message, /FORGE_EVENTS/);
      return true;
    });
    // ForgeBus.connect refuses it earlier: the cluster recorded file storage (SettingsDriftError)...
    const memoryNode = () => ForgeBus.connect({ nodeId: 'streams-3', connection: { servers: nats.url }, stream: { storage: 'memory' }, logger: silentLogger });
    await assert.rejects(memoryNode(), (err: unknown) => err instanceof SettingsDriftError && err.setting === 'events.storage');
    // ... and once the change is recorded deliberately, NATS itself cannot make it (and the
    // failed connect does not leave its connection open).
    await recordSetting(nc, 'events.storage', 'memory');
    await assert.rejects(memoryNode(), StreamConfigConflictError);
    await recordSetting(nc, 'events.storage', 'file');
    const info = await jsm.streams.info('FORGE_EVENTS');
    assert.equal(info.config.storage, StorageType.File);
  });

  it('survives concurrent provisioning from several connections at once', async () => {
    const connections = await Promise.all(Array.from({ length: 6 }, (_, i) => connect({ servers: nats.url, name: `provisioner-${i}` })));
    try {
      for (let round = 0; round < 5; round++) {
        await jsm.streams.delete('FORGE_EVENTS').catch(() => undefined);
        const results = await Promise.allSettled(connections.map((c) => ensureEventStream(c)));
        const failures = results.filter((r) => r.status === 'rejected').map((r) => String((r as PromiseRejectedResult).reason));
        assert.deepEqual(failures, [], `round ${round}: no provisioning failed`);
        const actions = results.map((r) => (r as PromiseFulfilledResult<{ action: string }>).value.action);
        assert.ok(actions.includes('created'), `round ${round}: someone created it (${actions.join(',')})`);
        assert.ok(actions.every((a) => a === 'created' || a === 'unchanged'), `round ${round}: ${actions.join(',')}`);
        const info = await jsm.streams.info('FORGE_EVENTS');
        assert.equal(info.config.storage, StorageType.File);
      }
      // Racing creators that disagree on a mutable setting (a rolling deploy): whoever loses the
      // create must fall back to compare-and-update instead of failing.
      for (let round = 0; round < 5; round++) {
        await jsm.streams.delete('FORGE_EVENTS').catch(() => undefined);
        const ages = connections.map((_, i) => (i + 1) * 3_600_000);
        const results = await Promise.allSettled(connections.map((c, i) => ensureEventStream(c, { maxAgeMs: ages[i] })));
        const failures = results.filter((r) => r.status === 'rejected').map((r) => String((r as PromiseRejectedResult).reason));
        assert.deepEqual(failures, [], `round ${round}: no provisioning failed`);
        const actions = results.map((r) => (r as PromiseFulfilledResult<{ action: string }>).value.action);
        assert.equal(actions.filter((a) => a === 'created').length, 1, `round ${round}: exactly one creator (${actions.join(',')})`);
        assert.ok(actions.every((a) => a === 'created' || a === 'updated' || a === 'unchanged'), actions.join(','));
        const info = await jsm.streams.info('FORGE_EVENTS');
        assert.ok(ages.map((a) => nanos(a)).includes(info.config.max_age), 'one of the requested ages');
      }
      // And several ForgeBus processes-worth of connects at once, after a deliberate change of
      // the recorded limit (nodes restarted with the new value: one of them updates the stream).
      await recordSetting(nc, 'events.maxAgeMs', 86_400_000);
      const buses = await Promise.all(
        Array.from({ length: 4 }, (_, i) =>
          ForgeBus.connect({ nodeId: `race-${i}`, connection: { servers: nats.url }, stream: { maxAgeMs: 86_400_000 }, logger: silentLogger }),
        ),
      );
      try {
        const actions = buses.map((b) => b.provisioned!.action);
        assert.ok(actions.includes('updated'), actions.join(','));
        assert.equal((await jsm.streams.info('FORGE_EVENTS')).config.max_age, nanos(86_400_000));
      } finally {
        await Promise.all(buses.map((b) => b.close()));
      }
    } finally {
      await Promise.all(connections.map((c) => c.close()));
    }
  });
});
