import { AckPolicy, DeliverPolicy, jetstreamManager, RetentionPolicy, StorageType, type JetStreamManager, type StreamConfig } from '@nats-io/jetstream';
import { nanos, type NatsConnection } from '@nats-io/transport-node';
import { ensureStream, type ClusterSetting } from '../bus/index.js';
import { partitionConsumerName, WRITE_SUBJECT_ROOT, WRITES_STREAM } from './partitions.js';

export interface WriteQueueProvisioning {
  partitions: number;
  /** How long a worker may hold a write without a heartbeat before it is redelivered (default 30 s). */
  ackWaitMs: number;
  /** Deliveries of one write before it is reported failed (default 5). */
  maxDeliver: number;
  /** Copies of the stream (and so of its consumers): the cluster's agreed count. */
  replicas: number;
}

const CHANGE_PARTITIONS =
  'drain the queue and re-partition with `npm run settings -- repartition <count>` (docs/operations.md), then start every node with the new count';
const CHANGE_LIMIT = 'record it with `npm run settings -- set <setting> <value>`, then restart the nodes with it (docs/operations.md)';

/** The write queue settings every node must agree on. */
export function writeQueueSettings(o: Omit<WriteQueueProvisioning, "replicas"> & { resultTtlMs: number; failureTtlMs: number }): ClusterSetting[] {
  return [
    { name: 'writes.partitions', value: o.partitions, change: CHANGE_PARTITIONS },
    { name: 'writes.ackWaitMs', value: o.ackWaitMs, change: CHANGE_LIMIT },
    { name: 'writes.maxDeliver', value: o.maxDeliver, change: CHANGE_LIMIT },
    // NATS keeps a bucket's TTL from its creation: another value would be silently ignored.
    { name: 'writes.resultTtlMs', value: o.resultTtlMs, change: CHANGE_LIMIT },
    { name: 'writes.failureTtlMs', value: o.failureTtlMs, change: CHANGE_LIMIT },
  ];
}

/** Sets a KV bucket's TTL (its stream's max age) when it differs: NATS keeps it from creation otherwise. */
export async function ensureBucketTtl(nc: NatsConnection, bucket: string, ttlMs: number): Promise<void> {
  const jsm = await jetstreamManager(nc);
  const stream = `KV_${bucket}`;
  const info = await jsm.streams.info(stream);
  if (info.config.max_age !== nanos(ttlMs)) await jsm.streams.update(stream, { ...info.config, max_age: nanos(ttlMs) });
}

export function writesStreamConfig(replicas: number): StreamConfig {
  return {
    name: WRITES_STREAM,
    subjects: [`${WRITE_SUBJECT_ROOT}.>`],
    retention: RetentionPolicy.Workqueue,
    storage: StorageType.File,
    duplicate_window: nanos(2 * 60 * 1000),
    num_replicas: replicas,
  } as StreamConfig;
}

/**
 * FORGE_REPO_WRITES (WorkQueue) and one durable pull consumer per partition with
 * max_ack_pending = 1: the server then lets exactly one write per partition be in flight in the
 * whole cluster, which serializes the writes of each repository while partitions run in parallel.
 */
export async function ensureWriteQueue(nc: NatsConnection, options: WriteQueueProvisioning): Promise<void> {
  const jsm = await jetstreamManager(nc);
  await ensureStream(jsm, writesStreamConfig(options.replicas));
  await Promise.all(Array.from({ length: options.partitions }, (_, partition) => ensurePartitionConsumer(jsm, partition, options)));
}

/**
 * The durable consumer of one partition, created when missing (also after someone deleted it:
 * the write workers call this before they re-open) and updated where its limits differ.
 */
export async function ensurePartitionConsumer(jsm: JetStreamManager, partition: number, options: WriteQueueProvisioning): Promise<void> {
  const name = partitionConsumerName(partition);
  const config = {
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    max_ack_pending: 1,
    ack_wait: nanos(options.ackWaitMs),
    max_deliver: options.maxDeliver,
    durable_name: name,
    filter_subject: `${WRITE_SUBJECT_ROOT}.${partition}.>`,
  };
  try {
    const info = await jsm.consumers.info(WRITES_STREAM, name);
    const c = info.config;
    if (c.ack_wait !== config.ack_wait || c.max_deliver !== config.max_deliver || c.max_ack_pending !== 1) {
      await jsm.consumers.update(WRITES_STREAM, name, { ack_wait: config.ack_wait, max_deliver: config.max_deliver, max_ack_pending: 1 });
    }
  } catch {
    // Missing (or created by another node at the same moment: add is then a no-op).
    await jsm.consumers.add(WRITES_STREAM, config).catch(async (err: unknown) => {
      await jsm.consumers.info(WRITES_STREAM, name).catch(() => {
        throw err;
      });
    });
  }
}
