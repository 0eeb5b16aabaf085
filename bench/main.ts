/**
 * `npm run bench`: starts its own nats-server (JetStream, temporary storage, free loopback ports)
 * and measures, with the same issue.created event document:
 *   a  raw nats.js core publish -> subscribe                         (baseline)
 *   b  raw JetStream: js.publish acked; ordered consumer reads
 *   c  ForgeBus.publish acked                                        (target >= 3x b.pub)
 *   d  ForgeBus.publish -> bus.on handler in another process         (target >= 1.5x e)
 *   e  NestJS ClientProxy.emit -> @EventPattern handler in another process (Transport.NATS)
 *   f  baseline for d: @nestjs-plugins/nestjs-nats-jetstream-transport, emit (acked, JetStream) ->
 *      @EventPattern handler on its durable push consumer in another process; one row per window
 * and, for the cache (src/cache):
 *   inv   invalidation convergence: publisher's ack -> entry gone on all of 3 cache nodes
 *         (p50/p99/max at 1,000 and 10,000 events/s; goal p99 <= 5 ms at 1,000/s)
 *   read  GET of one issue on a forge node process, cached vs uncached, requests/s and ratio
 * and, for the repository write queue (src/repo-writes):
 *   writes  queue vs per-repository KV lock, no-op and git writes, 1/10/100 repositories
 * and, for a highly available bus (issue 12):
 *   replicas  ForgeBus.publish acked: 1 server vs a 3-server cluster with 1 and with 3 copies
 * and, for git over HTTP (issue 13):
 *   git  pushes/s to 1 and to 20 repositories and clone MB/s through a forge node vs git http-backend
 * and, for the SSE gateway (src/sse; bench/case-sse.ts; `--only sse` runs all three):
 *   sse-latency  publish -> SSE client on another node, 1,000 events/s, 1,000 clients
 *   sse-conns    streams per node process and memory per stream
 *   sse-fanout   deliveries/s to 10,000 clients of one node
 *
 * Flags: see usage() below.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { startNatsServer, type RunningNatsServer } from '../src/ops/nats-server.js';
import { caseInvalidation } from './case-invalidation.js';
import { caseCachedReads } from './case-read.js';
import { caseWrites } from './case-writes.js';
import { caseReplicas } from './case-replicas.js';
import { caseGit } from './case-git.js';
import { caseSseConns, caseSseFanout, caseSseLatency } from './case-sse.js';
import { CASES as RATE_CASES, type BenchContext, type Row } from './cases.js';
import { printReport, type Report } from './report.js';
import { killAllChildrenNow } from './children.js';
import { ENVELOPE_BYTES, ENVELOPE_JSON, log, median } from './common.js';

/** Every case, in the order they run: the rate cases of cases.ts, then the cache cases. */
const CASES: Record<string, (ctx: BenchContext) => Promise<Row[]>> = {
  ...RATE_CASES,
  inv: caseInvalidation,
  read: caseCachedReads,
  writes: caseWrites,
  replicas: caseReplicas,
  git: caseGit,
  'sse-latency': caseSseLatency,
  'sse-conns': caseSseConns,
  'sse-fanout': caseSseFanout,
};
/** Names for several cases at once in --only. */
const GROUPS: Record<string, string[]> = { sse: ['sse-latency', 'sse-conns', 'sse-fanout'] };

interface Options {
  events: number;
  runs: number;
  only: string[];
  window: number;
  jsWindow: number;
  fWindows: number[];
  fMaxAckPending?: number;
  json: boolean;
  invRates: number[];
  invSeconds: number;
  invRuns: number;
  readSeconds: number;
  connections: number;
  readDbLatencies: number[];
  readPostgres: boolean;
}

function usage(exitCode: number): never {
  const text = `usage: npm run bench -- [--events N] [--runs R] [--only a,b,c,d,e,f,c0,d0,inv,read,writes,replicas,git,sse-latency,sse-conns,sse-fanout|sse] [--window W] [--js-window W] [--f-windows W1,W2] [--json]
                             [--inv-rates R1,R2] [--inv-seconds S] [--inv-runs R] [--read-seconds S] [--connections N] [--read-db-latency L1,L2]
  --events N     events per measured run (default 100000)
  --runs R       measured runs per case after one warm-up run; the table shows the median (default 5)
  --only LIST    run only these cases: a core NATS, b raw JetStream, c SDK publish, d SDK end to end,
                 e NestJS transport, f NestJS JetStream plugin (baseline for d), c0/d0 diagnostic floors for c/d written directly on nats.js,
                 inv cache invalidation convergence on 3 nodes, read cached vs uncached issue reads over HTTP,
                 writes repository write queue vs a per-repository KV lock,
                 replicas ForgeBus.publish acked on 1 server vs a 3-server cluster with 1 and 3 copies,
                 git pushes and clones through a forge node vs git http-backend,
                 sse-latency, sse-conns, sse-fanout (or sse: all three) the SSE gateway (settings: bench/case-sse.ts)
  --window W     SDK publishes kept in flight by the bench in c, d, f.sdk, c0, d0 (default 4096, the SDK's maxInFlight)
  --js-window W  js.publish calls kept in flight in b (default 256, its best setting here: 64..4096 tried)
  --f-windows L  f: emits kept in flight, one row each, and row f.sdk (d's path, interleaved);
                 the table ends with f.sdk / the best window (default 16,64,256; 1 and 1024 were slower)
  --f-max-ack-pending N  f: max_ack_pending of the plugin's consumer (default: not set, the server's default)
  --inv-rates L  inv: publish rates in events/s (default 1000,10000)
  --inv-seconds S  inv: seconds per run (default 5)
  --inv-runs R   inv: runs per rate, after a 1 s warm-up (default 3)
  --read-seconds S  read: seconds per measurement (4 per configuration, in turns), after a 2 s warm-up (default 2)
  --connections N   read: concurrent keep-alive connections (default 32)
  --read-db-latency L  read: FORGE_DB_LATENCY_MS values, a cached and an uncached row each on SQLite (default 0,2)
  --read-no-postgres   read: leave out the pair on a real PostgreSQL (started by the bench on loopback)
  --json         print the results as JSON instead of the table`;
  (exitCode === 0 ? console.log : console.error)(text);
  process.exit(exitCode);
}

function parseArgs(argv: string[]): Options {
  const o: Options = {
    events: 100_000,
    runs: 5,
    only: Object.keys(CASES),
    window: 4096,
    jsWindow: 256,
    fWindows: [16, 64, 256],
    json: false,
    invRates: [1_000, 10_000],
    invSeconds: 5,
    invRuns: 3,
    readSeconds: 2,
    connections: 32,
    readDbLatencies: [0, 2],
    readPostgres: true,
  };
  const int = (flag: string, v: string | undefined, min: number): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) {
      console.error(`${flag} needs an integer >= ${min}, got ${v}`);
      usage(2);
    }
    return n;
  };
  const ints = (flag: string, v: string | undefined, min: number): number[] => {
    const list = (v ?? '').split(',').map((x) => x.trim()).filter(Boolean);
    if (list.length === 0) {
      console.error(`${flag} needs a comma-separated list of integers >= ${min}`);
      usage(2);
    }
    return list.map((x) => int(flag, x, min));
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const [flag, inline] = arg.startsWith('--') && arg.includes('=') ? [arg.slice(0, arg.indexOf('=')), arg.slice(arg.indexOf('=') + 1)] : [arg, undefined];
    const value = (): string | undefined => inline ?? argv[++i];
    switch (flag) {
      case '--events':
      case '-n':
        o.events = int(flag, value(), 1);
        break;
      case '--runs':
        o.runs = int(flag, value(), 1);
        break;
      case '--window':
        o.window = int(flag, value(), 1);
        break;
      case '--js-window':
        o.jsWindow = int(flag, value(), 1);
        break;
      case '--only': {
        const list = (value() ?? '').split(',').map((s) => s.trim().toLowerCase()).filter(Boolean).flatMap((c) => GROUPS[c] ?? [c]);
        const unknown = list.filter((c) => !(c in CASES));
        if (list.length === 0 || unknown.length > 0) {
          console.error(`--only: unknown case(s) ${unknown.join(', ') || '(none given)'}; cases are ${Object.keys(CASES).join(', ')}`);
          usage(2);
        }
        o.only = Object.keys(CASES).filter((c) => list.includes(c));
        break;
      }
      case '--f-windows':
        o.fWindows = ints(flag, value(), 1);
        break;
      case '--f-max-ack-pending':
        o.fMaxAckPending = int(flag, value(), 1);
        break;
      case '--json':
        o.json = true;
        break;
      case '--inv-rates':
        o.invRates = ints(flag, value(), 1);
        break;
      case '--inv-seconds':
        o.invSeconds = int(flag, value(), 1);
        break;
      case '--inv-runs':
        o.invRuns = int(flag, value(), 1);
        break;
      case '--read-seconds':
        o.readSeconds = int(flag, value(), 1);
        break;
      case '--connections':
        o.connections = int(flag, value(), 1);
        break;
      case '--read-db-latency':
        o.readDbLatencies = ints(flag, value(), 0);
        break;
      case '--read-no-postgres':
        o.readPostgres = false;
        break;
      case '--help':
      case '-h':
        usage(0);
      // falls through (usage exits)
      default:
        console.error(`unknown argument ${arg}`);
        usage(2);
    }
  }
  return o;
}

// ---- the report ------------------------------------------------------------------------------

interface Comparison {
  /** A row id, or a prefix ending in '*' (case f has one row per window). */
  row: string;
  against: string;
  target?: number;
}

/** What each row is compared with; a target where the project set one. */
const COMPARISONS: Comparison[] = [
  { row: 'a', against: 'a' },
  { row: 'b.pub', against: 'a' },
  { row: 'b.read', against: 'a' },
  { row: 'c', against: 'b.pub', target: 3 },
  { row: 'd', against: 'e', target: 1.5 },
  { row: 'e', against: 'a' },
  { row: 'f.*', against: 'e' },
  { row: 'c0', against: 'b.pub' },
  { row: 'd0', against: 'e' },
  // replicas: each setup against the single server of the same run (three copies cost what?).
  { row: 'r1', against: 'r1' },
  { row: 'r3-1', against: 'r1' },
  { row: 'r3', against: 'r1' },
];

interface Result {
  case: string;
  label: string;
  events: number;
  runs: number;
  eventsPerSecond: number | null;
  min: number | null;
  max: number | null;
  ratio: number | null;
  ratioAgainst: string;
  target: number | null;
  targetMet: boolean | null;
  incomplete: string[];
  notes: string[];
  /** Median CPU use during the measured runs, percent of one core. */
  cpu: { bench: number | null; child: number | null; server: number | null; other: number | null };
}

function medianOf(values: (number | undefined)[]): number | null {
  const v = values.filter((x): x is number => x !== undefined);
  return v.length ? median(v) : null;
}

function comparisonOf(id: string): Comparison {
  return COMPARISONS.find((c) => c.row === id || (c.row.endsWith('*') && id.startsWith(c.row.slice(0, -1))))!;
}

/**
 * The SDK's end-to-end path (d) against the best window of f (the NestJS JetStream plugin): f.sdk,
 * d's rounds interleaved with f's, or else case d of the same run.
 */
interface Baseline {
  case: string;
  against: string;
  /** Ratio of the medians. */
  ratio: number;
  /** Ratio within each measured run (f.sdk only: run i of both, taken minutes apart at most). */
  perRun: number[];
}

function baselines(rs: Result[], rows: Row[]): Baseline[] {
  const d = rs.find((r) => r.case === 'f.sdk' && r.eventsPerSecond !== null) ?? rs.find((r) => r.case === 'd' && r.eventsPerSecond !== null);
  const f = rs
    .filter((r) => r.case.startsWith('f.') && r.case !== 'f.sdk' && r.eventsPerSecond !== null)
    .sort((x, y) => y.eventsPerSecond! - x.eventsPerSecond!)[0];
  if (!d || !f) return [];
  const dRates = rows.find((r) => r.id === d.case)!.rates;
  const fRates = rows.find((r) => r.id === f.case)!.rates;
  const paired = d.case === 'f.sdk' && dRates.length === fRates.length && d.incomplete.length === 0 && f.incomplete.length === 0;
  return [{ case: d.case, against: f.case, ratio: d.eventsPerSecond! / f.eventsPerSecond!, perRun: paired ? dRates.map((x, i) => x / fRates[i]!) : [] }];
}

function results(rows: Row[]): Result[] {
  const byId = new Map(rows.map((r) => [r.id, r]));
  const med = (id: string): number | null => {
    const r = byId.get(id);
    return r && r.rates.length > 0 ? median(r.rates) : null;
  };
  const sorted = [...rows].sort((x, y) => COMPARISONS.indexOf(comparisonOf(x.id)) - COMPARISONS.indexOf(comparisonOf(y.id)));
  return sorted.map((r) => {
    const cmp = comparisonOf(r.id);
    const mine = med(r.id);
    const base = med(cmp.against);
    const ratio = mine !== null && base !== null ? mine / base : null;
    const target = cmp.target ?? null;
    return {
      case: r.id,
      label: r.label,
      events: r.events,
      runs: r.rates.length,
      eventsPerSecond: mine,
      min: r.rates.length ? Math.min(...r.rates) : null,
      max: r.rates.length ? Math.max(...r.rates) : null,
      ratio,
      ratioAgainst: cmp.against,
      target,
      targetMet: target === null || ratio === null ? null : ratio >= target,
      incomplete: r.incomplete,
      notes: r.notes,
      cpu: {
        bench: medianOf(r.cpu.map((c) => c.bench)),
        child: medianOf(r.cpu.map((c) => c.child)),
        server: medianOf(r.cpu.map((c) => c.server)),
        other: medianOf(r.cpu.map((c) => c.other)),
      },
    };
  });
}

const num = (v: number | null): string => (v === null ? '-' : Math.round(v).toLocaleString('en-US'));

function printEnvironment(environment: Record<string, unknown>, extra?: string): void {
  console.log('');
  console.log(
    `forgebus bench: ${environment.cpus} cores (${environment.cpuModel}), node ${environment.node}, nats-server ${environment.natsServer}` +
      (extra ? `; ${extra}` : ''),
  );
}

function printTable(rs: Result[], bs: Baseline[], o: Options, environment: Record<string, unknown>): void {
  const header = ['case', 'what', 'events x runs', 'events/s (median)', 'min .. max', 'ratio', 'target'];
  const lines = rs.map((r) => [
    r.case,
    r.label,
    `${r.events.toLocaleString('en-US')} x ${r.runs}${r.incomplete.length ? ` (+${r.incomplete.length} incomplete)` : ''}`,
    num(r.eventsPerSecond),
    r.min === null ? '-' : `${num(r.min)} .. ${num(r.max)}`,
    r.ratio === null ? '-' : r.case === r.ratioAgainst ? 'baseline' : `${r.ratio.toFixed(2)}x ${r.ratioAgainst}`,
    r.target === null ? '' : `>= ${r.target}x ${r.ratioAgainst}: ${r.targetMet === null ? 'n/a' : r.targetMet ? 'MET' : 'NOT MET'}`,
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  const fmt = (cells: string[]): string => `| ${cells.map((c, i) => (i >= 2 && i <= 4 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join(' | ')} |`;
  printEnvironment(environment, `event document ${environment.eventBytes} bytes; warm-up ${environment.warmup} events, then ${o.runs} measured runs per case`);
  console.log(fmt(header));
  console.log(`|${widths.map((w, i) => (i >= 2 && i <= 4 ? `${'-'.repeat(w + 1)}:` : '-'.repeat(w + 2))).join('|')}|`);
  for (const l of lines) console.log(fmt(l));
  for (const r of rs) for (const inc of r.incomplete) console.log(`  ${r.case}: incomplete ${inc}`);
  for (const b of bs) {
    const perRun = b.perRun.length ? `; run by run ${b.perRun.map((x) => `${x.toFixed(2)}x`).join(', ')}` : '';
    console.log(`${b.case} / ${b.against} (the NestJS JetStream plugin's best window, same run): ${b.ratio.toFixed(2)}x${perRun}`);
  }

  // Where the CPU went: which process is the bottleneck (100% = one core busy).
  const pct = (v: number | null): string => (v === null ? '-' : `${Math.round(v)}%`);
  const perEvent = (r: Result, v: number | null): string =>
    v === null || !r.eventsPerSecond ? '-' : `${((v / 100) * 1e6 / r.eventsPerSecond).toFixed(1)}`;
  const cpuHeader = ['case', 'bench process', 'child process', 'nats-server', 'other programs', 'µs CPU/event: bench', 'child', 'server'];
  const cpuLines = rs.map((r) => [
    r.case,
    pct(r.cpu.bench),
    pct(r.cpu.child),
    pct(r.cpu.server),
    pct(r.cpu.other),
    perEvent(r, r.cpu.bench),
    perEvent(r, r.cpu.child),
    perEvent(r, r.cpu.server),
  ]);
  const cw = cpuHeader.map((h, i) => Math.max(h.length, ...cpuLines.map((l) => l[i]!.length)));
  const cfmt = (cells: string[]): string => `| ${cells.map((c, i) => (i === 0 ? c.padEnd(cw[i]!) : c.padStart(cw[i]!))).join(' | ')} |`;
  console.log('');
  console.log('CPU during the measured runs (median; 100% = one core busy; the machine has ' + environment.cpus + ')');
  console.log(cfmt(cpuHeader));
  console.log(`|${cw.map((w, i) => (i === 0 ? '-'.repeat(w + 2) : `${'-'.repeat(w + 1)}:`)).join('|')}|`);
  for (const l of cpuLines) console.log(cfmt(l));
  const busy = rs.filter((r) => (r.cpu.other ?? 0) > 15).map((r) => r.case);
  if (busy.length > 0) {
    console.log(
      `WARNING: other programs used more than 15% of a core during ${busy.join(', ')}: those figures are low and noisy; ` +
        'run again on an idle machine.',
    );
  }
}

// ---- main ------------------------------------------------------------------------------------

/** Set on Ctrl-C / SIGTERM: the cases then fail as their children vanish; stay quiet about it. */
let interrupted = false;

async function main(): Promise<number> {
  const o = parseArgs(process.argv.slice(2));
  const storeDir = mkdtempSync(join(tmpdir(), 'forgebus-bench-'));
  let server: RunningNatsServer | undefined;
  let cleaned = false;
  const cleanup = async (): Promise<void> => {
    if (cleaned) return;
    cleaned = true;
    killAllChildrenNow();
    await server?.stop().catch(() => undefined);
    rmSync(storeDir, { recursive: true, force: true });
  };
  const onSignal = (signal: NodeJS.Signals): void => {
    interrupted = true;
    log(`${signal}: stopping children and nats-server`);
    void cleanup().finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  // Last resort if something exits the process on another path: never leave a server behind.
  process.once('exit', () => {
    killAllChildrenNow();
    if (server && server.process.exitCode === null) server.process.kill('SIGKILL');
    rmSync(storeDir, { recursive: true, force: true });
  });

  try {
    let serverVersion = '?';
    server = await startNatsServer({
      storeDir,
      monitorPort: -1,
      serverName: 'forgebus-bench',
      onLog: (line) => {
        const m = /Version:\s+(\S+)/.exec(line);
        if (m) serverVersion = m[1]!;
      },
    });
    log(`nats-server ${serverVersion} at ${server.url}, storage ${storeDir}`);
    const load1 = loadavg()[0]!;
    if (load1 > 0.5) log(`note: load average is ${load1.toFixed(2)} before the bench starts: other programs are running`);
    const ctx: BenchContext = {
      url: server.url,
      events: o.events,
      runs: o.runs,
      warmup: Math.max(1_000, Math.min(20_000, Math.round(o.events / 10))),
      window: o.window,
      jsWindow: o.jsWindow,
      f: { windows: o.fWindows, maxAckPending: o.fMaxAckPending },
      consumerBuffer: 1024,
      serverPid: server.process.pid,
      inv: { rates: o.invRates, seconds: o.invSeconds, runs: o.invRuns },
      read: { seconds: o.readSeconds, connections: o.connections, dbLatencies: o.readDbLatencies, postgres: o.readPostgres },
      reports: [],
    };
    const rows: Row[] = [];
    const started = Date.now();
    for (const id of o.only) {
      const t = Date.now();
      rows.push(...(await CASES[id]!(ctx)));
      log(`case ${id} took ${((Date.now() - t) / 1000).toFixed(1)} s`);
    }
    const environment = {
      cpus: cpus().length,
      cpuModel: cpus()[0]?.model.trim() ?? '?',
      node: process.version,
      natsServer: serverVersion,
      eventBytes: ENVELOPE_BYTES.length,
      warmup: ctx.warmup,
      seconds: Math.round((Date.now() - started) / 100) / 10,
    };
    const rs = results(rows);
    const bs = baselines(rs, rows);
    const reports: Report[] = ctx.reports;
    if (o.json) {
      console.log(
        JSON.stringify(
          { environment, options: o, event: JSON.parse(ENVELOPE_JSON), results: rs, baselines: bs, cache: Object.fromEntries(reports.map((r) => [r.id, r.data])) },
          null,
          2,
        ),
      );
    } else {
      if (rs.length > 0) printTable(rs, bs, o, environment);
      else printEnvironment(environment);
      for (const r of reports) printReport(r);
      console.log(`(cases ran in ${environment.seconds} s)`);
    }
    return rs.some((r) => r.incomplete.length > 0) || reports.some((r) => r.incomplete.length > 0) ? 1 : 0;
  } finally {
    await cleanup();
  }
}

main().then(
  (code) => {
    if (!interrupted) process.exit(code);
  },
  (err: unknown) => {
    if (interrupted) return; // the signal handler exits once the cleanup is done
    console.error(`bench failed: ${(err as Error)?.stack ?? String(err)}`);
    process.exit(1);
  },
);
