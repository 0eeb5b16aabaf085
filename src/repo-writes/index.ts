/**
 * `forgebus/repo-writes` — writes to git repositories serialized per repository, cluster-wide,
 * through a JetStream WorkQueue: `new RepoWriteQueue(bus, options)`, `handle(operation, fn)`
 * on the nodes that apply writes, `submit(...)` on any node; different repositories proceed in
 * parallel, one repository's writes in acceptance order, each applied once or reported failed.
 */
export {
  RepoWriteQueue,
  type FailedWrite,
  type PartitionStats,
  type RepoWriteContext,
  type RepoWriteHandler,
  type RepoWriteQueueOptions,
  type RepoWriteQueueStats,
  type RanWrite,
  type SubmitOptions,
} from './write-queue.js';
export { DEFAULT_PARTITIONS, WRITES_STREAM, partitionOf } from './partitions.js';
export { QueueNotDrainedError, repartitionWriteQueue, type RepartitionOptions } from './repartition.js';
export { PermanentWriteError, WriteFailedError, WriteQueueUnavailableError, WriteTimeoutError, WriteTooLargeError } from './errors.js';
