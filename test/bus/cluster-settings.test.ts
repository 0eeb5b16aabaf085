import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { jetstreamManager } from '@nats-io/jetstream';
import { nanos } from '@nats-io/transport-node';
import { ForgeBus, recordedSettings, recordSetting, SettingsDriftError, silentLogger } from '../../src/bus/index.js';
import { RepoWriteQueue, WRITES_STREAM } from '../../src/repo-writes/index.js';
import { startTestNats, type TestNats } from '../support/nats.js';

// Settings that must agree across nodes are recorded by the first node; a node that differs
// refuses to start and changes nothing (before: the last node to provision won, and two partition
// counts let writes of one repository run at the same time).
describe('cluster-wide settings', () => {
  let nats: TestNats;
  const closers: (() => Promise<void>)[] = [];
  before(async () => {
    nats = await startTestNats();
  });
  after(async () => {
    for (const close of closers.reverse()) await close();
    await nats?.dispose();
  });

  const connect = async (nodeId: string, maxAgeMs?: number) => {
    const bus = await ForgeBus.connect({ nodeId, connection: { servers: nats.url }, stream: { maxAgeMs }, logger: silentLogger });
    closers.push(() => bus.close());
    return bus;
  };

  it('the first node records the stream limits; a node with another max age is refused and changes nothing', async () => {
    const first = await connect('first', 3_600_000);
    await connect('same', 3_600_000);
    const recorded = await recordedSettings(first.nc);
    assert.equal(recorded['events.maxAgeMs'], 3_600_000);
    assert.equal(recorded['events.storage'], 'file');

    await assert.rejects(connect('other', 7_200_000), (err: unknown) => {
      assert.ok(err instanceof SettingsDriftError, String(err));
      assert.equal(err.code, 'SETTINGS_DRIFT');
      assert.deepEqual([err.setting, err.mine, err.recorded], ['events.maxAgeMs', 7_200_000, 3_600_000]);
      assert.match(err.message, /npm run settings -- set/);
      return true;
    });
    const info = await (await jetstreamManager(first.nc)).streams.info('FORGE_EVENTS');
    assert.equal(info.config.max_age, nanos(3_600_000), 'the refused node did not update the stream');
  });

  it('a write queue with another partition count is refused before it creates any consumer', async () => {
    const bus = await connect('writer-1', 3_600_000);
    const queue = new RepoWriteQueue(bus, { partitions: 8, logger: silentLogger });
    await queue.init();
    closers.push(() => queue.stop());
    const other = new RepoWriteQueue(await connect('writer-2', 3_600_000), { partitions: 16, logger: silentLogger });
    await assert.rejects(other.init(), (err: unknown) => {
      assert.ok(err instanceof SettingsDriftError, String(err));
      assert.deepEqual([err.setting, err.mine, err.recorded], ['writes.partitions', 16, 8]);
      assert.match(err.message, /repartition/);
      return true;
    });
    const consumers: string[] = [];
    for await (const c of (await jetstreamManager(bus.nc)).consumers.list(WRITES_STREAM)) consumers.push(c.name);
    assert.equal(consumers.length, 8, 'no consumer of a 16-partition layout was created');
    // A bucket TTL NATS would silently keep is a setting too.
    await assert.rejects(new RepoWriteQueue(bus, { partitions: 8, resultTtlMs: 60_000, logger: silentLogger }).init(), (err: unknown) =>
      err instanceof SettingsDriftError && err.setting === 'writes.resultTtlMs');
  });

  it('keeps the failed-writes list bounded (bucket TTL), and applies a deliberate TTL change to the existing bucket', async () => {
    const bus = await connect('ttl', 3_600_000);
    const jsm = await jetstreamManager(bus.nc);
    const maxAge = async () => (await jsm.streams.info('KV_FORGE_WRITE_FAILURES')).config.max_age;
    assert.equal(await maxAge(), nanos(7 * 24 * 3_600_000), 'failures expire after 7 days by default');
    await recordSetting(bus.nc, 'writes.failureTtlMs', 86_400_000);
    const queue = new RepoWriteQueue(bus, { partitions: 8, failureTtlMs: 86_400_000, logger: silentLogger });
    await queue.init();
    closers.push(() => queue.stop());
    assert.equal(await maxAge(), nanos(86_400_000), 'NATS would have kept the old TTL of the existing bucket');
  });
});
