import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { ForgeBus, ReplicasUnavailableError, SettingsDriftError } from '../../src/index.js';
import { Locks, Membership } from '../../src/cluster/index.js';
import { Kvm } from '@nats-io/kv';
import { MemoryLogger } from '../bus/helpers.js';
import { RepoWriteQueue } from '../../src/repo-writes/index.js';
import { rescaleCluster, serializesCompareAndSwap } from '../../src/bus/index.js';
import { startTestNatsCluster, type TestNatsCluster } from '../support/nats-cluster.js';
import { startTestNats } from '../support/nats.js';

const quiet = { log: () => undefined, warn: () => undefined, error: () => undefined };

async function replicasOf(servers: string, streams: string[]): Promise<Record<string, number>> {
  const nc = await connect({ servers: servers.split(',') });
  try {
    const jsm = await jetstreamManager(nc);
    const out: Record<string, number> = {};
    for (const s of streams) out[s] = (await jsm.streams.info(s)).config.num_replicas;
    return out;
  } finally {
    await nc.close();
  }
}

const ALL = ['FORGE_EVENTS', 'FORGE_REPO_WRITES', 'KV_FORGE_SETTINGS', 'KV_FORGE_NODES', 'KV_FORGE_WRITE_RESULTS', 'KV_FORGE_WRITE_FAILURES'];

async function startNode(servers: string, nodeId: string, replicas?: number | 'auto') {
  const bus = await ForgeBus.connect({ nodeId, connection: { servers }, logger: quiet, ...(replicas !== undefined && { replicas }) });
  const queue = new RepoWriteQueue(bus, { partitions: 2, logger: quiet });
  await queue.init();
  const membership = new Membership(bus, { logger: quiet });
  await membership.start();
  return { bus, close: async () => (await membership.stop(), await queue.stop(), await bus.close()) };
}

describe('replication: every forgebus stream, bucket and durable consumer on three servers', () => {
  let cluster: TestNatsCluster;
  before(async () => {
    cluster = await startTestNatsCluster();
  });
  after(async () => {
    await cluster?.dispose();
  });

  it('a node on a 3-server cluster creates everything with 3 replicas by default (auto)', async () => {
    const node = await startNode(cluster.url, 'r-1');
    try {
      assert.equal(node.bus.replicas, 3);
      assert.deepEqual(await replicasOf(cluster.url, ALL), Object.fromEntries(ALL.map((s) => [s, 3])));
      const nc = await connect({ servers: cluster.url.split(',') });
      const consumer = await (await jetstreamManager(nc)).consumers.info('FORGE_REPO_WRITES', 'writes-p0');
      await nc.close();
      // A durable consumer follows its stream (num_replicas 0 = the stream's): a leader and two peers.
      assert.equal(consumer.cluster?.replicas?.length, 2, 'partition consumer replicated on the two other servers');
    } finally {
      await node.close();
    }
  });

  it('locks stay on one server where nats-server lets two compare-and-swaps of one revision both succeed (nats-server#4320)', async () => {
    // The fact itself, on the servers these tests run: concurrent updates of one revision of a
    // key in a 3-replica bucket, from connections to each server.
    const ncs = await Promise.all(cluster.servers.map((s) => connect({ servers: s.url })));
    const safe = serializesCompareAndSwap(ncs[0]!);
    let doubled = 0;
    try {
      const kvs = [await new Kvm(ncs[0]!).create('CAS_PROBE', { replicas: 3, history: 1 }), ...(await Promise.all(ncs.slice(1).map((nc) => new Kvm(nc).open('CAS_PROBE'))))];
      for (let t = 0; t < 20; t++) {
        const revision = await kvs[0]!.put(`k${t}`, 'x');
        const results = await Promise.allSettled(kvs.flatMap((kv) => [kv.update(`k${t}`, 'a', revision), kv.update(`k${t}`, 'b', revision)]));
        if (results.filter((r) => r.status === 'fulfilled').length > 1) doubled++;
      }
    } finally {
      await Promise.all(ncs.map((nc) => nc.close()));
    }
    assert.equal(doubled > 0, !safe, `${doubled} of 20 revisions updated more than once; server ${safe ? 'serializes' : 'does not serialize'} compare-and-swap`);

    const logger = new MemoryLogger();
    const bus = await ForgeBus.connect({ nodeId: 'r-locks', connection: { servers: cluster.url }, logger: quiet });
    try {
      const locks = new Locks(bus, { logger });
      await locks.withLock('repo/alice/web', () => undefined);
      assert.equal((await replicasOf(cluster.url, ['KV_FORGE_LOCKS'])).KV_FORGE_LOCKS, safe ? 3 : 1);
      assert.equal(logger.matching(/does not serialize compare-and-swap.*nats-server#4320/).length, safe ? 0 : 1);
    } finally {
      await bus.close();
    }
  });

  it('a node asking for another count than the cluster recorded is refused with what to run', async () => {
    await assert.rejects(ForgeBus.connect({ nodeId: 'r-2', connection: { servers: cluster.url }, replicas: 2, logger: quiet }), (err: unknown) => {
      assert.ok(err instanceof SettingsDriftError);
      assert.equal(err.setting, 'replicas');
      assert.equal(err.recorded, 3);
      assert.match(err.message, /npm run settings -- set replicas/);
      return true;
    });
  });

  it('rescaleCluster lowers and raises every forgebus stream in place, and the record with them', async () => {
    const nc = await connect({ servers: cluster.url.split(',') });
    try {
      const down = await rescaleCluster(nc, 1);
      assert.ok(down.some((r) => r.stream === 'FORGE_EVENTS' && r.changed));
      assert.deepEqual(await replicasOf(cluster.url, ALL), Object.fromEntries(ALL.map((s) => [s, 1])));
    } finally {
      await nc.close();
    }
    // Recorded 1 now: a node on auto sees 3 servers and scales everything back up in place.
    const node = await startNode(cluster.url, 'r-3');
    try {
      assert.equal(node.bus.replicas, 3);
      assert.deepEqual(await replicasOf(cluster.url, ALL), Object.fromEntries(ALL.map((s) => [s, 3])));
    } finally {
      await node.close();
    }
  });
});

describe('replication on a single server', () => {
  it('auto means 1; asking for 3 says that NATS cannot place them and what to do', async () => {
    const nats = await startTestNats();
    try {
      const bus = await ForgeBus.connect({ nodeId: 's-1', connection: { servers: nats.url }, logger: quiet });
      assert.equal(bus.replicas, 1);
      assert.equal((await replicasOf(nats.url, ['FORGE_EVENTS'])).FORGE_EVENTS, 1);
      await bus.close();
      const nc = await connect({ servers: nats.url });
      await assert.rejects(rescaleCluster(nc, 3), (err: unknown) => {
        assert.ok(err instanceof ReplicasUnavailableError, String(err));
        assert.equal(err.code, 'REPLICAS_UNAVAILABLE');
        assert.match(err.message, /Run at least 3 JetStream servers/);
        return true;
      });
      await nc.close();
    } finally {
      await nats.dispose();
    }
  });
});
