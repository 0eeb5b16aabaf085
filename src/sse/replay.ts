import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { nanos, type NatsConnection } from '@nats-io/transport-node';
import type { StoredEventMessage } from '../bus/index.js';

/** What part of the stream can still be replayed. */
export interface StreamWindow {
  /** Oldest sequence the stream holds (last + 1 when it is empty). */
  firstSeq: number;
  lastSeq: number;
}

/**
 * Reads a range of the event stream for one resuming client, through a short-lived ephemeral
 * consumer (memory storage, no acks, deleted afterwards and left to expire if this process
 * dies). nats-server 2.9 takes one filter subject per consumer and a client listens to several,
 * so the range is read whole and the hub filters it.
 */
export class StreamRangeReader {
  private jsm?: Promise<JetStreamManager>;

  constructor(
    private readonly nc: NatsConnection,
    private readonly stream: string,
    private readonly batch = 512,
    /** Names its consumers `<prefix>_<n>` (the hub gives `forge_replay_<nodeId>`): monitoring says whose they are. */
    private readonly namePrefix?: string,
  ) {}

  private count = 0;

  private manager(): Promise<JetStreamManager> {
    return (this.jsm ??= jetstreamManager(this.nc).catch((err: unknown) => {
      this.jsm = undefined;
      throw err;
    }));
  }

  async window(): Promise<StreamWindow> {
    const { state } = await (await this.manager()).streams.info(this.stream);
    return { firstSeq: state.first_seq, lastSeq: state.last_seq };
  }

  /** Yields the messages with `from <= seq <= until`, in order. */
  async *read(from: number, until: number): AsyncGenerator<StoredEventMessage> {
    if (from > until) return;
    const jsm = await this.manager();
    const info = await jsm.consumers.add(this.stream, {
      ...(this.namePrefix !== undefined && { name: `${this.namePrefix}_${(this.count++).toString(36)}_${Math.random().toString(36).slice(2, 8)}` }),
      deliver_policy: DeliverPolicy.StartSequence,
      opt_start_seq: from,
      ack_policy: AckPolicy.None,
      mem_storage: true,
      num_replicas: 1,
      inactive_threshold: nanos(30_000),
    });
    try {
      if (info.num_pending === 0) return;
      const consumer = await jetstream(this.nc).consumers.get(this.stream, info.name);
      const messages = await consumer.consume({ max_messages: Math.min(this.batch, until - from + 1) });
      try {
        for await (const msg of messages) {
          if (msg.seq > until) return;
          yield msg;
          // `pending` counts what the stream holds after this message: 0 = nothing more to read.
          if (msg.seq >= until || msg.info.pending === 0) return;
        }
      } finally {
        await messages.close();
      }
    } finally {
      jsm.consumers.delete(this.stream, info.name).catch(() => undefined);
    }
  }
}
