import { randomUUID } from 'node:crypto';
import { jetstreamManager, type JsMsg } from '@nats-io/jetstream';
import type { KV } from '@nats-io/kv';
import type { Msg, Subscription } from '@nats-io/transport-node';
import { agreeOnSettings, checkOptions, describeNatsError, inboxFor, openBucket, retryTransient, consoleLogger, EventPublisher, ForgeBusConfigError, ForgeBusError, integer, logger, millis, nonEmptyString, type OptionRules, RateLimitedLog, type BusLogger, type ForgeBus, type RepoRef } from '../bus/index.js';
import { PartitionWorker } from './partition-worker.js';
import { PermanentWriteError, WriteFailedError, WriteQueueUnavailableError, WriteTimeoutError, WriteTooLargeError } from './errors.js';
import { DEFAULT_PARTITIONS, partitionConsumerName, partitionOf, writeSubject, WRITES_STREAM } from './partitions.js';
import { ensureBucketTtl, ensureWriteQueue, writeQueueSettings } from './provisioning.js';

/** What a handler gets for one write. */
export interface RepoWriteContext<A = unknown> {
  writeId: string;
  repo: RepoRef;
  operation: string;
  args: A;
  /** 1 for the first attempt; more after a worker died or a retry. */
  deliveryCount: number;
  /** FORGE_REPO_WRITES sequence: the acceptance order (increasing within a repository). */
  seq: number;
  /** When the queue accepted the write (ISO). Deterministic handlers build on it (commit dates). */
  acceptedAt: string;
  /** Tells the server the write is still being worked on (the queue also does it on a timer). */
  working(): void;
}

export type RepoWriteHandler<A = any, R = unknown> = (ctx: RepoWriteContext<A>) => Promise<R> | R;

export interface RepoWriteQueueOptions {
  /** Partitions (cluster-wide; every node must use the same number). Default 32. */
  partitions?: number;
  ackWaitMs?: number;
  maxDeliver?: number;
  /** Pause before a failed write is retried (default 250 ms). */
  retryDelayMs?: number;
  /** Default time `submit` waits for the result (default 60 s). */
  timeoutMs?: number;
  /** How long results are kept for late or repeated lookups (default 15 min). */
  resultTtlMs?: number;
  /** How long writes that failed for good stay listed for operators (default 7 days): the list stays bounded. */
  failureTtlMs?: number;
  logger?: BusLogger;
}

export const REPO_WRITE_QUEUE_OPTION_RULES: OptionRules<RepoWriteQueueOptions> = {
  partitions: integer(1, 1024),
  ackWaitMs: millis(100),
  maxDeliver: integer(1, 1_000),
  retryDelayMs: millis(0),
  timeoutMs: millis(1),
  resultTtlMs: millis(1_000),
  failureTtlMs: integer(1_000),
  logger,
};

export const SUBMIT_OPTION_RULES: OptionRules<SubmitOptions> = {
  writeId: nonEmptyString,
  timeoutMs: millis(1),
};

export interface SubmitOptions {
  /** Give an id to make a retried submit idempotent (the queue stores it once). */
  writeId?: string;
  timeoutMs?: number;
}

interface WriteMessage {
  id: string;
  repo: RepoRef;
  operation: string;
  args: unknown;
  acceptedAt: string;
  replyTo: string;
}

type Outcome = { ok: true; result: unknown } | { ok: false; error: string; deliveries: number; status?: number };

export interface FailedWrite {
  writeId: string;
  repo: RepoRef;
  operation: string;
  args: unknown;
  error: string;
  deliveries: number;
  failedAt: string;
}

export interface PartitionStats {
  applied: number;
  failed: number;
  redelivered: number;
  inFlight: number;
  queueWaitMsTotal: number;
  applyMsTotal: number;
}

export interface RepoWriteQueueStats {
  submitted: number;
  applied: number;
  failed: number;
  redelivered: number;
  inFlight: number;
  malformed: number;
  /** Times a partition worker re-opened its consumer after it ended or failed (deleted, leader change …). */
  workerRestarts: number;
  /** Mean ms between acceptance and the start of the (last) attempt. */
  meanQueueWaitMs: number;
  /** Mean ms a handler ran. */
  meanApplyMs: number;
  partitions: Record<number, PartitionStats>;
}

/** A write run by this process's workers, as told to `onApplied` listeners. */
export interface RanWrite {
  operation: string;
  /** How long its handler ran. */
  seconds: number;
  /** `applied`; `failed` for good (permanent, or the last delivery); `retried` (delivered again). */
  outcome: 'applied' | 'failed' | 'retried';
}

export const RESULTS_BUCKET = 'FORGE_WRITE_RESULTS';
/** How long an outcome's record is retried while its bucket has no leader. */
const RECORD_BUDGET_MS = 30_000;
export const FAILURES_BUCKET = 'FORGE_WRITE_FAILURES';
const decoder = new TextDecoder();

/**
 * Per-repository serialized writes through JetStream (see docs/repo-writes.md).
 *
 * `submit` publishes the write on its repository's partition subject with the write id as
 * Nats-Msg-Id and waits for its outcome. Workers (`startWorkers`) pull from every partition's
 * durable consumer; max_ack_pending = 1 makes the server hand out one write per partition at a
 * time, cluster-wide. A worker records the outcome in a results bucket before it acks, so a
 * write redelivered after a crash between the two is answered from the record, not applied again.
 */
export class RepoWriteQueue {
  readonly partitions: number;
  private readonly ackWaitMs: number;
  private readonly maxDeliver: number;
  private readonly retryDelayMs: number;
  private readonly timeoutMs: number;
  private readonly resultTtlMs: number;
  private readonly failureTtlMs: number;
  private readonly logger: BusLogger;
  private readonly errorLog: RateLimitedLog;
  private readonly handlers = new Map<string, RepoWriteHandler>();
  private readonly publisher: EventPublisher;
  private readonly waiting = new Map<string, (outcome: Outcome) => void>();
  private readonly inbox: string;
  private inboxSub?: Subscription;
  private results?: KV;
  private failures?: KV;
  private readonly workers: PartitionWorker[] = [];
  private stopping = false;
  private readonly counters = { submitted: 0, malformed: 0 };
  private readonly appliedListeners = new Set<(write: RanWrite) => void>();
  private readonly perPartition = new Map<number, PartitionStats>();

  constructor(
    private readonly bus: ForgeBus,
    options: RepoWriteQueueOptions = {},
  ) {
    checkOptions('RepoWriteQueue', options, REPO_WRITE_QUEUE_OPTION_RULES);
    this.partitions = options.partitions ?? DEFAULT_PARTITIONS;
    this.ackWaitMs = options.ackWaitMs ?? 30_000;
    this.maxDeliver = options.maxDeliver ?? 5;
    this.retryDelayMs = options.retryDelayMs ?? 250;
    this.timeoutMs = options.timeoutMs ?? 60_000;
    this.resultTtlMs = options.resultTtlMs ?? 15 * 60_000;
    this.failureTtlMs = options.failureTtlMs ?? 7 * 24 * 3_600_000;
    this.logger = options.logger ?? consoleLogger;
    this.errorLog = new RateLimitedLog((m) => this.logger.error(m));
    this.publisher = new EventPublisher(bus.nc, { stream: WRITES_STREAM });
    this.inbox = inboxFor(bus.nc);
  }

  /** Provisions the stream, the partition consumers and the buckets. Call once at start. */
  async init(): Promise<void> {
    // Before provisioning: a node with another partition count must not touch the consumers.
    await agreeOnSettings(this.bus.nc, writeQueueSettings({ partitions: this.partitions, ackWaitMs: this.ackWaitMs, maxDeliver: this.maxDeliver, resultTtlMs: this.resultTtlMs, failureTtlMs: this.failureTtlMs }));
    await ensureWriteQueue(this.bus.nc, { partitions: this.partitions, ackWaitMs: this.ackWaitMs, maxDeliver: this.maxDeliver, replicas: this.bus.replicas });
    this.results = await openBucket(this.bus.nc, RESULTS_BUCKET, this.bus.replicas, { ttl: this.resultTtlMs });
    this.failures = await openBucket(this.bus.nc, FAILURES_BUCKET, this.bus.replicas, { history: 1, ttl: this.failureTtlMs });
    // NATS keeps an existing bucket's TTL: apply a deliberate change (npm run settings -- set).
    await ensureBucketTtl(this.bus.nc, RESULTS_BUCKET, this.resultTtlMs);
    await ensureBucketTtl(this.bus.nc, FAILURES_BUCKET, this.failureTtlMs);
    this.inboxSub = this.bus.nc.subscribe(`${this.inbox}.*`, {
      callback: (err, msg) => {
        if (!err) this.onOutcome(msg);
      },
    });
  }

  /** Registers the handler of an operation (each node that applies writes needs the same set). */
  handle<A = any, R = unknown>(operation: string, handler: RepoWriteHandler<A, R>): this {
    if (this.handlers.has(operation)) throw new ForgeBusConfigError(`a handler for repository write "${operation}" is already registered`);
    this.handlers.set(operation, handler as RepoWriteHandler);
    return this;
  }

  /**
   * Queues a write and resolves with its handler's result; rejects with WriteFailedError,
   * WriteTimeoutError or WriteQueueUnavailableError. A submitter that goes away does not stop
   * the write.
   */
  async submit<R = unknown>(repo: RepoRef, operation: string, args: unknown, options: SubmitOptions = {}): Promise<R> {
    checkOptions('RepoWriteQueue.submit', options, SUBMIT_OPTION_RULES);
    if (!this.results) throw new WriteQueueUnavailableError('the queue is not initialised: call init() first');
    const id = options.writeId ?? randomUUID();
    const message: WriteMessage = { id, repo, operation, args, acceptedAt: new Date().toISOString(), replyTo: `${this.inbox}.${id}` };
    const data = Buffer.from(JSON.stringify(message));
    // Headers and subject take a little of max_payload too.
    const maxBytes = (this.bus.nc.info?.max_payload ?? 1024 * 1024) - 1024;
    if (data.length > maxBytes) throw new WriteTooLargeError(data.length, maxBytes);
    const outcome = new Promise<Outcome>((resolve) => this.waiting.set(id, resolve));
    this.counters.submitted++;
    let duplicate: boolean;
    try {
      ({ duplicate } = await this.publisher.publishRaw(writeSubject(repo, this.partitions), id, data));
    } catch (err) {
      this.waiting.delete(id);
      throw new WriteQueueUnavailableError((err as Error).message, { cause: err });
    }
    const timeoutMs = options.timeoutMs ?? this.timeoutMs;
    let timer: NodeJS.Timeout | undefined;
    let poll: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), timeoutMs);
    });
    // A repeated submit of a write id the queue already holds: its outcome goes to the first
    // submitter, so this one watches the recorded outcome instead.
    const recorded = duplicate
      ? new Promise<Outcome>((resolve) => {
          poll = setInterval(() => void this.recordedOutcome(id).then((o) => o && resolve(o)), 100);
        })
      : new Promise<never>(() => undefined);
    let result = await Promise.race([outcome, timedOut, recorded]);
    clearTimeout(timer);
    clearInterval(poll);
    this.waiting.delete(id);
    // The reply may have been lost (e.g. a reconnect): the recorded outcome is authoritative.
    if (result === 'timeout') result = (await this.recordedOutcome(id)) ?? 'timeout';
    if (result === 'timeout') throw new WriteTimeoutError(id, timeoutMs);
    if (!result.ok) throw new WriteFailedError(id, operation, result.error, result.deliveries, result.status);
    return result.result as R;
  }

  /** Writes that failed for good, for operators (newest last). */
  async listFailures(): Promise<FailedWrite[]> {
    const failures = this.failures!;
    const list: FailedWrite[] = [];
    for await (const key of await failures.keys()) {
      const entry = await failures.get(key);
      if (entry?.value.length) list.push(entry.json<FailedWrite>());
    }
    return list.sort((a, b) => a.failedAt.localeCompare(b.failedAt));
  }

  /** Writes waiting in each partition (not yet handed to a worker), from the server. */
  async queued(): Promise<Record<number, number>> {
    const jsm = await jetstreamManager(this.bus.nc);
    const depths = await Promise.all(
      Array.from({ length: this.partitions }, async (_, p) => {
        const info = await jsm.consumers.info(WRITES_STREAM, partitionConsumerName(p));
        return [p, info.num_pending] as const;
      }),
    );
    return Object.fromEntries(depths);
  }

  /** Starts pulling from every partition; this process then applies writes. */
  async startWorkers(): Promise<void> {
    if (this.workers.length > 0) return;
    const provisioning = { partitions: this.partitions, ackWaitMs: this.ackWaitMs, maxDeliver: this.maxDeliver, replicas: this.bus.replicas };
    for (let partition = 0; partition < this.partitions; partition++) {
      const worker = new PartitionWorker(this.bus.nc, partition, provisioning, (msg) => this.apply(partition, msg), this.logger, this.errorLog);
      this.workers.push(worker);
      worker.start();
    }
  }

  get stats(): RepoWriteQueueStats {
    const partitions = Object.fromEntries(this.perPartition);
    const all = [...this.perPartition.values()];
    const sum = (f: (p: PartitionStats) => number) => all.reduce((a, p) => a + f(p), 0);
    const attempts = sum((p) => p.applied + p.failed + p.redelivered);
    return {
      submitted: this.counters.submitted,
      malformed: this.counters.malformed,
      workerRestarts: this.workers.reduce((n, w) => n + w.restarts, 0),
      applied: sum((p) => p.applied),
      failed: sum((p) => p.failed),
      redelivered: sum((p) => p.redelivered),
      inFlight: sum((p) => p.inFlight),
      meanQueueWaitMs: attempts ? sum((p) => p.queueWaitMsTotal) / attempts : 0,
      meanApplyMs: attempts ? sum((p) => p.applyMsTotal) / attempts : 0,
      partitions,
    };
  }

  /** Stops pulling (the write in progress finishes first) and stops waiting for outcomes. */
  async stop(): Promise<void> {
    this.stopping = true;
    await Promise.allSettled(this.workers.splice(0).map((w) => w.stop()));
    this.inboxSub?.unsubscribe();
    this.publisher.close();
  }

  private partitionStats(partition: number): PartitionStats {
    let stats = this.perPartition.get(partition);
    if (!stats) {
      stats = { applied: 0, failed: 0, redelivered: 0, inFlight: 0, queueWaitMsTotal: 0, applyMsTotal: 0 };
      this.perPartition.set(partition, stats);
    }
    return stats;
  }

  private async apply(partition: number, msg: JsMsg): Promise<void> {
    let write: WriteMessage;
    try {
      write = JSON.parse(decoder.decode(msg.data)) as WriteMessage;
      if (typeof write.id !== 'string' || typeof write.operation !== 'string' || !write.repo || typeof write.replyTo !== 'string') {
        throw new ForgeBusError('MALFORMED_WRITE', 'missing id, operation, repo or replyTo');
      }
    } catch (err) {
      this.counters.malformed++;
      this.errorLog.line(`dropped malformed repository write on ${msg.subject}: ${(err as Error).message}`);
      msg.term();
      return;
    }
    const stats = this.partitionStats(partition);
    const deliveries = msg.info.deliveryCount;
    if (deliveries > 1) stats.redelivered++;

    // Already applied (the worker died after recording the outcome, before its ack)?
    const recorded = await this.recordedOutcome(write.id);
    if (recorded) {
      this.reply(write, recorded);
      msg.ack();
      return;
    }
    const handler = this.handlers.get(write.operation);
    if (!handler) {
      stats.failed++;
      await this.finish(msg, write, { ok: false, error: `no handler for operation "${write.operation}" on this worker`, deliveries });
      return;
    }
    stats.inFlight++;
    stats.queueWaitMsTotal += Math.max(0, Date.now() - Date.parse(write.acceptedAt));
    const heartbeat = setInterval(() => msg.working(), Math.max(250, Math.floor(this.ackWaitMs / 3)));
    const started = performance.now();
    try {
      const result = await handler({
        writeId: write.id,
        repo: write.repo,
        operation: write.operation,
        args: write.args,
        deliveryCount: deliveries,
        seq: msg.seq,
        acceptedAt: write.acceptedAt,
        working: () => msg.working(),
      });
      stats.applyMsTotal += performance.now() - started;
      stats.applied++;
      this.notifyApplied(write.operation, started, 'applied');
      await this.finish(msg, write, { ok: true, result: result ?? null });
    } catch (err) {
      stats.applyMsTotal += performance.now() - started;
      const error = (err as Error)?.message ?? String(err);
      const permanent = err instanceof PermanentWriteError;
      if (permanent || deliveries >= this.maxDeliver) {
        stats.failed++;
        this.notifyApplied(write.operation, started, 'failed');
        await this.finish(msg, write, { ok: false, error, deliveries, status: permanent ? err.status : undefined });
      } else {
        this.errorLog.line(`repository write ${write.id} (${write.operation} on ${write.repo.owner}/${write.repo.name}) failed, attempt ${deliveries}/${this.maxDeliver}: ${error}`);
        this.notifyApplied(write.operation, started, 'retried');
        msg.nak(this.retryDelayMs);
      }
    } finally {
      clearInterval(heartbeat);
      stats.inFlight--;
    }
  }

  /**
   * Adds a listener told of every write this process's workers ran: its operation, how long the
   * handler took and how it ended (applied, failed for good, or to be retried). For metrics; a
   * listener that throws is ignored.
   */
  onApplied(listener: (write: RanWrite) => void): () => void {
    this.appliedListeners.add(listener);
    return () => this.appliedListeners.delete(listener);
  }

  private notifyApplied(operation: string, started: number, outcome: RanWrite['outcome']): void {
    if (this.appliedListeners.size === 0) return;
    const ran: RanWrite = { operation, seconds: (performance.now() - started) / 1000, outcome };
    for (const listener of this.appliedListeners) {
      try {
        listener(ran);
      } catch {
        // a metrics listener must not fail a write
      }
    }
  }

  /** Records the outcome (before the ack: that is what makes a redelivery harmless), answers, acks. */
  private async finish(msg: JsMsg, write: WriteMessage, outcome: Outcome): Promise<void> {
    // A bucket electing a leader (its server died) answers nothing for seconds: wait it out, the
    // write held (working) rather than re-applied.
    const record = <T>(put: () => Promise<T>) => retryTransient(put, RECORD_BUDGET_MS, () => msg.working());
    try {
      await record(() => this.results!.put(write.id, JSON.stringify(outcome)));
      // Permanent failures (conflicts, bad requests) are the submitter's business; the others
      // (a handler that keeps failing, no handler) are recorded for operators.
      if (!outcome.ok && outcome.status === undefined) {
        const failure: FailedWrite = {
          writeId: write.id,
          repo: write.repo,
          operation: write.operation,
          args: write.args,
          error: outcome.error,
          deliveries: outcome.deliveries,
          failedAt: new Date().toISOString(),
        };
        await record(() => this.failures!.put(write.id, JSON.stringify(failure)));
        this.logger.warn(`repository write ${write.id} (${write.operation} on ${write.repo.owner}/${write.repo.name}) failed for good: ${outcome.error}`);
      }
    } catch (err) {
      // Without the record a redelivery could apply the write twice: let it be redelivered
      // and rely on the handler's idempotency rather than ack an unrecorded outcome.
      this.errorLog.line(`cannot record the outcome of write ${write.id}: ${describeNatsError(err)}`);
      msg.nak(this.retryDelayMs);
      return;
    }
    this.reply(write, outcome);
    // A final failure is acked too: it is recorded, and in a WorkQueue stream only an ack
    // removes the message (a term would leave it stored for ever).
    msg.ack();
  }

  private reply(write: WriteMessage, outcome: Outcome): void {
    try {
      this.bus.nc.publish(write.replyTo, JSON.stringify(outcome));
    } catch {
      // The submitter finds the recorded outcome itself when the reply does not come.
    }
  }

  private onOutcome(msg: Msg): void {
    const id = msg.subject.slice(this.inbox.length + 1);
    const resolve = this.waiting.get(id);
    if (!resolve) return;
    try {
      resolve(JSON.parse(decoder.decode(msg.data)) as Outcome);
    } catch {
      // ignore an unreadable reply; the recorded outcome is looked up on timeout
    }
  }

  private async recordedOutcome(id: string): Promise<Outcome | undefined> {
    const entry = await this.results!.get(id).catch(() => null);
    return entry && entry.value.length > 0 ? entry.json<Outcome>() : undefined;
  }
}
