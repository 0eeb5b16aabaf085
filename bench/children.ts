import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import {
  cpuMeter,
  now,
  ratePerSecond,
  TimeoutError,
  withTimeout,
  type AnyMessage,
  type CpuShare,
  type FromChild,
  type ToChild,
} from './common.js';

const live = new Set<ChildProcess>();
let exitHook = false;

/** SIGKILLs every child still running; synchronous, safe in an 'exit' handler. */
export function killAllChildrenNow(): void {
  for (const child of live) child.kill('SIGKILL');
}

/**
 * Registers a process the bench started (forked or spawned) so that `killAllChildrenNow` and the
 * bench's exit hook kill it if it is still running; forgotten once it exited.
 */
export function trackChild(child: ChildProcess): void {
  live.add(child);
  child.once('exit', () => live.delete(child));
  if (!exitHook) {
    exitHook = true;
    process.once('exit', killAllChildrenNow);
  }
}

export interface Round {
  /** Events the child counted (n when complete). */
  received: number;
  complete: boolean;
  /** First send (parent) to n-th handler call (child), events/s. */
  rate: number;
  /** Rate of the sending side alone: first send to `send()` resolving (all acks / all emits). */
  sendRate: number;
  /** CPU use of the bench process, the child and the server from first send to n-th handler call. */
  cpu?: CpuShare;
  /** Child's counter detail when the round did not complete. */
  detail?: Record<string, number>;
}

/**
 * One bench child process (dist/bench/child-*.js) on the IPC channel: wait until it is ready,
 * arm its counter for n events, then wait for the n-th handler call.
 */
export class BenchChild {
  private readonly waiters: { match: (m: AnyMessage) => boolean; resolve: (m: AnyMessage) => void }[] = [];
  private exited: Promise<void>;
  private exitInfo?: string;

  private constructor(
    readonly name: string,
    private readonly child: ChildProcess,
  ) {
    this.exited = new Promise((resolve) =>
      child.once('exit', (code, signal) => {
        live.delete(child);
        this.exitInfo = `exited (code ${code}, signal ${signal})`;
        resolve();
      }),
    );
    // EPIPE and the like once the child is gone: its exit is what the waiters react to.
    child.on('error', () => undefined);
    child.on('message', (raw) => {
      const m = raw as AnyMessage;
      const i = this.waiters.findIndex((w) => w.match(m));
      if (i >= 0) this.waiters.splice(i, 1)[0]!.resolve(m);
    });
  }

  static async start(script: string, url: string, readyTimeoutMs = 30_000, extraArgs: string[] = []): Promise<BenchChild> {
    const path = fileURLToPath(new URL(script, import.meta.url));
    // FORGEBUS_BENCH_CHILD_NODE_OPTIONS: extra Node flags for the children (diagnostics, e.g.
    // "--cpu-prof --cpu-prof-dir=/tmp/prof"); --expose-gc lets a child collect garbage between runs.
    const extra = (process.env.FORGEBUS_BENCH_CHILD_NODE_OPTIONS ?? '').split(/\s+/).filter(Boolean);
    const child = fork(path, [url, ...extraArgs], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      execArgv: [...process.execArgv, '--expose-gc', ...extra],
    });
    trackChild(child);
    const bc = new BenchChild(extraArgs.length ? `${script} ${extraArgs.join(' ')}` : script, child);
    try {
      await bc.next((m) => m.type === 'ready', readyTimeoutMs, 'child start');
    } catch (err) {
      await bc.stop();
      throw err;
    }
    return bc;
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  private send(m: ToChild | AnyMessage): void {
    if (this.child.connected) this.child.send(m, () => undefined);
  }

  /** Sends `message` (any protocol of a bench child) without waiting for an answer. */
  post(message: AnyMessage): void {
    this.send(message);
  }

  /**
   * The next message of type `type` (optionally also matching `match`), within `timeoutMs`;
   * rejects if the child exits first. Register it before doing what makes the child send it.
   */
  expectMessage<T extends AnyMessage>(type: string, timeoutMs: number, what: string, match?: (m: T) => boolean): Promise<T> {
    return this.next((m) => m.type === type && (!match || match(m as T)), timeoutMs, what) as Promise<T>;
  }

  /** Sends `message` and waits for the child's answer of type `answer`. */
  ask<T extends AnyMessage>(message: AnyMessage, answer: string, timeoutMs: number): Promise<T> {
    const reply = this.expectMessage<T>(answer, timeoutMs, `${message.type} -> ${answer}`);
    this.send(message);
    return reply;
  }

  private next(match: (m: AnyMessage) => boolean, timeoutMs: number, what: string): Promise<AnyMessage> {
    let waiter: (typeof this.waiters)[number];
    const got = new Promise<AnyMessage>((resolve) => {
      waiter = { match, resolve };
      this.waiters.push(waiter);
    });
    const died = this.exited.then((): never => {
      throw new Error(`${this.name}: child ${this.exitInfo} while waiting for ${what}`);
    });
    return withTimeout(Promise.race([got, died]), timeoutMs, `${this.name}: ${what}`).finally(() => {
      const i = this.waiters.indexOf(waiter);
      if (i >= 0) this.waiters.splice(i, 1);
    });
  }

  /**
   * Arms the child's counter for `n` events, runs `send` (which must send them), and measures
   * from the start of `send` to the child's n-th handler call.
   */
  async round(n: number, send: () => Promise<void>, timeoutMs: number, serverPid?: number): Promise<Round> {
    this.send({ type: 'expect', n });
    await this.next((m) => m.type === 'armed' && (m as FromChild & { n: number }).n === n, 10_000, 'arm');
    const done = this.next((m) => m.type === 'done' && (m as FromChild & { n: number }).n === n, timeoutMs, `${n} events`);
    done.catch(() => undefined);
    const meter = cpuMeter(serverPid);
    const t0 = now();
    await send();
    const sendRate = ratePerSecond(n, t0, now());
    try {
      const m = (await done) as Extract<FromChild, { type: 'done' }>;
      const lastAt = BigInt(m.lastAt);
      const cpu = meter.end(lastAt - t0, m.cpuUs);
      return { received: n, complete: true, rate: ratePerSecond(n, t0, lastAt), sendRate, cpu };
    } catch (err) {
      if (!(err instanceof TimeoutError)) throw err;
      const t1 = now();
      this.send({ type: 'status' });
      const s = (await this.next((m) => m.type === 'status', 5_000, 'status')) as Extract<FromChild, { type: 'status' }>;
      return { received: s.count, complete: false, rate: ratePerSecond(s.count, t0, t1), sendRate, detail: s.detail };
    }
  }

  /** Asks the child to stop, then SIGTERM, then SIGKILL; resolves once it exited. */
  async stop(): Promise<void> {
    if (this.exitInfo) return;
    this.send({ type: 'stop' });
    const gone = await Promise.race([this.exited.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 3_000))]);
    if (gone) return;
    this.child.kill('SIGTERM');
    const termed = await Promise.race([this.exited.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 2_000))]);
    if (!termed) {
      this.child.kill('SIGKILL');
      await this.exited;
    }
  }
}
