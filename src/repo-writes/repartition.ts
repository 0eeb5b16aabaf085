import { jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { ForgeBusError, recordedSettings, recordSetting } from '../bus/index.js';
import { WRITES_STREAM } from './partitions.js';

/** The queue still held writes when the re-partitioning had to start: nothing was changed. */
export class QueueNotDrainedError extends ForgeBusError {
  constructor(readonly pending: number, timeoutMs: number) {
    super(
      'QUEUE_NOT_DRAINED',
      `the repository write queue still holds ${pending} write(s) after ${timeoutMs} ms: stop the nodes that submit writes, ` +
        'keep one worker with the old partition count running until the queue is empty, then run this again',
    );
  }
}

export interface RepartitionOptions {
  /** How long to wait for the queue to drain (default 60 s). */
  timeoutMs?: number;
  /** Told the number of waiting writes while it waits. */
  onPending?: (pending: number) => void;
}

/**
 * Changes the cluster's partition count safely. The partition of a repository is a hash modulo
 * the count, so writes queued under the old count must all be applied before any node submits
 * under the new one: this waits until FORGE_REPO_WRITES is empty, deletes the old partitions'
 * consumers and records the new count (FORGE_SETTINGS `writes.partitions`). Nodes started with
 * the old count are refused from then on; nodes started with the new one create its consumers.
 * Run it with no node submitting writes (docs/operations.md has the whole procedure).
 */
export async function repartitionWriteQueue(nc: NatsConnection, partitions: number, options: RepartitionOptions = {}): Promise<{ from: number | undefined; to: number }> {
  if (!Number.isInteger(partitions) || partitions < 1 || partitions > 1024) {
    throw new ForgeBusError('INVALID_PARTITIONS', `the partition count must be an integer from 1 to 1,024, got ${partitions}`);
  }
  const recorded = (await recordedSettings(nc))['writes.partitions'];
  const from = typeof recorded === 'number' ? recorded : undefined;
  const jsm = await jetstreamManager(nc);
  const timeoutMs = options.timeoutMs ?? 60_000;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const pending = await jsm.streams.info(WRITES_STREAM).then(
      (info) => info.state.messages,
      () => 0, // no queue yet: nothing to drain
    );
    if (pending === 0) break;
    options.onPending?.(pending);
    if (Date.now() > deadline) throw new QueueNotDrainedError(pending, timeoutMs);
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  const consumers: string[] = [];
  try {
    for await (const info of jsm.consumers.list(WRITES_STREAM)) consumers.push(info.name);
  } catch {
    // No stream: no consumers.
  }
  await Promise.all(consumers.map((name) => jsm.consumers.delete(WRITES_STREAM, name)));
  await recordSetting(nc, 'writes.partitions', partitions);
  return { from, to: partitions };
}
