import { readFileSync } from 'node:fs';
import { EventCatalog } from '../src/bus/catalog/catalog.js';
import { BUILTIN_EVENTS } from '../src/bus/catalog/events.js';
import type { EventEnvelope } from '../src/bus/envelope.js';
import { EventFactory } from '../src/bus/event-factory.js';

/**
 * What every case sends: one `issue.created` event. The SDK builds its envelope from
 * `EVENT_INPUT`; the raw NATS, raw JetStream and NestJS cases send `ENVELOPE_BYTES`, the JSON of an
 * envelope built by the same factory, so every case carries the same document on the wire.
 */
export const REPO = { owner: 'acme', name: 'web' } as const;
export const EVENT_TYPE = 'issue.created';
export const EVENT_PAYLOAD = { number: 4242, title: 'Crash when pushing a signed tag' };
export const EVENT_INPUT = { type: EVENT_TYPE, repo: REPO, payload: EVENT_PAYLOAD } as const;

const factory = new EventFactory(new EventCatalog(BUILTIN_EVENTS), 'bench-pub');
export const ENVELOPE: EventEnvelope = factory.create({ ...EVENT_INPUT });
export const ENVELOPE_JSON = JSON.stringify(ENVELOPE);
export const ENVELOPE_BYTES = new TextEncoder().encode(ENVELOPE_JSON);
/** The JetStream subject the SDK publishes this event on (forge.repo.acme.web.issue.created). */
export const EVENT_SUBJECT = factory.subjectOf(ENVELOPE);
/** Core-NATS subject for case a: outside the FORGE_EVENTS subjects, so nothing is stored. */
export const CORE_SUBJECT = 'bench.core.issue.created';

/** Monotonic clock shared by every process on the machine (CLOCK_MONOTONIC), in ns. */
export const now = (): bigint => process.hrtime.bigint();

export function ratePerSecond(events: number, fromNs: bigint, toNs: bigint): number {
  const ns = Number(toNs - fromNs);
  return ns > 0 ? (events * 1e9) / ns : 0;
}

export function median(values: number[]): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/**
 * Calls `start(i)` for i = 0..n-1 keeping at most `window` returned promises unsettled at once;
 * resolves when all settled, rejects on the first failure.
 */
export function windowed(n: number, window: number, start: (i: number) => Promise<unknown>): Promise<void> {
  if (n <= 0) return Promise.resolve();
  return new Promise<void>((resolve, reject) => {
    let next = 0;
    let settled = 0;
    let failed = false;
    const onDone = (): void => {
      settled++;
      if (settled === n) resolve();
      else launch();
    };
    const onError = (err: unknown): void => {
      if (failed) return;
      failed = true;
      reject(err);
    };
    const launch = (): void => {
      while (!failed && next < n && next - settled < window) {
        const i = next++;
        let p: Promise<unknown>;
        try {
          p = start(i);
        } catch (err) {
          onError(err);
          return;
        }
        p.then(onDone, onError);
      }
    };
    launch();
  });
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Rejects with `what` timed out after `ms`, unless `p` settles first. */
export async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new TimeoutError(`${what} timed out after ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

export class TimeoutError extends Error {
  override name = 'TimeoutError';
}

/** CPU time (user + system, µs) of another process, from /proc; undefined where unavailable. */
export function processCpuUs(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // utime and stime are fields 14 and 15 of the line, in clock ticks (100 per second on Linux).
    return (Number(fields[11]) + Number(fields[12])) * (1e6 / CLOCK_TICKS);
  } catch {
    return undefined;
  }
}
const CLOCK_TICKS = 100;

/** Busy CPU time of the whole machine (all cores, µs) from /proc/stat; undefined elsewhere. */
export function machineBusyUs(): number | undefined {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!;
    const [, user, nice, system, , , irq, softirq, steal] = line.trim().split(/\s+/).map(Number);
    return (user! + nice! + system! + irq! + softirq! + steal!) * (1e6 / CLOCK_TICKS);
  } catch {
    return undefined;
  }
}

/** CPU used by this process, the nats-server and (filled in later) a child during one run. */
export interface CpuShare {
  /** Share of one core, in percent, over the run's wall time. */
  bench: number;
  server?: number;
  child?: number;
  /** Everything else running on the machine meanwhile (other programs: noise). */
  other?: number;
}

/** Starts a CPU measurement of this process and the server; `end()` gives the shares. */
export function cpuMeter(serverPid: number | undefined): { end: (wallNs: bigint, childCpuUs?: number) => CpuShare } {
  const self0 = process.cpuUsage();
  const server0 = processCpuUs(serverPid);
  const machine0 = machineBusyUs();
  return {
    end(wallNs, childCpuUs) {
      const self = process.cpuUsage(self0);
      const server1 = processCpuUs(serverPid);
      const machine1 = machineBusyUs();
      const pct = (us: number): number => (us * 1000 * 100) / Number(wallNs);
      const share: CpuShare = {
        bench: pct(self.user + self.system),
        server: server0 !== undefined && server1 !== undefined ? pct(server1 - server0) : undefined,
        child: childCpuUs === undefined ? undefined : pct(childCpuUs),
      };
      if (machine0 !== undefined && machine1 !== undefined) {
        const ours = share.bench + (share.server ?? 0) + (share.child ?? 0);
        share.other = Math.max(0, pct(machine1 - machine0) - ours);
      }
      return share;
    },
  };
}

export const log = (message: string): void => {
  process.stderr.write(`[bench] ${message}\n`);
};

// ---- parent <-> child protocol (over the fork IPC channel) -------------------------------------

/** Any message on a child's IPC channel (each kind of child has its own set of types). */
export type AnyMessage = { type: string; [field: string]: unknown };

/** Parent → child. */
export type ToChild =
  | { type: 'expect'; n: number } // reset the counter; report `done` once n events arrived
  | { type: 'status' } // report how many arrived so far
  | { type: 'stop' };

/** Child → parent. Times are `now()` values as decimal strings. */
export type FromChild =
  | { type: 'ready'; pid: number }
  | { type: 'armed'; n: number }
  | { type: 'done'; n: number; firstAt: string; lastAt: string; cpuUs: number }
  | { type: 'status'; count: number; detail?: Record<string, number> }
  | { type: 'error'; message: string };

/**
 * Counting side of a child: `hit()` from the handler; sends `done` with the receipt time of the
 * n-th event. Shared by the SDK and NestJS children so both count the same way.
 */
export class ChildCounter {
  private expected = Number.POSITIVE_INFINITY;
  private count = 0;
  private firstAt = 0n;
  private cpuAtArm = process.cpuUsage();

  constructor(
    private readonly send: (m: FromChild) => void,
    private readonly detail?: () => Record<string, number>,
  ) {}

  hit(): void {
    const n = ++this.count;
    if (n === 1) this.firstAt = now();
    if (n === this.expected) {
      const lastAt = String(now());
      const cpu = process.cpuUsage(this.cpuAtArm);
      this.send({ type: 'done', n, firstAt: String(this.firstAt), lastAt, cpuUs: cpu.user + cpu.system });
    }
  }

  onMessage(msg: ToChild, stop: () => void): void {
    switch (msg.type) {
      case 'expect':
        this.count = 0;
        this.expected = msg.n;
        this.cpuAtArm = process.cpuUsage();
        this.send({ type: 'armed', n: msg.n });
        break;
      case 'status':
        this.send({ type: 'status', count: this.count, detail: this.detail?.() });
        break;
      case 'stop':
        stop();
        break;
    }
  }
}

/** Wires a forked child's IPC to a ChildCounter and makes it exit with (or without) its parent. */
export function childMain(counter: ChildCounter, stop: () => Promise<void>): void {
  let stopping = false;
  const exit = (): void => {
    if (stopping) return;
    stopping = true;
    const hard = setTimeout(() => process.exit(0), 3_000);
    hard.unref();
    stop()
      .catch(() => undefined)
      .finally(() => process.exit(0));
  };
  process.on('message', (m) => counter.onMessage(m as ToChild, exit));
  // The parent died or closed the channel: never outlive it.
  process.on('disconnect', exit);
  process.on('SIGTERM', exit);
  process.on('SIGINT', exit);
}

export function sendToParent(m: FromChild | AnyMessage): void {
  if (process.send && process.connected) process.send(m);
}

/**
 * Nearest-rank percentile (p in 0..1) of values sorted ascending; NaN for none.
 */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil(p * sorted.length)));
  return sorted[rank - 1]!;
}

export function childArgs(): { url: string } {
  const url = process.argv[2];
  if (!url || !process.send) {
    console.error('this is a bench child process: run "npm run bench" instead');
    process.exit(2);
  }
  return { url };
}

/**
 * Calls `fire(i)` for i = 0..n-1 at `rate` per second on average: on each timer tick it fires
 * every event whose time has come. Node's timers have a 1 ms granularity, so at 1,000/s an event
 * goes out every tick (sometimes two), at 10,000/s about ten per tick. A busy loop would be
 * smoother, but it would take one of the machine's two cores from the processes measured.
 */
export async function paced(n: number, rate: number, fire: (i: number) => void): Promise<{ maxBurst: number }> {
  const t0 = now();
  const intervalNs = 1e9 / rate;
  let i = 0;
  let maxBurst = 0;
  while (i < n) {
    const due = Math.min(n, Math.floor(Number(now() - t0) / intervalNs) + 1);
    const burst = due - i;
    if (burst > maxBurst) maxBurst = burst;
    while (i < due) fire(i++);
    if (i >= n) break;
    const waitMs = (i * intervalNs - Number(now() - t0)) / 1e6;
    await sleep(Math.max(0, waitMs));
  }
  return { maxBurst };
}
