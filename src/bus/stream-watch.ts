import { jetstreamManager, JetStreamApiCodes, JetStreamApiError } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import type { BusLogger, RateLimitedLog } from './logger.js';

/** Which incarnation of a stream this is: a deleted and re-created stream has a new `created`. */
export interface StreamIdentity {
  /** The stream's creation time as the server reports it (ISO-8601). */
  created: string;
  /** First sequence the stream holds (0 while empty). */
  firstSeq: number;
  lastSeq: number;
}

export async function streamIdentity(nc: NatsConnection, stream: string): Promise<StreamIdentity | undefined> {
  try {
    const info = await (await jetstreamManager(nc)).streams.info(stream);
    return { created: info.created, firstSeq: info.state.first_seq, lastSeq: info.state.last_seq };
  } catch (err) {
    if (err instanceof JetStreamApiError && err.code === JetStreamApiCodes.StreamNotFound) return undefined;
    throw err;
  }
}

export interface StreamWatchHooks {
  /** The stream was deleted and created again: sequences start over. */
  recreated(now: StreamIdentity, before: StreamIdentity): void;
  /** The stream does not exist (deleted, not yet re-created): provision it, if this process may. */
  missing(): Promise<void>;
  /** The last sequence the reader processed, to tell a stalled reader from a busy one. */
  position(): number;
  /** At every check: how far the reader is behind the stream, and whether it moved since the last check. */
  progress?(behind: number, moved: boolean): void;
  /**
   * The stream holds events beyond `position()` and the reader has not moved for two checks:
   * its consumer is stuck (seen after a server restart: the iterator neither yields nor ends).
   */
  stalled(behind: number): void;
}

/**
 * Notices that a stream was re-created (`nats stream rm`, a restore, an operator's mistake).
 * Sequence numbers then start again at 1, and a consumer that goes on "after" its last sequence
 * would silently skip every event of the new stream until it passed the old numbers. Consumers
 * cannot tell (an ordered consumer re-creates itself at its next old sequence), so the stream's
 * creation time is compared every `intervalMs`.
 */
export class StreamWatch {
  private timer?: NodeJS.Timeout;
  private known?: StreamIdentity;
  private checking?: Promise<void>;
  /** The reader's position at the last check, and how many checks in a row it was behind and still. */
  private lastPosition = -1;
  private stillChecks = 0;

  constructor(
    private readonly nc: NatsConnection,
    private readonly stream: string,
    private readonly intervalMs: number,
    private readonly hooks: StreamWatchHooks,
    private readonly logger: BusLogger,
    private readonly errorLog: RateLimitedLog,
  ) {}

  start(initial: StreamIdentity): void {
    this.known = initial;
    this.timer ??= setInterval(() => void this.check(), this.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** One comparison now (also called by the interval); never throws. */
  check(): Promise<void> {
    this.checking ??= this.compare().finally(() => (this.checking = undefined));
    return this.checking;
  }

  private checkProgress(now: StreamIdentity): void {
    const position = this.hooks.position();
    const behind = Math.max(0, now.lastSeq - position);
    this.hooks.progress?.(behind, position !== this.lastPosition);
    this.stillChecks = behind > 0 && position === this.lastPosition ? this.stillChecks + 1 : 0;
    this.lastPosition = position;
    if (this.stillChecks >= 2) {
      this.stillChecks = 0;
      this.hooks.stalled(behind);
    }
  }

  private async compare(): Promise<void> {
    if (this.nc.isClosed() || !this.known) return;
    try {
      const now = await streamIdentity(this.nc, this.stream);
      if (!now) {
        this.errorLog.line(`stream ${this.stream} does not exist: re-provisioning it`);
        await this.hooks.missing();
        return;
      }
      if (now.created === this.known.created) return this.checkProgress(now);
      const before = this.known;
      this.known = now;
      this.logger.warn(`stream ${this.stream} was re-created (created ${before.created}, now ${now.created}): its sequences start over`);
      this.hooks.recreated(now, before);
    } catch (err) {
      // Disconnected or JetStream busy: the next interval tries again.
      this.errorLog.line(`cannot check stream ${this.stream}: ${(err as Error).message}`);
    }
  }
}
