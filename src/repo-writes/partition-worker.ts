import { jetstream, jetstreamManager, type ConsumerMessages, type JsMsg } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { ensureStream, FAILOVER_PULL, type BusLogger, type RateLimitedLog } from '../bus/index.js';
import { partitionConsumerName, WRITES_STREAM } from './partitions.js';
import { ensurePartitionConsumer, writesStreamConfig, type WriteQueueProvisioning } from './provisioning.js';

const RETRY_MIN_MS = 100;
const RETRY_MAX_MS = 5_000;

/**
 * Pulls one partition's writes for as long as the queue runs. The consumer iterator can end or
 * fail under us (the consumer or the stream deleted, a leader change, a long disconnect): the
 * worker then makes sure the stream and its consumer exist again and re-opens, with backoff, and
 * says so — a partition whose worker silently stopped would hold its repositories' writes forever.
 */
export class PartitionWorker {
  /** Times the consumer was re-opened after its iterator ended or failed. */
  restarts = 0;
  private messages?: ConsumerMessages;
  private stopping = false;
  private wake?: () => void;
  private loop?: Promise<void>;

  constructor(
    private readonly nc: NatsConnection,
    readonly partition: number,
    private readonly provisioning: WriteQueueProvisioning,
    private readonly apply: (msg: JsMsg) => Promise<void>,
    private readonly logger: BusLogger,
    private readonly errorLog: RateLimitedLog,
  ) {}

  start(): void {
    this.loop ??= this.run();
  }

  /** Stops pulling; the write in progress finishes first. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.messages?.stop();
    this.wake?.();
    await this.loop;
  }

  private async run(): Promise<void> {
    let failures = 0;
    while (!this.stopping) {
      try {
        const consumer = await jetstream(this.nc).consumers.get(WRITES_STREAM, partitionConsumerName(this.partition));
        // One at a time is all the server hands out anyway (max_ack_pending = 1). A deleted
        // consumer or stream ends the iterator, so that it is re-created below, not waited for.
        this.messages = await consumer.consume({ max_messages: 1, abort_on_missing_resource: true, ...FAILOVER_PULL });
        for await (const msg of this.messages) {
          failures = 0;
          await this.apply(msg);
          if (this.stopping) break;
        }
        if (this.stopping) break;
        this.errorLog.line(`write worker of partition ${this.partition}: its consumer stopped delivering; re-opening`);
      } catch (err) {
        if (this.stopping) break;
        this.errorLog.line(`write worker of partition ${this.partition} failed (${(err as Error).message}); re-opening`);
      }
      this.restarts++;
      await this.pause(Math.min(RETRY_MAX_MS, RETRY_MIN_MS * 2 ** failures++));
      if (!this.stopping) await this.recreate();
    }
  }

  /** Re-creates the stream and this partition's consumer if someone deleted them. */
  private async recreate(): Promise<void> {
    try {
      const jsm = await jetstreamManager(this.nc);
      await ensureStream(jsm, writesStreamConfig(this.provisioning.replicas));
      await ensurePartitionConsumer(jsm, this.partition, this.provisioning);
    } catch (err) {
      this.logger.warn(`write worker of partition ${this.partition} could not re-create its consumer yet: ${(err as Error).message}`);
    }
  }

  private pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }
}
