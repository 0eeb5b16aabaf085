/**
 * SSE cases (issue 4, src/sse): `npm run bench -- --only sse` (all three) or one of
 *
 *   sse-latency  publish on "node 1" (the bench process: the SDK's ForgeBus, as a forge node
 *                publishes) -> receipt by SSE clients of node 2 (a real forge-node process,
 *                GET /api/events), p50/p99 at 1,000 events/s with 1,000 clients in a separate
 *                process; the same publishes received in that process by a raw core-NATS
 *                subscriber and a raw JetStream ordered consumer are the transport baselines.
 *   sse-conns    concurrent streams on one forge-node process and memory per stream (RSS of the
 *                node from /proc, its JS heap after a full GC through bench/sse-node-probe.js
 *                preloaded into it); the same for SseHub on plain node:http in a bench-only
 *                process (bench/sse-hub-node.ts), i.e. without NestJS and Express.
 *   sse-fanout   deliveries/s from one forge node to 10,000 clients (two client processes) at
 *                rising publish rates and in a burst, against the design the issue forbids: one
 *                core-NATS subscription per client (bench/sse-hub-node.ts persub), and a
 *                diagnostic floor (bench/sse-hub-node.ts floor: each event framed once and
 *                written straight to the sockets).
 * The clients (bench/sse-clients.ts) are raw TCP sockets in child processes, at most 9,800 per
 * process: this machine's hard limit is 20,000 open files per process (ulimit -Hn).
 * FORGEBUS_BENCH_SSE_PROFILE=<dir> writes a CPU profile of the forge node over the measured part
 * of sse-latency (per pattern) and sse-fanout (the rate steps): see bench/sse-node-probe.ts.
 *
 * Settings (environment, all optional):
 *   FORGEBUS_BENCH_SSE_RATE=1000            sse-latency: events/s
 *   FORGEBUS_BENCH_SSE_PATTERNS=100x10,20x50,10x100  sse-latency: repositories x watchers each (1,000 clients each)
 *   FORGEBUS_BENCH_SSE_SECONDS=8            sse-latency: seconds per measured run (3 runs after 2 s warm-up)
 *   FORGEBUS_BENCH_SSE_RUNS=3
 *   FORGEBUS_BENCH_SSE_CONNS=5000,10000,15000,19500   sse-conns: connection counts measured
 *   FORGEBUS_BENCH_SSE_FANOUT_CLIENTS=10000
 *   FORGEBUS_BENCH_SSE_FANOUT_RATES=5,10,20,40     sse-fanout: events/s per step (x clients = deliveries/s)
 *   FORGEBUS_BENCH_SSE_FANOUT_SECONDS=6     sse-fanout: seconds per step (the series stops at the first step not kept up)
 *   FORGEBUS_BENCH_SSE_FANOUT_SERVERS=node,floor,persub   sse-fanout: which servers, in this order
 *   FORGEBUS_BENCH_SSE_HEARTBEAT_MS=3000    sse-conns: heartbeat interval of the servers measured
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { ForgeBus } from '../src/bus/bus.js';
import { signUserToken } from '../src/forge-node/auth/tokens.js';
import type { BenchContext, Row } from './cases.js';
import { BenchChild } from './children.js';
import { cpuMeter, log, median, now, paced, processCpuUs, sleep, type AnyMessage, type CpuShare } from './common.js';
import { startForgeNodeProcess, type ForgeNodeProcess } from './forge-node-process.js';
import { int, pct, type Report } from './report.js';

const OWNER = 'acme';
const USERS = 100;
const repoName = (i: number): string => `r${String(i).padStart(3, '0')}`;
const clock = (): number => performance.timeOrigin + performance.now();
/** Gitea's UI polls for new notifications every 10 s by default: 5 s mean delay, 10 s worst. */
const GITEA_MEAN_MS = 5_000;
const GITEA_WORST_MS = 10_000;

function envInt(name: string, fallback: number): number {
  const v = process.env[name];
  if (v === undefined || v.trim() === '') return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${name} must be an integer >= 1, got "${v}"`);
  return n;
}
function envInts(name: string, fallback: number[]): number[] {
  const v = process.env[name];
  if (v === undefined || v.trim() === '') return fallback;
  return v.split(',').map((x) => {
    const n = Number(x.trim());
    if (!Number.isInteger(n) || n < 1) throw new Error(`${name} must list integers >= 1, got "${v}"`);
    return n;
  });
}
function envPatterns(name: string, fallback: [number, number][]): [number, number][] {
  const v = process.env[name];
  if (v === undefined || v.trim() === '') return fallback;
  return v.split(',').map((p) => {
    const m = /^(\d+)x(\d+)$/.exec(p.trim());
    if (!m) throw new Error(`${name}: "${p}" is not REPOSxWATCHERS`);
    return [Number(m[1]), Number(m[2])];
  });
}

const f1 = (v: number): string => (Number.isFinite(v) ? v.toFixed(1) : '-');
const f2 = (v: number): string => (Number.isFinite(v) ? v.toFixed(2) : '-');
const kb = (bytes: number): string => (Number.isFinite(bytes) ? (bytes / 1024).toFixed(1) : '-');
const mb = (bytes: number): string => (Number.isFinite(bytes) ? (bytes / 1024 / 1024).toFixed(0) : '-');

// ---- the forge node under test -----------------------------------------------------------------

interface SseNode {
  node: ForgeNodeProcess;
  host: string;
  port: number;
  secret: string;
  dataDir: string;
  /** Tokens of users u0..u99 (clients) and of the owner of the repositories. */
  tokens: string[];
  ownerToken: string;
  stats(): Promise<Record<string, number>>;
  /** RSS and heap after a full GC (bench/sse-node-probe.js, preloaded). */
  memory(): Promise<ProbedMemory>;
  /** With FORGEBUS_BENCH_SSE_PROFILE=<dir>: starts / stops and writes a CPU profile of the node. */
  profile(what: string): Promise<void>;
  stop(): Promise<void>;
}

const PROBE = `--expose-gc --import=${new URL('./sse-node-probe.js', import.meta.url).href}`;
const PROFILE_DIR = process.env.FORGEBUS_BENCH_SSE_PROFILE;

/** Data directories of running nodes: removed on stop, or when the bench exits (Ctrl-C). */
const tempDirs = new Set<string>();
process.once('exit', () => {
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});

async function startSseNode(ctx: BenchContext, id: string, repos: number, env: Record<string, string> = {}): Promise<SseNode> {
  if (PROFILE_DIR) mkdirSync(PROFILE_DIR, { recursive: true });
  const dataDir = mkdtempSync(join(tmpdir(), `forgebus-bench-${id}-`));
  tempDirs.add(dataDir);
  const secret = randomBytes(24).toString('hex');
  let node: ForgeNodeProcess | undefined;
  try {
    node = await startForgeNodeProcess({ id, natsUrl: ctx.url, dataDir, secret, env: { NODE_OPTIONS: PROBE, ...env } });
    const ownerToken = await signUserToken(secret, OWNER);
    const tokens = await Promise.all(Array.from({ length: USERS }, (_, i) => signUserToken(secret, `u${i}`)));
    const u = new URL(node.url);
    const call = async (method: string, path: string, token: string, body?: unknown): Promise<any> => {
      const res = await fetch(`${node!.url}${path}`, {
        method,
        headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const text = await res.text();
      if (!res.ok) throw new Error(`${method} ${path}: HTTP ${res.status} ${text}`);
      return text ? JSON.parse(text) : undefined;
    };
    // Public repositories acme/r000.. (git init each: a few ms), 8 at a time.
    let next = 0;
    await Promise.all(
      Array.from({ length: Math.min(8, repos) }, async () => {
        while (next < repos) await call('POST', '/api/repos', ownerToken, { name: repoName(next++) });
      }),
    );
    const running = node;
    let probes = 0;
    let profiles = 0;
    let profiling = false;
    return {
      node: running,
      host: u.hostname,
      port: Number(u.port),
      secret,
      dataDir,
      tokens,
      ownerToken,
      stats: () => call('GET', '/api/sse/stats', ownerToken),
      memory: () => probeMemory(running, ++probes),
      profile: async (what: string) => {
        if (!PROFILE_DIR) return;
        process.kill(running.pid, 'SIGURG');
        profiling = !profiling;
        if (profiling) return log(`${id}: CPU profile started (${what})`);
        const prefix = `forgebus-bench-profile ${++profiles} `;
        const found = await until(async () => running.output.find((l) => l.startsWith(prefix)), (l) => l !== undefined, 30_000, 50);
        log(`${id}: CPU profile (${what}): ${found.value?.slice(prefix.length) ?? 'not written'}`);
      },
      stop: async () => {
        await running.stop();
        rmSync(dataDir, { recursive: true, force: true });
        tempDirs.delete(dataDir);
      },
    };
  } catch (err) {
    if (node) log(`${id}: output of the forge node:\n${node.output.join('\n')}`);
    await node?.stop();
    rmSync(dataDir, { recursive: true, force: true });
    tempDirs.delete(dataDir);
    throw err;
  }
}

// ---- client processes --------------------------------------------------------------------------

interface Opened {
  ok: number;
  failed: number;
  errors: string[];
  ms: number;
}

interface Counts {
  frames: number;
  core: number;
  js: number;
  closed: number;
  conns: number;
  cpuUs: number;
}

/** A set of sse-clients.js processes (each holds at most ~9,900 sockets: 20,000 fds per process). */
class Clients {
  private constructor(readonly children: BenchChild[]) {}

  static async start(ctx: BenchContext, n: number): Promise<Clients> {
    const children: BenchChild[] = [];
    try {
      for (let i = 0; i < n; i++) children.push(await BenchChild.start('./sse-clients.js', ctx.url));
    } catch (err) {
      await Promise.all(children.map((c) => c.stop()));
      throw err;
    }
    return new Clients(children);
  }

  get pids(): number[] {
    return this.children.map((c) => c.pid!).filter((p) => p !== undefined);
  }

  /** Opens streams `paths[i]` with token `tokens[tokenOf[i]]`, split evenly over the processes. */
  async open(host: string, port: number, paths: string[], tokens: string[], tokenOf: number[], mode: 'count' | 'latency', concurrency = 48): Promise<Opened> {
    const k = this.children.length;
    const per = Math.ceil(paths.length / k);
    const results = await Promise.all(
      this.children.map((c, i) =>
        c.ask<AnyMessage>(
          {
            type: 'open',
            host,
            port,
            paths: paths.slice(i * per, (i + 1) * per),
            tokens,
            tokenOf: tokenOf.slice(i * per, (i + 1) * per),
            mode,
            concurrency,
          },
          'opened',
          180_000,
        ),
      ),
    );
    return {
      ok: results.reduce((s, r) => s + (r.ok as number), 0),
      failed: results.reduce((s, r) => s + (r.failed as number), 0),
      errors: results.flatMap((r) => r.errors as string[]),
      ms: Math.max(...results.map((r) => r.ms as number)),
    };
  }

  async reset(): Promise<void> {
    await Promise.all(this.children.map((c) => c.ask({ type: 'reset' }, 'reset-done', 10_000)));
  }

  async counts(): Promise<Counts> {
    const all = await Promise.all(this.children.map((c) => c.ask<AnyMessage>({ type: 'counts' }, 'counts', 10_000)));
    const sum = (k: string): number => all.reduce((s, r) => s + (r[k] as number), 0);
    return { frames: sum('frames'), core: sum('core'), js: sum('js'), closed: sum('closed'), conns: sum('conns'), cpuUs: sum('cpuUs') };
  }

  report(i = 0): Promise<AnyMessage> {
    return this.children[i]!.ask<AnyMessage>({ type: 'report' }, 'report', 30_000);
  }

  async closeAll(): Promise<void> {
    await Promise.all(this.children.map((c) => c.ask({ type: 'close' }, 'closed-all', 30_000)));
  }

  async stop(): Promise<void> {
    await Promise.all(this.children.map((c) => c.stop()));
  }
}

/** Stream paths and token indexes for `n` clients, client j watching repository j % repos. */
function streams(n: number, repos: number, firstIndex = 0, userParam = false): { paths: string[]; tokenOf: number[] } {
  const paths: string[] = [];
  const tokenOf: number[] = [];
  for (let j = firstIndex; j < firstIndex + n; j++) {
    const user = j % USERS;
    // The bench-only servers take the user from `user=` (they check no token); the forge node ignores it.
    paths.push(`/api/events?repos=${OWNER}/${repoName(j % repos)}${userParam ? `&user=u${user}` : ''}`);
    tokenOf.push(user);
  }
  return { paths, tokenOf };
}

// ---- publishing ----------------------------------------------------------------------------------

/** Node 1: publishes issue.created with the publisher's clock in the title. */
class Publisher {
  private pending = 0;
  private idle?: () => void;
  failures = 0;
  lastError = '';
  private number = 1;

  constructor(readonly bus: ForgeBus) {}

  fire(repo: string): void {
    this.pending++;
    const title = `T${clock().toFixed(3)}`;
    this.bus.publish({ type: 'issue.created', repo: { owner: OWNER, name: repo }, payload: { number: this.number++, title } }).then(
      () => this.settle(),
      (err: unknown) => {
        this.failures++;
        this.lastError = (err as Error).message;
        this.settle();
      },
    );
  }

  private settle(): void {
    if (--this.pending === 0) this.idle?.();
  }

  /** Resolves once every publish so far was acknowledged (or failed). */
  settled(): Promise<void> {
    if (this.pending === 0) return Promise.resolve();
    return new Promise((resolve) => (this.idle = resolve));
  }
}

/** Polls `get` every `everyMs` until `done` says so or `timeoutMs` passed; the last value. */
async function until<T>(get: () => Promise<T>, done: (v: T) => boolean, timeoutMs: number, everyMs = 50): Promise<{ value: T; ok: boolean }> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await get();
    if (done(value)) return { value, ok: true };
    if (Date.now() >= deadline) return { value, ok: false };
    await sleep(everyMs);
  }
}

/** The offset (ms) of a child's `performance.timeOrigin + now()` clock against ours, via CLOCK_MONOTONIC. */
async function clockOffset(child: BenchChild): Promise<number> {
  const offsets: number[] = [];
  for (let i = 0; i < 5; i++) {
    const m = await child.ask<AnyMessage>({ type: 'clock' }, 'clock', 5_000);
    const mine = clock() - Number(process.hrtime.bigint()) / 1e6;
    offsets.push((m.perf as number) - (m.mono as number) - mine);
  }
  return median(offsets);
}

function cpuPct(us: number | undefined, wallNs: bigint): number | undefined {
  return us === undefined ? undefined : (us * 1000 * 100) / Number(wallNs);
}

// ---- sse-latency ---------------------------------------------------------------------------------

interface LatencySummary {
  n: number;
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
  min: number;
}

interface LatencyRun {
  pattern: string;
  run: number;
  events: number;
  expectedDeliveries: number;
  deliveries: number;
  core: number;
  js: number;
  complete: boolean;
  sse: LatencySummary;
  coreLatency: LatencySummary;
  jsLatency: LatencySummary;
  maxBurst: number;
  publishFailures: number;
  closed: number;
  cpu: CpuShare & { node?: number; clients?: number };
}

export async function caseSseLatency(ctx: BenchContext): Promise<Row[]> {
  const rate = envInt('FORGEBUS_BENCH_SSE_RATE', 1_000);
  const seconds = envInt('FORGEBUS_BENCH_SSE_SECONDS', 8);
  const runs = envInt('FORGEBUS_BENCH_SSE_RUNS', 3);
  const patterns = envPatterns('FORGEBUS_BENCH_SSE_PATTERNS', [
    [100, 10],
    [20, 50],
    [10, 100],
  ]);
  const maxRepos = Math.max(...patterns.map(([r]) => r));
  const results: LatencyRun[] = [];
  const incomplete: string[] = [];
  const notes: string[] = [];
  let sse: SseNode | undefined;
  let clients: Clients | undefined;
  let bus: ForgeBus | undefined;
  let offset = 0;
  try {
    sse = await startSseNode(ctx, 'bench-sse-node-2', maxRepos);
    bus = await ForgeBus.connect({ nodeId: 'bench-sse-node-1', connection: { servers: ctx.url } });
    clients = await Clients.start(ctx, 1);
    await clients.children[0]!.ask({ type: 'nats', subject: 'forge.repo.>', ordered: true, stream: bus.streamName }, 'nats-ready', 30_000);
    offset = await clockOffset(clients.children[0]!);
    log(`sse-latency: clock offset of the client process (performance.timeOrigin + now(), against CLOCK_MONOTONIC): ${offset.toFixed(4)} ms`);
    const pub = new Publisher(bus);
    for (const [repos, watchers] of patterns) {
      const pattern = `${repos} x ${watchers}`;
      const n = repos * watchers;
      const { paths, tokenOf } = streams(n, repos);
      const opened = await clients.open(sse.host, sse.port, paths, sse.tokens, tokenOf, 'latency');
      if (opened.failed > 0) throw new Error(`sse-latency: ${opened.failed} of ${n} streams failed to open: ${opened.errors.join('; ')}`);
      const st = await sse.stats();
      log(`sse-latency ${pattern}: ${n} streams open in ${(opened.ms / 1000).toFixed(1)} s (node reports ${st.clients} clients)`);
      const one = async (runNo: number, count: number): Promise<LatencyRun> => {
        await clients!.reset();
        const meter = cpuMeter(ctx.serverPid);
        const node0 = processCpuUs(sse!.node.pid);
        const failures0 = pub.failures;
        const t0 = now();
        const { maxBurst } = await paced(count, rate, (i) => pub.fire(repoName(i % repos)));
        await pub.settled();
        const expected = count * watchers;
        const waited = await until(
          () => clients!.counts(),
          (c) => c.frames >= expected && c.core >= count && c.js >= count,
          15_000,
        );
        const t1 = now();
        const report = await clients!.report();
        const node1 = processCpuUs(sse!.node.pid);
        const cpu = meter.end(t1 - t0, (report.cpuUs as number) + (node0 !== undefined && node1 !== undefined ? node1 - node0 : 0));
        const nodePct = cpuPct(node0 !== undefined && node1 !== undefined ? node1 - node0 : undefined, t1 - t0);
        const clientsPct = cpuPct(report.cpuUs as number, t1 - t0);
        const shift = (s: LatencySummary): LatencySummary => ({
          n: s.n,
          p50: s.p50 - offset,
          p90: s.p90 - offset,
          p99: s.p99 - offset,
          p999: s.p999 - offset,
          max: s.max - offset,
          min: s.min - offset,
        });
        return {
          pattern,
          run: runNo,
          events: count,
          expectedDeliveries: expected,
          deliveries: waited.value.frames,
          core: waited.value.core,
          js: waited.value.js,
          complete: waited.ok && waited.value.frames === expected,
          sse: shift(report.sse as LatencySummary),
          coreLatency: shift(report.coreLatency as LatencySummary),
          jsLatency: shift(report.jsLatency as LatencySummary),
          maxBurst,
          publishFailures: pub.failures - failures0,
          closed: waited.value.closed,
          cpu: { ...cpu, node: nodePct, clients: clientsPct },
        };
      };
      log(`sse-latency ${pattern}: warm-up 2 s at ${rate}/s`);
      await one(0, rate * 2);
      await sse.profile(`sse-latency ${pattern}`);
      for (let r = 1; r <= runs; r++) {
        const res = await one(r, rate * seconds);
        results.push(res);
        log(
          `sse-latency ${pattern} run ${r}: SSE p50 ${f2(res.sse.p50)} ms p99 ${f2(res.sse.p99)} ms max ${f2(res.sse.max)} ms (${res.deliveries}/${res.expectedDeliveries} deliveries); ` +
            `core NATS p50 ${f2(res.coreLatency.p50)} p99 ${f2(res.coreLatency.p99)}; JetStream p50 ${f2(res.jsLatency.p50)} p99 ${f2(res.jsLatency.p99)}; ` +
            `CPU node ${pct(res.cpu.node)} clients ${pct(res.cpu.clients)} nats ${pct(res.cpu.server)} bench ${pct(res.cpu.bench)} other ${pct(res.cpu.other)}`,
        );
        if (!res.complete || res.publishFailures > 0 || res.closed > 0) {
          incomplete.push(
            `sse-latency ${pattern} run ${r}: ${res.deliveries} of ${res.expectedDeliveries} deliveries, core ${res.core}/${res.events}, JetStream ${res.js}/${res.events}, ` +
              `${res.publishFailures} publish failures (${pub.lastError}), ${res.closed} streams closed`,
          );
        }
      }
      await sse.profile(`sse-latency ${pattern}`);
      const st2 = await sse.stats();
      const slow = st2.slowDisconnects - st.slowDisconnects;
      if (slow > 0) incomplete.push(`sse-latency ${pattern}: the node disconnected ${slow} clients as too slow`);
      await clients.closeAll();
      await until(() => sse!.stats(), (s) => s.clients === 0, 10_000, 100);
    }
  } catch (err) {
    if (sse) log(`sse-latency: output of the forge node:\n${sse.node.output.join('\n')}`);
    throw err;
  } finally {
    await clients?.stop();
    await bus?.close().catch(() => undefined);
    await sse?.stop();
  }
  ctx.reports.push(...latencyReports(rate, seconds, runs, patterns, results, incomplete, notes, offset));
  return [];
}

function latencyReports(
  rate: number,
  seconds: number,
  runs: number,
  patterns: [number, number][],
  results: LatencyRun[],
  incomplete: string[],
  notes: string[],
  offset: number,
): Report[] {
  const rows: string[][] = [];
  const cpuRows: string[][] = [];
  const goals: string[] = [];
  const data: Record<string, unknown>[] = [];
  for (const [repos, watchers] of patterns) {
    const pattern = `${repos} x ${watchers}`;
    const rs = results.filter((r) => r.pattern === pattern);
    if (rs.length === 0) continue;
    const pick = (f: (r: LatencyRun) => LatencySummary) => {
      const s = rs.map(f);
      return {
        p50: median(s.map((x) => x.p50)),
        p90: median(s.map((x) => x.p90)),
        p99: median(s.map((x) => x.p99)),
        p999: median(s.map((x) => x.p999)),
        max: Math.max(...s.map((x) => x.max)),
        p99s: s.map((x) => x.p99),
      };
    };
    const core = pick((r) => r.coreLatency);
    const js = pick((r) => r.jsLatency);
    const ss = pick((r) => r.sse);
    const line = (what: string, perSecond: number, s: typeof core, vs: string): string[] => [
      pattern,
      what,
      int(perSecond),
      f2(s.p50),
      f2(s.p90),
      f2(s.p99),
      f2(s.p999),
      f2(s.max),
      `${f2(Math.min(...s.p99s))} .. ${f2(Math.max(...s.p99s))}`,
      vs,
    ];
    rows.push(line('core NATS subscriber (transport baseline)', rate, core, 'baseline'));
    rows.push(line('JetStream ordered consumer (raw nats.js)', rate, js, `+${f2(js.p50 - core.p50)} / +${f2(js.p99 - core.p99)}`));
    rows.push(line(`SSE via forge node 2 (${repos * watchers} clients)`, rate * watchers, ss, `+${f2(ss.p50 - core.p50)} / +${f2(ss.p99 - core.p99)}`));
    const med = (f: (r: LatencyRun) => number | undefined): number | undefined => {
      const v = rs.map(f).filter((x): x is number => x !== undefined);
      return v.length ? median(v) : undefined;
    };
    cpuRows.push([
      pattern,
      int(rate * watchers),
      pct(med((r) => r.cpu.node)),
      pct(med((r) => r.cpu.clients)),
      pct(med((r) => r.cpu.server)),
      pct(med((r) => r.cpu.bench)),
      pct(med((r) => r.cpu.other)),
      String(Math.max(...rs.map((r) => r.maxBurst))),
      f1(((med((r) => r.cpu.node) ?? NaN) / 100) * 1e6 / (rate * watchers)),
    ]);
    goals.push(
      `  sse-latency ${pattern}: SSE p99 ${f2(ss.p99)} ms (median of ${rs.length} runs): goal p99 <= 10 ms ${ss.p99 <= 10 ? 'MET' : 'NOT MET'}; ` +
        `SSE / core NATS: p50 ${f2(ss.p50 / core.p50)}x, p99 ${f2(ss.p99 / core.p99)}x; ` +
        `Gitea's 10 s polling: mean delay 5 s = ${int(GITEA_MEAN_MS / ss.p50)}x our p50, worst case 10 s = ${int(GITEA_WORST_MS / ss.p99)}x our p99`,
    );
    data.push({ pattern, repos, watchers, core, js, sse: ss, runs: rs });
  }
  const busy = results.filter((r) => (r.cpu.other ?? 0) > 15).map((r) => `${r.pattern} run ${r.run} (${pct(r.cpu.other)})`);
  if (busy.length > 0) {
    notes.push(`  WARNING: other programs used more than 15% of a core during ${busy.join(', ')}: those figures are high and noisy; run again on an idle machine.`);
  }
  notes.push(
    `  clocks: publish time = performance.timeOrigin + performance.now() in the bench process, receipt time the same in the client process; ` +
      `their offset measured against CLOCK_MONOTONIC: ${offset.toFixed(4)} ms (subtracted)`,
  );
  return [
    {
      id: 'sse-latency',
      title:
        `sse-latency: issue.created published on node 1 (bench process, ForgeBus.publish) at ${int(rate)} events/s, received by clients in one separate process; ` +
        `repositories x watchers each; ${runs} runs x ${seconds} s after 2 s warm-up; ms, median over runs (max: over all)`,
      header: ['pattern', 'receiver', 'deliveries/s', 'p50', 'p90', 'p99', 'p99.9', 'max', 'p99 per run', '+ms vs core p50 / p99'],
      rows,
      numeric: [2, 3, 4, 5, 6, 7, 8],
      notes: [...goals, ...notes],
      incomplete,
      data: { rate, seconds, runs, offset, patterns: data },
    },
    {
      id: 'sse-latency-cpu',
      title: 'sse-latency: CPU during the runs (median; 100% = one core busy; the machine has 2)',
      header: ['pattern', 'deliveries/s', 'forge node 2', 'client process', 'nats-server', 'bench (node 1)', 'other programs', 'most events in one pacer tick', 'node µs CPU/delivery'],
      rows: cpuRows,
      numeric: [1, 2, 3, 4, 5, 6, 7, 8],
      notes: [],
      incomplete: [],
      data: null,
    },
  ];
}

// ---- sse-conns -----------------------------------------------------------------------------------

interface ConnsStep {
  target: string;
  connections: number;
  serverClients: number;
  openSeconds: number;
  rss: number;
  heapUsed: number;
  heapTotal?: number;
  external?: number;
  nodeCpuUsPerOpen?: number;
  /** Longest event-loop delay over a window with one heartbeat to every stream, ms. */
  loopMaxMs?: number;
}

function vmRss(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : NaN;
  } catch {
    return NaN;
  }
}
function fdCount(pid: number): number {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return NaN;
  }
}

/**
 * The forge node's memory after a full GC: bench/sse-node-probe.js, preloaded into the node,
 * answers SIGWINCH with one stderr line (the node's code is not touched).
 */
interface ProbedMemory {
  rss: number;
  heapUsed: number;
  heapTotal: number;
  external: number;
  /** Longest / p99 event-loop delay since the previous probe, ms. */
  loopMaxMs: number;
  loopP99Ms: number;
}

async function probeMemory(node: ForgeNodeProcess, n: number): Promise<ProbedMemory> {
  process.kill(node.pid, 'SIGWINCH');
  const prefix = `forgebus-bench-mem ${n} `;
  const found = await until(async () => node.output.find((l) => l.startsWith(prefix)), (l) => l !== undefined, 30_000, 50);
  if (!found.ok) throw new Error(`the forge node did not report its memory (${prefix.trim()})`);
  return JSON.parse(found.value!.slice(prefix.length));
}

/** sse-conns: heartbeat interval of the servers, so that each measurement window holds one. */
const HEARTBEAT_MS = envInt('FORGEBUS_BENCH_SSE_HEARTBEAT_MS', 3_000);

export async function caseSseConns(ctx: BenchContext): Promise<Row[]> {
  const targets = envInts('FORGEBUS_BENCH_SSE_CONNS', [5_000, 10_000, 15_000, 19_500]);
  const max = Math.max(...targets);
  const perProcess = 9_800;
  const processes = Math.max(1, Math.ceil(max / perProcess));
  const repos = 100;
  const forge: ConnsStep[] = [];
  const embedded: ConnsStep[] = [];
  const incomplete: string[] = [];
  const notes: string[] = [];
  let sse: SseNode | undefined;
  let clients: Clients | undefined;
  let hubNode: BenchChild | undefined;
  let bus: ForgeBus | undefined;
  let baseline = { rss: NaN, heap: NaN, fds: NaN };
  let hubBaseline = { rss: NaN, heap: NaN };
  let liveness = '';
  try {
    sse = await startSseNode(ctx, 'bench-sse-conns', repos, { FORGE_SSE_HEARTBEAT_MS: String(HEARTBEAT_MS) });
    const memory = () => sse!.memory();
    clients = await Clients.start(ctx, processes);
    const pid = sse.node.pid;
    // Warm-up: 500 streams opened and closed (JIT, pools), then the baseline.
    {
      const { paths, tokenOf } = streams(500, repos);
      await clients.open(sse.host, sse.port, paths, sse.tokens, tokenOf, 'count');
      await clients.closeAll();
      await until(() => sse!.stats(), (s) => s.clients === 0, 10_000, 100);
      await sleep(2_000);
    }
    const mem0 = await memory();
    baseline = { rss: vmRss(pid), heap: mem0.heapUsed, fds: fdCount(pid) };
    log(`sse-conns: forge node baseline RSS ${mb(baseline.rss)} MB, heap ${mb(baseline.heap)} MB, ${baseline.fds} open files`);
    let open = 0;
    for (const target of targets) {
      const add = target - open;
      if (add <= 0) continue;
      const { paths, tokenOf } = streams(add, repos, open);
      const cpu0 = processCpuUs(pid);
      const opened = await clients.open(sse.host, sse.port, paths, sse.tokens, tokenOf, 'count');
      const cpu1 = processCpuUs(pid);
      open += opened.ok;
      if (opened.failed > 0) incomplete.push(`sse-conns: ${opened.failed} of ${add} streams failed to open on the way to ${target}: ${opened.errors.join('; ')}`);
      // A heartbeat to every stream happens in the window between the two probes.
      await sleep(300);
      await memory();
      await sleep(HEARTBEAT_MS + 500);
      const st = await sse.stats();
      const mem = await memory();
      const step: ConnsStep = {
        target: int(target),
        connections: open,
        serverClients: st.clients,
        openSeconds: opened.ms / 1000,
        rss: vmRss(pid),
        heapUsed: mem.heapUsed,
        heapTotal: mem.heapTotal,
        external: mem.external,
        loopMaxMs: mem.loopMaxMs,
        nodeCpuUsPerOpen: cpu0 !== undefined && cpu1 !== undefined ? (cpu1 - cpu0) / add : undefined,
      };
      forge.push(step);
      log(
        `sse-conns forge node: ${open} streams (node reports ${st.clients}), opened ${add} in ${step.openSeconds.toFixed(1)} s; RSS ${mb(step.rss)} MB ` +
          `(+${kb((step.rss - baseline.rss) / open)} KB/stream), heap ${mb(step.heapUsed)} MB (+${kb((step.heapUsed - baseline.heap) / open)} KB/stream), ${fdCount(pid)} open files`,
      );
      if (opened.failed > 0) break;
    }
    // Every stream is live: one event per repository reaches each stream exactly once.
    {
      bus = await ForgeBus.connect({ nodeId: 'bench-sse-conns-pub', connection: { servers: ctx.url } });
      const pub = new Publisher(bus);
      await clients.reset();
      const t0 = now();
      for (let r = 0; r < repos; r++) pub.fire(repoName(r));
      await pub.settled();
      const got = await until(() => clients!.counts(), (c) => c.frames >= open, 30_000, 100);
      const ms = Number(now() - t0) / 1e6;
      liveness = `${int(got.value.frames)} of ${int(open)} streams received their repository's event (${repos} events published) within ${ms.toFixed(0)} ms; streams closed: ${got.value.closed}`;
      if (!got.ok || got.value.frames !== open || pub.failures > 0) incomplete.push(`sse-conns liveness: ${liveness}`);
      log(`sse-conns: ${liveness}`);
      await bus.close();
      bus = undefined;
    }
    await clients.closeAll();
    await sse.stop();
    sse = undefined;

    // The same on SseHub + node:http alone (bench/sse-hub-node.ts), heap after a full GC.
    hubNode = await BenchChild.start('./sse-hub-node.js', ctx.url, 30_000, ['hub', String(HEARTBEAT_MS)]);
    const port = (await hubNode.ask<AnyMessage>({ type: 'port' }, 'port', 5_000)).port as number;
    const mem = async () => hubNode!.ask<AnyMessage>({ type: 'mem' }, 'mem', 30_000);
    {
      const { paths, tokenOf } = streams(500, repos, 0, true);
      await clients.open('127.0.0.1', port, paths, ['-'], tokenOf.map(() => 0), 'count');
      await clients.closeAll();
      await sleep(1_000);
    }
    const m0 = await mem();
    hubBaseline = { rss: m0.rss as number, heap: m0.heapUsed as number };
    open = 0;
    for (const target of targets) {
      const add = target - open;
      if (add <= 0) continue;
      const { paths, tokenOf } = streams(add, repos, open, true);
      const cpu0 = processCpuUs(hubNode.pid);
      const opened = await clients.open('127.0.0.1', port, paths, ['-'], tokenOf.map(() => 0), 'count');
      const cpu1 = processCpuUs(hubNode.pid);
      open += opened.ok;
      if (opened.failed > 0) incomplete.push(`sse-conns (SseHub on node:http): ${opened.failed} of ${add} streams failed: ${opened.errors.join('; ')}`);
      await sleep(300);
      await mem();
      await sleep(HEARTBEAT_MS + 500);
      const m = await mem();
      const step: ConnsStep = {
        target: int(target),
        connections: open,
        serverClients: m.clients as number,
        openSeconds: opened.ms / 1000,
        rss: m.rss as number,
        heapUsed: m.heapUsed as number,
        heapTotal: m.heapTotal as number,
        external: m.external as number,
        loopMaxMs: m.loopMaxMs as number,
        nodeCpuUsPerOpen: cpu0 !== undefined && cpu1 !== undefined ? (cpu1 - cpu0) / add : undefined,
      };
      embedded.push(step);
      log(
        `sse-conns SseHub on node:http: ${open} streams, RSS ${mb(step.rss)} MB (+${kb((step.rss - hubBaseline.rss) / open)} KB/stream), ` +
          `heap after GC ${mb(step.heapUsed)} MB (+${kb((step.heapUsed - hubBaseline.heap) / open)} KB/stream)`,
      );
      if (opened.failed > 0) break;
    }
    await clients.closeAll();
  } catch (err) {
    if (sse) log(`sse-conns: output of the forge node:\n${sse.node.output.join('\n')}`);
    throw err;
  } finally {
    await clients?.stop();
    await hubNode?.stop();
    await bus?.close().catch(() => undefined);
    await sse?.stop();
  }

  const row = (label: string, s: (typeof forge)[number], base: { rss: number; heap: number }): string[] => [
    label,
    int(s.connections),
    int(s.serverClients),
    f1(s.openSeconds),
    int(s.connections / s.openSeconds),
    s.nodeCpuUsPerOpen === undefined ? '-' : int(s.nodeCpuUsPerOpen),
    mb(s.rss),
    kb((s.rss - base.rss) / s.connections),
    mb(s.heapUsed),
    kb((s.heapUsed - base.heap) / s.connections),
    f1(s.loopMaxMs ?? NaN),
  ];
  const rows: string[][] = [
    ...forge.map((s) => row('forge node (NestJS + Express + SseHub)', s, baseline)),
    ...embedded.map((s) => row('SseHub on plain node:http (bench-only)', s, hubBaseline)),
  ];
  const last = forge[forge.length - 1];
  if (last) {
    const perConn = (last.rss - baseline.rss) / last.connections;
    notes.push(
      `  sse-conns goal: >= 20,000 streams at <= 20 KB each: ${int(last.connections)} streams (the limit here: 20,000 open files per process, hard limit, ` +
        `${baseline.fds} used by the idle node) at ${kb(perConn)} KB RSS each: ${last.connections >= 20_000 ? '' : 'count capped by the fd limit; '}` +
        `memory ${perConn <= 20 * 1024 ? 'MET' : 'NOT MET'}`,
    );
  }
  notes.push(`  baselines (after 500 streams opened and closed): forge node RSS ${mb(baseline.rss)} MB, heap ${mb(baseline.heap)} MB; SseHub process RSS ${mb(hubBaseline.rss)} MB, heap ${mb(hubBaseline.heap)} MB`);
  if (liveness) notes.push(`  liveness at the end: ${liveness}`);
  ctx.reports.push({
    id: 'sse-conns',
    title: `sse-conns: concurrent streams on one process (clients in ${processes} processes, each stream watching one of ${repos} repositories); RSS and heap (after a full GC) ${HEARTBEAT_MS + 800} ms after opening, per stream = (now - baseline) / streams; ` +
      `longest event-loop stall in a ${HEARTBEAT_MS + 500} ms window holding one heartbeat to every stream (FORGE_SSE_HEARTBEAT_MS=${HEARTBEAT_MS})`,
    header: ['server', 'streams', 'server counts', 'open s', 'opened/s', 'server µs CPU/open', 'RSS MB', 'RSS KB/stream', 'heap MB', 'heap KB/stream', 'longest loop stall ms'],
    rows,
    numeric: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
    notes,
    incomplete,
    data: { baseline, hubBaseline, forge, embedded, liveness },
  });
  return [];
}

// ---- sse-fanout ----------------------------------------------------------------------------------

interface FanoutStep {
  server: string;
  rate: number;
  /** Deliveries per second asked (rate x clients). */
  asked: number;
  /** Deliveries counted from the first publish to the last publish of the step, per second. */
  achieved: number;
  expected: number;
  delivered: number;
  /** Deliveries counted once the clients stopped receiving (a step that fell behind). */
  eventually: number;
  /** CPU of the server process / of the client processes per delivery, µs. */
  serverUsPerDelivery: number;
  clientsUsPerDelivery: number;
  /** ms from the last publish to the last expected delivery (NaN: never within the wait). */
  lagMs: number;
  keptUp: boolean;
  slowDisconnects: number;
  closed: number;
  cpu: { server?: number; clients?: number; nats?: number; bench?: number; other?: number };
  burst?: boolean;
}

async function fanoutSeries(
  ctx: BenchContext,
  label: string,
  serverPid: number,
  clients: Clients,
  pub: Publisher,
  expectedPer: number,
  rates: number[],
  seconds: number,
  slowDisconnects: () => Promise<number>,
  profile: (what: string) => Promise<void> = async () => undefined,
): Promise<FanoutStep[]> {
  const steps: FanoutStep[] = [];
  const measure = async (rate: number, burst: number | undefined, secs = seconds): Promise<FanoutStep> => {
    await clients.reset();
    const slow0 = await slowDisconnects();
    const meter = cpuMeter(ctx.serverPid);
    const s0 = processCpuUs(serverPid);
    const n = burst ?? rate * secs;
    const t0 = now();
    // The rate of a step is taken over its second half, once the clients' pace has settled.
    let atMid: { frames: number; at: bigint } | undefined;
    const mid = burst
      ? undefined
      : new Promise<void>((resolve) =>
          setTimeout(() => {
            const at = now();
            clients.counts().then(
              (c) => {
                atMid = { frames: c.frames, at };
                resolve();
              },
              () => resolve(),
            );
          }, (secs * 1000) / 2),
        );
    if (burst) for (let i = 0; i < n; i++) pub.fire(repoName(0));
    else await paced(n, rate, () => pub.fire(repoName(0)));
    const tPub = now();
    await mid;
    const atPub = burst ? undefined : await clients.counts();
    const expected = n * expectedPer;
    const done = await until(() => clients.counts(), (c) => c.frames >= expected || c.closed > 0, burst ? 30_000 : 5_000, 20);
    const t1 = now();
    const s1 = processCpuUs(serverPid);
    const cpu = meter.end(t1 - t0, done.value.cpuUs + (s0 !== undefined && s1 !== undefined ? s1 - s0 : 0));
    await pub.settled();
    const slow = (await slowDisconnects()) - slow0;
    const complete = done.ok && done.value.frames >= expected && done.value.closed === 0;
    // Behind: let the rest arrive (or not) before the next step counts again.
    let eventually = done.value.frames;
    if (!complete && done.value.closed === 0) {
      let last = -1;
      const drained = await until(
        () => clients.counts(),
        (c) => {
          const stable = c.frames === last || c.frames >= expected;
          last = c.frames;
          return stable;
        },
        30_000,
        500,
      );
      eventually = drained.value.frames;
    }
    const lagMs = complete ? Number(t1 - tPub) / 1e6 : NaN;
    const achieved = burst
      ? (done.value.frames * 1e9) / Number(t1 - t0)
      : atMid
        ? ((atPub!.frames - atMid.frames) * 1e9) / Number(tPub - atMid.at)
        : (atPub!.frames * 1e9) / Number(tPub - t0);
    const serverUs = s0 !== undefined && s1 !== undefined ? s1 - s0 : undefined;
    return {
      server: label,
      rate,
      asked: burst ? NaN : rate * expectedPer,
      achieved,
      expected,
      delivered: done.value.frames,
      eventually,
      lagMs,
      keptUp: complete && slow === 0 && (burst !== undefined || (lagMs <= 1_000 && achieved >= 0.9 * rate * expectedPer)),
      slowDisconnects: slow,
      closed: done.value.closed,
      serverUsPerDelivery: serverUs !== undefined && done.value.frames > 0 ? serverUs / done.value.frames : NaN,
      clientsUsPerDelivery: done.value.frames > 0 ? done.value.cpuUs / done.value.frames : NaN,
      cpu: {
        server: cpuPct(serverUs, t1 - t0),
        clients: cpuPct(done.value.cpuUs, t1 - t0),
        nats: cpu.server,
        bench: cpu.bench,
        other: cpu.other,
      },
      burst: burst !== undefined,
    };
  };
  log(`sse-fanout ${label}: warm-up 2 s at ${rates[0]} events/s`);
  await measure(rates[0]!, undefined, 2);
  await profile(`sse-fanout steps ${rates.join(',')} events/s`);
  for (const rate of rates) {
    const step = await measure(rate, undefined);
    steps.push(step);
    log(
      `sse-fanout ${label} ${rate} events/s: asked ${int(step.asked)} deliveries/s, achieved ${int(step.achieved)}/s, ${int(step.delivered)}/${int(step.expected)} delivered, ` +
        `lag ${f1(step.lagMs)} ms, slow disconnects ${step.slowDisconnects}, closed ${step.closed}; CPU server ${pct(step.cpu.server)} (${f1(step.serverUsPerDelivery)} µs/delivery) ` +
        `clients ${pct(step.cpu.clients)} (${f1(step.clientsUsPerDelivery)} µs/delivery) nats ${pct(step.cpu.nats)} other ${pct(step.cpu.other)}`,
    );
    if (!step.keptUp) break;
  }
  await profile(`sse-fanout steps ${rates.join(',')} events/s`);
  if (steps.every((s) => s.closed === 0)) {
    const burstEvents = 100;
    const step = await measure(burstEvents, burstEvents);
    steps.push(step);
    log(
      `sse-fanout ${label} burst of ${burstEvents} events: ${int(step.delivered)}/${int(step.expected)} delivered at ${int(step.achieved)} deliveries/s; ` +
        `CPU server ${pct(step.cpu.server)} (${f1(step.serverUsPerDelivery)} µs/delivery) clients ${pct(step.cpu.clients)} other ${pct(step.cpu.other)}`,
    );
  }
  return steps;
}

const NODE = 'forge node (SseHub)';
const FLOOR = 'floor: 1 subscription, frame built once, socket.write';
const PERSUB = 'baseline: 1 NATS subscription per client';

export async function caseSseFanout(ctx: BenchContext): Promise<Row[]> {
  const total = envInt('FORGEBUS_BENCH_SSE_FANOUT_CLIENTS', 10_000);
  const rates = envInts('FORGEBUS_BENCH_SSE_FANOUT_RATES', [5, 10, 20, 40]);
  const seconds = envInt('FORGEBUS_BENCH_SSE_FANOUT_SECONDS', 6);
  const servers = (process.env.FORGEBUS_BENCH_SSE_FANOUT_SERVERS ?? 'node,floor,persub').split(',').map((x) => x.trim());
  const unknown = servers.filter((v) => v !== 'node' && v !== 'floor' && v !== 'persub');
  if (unknown.length > 0) throw new Error(`FORGEBUS_BENCH_SSE_FANOUT_SERVERS: unknown ${unknown.join(', ')} (node, floor, persub)`);
  const processes = Math.max(1, Math.ceil(total / 9_800), 2);
  const steps: FanoutStep[] = [];
  const incomplete: string[] = [];
  let sse: SseNode | undefined;
  let clients: Clients | undefined;
  let other: BenchChild | undefined;
  /** Publishes that failed (no JetStream ack after the SDK's retries) during each series. */
  const publishFailures = new Map<string, string>();
  let bus: ForgeBus | undefined;
  try {
    bus = await ForgeBus.connect({ nodeId: 'bench-sse-fanout-pub', connection: { servers: ctx.url } });
    const pub = new Publisher(bus);
    clients = await Clients.start(ctx, processes);
    const { paths, tokenOf } = streams(total, 1, 0, true);
    if (servers.includes('node')) {
      sse = await startSseNode(ctx, 'bench-sse-fanout', 1);
      const opened = await clients.open(sse.host, sse.port, paths, sse.tokens, tokenOf, 'count');
      if (opened.failed > 0) throw new Error(`sse-fanout: ${opened.failed} of ${total} streams failed to open: ${opened.errors.join('; ')}`);
      log(`sse-fanout: ${total} streams open on the forge node in ${(opened.ms / 1000).toFixed(1)} s, all watching ${OWNER}/${repoName(0)}`);
      const node = sse;
      const f0 = pub.failures;
      steps.push(...(await fanoutSeries(ctx, NODE, node.node.pid, clients, pub, total, rates, seconds, async () => (await node.stats()).slowDisconnects, node.profile)));
      if (pub.failures > f0) publishFailures.set(NODE, `${pub.failures - f0} (${pub.lastError})`);
      await clients.closeAll();
      await sse.stop();
      sse = undefined;
    }
    // Then the bench-only servers (bench/sse-hub-node.ts), one at a time, with the same clients.
    for (const variant of servers.filter((v) => v !== 'node')) {
      const label = variant === 'persub' ? PERSUB : FLOOR;
      other = await BenchChild.start('./sse-hub-node.js', ctx.url, 30_000, [variant]);
      const port = (await other.ask<AnyMessage>({ type: 'port' }, 'port', 5_000)).port as number;
      const opened2 = await clients.open('127.0.0.1', port, paths, ['-'], tokenOf.map(() => 0), 'count');
      if (opened2.failed > 0) throw new Error(`sse-fanout ${label}: ${opened2.failed} of ${total} streams failed to open: ${opened2.errors.join('; ')}`);
      log(`sse-fanout: ${total} streams open on ${label} in ${(opened2.ms / 1000).toFixed(1)} s`);
      const f0 = pub.failures;
      steps.push(...(await fanoutSeries(ctx, label, other.pid!, clients, pub, total, rates, seconds, async () => 0)));
      if (pub.failures > f0) publishFailures.set(label, `${pub.failures - f0} (${pub.lastError})`);
      await clients.closeAll();
      await other.stop();
      other = undefined;
    }
    for (const [label, what] of publishFailures) {
      // The forbidden design slows nats-server for every publisher: a finding, not a bench failure.
      if (label !== PERSUB) incomplete.push(`sse-fanout ${label}: publishes failed: ${what}`);
    }
  } catch (err) {
    if (sse) log(`sse-fanout: output of the forge node:\n${sse.node.output.join('\n')}`);
    throw err;
  } finally {
    await clients?.stop();
    await other?.stop();
    await bus?.close().catch(() => undefined);
    await sse?.stop();
  }
  const rows = steps.map((s) => [
    s.server,
    s.burst ? `burst of ${s.rate}` : int(s.rate),
    s.burst ? '-' : int(s.asked),
    int(s.achieved),
    `${int(s.delivered)} / ${int(s.expected)}${s.eventually !== s.delivered ? ` (${int(s.eventually)} later)` : ''}`,
    f1(s.lagMs),
    s.keptUp ? 'yes' : 'NO',
    String(s.slowDisconnects),
    String(s.closed),
    pct(s.cpu.server),
    f1(s.serverUsPerDelivery),
    pct(s.cpu.clients),
    f1(s.clientsUsPerDelivery),
    pct(s.cpu.nats),
    pct(s.cpu.other),
  ]);
  const of = (server: string) => steps.filter((s) => s.server === server);
  /** Highest rate among the steps the clients kept up with. */
  const sustained = (server: string): FanoutStep | undefined => of(server).filter((s) => !s.burst && s.keptUp).sort((a, b) => b.achieved - a.achieved)[0];
  /** Highest rate measured at all (steps that fell behind and the burst included). */
  const peak = (server: string): FanoutStep | undefined => [...of(server)].sort((a, b) => b.achieved - a.achieved)[0];
  const firstStep = (server: string): FanoutStep | undefined => of(server).find((s) => !s.burst);
  const rate = (s: FanoutStep | undefined): string => (s ? `${int(s.achieved)}/s (${s.burst ? `burst of ${s.rate}` : `${s.rate} events/s`})` : '-');
  const ratio = (a: number | undefined, b: number | undefined): string => (a !== undefined && b !== undefined && b > 0 ? `${f2(a / b)}x` : '-');
  const notes: string[] = [];
  const hub = sustained(NODE);
  notes.push(
    `  sse-fanout goal: >= 200,000 deliveries/s to ${int(total)} clients: SseHub sustained ${rate(hub)} ${hub && hub.achieved >= 200_000 ? 'MET' : 'NOT MET'}, peak ${rate(peak(NODE))}`,
  );
  for (const other of [FLOOR, PERSUB]) {
    if (of(other).length === 0 || of(NODE).length === 0) continue;
    notes.push(
      `  SseHub / ${other}: sustained ${ratio(hub?.achieved, sustained(other)?.achieved)} (${rate(sustained(other))}), peak ${ratio(peak(NODE)?.achieved, peak(other)?.achieved)} (${rate(peak(other))}); ` +
        `server µs CPU per delivery at ${firstStep(NODE)?.rate} events/s: ${f1(firstStep(NODE)?.serverUsPerDelivery ?? NaN)} vs ${f1(firstStep(other)?.serverUsPerDelivery ?? NaN)}`,
    );
  }
  const busy = steps.filter((st) => (st.cpu.other ?? 0) > 15).map((st) => `${st.server} ${st.burst ? 'burst' : `${st.rate} events/s`} (${pct(st.cpu.other)})`);
  if (busy.length > 0) {
    notes.push(`  WARNING: other programs used more than 15% of a core during ${busy.join('; ')}: those figures are low and noisy; run again on an idle machine.`);
  }
  for (const [label, what] of publishFailures) notes.push(`  publishes that got no JetStream ack after the SDK's 5 attempts during ${label}: ${what}`);
  const extra = steps.filter((st) => st.delivered > st.expected || st.eventually > st.expected);
  for (const st of extra) {
    notes.push(`  ${st.server} ${st.burst ? 'burst' : `${st.rate} events/s`}: ${int(Math.max(st.delivered, st.eventually) - st.expected)} deliveries more than published events x clients (duplicates: a core subscription sees every publish retry; JetStream drops them by Nats-Msg-Id)`);
  }
  notes.push(
    `  kept up = at least 90% of the asked rate counted while publishing, every delivery within 1 s of the step's last publish, no stream closed, no slow-client disconnect; ` +
      `achieved = deliveries counted over the second half of the step's publishing, per second (burst: first publish to last delivery)`,
  );
  ctx.reports.push({
    id: 'sse-fanout',
    title: `sse-fanout: ${int(total)} streams on one server process (clients in ${processes} processes), all watching one repository; issue.created published by the bench (ForgeBus) for ${seconds} s per rate, then a burst`,
    header: ['server', 'events/s', 'deliveries/s asked', 'achieved', 'delivered / expected', 'lag ms', 'kept up', 'slow drops', 'closed', 'server CPU', 'µs/delivery', 'clients CPU', 'µs/delivery', 'nats-server', 'other'],
    rows,
    numeric: [1, 2, 3, 4, 5, 7, 8, 9, 10, 11, 12, 13, 14],
    notes,
    incomplete,
    data: { total, rates, seconds, steps },
  });
  return [];
}
