import { randomUUID } from 'node:crypto';
import { type KV, type KvEntry } from '@nats-io/kv';
import {
  boolean,
  checkOptions,
  consoleLogger,
  ForgeBusError,
  integer,
  logger,
  RateLimitedLog,
  type BusLogger,
  type ForgeBus,
  type OptionRules,
  openBucket,
} from '../bus/index.js';
import type { Membership } from './membership.js';
import { NodeControlError, NodeControlTimeoutError, UnknownNodeError, type NodeControl } from './node-control.js';

/** KV bucket of the cluster's task records: key `task.<id>`. */
export const TASKS_BUCKET = 'FORGE_TASKS';

export type TaskState = 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled';
const FINISHED: ReadonlySet<TaskState> = new Set(['succeeded', 'failed', 'cancelled']);

/** A task as every node sees it (the record in FORGE_TASKS). */
export interface TaskRecord {
  id: string;
  kind: string;
  /** `owner/name`, when the task works on one repository. */
  repo?: string;
  /** The node that runs it. */
  node: string;
  /** Who started it. */
  user: string;
  state: TaskState;
  /** 0 to 100, as the task reports it. */
  progress: number;
  createdAt: string;
  startedAt?: string;
  finishedAt?: string;
  error?: string;
  /** The survivor that marked it failed after its node died (crash recovery). */
  recoveredBy?: string;
}

export interface TaskContext {
  id: string;
  /** Fires when the task is cancelled (or its node shuts down, or another node marked it finished). */
  signal: AbortSignal;
  /** Reports progress (0–100); written to the record, coalesced. */
  progress(n: number): void;
}

export interface StartTaskOptions {
  /** Default: a random UUID. Letters, digits, "-" and "_". */
  id?: string;
  repo?: string;
  user: string;
  /**
   * The work. On abort it must stop, kill its child processes and remove partial results before
   * it settles: the task reads `cancelled` only once it has.
   */
  run: (ctx: TaskContext) => Promise<unknown>;
}

/** Called by the one survivor that marked a dead node's task failed: clean up after it. */
export type TaskRecoveryHandler = (task: TaskRecord) => Promise<void> | void;

export interface TaskRegistryOptions {
  /** How long a cancel waits for the task's node to answer (default: NodeControl's, 2 s; the task's own clean-up may take longer). */
  cancelTimeoutMs?: number;
  /**
   * Recover the tasks of members that expire (default true). Off: only recover() does it, e.g.
   * when one designated process should act, or in tests that race several registries.
   */
  followDepartures?: boolean;
  logger?: BusLogger;
}

export const TASK_REGISTRY_OPTION_RULES: OptionRules<TaskRegistryOptions> = {
  cancelTimeoutMs: integer(10, 600_000),
  followDepartures: boolean,
  logger,
};

/** No task of that id (404-like). */
export class TaskNotFoundError extends ForgeBusError {
  constructor(readonly taskId: string) {
    super('TASK_NOT_FOUND', `no task "${taskId}"`);
  }
}

/** The task already finished: nothing to cancel (409-like). */
export class TaskFinishedError extends ForgeBusError {
  constructor(
    readonly taskId: string,
    readonly state: TaskState,
  ) {
    super('TASK_FINISHED', `task "${taskId}" already finished (${state})`);
  }
}

/** The task's node did not confirm the cancel in time (504-like): it may still stop. */
export class TaskCancelTimeoutError extends ForgeBusError {
  constructor(
    readonly taskId: string,
    readonly nodeId: string,
  ) {
    super('TASK_CANCEL_TIMEOUT', `node "${nodeId}" did not confirm cancelling task "${taskId}" in time; GET the task to see whether it stopped`);
  }
}

/** The registry is not open, or is closing. */
export class TaskRegistryClosedError extends ForgeBusError {
  constructor() {
    super('TASK_REGISTRY_CLOSED', 'the task registry is not open (call open() first) or is shutting down');
  }
}

const ID = /^[A-Za-z0-9_-]{1,128}$/;
const key = (id: string) => `task.${id}`;
const isWrongRevision = (err: unknown) => /wrong last sequence|10071/.test(String((err as Error)?.message ?? err));

interface Running {
  controller: AbortController;
  /** Why it was aborted: decides the final state. */
  abortedFor?: 'cancel' | 'shutdown' | 'finished-elsewhere';
  settled: Promise<TaskRecord>;
}

/**
 * Long-running work registered cluster-wide. The record lives in the KV bucket FORGE_TASKS, so
 * any node lists every task; the work runs on the node that started it, with an AbortSignal.
 * Every state change is a compare-and-swap on the record's revision, and a finished record is
 * never changed again: a late `succeeded` cannot overwrite a `cancelled` or a crash recovery's
 * `failed`. Cancel reaches the running node over NodeControl (`tasks.cancel`). When a member
 * expires (died), exactly one survivor wins the swap on each of its unfinished records and marks
 * it failed, naming the node.
 */
export class TaskRegistry {
  readonly nodeId: string;
  private readonly logger: BusLogger;
  private readonly errorLog: RateLimitedLog;
  private readonly running = new Map<string, Running>();

  /** Tasks running in this process now (for the membership record's counters). */
  get runningHere(): number {
    return this.running.size;
  }
  /** Final records of tasks started here, kept a minute after they settle (for settled()). */
  private readonly outcomes = new Map<string, Promise<TaskRecord>>();
  private readonly recoveryHandlers = new Map<string, TaskRecoveryHandler>();
  private kv?: KV;
  private unsubscribe?: () => void;
  private closing = false;
  readonly stats = { started: 0, succeeded: 0, failed: 0, cancelled: 0, recovered: 0, departuresHandled: 0 };

  constructor(
    private readonly bus: ForgeBus,
    private readonly membership: Membership,
    private readonly control: NodeControl,
    private readonly options: TaskRegistryOptions = {},
  ) {
    checkOptions('TaskRegistry', options, TASK_REGISTRY_OPTION_RULES);
    this.nodeId = bus.nodeId;
    this.logger = options.logger ?? consoleLogger;
    this.errorLog = new RateLimitedLog((m) => this.logger.warn(m));
    // Registered now, so NodeControl.start() (before or after open()) answers them.
    control
      .handle('tasks.cancel', (payload) => this.cancelHere(String((payload as { id?: unknown } | undefined)?.id ?? '')))
      .handle('tasks.list', () => ({ running: [...this.running.keys()].sort() }));
  }

  /** Opens the bucket and follows departures (call after membership.start()). */
  async open(): Promise<void> {
    if (this.kv) return;
    this.kv = await openBucket(this.bus.nc, TASKS_BUCKET, this.bus.replicas, { history: 1 }, { compareAndSwap: { warn: (m) => this.logger.warn(m) } });
    await this.recoverEarlierSelf();
    if (this.options.followDepartures === false) return;
    this.unsubscribe = this.membership.onChange((change) => {
      if (change.type === 'left' && change.reason === 'expired') void this.recoverNode(change.id).catch(() => undefined);
    }).unsubscribe;
  }

  /**
   * Stops following departures and aborts the tasks running here; they are marked failed
   * ("node … shut down while running it"), since a clean shutdown sends no departure to recover.
   */
  async close(): Promise<void> {
    this.closing = true;
    this.unsubscribe?.();
    const settling = [...this.running.values()].map((r) => {
      r.abortedFor ??= 'shutdown';
      r.controller.abort(new ForgeBusError('TASK_NODE_SHUTDOWN', `node ${this.nodeId} shut down`));
      return r.settled.catch(() => undefined);
    });
    await Promise.all(settling);
  }

  /** What a survivor does after it marked a dead node's task of `kind` failed (e.g. remove partial results). */
  onRecovered(kind: string, handler: TaskRecoveryHandler): this {
    this.recoveryHandlers.set(kind, handler);
    return this;
  }

  /** Registers a task and runs it here; resolves with its record once it is `running`. */
  async start(kind: string, options: StartTaskOptions): Promise<TaskRecord> {
    const kv = this.bucket();
    if (this.closing) throw new TaskRegistryClosedError();
    const id = options.id ?? randomUUID();
    if (!ID.test(id)) throw new ForgeBusError('INVALID_TASK_ID', `task id "${id}" must be 1 to 128 letters, digits, "-" or "_"`);
    const record: TaskRecord = {
      id,
      kind,
      ...(options.repo === undefined ? {} : { repo: options.repo }),
      node: this.nodeId,
      user: options.user,
      state: 'queued',
      progress: 0,
      createdAt: new Date().toISOString(),
    };
    try {
      await kv.create(key(id), JSON.stringify(record));
    } catch (err) {
      throw new ForgeBusError('TASK_EXISTS', `a task "${id}" exists already`, { cause: err });
    }
    const controller = new AbortController();
    let resolveSettled!: (r: TaskRecord) => void;
    const entry: Running = { controller, settled: new Promise((r) => (resolveSettled = r)) };
    this.running.set(id, entry);
    this.stats.started++;
    let started: TaskRecord | undefined;
    try {
      started = await this.transition(id, () => ({ state: 'running', startedAt: new Date().toISOString() }));
    } catch (err) {
      this.running.delete(id);
      await this.bucket().delete(key(id)).catch(() => undefined);
      throw err;
    }
    this.outcomes.set(id, entry.settled);
    void this.execute(id, options.run, entry).then(resolveSettled, (err: Error) => {
      this.errorLog.line(`task ${id} ended, but its end could not be recorded: ${err.message}`);
      resolveSettled({ ...record, state: 'failed', error: err.message });
    });
    void entry.settled.then(() => setTimeout(() => this.outcomes.delete(id), 60_000).unref());
    return started ?? record;
  }

  /** Resolves with the final record of a task started by this process (undefined if it was not, or settled over a minute ago). */
  settled(id: string): Promise<TaskRecord> | undefined {
    return this.outcomes.get(id);
  }

  /** Whether the task runs in this process. */
  runsHere(id: string): boolean {
    return this.running.has(id);
  }

  async get(id: string): Promise<TaskRecord | undefined> {
    if (!ID.test(id)) return undefined;
    const entry = await this.bucket().get(key(id));
    return entry && entry.operation === 'PUT' ? entry.json<TaskRecord>() : undefined;
  }

  /** Every task of the cluster, newest first. */
  async list(): Promise<TaskRecord[]> {
    const kv = this.bucket();
    const ids: string[] = [];
    for await (const k of await kv.keys('task.>')) ids.push(k.slice('task.'.length));
    const records = await Promise.all(ids.map((id) => this.get(id)));
    return records.filter((r): r is TaskRecord => r !== undefined).sort((a, b) => b.createdAt.localeCompare(a.createdAt) || a.id.localeCompare(b.id));
  }

  /**
   * Cancels the task on whichever node runs it; resolves with its final record once the work has
   * settled there. TaskNotFoundError, TaskFinishedError, TaskCancelTimeoutError.
   */
  async cancel(id: string): Promise<TaskRecord> {
    const record = await this.get(id);
    if (!record) throw new TaskNotFoundError(id);
    if (FINISHED.has(record.state)) throw new TaskFinishedError(id, record.state);
    if (record.node === this.nodeId) return this.cancelHere(id);
    try {
      return await this.control.request<TaskRecord>(record.node, 'tasks.cancel', { id }, { timeoutMs: this.options.cancelTimeoutMs });
    } catch (err) {
      if (err instanceof NodeControlError && err.remoteCode === 'TASK_FINISHED') {
        const now = await this.get(id);
        throw new TaskFinishedError(id, now?.state ?? 'cancelled');
      }
      if (err instanceof NodeControlError && err.remoteCode === 'TASK_NOT_FOUND') throw new TaskNotFoundError(id);
      if (err instanceof NodeControlTimeoutError) throw new TaskCancelTimeoutError(id, record.node);
      if (err instanceof UnknownNodeError) {
        // Its node is gone: nobody will cancel it; record what happened (as crash recovery would).
        const { record: recovered } = await this.recoverTask(id, record.node);
        throw new TaskFinishedError(id, recovered?.state ?? 'failed');
      }
      throw err;
    }
  }

  /** The `tasks.cancel` handler, and cancel of a local task. */
  private async cancelHere(id: string): Promise<TaskRecord> {
    const running = this.running.get(id);
    if (running) {
      running.abortedFor ??= 'cancel';
      running.controller.abort(new ForgeBusError('TASK_CANCELLED', `task ${id} was cancelled`));
      return running.settled;
    }
    const record = await this.get(id);
    if (!record) throw new TaskNotFoundError(id);
    if (FINISHED.has(record.state)) throw new TaskFinishedError(id, record.state);
    // Recorded as ours but not running in this process: an earlier process of this node id died.
    const marked = await this.transition(id, () => ({ state: 'cancelled', finishedAt: new Date().toISOString(), error: `node ${this.nodeId} restarted: the task was no longer running` }));
    if (!marked || marked.state !== 'cancelled') throw new TaskFinishedError(id, marked?.state ?? 'failed');
    return marked;
  }

  private async execute(id: string, run: StartTaskOptions['run'], entry: Running): Promise<TaskRecord> {
    const { controller } = entry;
    let pending: number | undefined;
    let writing = false;
    // Progress is coalesced: one write at a time, the latest value wins.
    const flush = async () => {
      if (writing || pending === undefined) return;
      writing = true;
      const value = pending;
      pending = undefined;
      const after = await this.transition(id, (r) => (r.state === 'running' ? { progress: value } : undefined)).catch(() => undefined);
      writing = false;
      if (after && FINISHED.has(after.state)) this.finishedElsewhere(entry, after);
      void flush();
    };
    const ctx: TaskContext = {
      id,
      signal: controller.signal,
      progress: (n) => {
        pending = Math.max(0, Math.min(100, Math.round(n)));
        void flush();
      },
    };
    let outcome: Partial<TaskRecord>;
    try {
      await run(ctx);
      outcome = controller.signal.aborted ? this.abortOutcome(entry) : { state: 'succeeded', progress: 100 };
    } catch (err) {
      outcome = controller.signal.aborted ? this.abortOutcome(entry) : { state: 'failed', error: (err as Error)?.message ?? String(err) };
    }
    this.running.delete(id);
    const final = await this.finish(id, { ...outcome, finishedAt: new Date().toISOString() });
    if (final && (final.state === 'succeeded' || final.state === 'failed' || final.state === 'cancelled')) this.stats[final.state]++;
    return final ?? ((await this.get(id)) as TaskRecord);
  }

  private abortOutcome(entry: Running): Partial<TaskRecord> {
    if (entry.abortedFor === 'shutdown') return { state: 'failed', error: `node ${this.nodeId} shut down while running it` };
    return { state: 'cancelled' };
  }

  /** Another node finished the record (recovery after we were thought dead): stop the work. */
  private finishedElsewhere(entry: Running, record: TaskRecord): void {
    if (entry.controller.signal.aborted) return;
    entry.abortedFor = 'finished-elsewhere';
    this.logger.warn(`task ${record.id} was marked ${record.state} by another node while running here: stopping it`);
    entry.controller.abort(new ForgeBusError('TASK_FINISHED', `task ${record.id} was marked ${record.state} elsewhere: ${record.error ?? ''}`));
  }

  /** Writes the final state unless the record is finished already (then that state stays). */
  private async finish(id: string, outcome: Partial<TaskRecord>): Promise<TaskRecord | undefined> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.transition(id, () => outcome);
      } catch (err) {
        // NATS unreachable: keep trying for a while, the record must not stay `running`.
        this.errorLog.line(`cannot record the end of task ${id} yet: ${(err as Error).message}`);
        if (attempt >= 20) throw err;
        await new Promise((r) => setTimeout(r, 250 * Math.min(8, attempt + 1)));
      }
    }
  }

  /**
   * Compare-and-swap on the record: `change` sees the current record and returns the fields to
   * set (undefined: no change). A finished record is never changed. Returns the record after.
   */
  private async transition(id: string, change: (current: TaskRecord) => Partial<TaskRecord> | undefined): Promise<TaskRecord | undefined> {
    const kv = this.bucket();
    for (;;) {
      const entry: KvEntry | null = await kv.get(key(id));
      if (!entry || entry.operation !== 'PUT') return undefined;
      const current = entry.json<TaskRecord>();
      if (FINISHED.has(current.state)) return current;
      const fields = change(current);
      if (!fields) return current;
      const next = { ...current, ...fields };
      try {
        await kv.update(key(id), JSON.stringify(next), entry.revision);
        return next;
      } catch (err) {
        if (!isWrongRevision(err)) throw err;
        // Someone wrote in between: read again and decide again.
      }
    }
  }

  /**
   * Marks the unfinished tasks of `nodeId`, a node known dead, failed (done on every expiry unless
   * `followDepartures` is off; also for operators, e.g. after the whole cluster was down). Any
   * number of processes may call it at once: each task is marked, and cleaned up, once. Resolves
   * with how many this call marked. Refuses a live member.
   */
  async recover(nodeId: string): Promise<number> {
    if (nodeId === this.nodeId || this.membership.isMember(nodeId)) {
      throw new ForgeBusError('NODE_ALIVE', `node "${nodeId}" is a live member: its tasks are its own`);
    }
    return this.recoverNode(nodeId);
  }

  /**
   * Unfinished records of this node id when the registry opens belong to an earlier process of
   * the same id that died: one restarted within the TTL never left the membership, so no
   * departure would ever recover them.
   */
  private async recoverEarlierSelf(): Promise<void> {
    for (const record of await this.list()) {
      if (record.node === this.nodeId && !FINISHED.has(record.state) && !this.running.has(record.id)) {
        await this.recoverTask(record.id, this.nodeId, `node ${this.nodeId} restarted while running it`);
      }
    }
  }

  /** A member expired: mark its unfinished tasks failed; the swap lets exactly one survivor do each. */
  private async recoverNode(nodeId: string): Promise<number> {
    if (nodeId === this.nodeId || this.closing) return 0;
    let marked = 0;
    try {
      for (const record of await this.list()) {
        if (record.node !== nodeId || FINISHED.has(record.state)) continue;
        if ((await this.recoverTask(record.id, nodeId)).won) marked++;
      }
      return marked;
    } catch (err) {
      this.errorLog.line(`cannot recover the tasks of node ${nodeId}: ${(err as Error).message}`);
      throw err;
    } finally {
      this.stats.departuresHandled++;
    }
  }

  /** One compare-and-swap from unfinished to failed: only the survivor whose swap succeeds runs the kind's clean-up. */
  private async recoverTask(id: string, nodeId: string, error = `node ${nodeId} died while running it`): Promise<{ record?: TaskRecord; won: boolean }> {
    const kv = this.bucket();
    const entry = await kv.get(key(id));
    if (!entry || entry.operation !== 'PUT') return { won: false };
    const current = entry.json<TaskRecord>();
    if (current.node !== nodeId || FINISHED.has(current.state)) return { record: current, won: false };
    const failed: TaskRecord = {
      ...current,
      state: 'failed',
      finishedAt: new Date().toISOString(),
      error,
      recoveredBy: this.nodeId,
    };
    try {
      await kv.update(key(id), JSON.stringify(failed), entry.revision);
    } catch (err) {
      if (isWrongRevision(err)) return { record: await this.get(id), won: false }; // another survivor (or the node itself) wrote first
      throw err;
    }
    this.stats.recovered++;
    this.logger.warn(`task ${id} (${current.kind}) marked failed: ${error}`);
    const handler = this.recoveryHandlers.get(current.kind);
    if (handler) {
      try {
        await handler(failed);
      } catch (err) {
        this.errorLog.line(`clean-up after task ${id} (${error}) failed: ${(err as Error).message}`);
      }
    }
    return { record: failed, won: true };
  }

  private bucket(): KV {
    if (!this.kv) throw new TaskRegistryClosedError();
    return this.kv;
  }
}
