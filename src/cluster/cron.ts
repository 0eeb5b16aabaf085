import { DeliverPolicy, jetstream, jetstreamManager, RetentionPolicy, StorageType, type StreamConfig } from '@nats-io/jetstream';
import { type KV } from '@nats-io/kv';
import { Cron } from 'croner';
import {
  checkOptions,
  consoleLogger,
  encodeToken,
  ensureStream,
  ForgeBusError,
  integer,
  logger,
  oneOf,
  RateLimitedLog,
  type BusLogger,
  type ForgeBus,
  type OptionRules,
  openBucket,
} from '../bus/index.js';
import { LockTimeoutError, type Locks } from './locks.js';
import { ServerClock } from './server-clock.js';

/** KV bucket of tick claims: `<job>.<tick ms>`, created by the one node that runs the tick. */
export const CRON_CLAIMS_BUCKET = 'FORGE_CRON_CLAIMS';
/** Stream of run records, per job (`forge.cron.run.<job>`). */
export const CRON_RUNS_STREAM = 'FORGE_CRON_RUNS';
/** The longest step towards a far tick (well inside setTimeout's 24.8-day range; re-read on the server's clock each step). */
const MAX_TIMER_MS = 24 * 3600 * 1000;

export interface CronJobOptions {
  /** While the previous run of the job still runs (anywhere): `skip` the tick (default) or `allow` it. */
  overlap?: 'skip' | 'allow';
  /** Ticks missed while the whole cluster was down: `skip` (default), run the latest `once`, or run `all` (bounded by maxMissed). */
  missed?: 'skip' | 'once' | 'all';
  /** At most this many missed ticks are run with `missed: 'all'` (default 10). */
  maxMissed?: number;
  /** Lease of the job's overlap lock, renewed while it runs (default 30 s). */
  leaseMs?: number;
}

export const CRON_JOB_OPTION_RULES: OptionRules<CronJobOptions> = {
  overlap: oneOf('skip', 'allow'),
  missed: oneOf('skip', 'once', 'all'),
  maxMissed: integer(1, 1_000),
  leaseMs: integer(1_000, 3_600_000),
};

export interface CronSchedulerOptions {
  logger?: BusLogger;
}

export type CronOutcome = 'running' | 'succeeded' | 'failed' | 'skipped';

/** One tick of one job, as recorded. */
export interface CronRun {
  job: string;
  /** The scheduled time (ISO-8601): the tick's identity. */
  tick: string;
  node: string;
  startedAt: string;
  finishedAt?: string;
  outcome: CronOutcome;
  error?: string;
}

export interface CronContext {
  tick: Date;
  /** Fires when the job's overlap lease is lost (another node may start the next run). */
  signal: AbortSignal;
}

interface Job {
  name: string;
  schedule: string;
  cron: Cron;
  fn: (ctx: CronContext) => unknown;
  options: Required<CronJobOptions>;
  timer?: NodeJS.Timeout;
  lastRun?: CronRun;
}

const JOB_NAME = /^[a-z0-9][a-z0-9-]{0,63}$/;
/** A claim outlives any lateness a tick can have: ticks older than this are not looked at. */
const CLAIM_TTL_MS = 3_600_000;

/**
 * Cluster cron: each tick (job, scheduled time) runs once in the cluster. Every node computes the
 * ticks on the NATS server's clock and tries to claim each with `kv.create` on `<job>.<tick>`:
 * exactly one node succeeds, and it runs the tick. There is no leader, so the death of the node
 * that ran the last tick costs the next tick nothing. Overlap is a lock with a lease (see Locks);
 * runs are recorded in a stream, per job.
 */
export class CronScheduler {
  private readonly jobs = new Map<string, Job>();
  private readonly logger: BusLogger;
  private readonly errorLog: RateLimitedLog;
  private claims?: KV;
  private clock?: ServerClock;
  private running = false;
  private readonly inFlight = new Set<Promise<unknown>>();
  readonly stats = { claimed: 0, lostClaims: 0, skipped: 0, failed: 0 };

  constructor(
    private readonly bus: ForgeBus,
    private readonly locks: Locks,
    options: CronSchedulerOptions = {},
  ) {
    checkOptions('CronScheduler', options, { logger });
    this.logger = options.logger ?? consoleLogger;
    this.errorLog = new RateLimitedLog((m) => this.logger.warn(m));
  }

  /** Adds a job: `schedule` is a cron expression, with seconds as an optional first field. */
  schedule(name: string, schedule: string, fn: (ctx: CronContext) => unknown, options: CronJobOptions = {}): this {
    checkOptions(`cron job ${name}`, options, CRON_JOB_OPTION_RULES);
    if (!JOB_NAME.test(name)) throw new ForgeBusError('INVALID_CRON_JOB', `cron job name "${name}" must be 1-64 characters of [a-z0-9-]`);
    if (this.jobs.has(name)) throw new ForgeBusError('INVALID_CRON_JOB', `cron job "${name}" is scheduled twice`);
    let cron: Cron;
    try {
      cron = new Cron(schedule, { paused: true });
    } catch (err) {
      throw new ForgeBusError('INVALID_CRON_SCHEDULE', `cron job "${name}": "${schedule}" is not a cron expression: ${(err as Error).message}`);
    }
    this.jobs.set(name, { name, schedule, cron, fn, options: { overlap: 'skip', missed: 'skip', maxMissed: 10, leaseMs: 30_000, ...options } });
    if (this.running) void this.arm(this.jobs.get(name)!);
    return this;
  }

  async start(): Promise<void> {
    if (this.running) return;
    this.claims = await openBucket(this.bus.nc, CRON_CLAIMS_BUCKET, this.bus.replicas, { ttl: CLAIM_TTL_MS, history: 1 });
    await ensureStream(await jetstreamManager(this.bus.nc), runsStreamConfig(this.bus.replicas));
    this.clock = new ServerClock(this.claims, `clock.${encodeToken(this.bus.nodeId)}`);
    await this.clock.measure();
    this.running = true;
    for (const job of this.jobs.values()) await this.catchUp(job);
    for (const job of this.jobs.values()) void this.arm(job);
  }

  /** Stops scheduling; runs in progress finish first. */
  async stop(): Promise<void> {
    this.running = false;
    for (const job of this.jobs.values()) clearTimeout(job.timer);
    await Promise.allSettled([...this.inFlight]);
  }

  /** The jobs, their schedules, their last run seen by this node and their next tick. */
  list(): { name: string; schedule: string; lastRun?: CronRun; nextTick: string | null }[] {
    const now = this.clock?.nowSync() ?? Date.now();
    return [...this.jobs.values()].map((job) => ({
      name: job.name,
      schedule: job.schedule,
      lastRun: job.lastRun,
      nextTick: job.cron.nextRun(new Date(now))?.toISOString() ?? null,
    }));
  }

  /** The recorded runs of `job`, newest first (the stream keeps the last 1,000 per job). */
  async runs(job: string, limit = 500): Promise<CronRun[]> {
    const subject = runSubject(job);
    const jsm = await jetstreamManager(this.bus.nc);
    const info = await jsm.streams.info(CRON_RUNS_STREAM, { subjects_filter: subject }).catch(() => undefined);
    if (!info || (info.state.subjects?.[subject] ?? 0) === 0) return [];
    const consumer = await jetstream(this.bus.nc).consumers.get(CRON_RUNS_STREAM, { filter_subjects: subject, deliver_policy: DeliverPolicy.All });
    const byTick = new Map<string, CronRun>();
    let remaining = info.state.subjects![subject]!;
    for await (const msg of await consumer.fetch({ max_messages: remaining, expires: 5_000 })) {
      const run = msg.json<CronRun>();
      byTick.set(`${run.tick}`, run);
      if (--remaining === 0) break;
    }
    return [...byTick.values()].sort((a, b) => b.tick.localeCompare(a.tick)).slice(0, limit);
  }

  /** Sets the timer for the job's next tick (on the server's clock). */
  private async arm(job: Job): Promise<void> {
    if (!this.running) return;
    let now: number;
    try {
      now = await this.clock!.now();
    } catch (err) {
      this.errorLog.line(`cron: cannot read the server's clock (${(err as Error).message}); retrying`);
      now = this.clock!.nowSync();
    }
    const next = job.cron.nextRun(new Date(now));
    if (!next) return;
    clearTimeout(job.timer);
    const delay = next.getTime() - now;
    // Node fires a timer longer than 2^31-1 ms (24.8 days) after 1 ms: a monthly job would run at
    // once, and again, in a loop. A far tick is approached in steps instead.
    if (delay > MAX_TIMER_MS) {
      job.timer = setTimeout(() => void this.arm(job), MAX_TIMER_MS);
      return;
    }
    job.timer = setTimeout(() => {
      const run = this.fire(job, next).finally(() => this.inFlight.delete(run));
      this.inFlight.add(run);
      void this.arm(job);
    }, Math.max(0, delay));
  }

  /** Claims the tick; runs it if this node won the claim. */
  private async fire(job: Job, tick: Date): Promise<void> {
    const claimKey = `${job.name}.${tick.getTime()}`;
    try {
      await this.claims!.create(claimKey, JSON.stringify({ node: this.bus.nodeId }));
    } catch (err) {
      // Taken by another node (the normal case on all but one), or the bucket is unreachable.
      if (!/exists|wrong last sequence|10071/.test((err as Error).message)) this.errorLog.line(`cron ${job.name}: cannot claim ${tick.toISOString()}: ${(err as Error).message}`);
      this.stats.lostClaims++;
      return;
    }
    this.stats.claimed++;
    const run: CronRun = { job: job.name, tick: tick.toISOString(), node: this.bus.nodeId, startedAt: new Date(this.clock!.nowSync()).toISOString(), outcome: 'running' };
    const execute = async (signal: AbortSignal) => {
      await this.record(run);
      try {
        await job.fn({ tick, signal });
        run.outcome = 'succeeded';
      } catch (err) {
        run.outcome = 'failed';
        run.error = (err as Error).message;
        this.stats.failed++;
        this.logger.warn(`cron ${job.name} (${run.tick}) failed: ${run.error}`);
      }
    };
    try {
      if (job.options.overlap === 'allow') await execute(new AbortController().signal);
      else await this.locks.withLock(`cron.${job.name}`, ({ signal }) => execute(signal), { ttlMs: job.options.leaseMs, waitMs: 0 });
    } catch (err) {
      if (!(err instanceof LockTimeoutError)) throw err;
      run.outcome = 'skipped';
      run.error = `the previous run still runs (on ${err.holder})`;
      this.stats.skipped++;
    }
    run.finishedAt = new Date(this.clock!.nowSync()).toISOString();
    job.lastRun = run;
    await this.record(run);
  }

  /** Ticks missed while the whole cluster was down, run according to the job's `missed` policy. */
  private async catchUp(job: Job): Promise<void> {
    if (job.options.missed === 'skip') return;
    const last = (await this.runs(job.name, 1))[0];
    if (!last) return;
    const now = this.clock!.nowSync();
    const from = Math.max(Date.parse(last.tick), now - CLAIM_TTL_MS + 60_000);
    const missed = job.cron.nextRuns(job.options.maxMissed + 1, new Date(from)).filter((t) => t.getTime() < now);
    const toRun = job.options.missed === 'once' ? missed.slice(-1) : missed.slice(-job.options.maxMissed);
    for (const tick of toRun) await this.fire(job, tick);
  }

  private async record(run: CronRun): Promise<void> {
    try {
      await jetstream(this.bus.nc).publish(runSubject(run.job), JSON.stringify(run));
    } catch (err) {
      this.errorLog.line(`cron ${run.job}: cannot record run ${run.tick}: ${(err as Error).message}`);
    }
  }
}

const runSubject = (job: string) => `forge.cron.run.${encodeToken(job)}`;

function runsStreamConfig(replicas: number): StreamConfig {
  return {
    name: CRON_RUNS_STREAM,
    subjects: ['forge.cron.run.>'],
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
    max_msgs_per_subject: 2_000,
    num_replicas: replicas,
  } as StreamConfig;
}
