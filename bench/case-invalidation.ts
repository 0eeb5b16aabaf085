/**
 * Case inv: cross-node cache invalidation convergence.
 *
 * Three cache nodes (bench/child-cache.ts: a ForgeBus + ForgeCache each, in its own process, with
 * the forge node's default cache size of 10,000 entries) hold one cached entry for each of 10,000
 * issues. The bench process publishes `issue.updated` events with `ForgeBus.publish`, paced at a
 * requested rate, going round the 10,000 issues; a node reads an issue into its cache again right
 * after its invalidation (as the next GET would), so every event has an entry to remove. For every
 * event:
 *
 *   ack      when the bench process saw the publish acknowledged (the promise resolved)
 *   gone_k   when node k's feed handler, running right after the cache applied the event's
 *            invalidation, saw the entry gone
 *   latency  max_k(gone_k) - ack: from the publisher's ack to the entry gone on ALL 3 nodes
 *
 * All times are process.hrtime.bigint() (CLOCK_MONOTONIC, one clock for every process on Linux).
 * The latency can be negative: the server delivers the event to the consumers at the same time
 * as it sends the ack, and all three nodes may apply it before the publisher has read its ack.
 */
import { writeFileSync } from 'node:fs';
import { connect } from '@nats-io/transport-node';
import { ForgeBus } from '../src/bus/bus.js';
import type { BenchContext, Row } from './cases.js';
import { resetEventStream } from './cases.js';
import { BenchChild } from './children.js';
import { cpuMeter, log, median, now, paced, percentile, REPO, sleep, TimeoutError, withTimeout, type AnyMessage, type CpuShare } from './common.js';
import { int, ms, pct, type Report } from './report.js';

const NODES = 3;
/** Issues cached on every node: the forge node's default cache size (FORGE_CACHE_MAX_ENTRIES). */
const ISSUES = 10_000;
/** The issue's goal: p99 from ack to gone on all nodes at 1,000 events/s. */
const GOAL = { rate: 1_000, p99Ms: 5 };

interface ChildReport extends AnyMessage {
  gone: number[];
  recorded: number;
  stillCached: number;
  invalidatedEntries: number;
  cpuUs: number;
  cacheEntries: number;
  state: string;
  gapFlushes: number;
  feed: Record<string, number>;
}

interface RunResult {
  rate: number;
  run: number;
  events: number;
  /** Events per second between the first and the last send. */
  achievedRate: number;
  /** Most events sent in one timer tick of the pacer. */
  maxBurst: number;
  failedPublishes: number;
  /** Per event, ns (NaN where an event was never seen gone on every node). */
  ackToGone: Float64Array;
  sendToGone: Float64Array;
  sendToAck: Float64Array;
  /** ack -> gone per node. */
  perNode: Float64Array[];
  missing: number;
  stillCached: number;
  cpu: CpuShare;
  /** Events after which a node removed no entry, or more than one (must stay 0). */
  removalMismatches: number;
  children: Omit<ChildReport, 'gone'>[];
}

const sortedFinite = (a: Float64Array): Float64Array => a.filter((v) => Number.isFinite(v)).sort();

function summary(values: Float64Array): { p50: number; p99: number; p999: number; max: number; min: number; negative: number; n: number } {
  const s = sortedFinite(values);
  return {
    p50: percentile(s, 0.5),
    p99: percentile(s, 0.99),
    p999: percentile(s, 0.999),
    max: s.length ? s[s.length - 1]! : NaN,
    min: s.length ? s[0]! : NaN,
    negative: s.filter((v) => v < 0).length,
    n: s.length,
  };
}

const concat = (parts: Float64Array[]): Float64Array => {
  const out = new Float64Array(parts.reduce((sum, p) => sum + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
};

async function startNodes(url: string): Promise<BenchChild[]> {
  const started = await Promise.allSettled(Array.from({ length: NODES }, (_, k) => BenchChild.start('./child-cache.js', url, 30_000, [`bench-cache-${k + 1}`])));
  const nodes = started.filter((s): s is PromiseFulfilledResult<BenchChild> => s.status === 'fulfilled').map((s) => s.value);
  const failed = started.find((s): s is PromiseRejectedResult => s.status === 'rejected');
  if (failed) {
    await Promise.all(nodes.map((c) => c.stop()));
    throw failed.reason;
  }
  return nodes;
}

export async function caseInvalidation(ctx: BenchContext): Promise<Row[]> {
  const admin = await connect({ servers: ctx.url, name: 'bench-admin' });
  await resetEventStream(admin);
  await admin.close();
  const nodes = await startNodes(ctx.url);
  let pub: ForgeBus | undefined;
  const runs: RunResult[] = [];
  const incomplete: string[] = [];
  try {
    pub = await ForgeBus.connect({ nodeId: 'bench-inv-pub', connection: { servers: ctx.url } });
    const fills = await Promise.all(nodes.map((c) => c.ask<AnyMessage & { entries: number; state: string }>({ type: 'fill', count: ISSUES }, 'filled', 60_000)));
    const short = fills.find((f) => f.entries !== ISSUES);
    if (short) throw new Error(`a cache node holds ${short.entries} of the ${ISSUES} entries (cache state ${short.state})`);
    let sent = 0;
    const once = async (rate: number, seconds: number, run: number): Promise<RunResult> => {
      const n = Math.max(1, Math.round(rate * seconds));
      const first = sent;
      sent += n;
      return runOnce(ctx, pub!, nodes, rate, n, (i) => ((first + i) % ISSUES) + 1, run);
    };
    for (const [k, rate] of ctx.inv.rates.entries()) {
      // Not recorded: JIT, heap sizes and the consumers' buffers settle at each new rate.
      const warmup = k === 0 ? 3 : 1;
      log(`inv: warm-up (${int(rate)} events/s for ${warmup} s)`);
      await once(rate, warmup, 0);
      for (let run = 1; run <= ctx.inv.runs; run++) {
        const r = await once(rate, ctx.inv.seconds, run);
        runs.push(r);
        const s = summary(r.ackToGone);
        const line =
          `inv ${int(rate)}/s run ${run}: ${int(r.events)} events, sent at ${int(r.achievedRate)}/s; ack -> gone on all ${NODES}: ` +
          `p50 ${ms(s.p50)} ms, p99 ${ms(s.p99)} ms, max ${ms(s.max)} ms; CPU bench ${pct(r.cpu.bench)}, nodes ${pct(r.cpu.child)}, server ${pct(r.cpu.server)}, other ${pct(r.cpu.other)}`;
        log(line);
        if (r.missing > 0 || r.failedPublishes > 0 || r.stillCached > 0 || r.removalMismatches > 0) {
          incomplete.push(
            `${int(rate)}/s run ${run}: ${r.missing} events not seen gone on every node, ${r.failedPublishes} failed publishes, ` +
              `${r.stillCached} entries still cached after their event, ${r.removalMismatches} node-runs where entries removed != events`,
          );
        }
      }
    }
  } finally {
    await pub?.close().catch(() => undefined);
    await Promise.all(nodes.map((c) => c.stop()));
  }
  ctx.reports.push(report(ctx, runs, incomplete));
  return [];
}

async function runOnce(
  ctx: BenchContext,
  pub: ForgeBus,
  nodes: BenchChild[],
  rate: number,
  n: number,
  issueOf: (i: number) => number,
  run: number,
): Promise<RunResult> {
  await sleep(200); // a pause between runs: no backlog of the previous one
  const base = now();
  const arms = await Promise.all(nodes.map((c) => c.ask<AnyMessage & { fromSeq: number }>({ type: 'arm', count: n, base: String(base) }, 'armed', 10_000)));
  const fromSeq = arms[0]!.fromSeq;
  if (arms.some((a) => a.fromSeq !== fromSeq)) throw new Error(`the cache nodes are not at the same stream position: ${arms.map((a) => a.fromSeq).join(', ')}`);
  const doneTimeoutMs = Math.round((n / rate) * 1000) + 15_000;
  const done = nodes.map((c) =>
    c.expectMessage('done', doneTimeoutMs, 'every entry gone').then(
      () => true,
      (err: unknown) => {
        if (err instanceof TimeoutError) return false;
        throw err;
      },
    ),
  );

  for (const d of done) d.catch(() => undefined); // awaited below; a node dying meanwhile must not crash the bench first
  const sendAt = new Float64Array(n).fill(NaN);
  const ackAt = new Float64Array(n).fill(NaN);
  const seqOf = new Float64Array(n).fill(NaN);
  let settled = 0;
  let failed = 0;
  let firstError: unknown;
  let allSettled!: () => void;
  const acks = new Promise<void>((resolve) => (allSettled = resolve));
  const settle = (): void => {
    if (++settled === n) allSettled();
  };
  const meter = cpuMeter(ctx.serverPid);
  const t0 = now();
  const { maxBurst } = await paced(n, rate, (i) => {
    sendAt[i] = Number(now() - base);
    pub.publish({ type: 'issue.updated', repo: REPO, payload: { number: issueOf(i), changed: ['title'] } }).then(
      (ack) => {
        ackAt[i] = Number(now() - base);
        seqOf[i] = ack.seq;
        settle();
      },
      (err: unknown) => {
        failed++;
        firstError ??= err;
        settle();
      },
    );
  });
  await withTimeout(acks, 30_000, 'inv: acks');
  await Promise.all(done);
  const tEnd = now();
  const reports = await Promise.all(nodes.map((c) => c.ask<ChildReport>({ type: 'report' }, 'report', 10_000)));
  const cpu = meter.end(
    tEnd - t0,
    reports.reduce((sum, r) => sum + r.cpuUs, 0),
  );
  if (firstError) log(`inv: ${failed} publishes failed, first: ${(firstError as Error).message}`);

  const ackToGone = new Float64Array(n);
  const sendToGone = new Float64Array(n);
  const sendToAck = new Float64Array(n);
  const perNode = reports.map(() => new Float64Array(n));
  let missing = 0;
  for (let i = 0; i < n; i++) {
    let last = -Infinity;
    let seenEverywhere = true;
    const j = seqOf[i]! - fromSeq; // NaN for a failed publish: never seen
    reports.forEach((r, k) => {
      const g = Number.isInteger(j) ? (r.gone[j] ?? -1) : -1;
      if (g < 0) seenEverywhere = false;
      else if (g > last) last = g;
      perNode[k]![i] = g < 0 ? NaN : g - ackAt[i]!;
    });
    if (!seenEverywhere) missing++;
    ackToGone[i] = seenEverywhere ? last - ackAt[i]! : NaN;
    sendToGone[i] = seenEverywhere ? last - sendAt[i]! : NaN;
    sendToAck[i] = ackAt[i]! - sendAt[i]!;
  }
  if (process.env.FORGEBUS_BENCH_INV_DUMP) {
    // Diagnostics: every event's times (ms after the first send) as CSV, one file per run.
    const file = `${process.env.FORGEBUS_BENCH_INV_DUMP}-${rate}-${run}.csv`;
    const t = (v: number): string => (Number.isFinite(v) ? ((v - sendAt[0]!) / 1e6).toFixed(3) : '');
    const lines = ['i,seq,send,ack,' + reports.map((_, k) => `gone${k + 1}`).join(',')];
    for (let i = 0; i < n; i++) {
      const j = seqOf[i]! - fromSeq;
      const gone = reports.map((r) => t(Number.isInteger(j) && (r.gone[j] ?? -1) >= 0 ? r.gone[j]! : NaN));
      lines.push([i, seqOf[i], t(sendAt[i]!), t(ackAt[i]!), ...gone].join(','));
    }
    writeFileSync(file, lines.join('\n') + '\n');
    log(`inv: wrote ${file}`);
  }
  const achievedRate = n > 1 ? ((n - 1) * 1e9) / (sendAt[n - 1]! - sendAt[0]!) : rate;
  return {
    rate,
    run,
    events: n,
    achievedRate,
    maxBurst,
    failedPublishes: failed,
    ackToGone,
    sendToGone,
    sendToAck,
    perNode,
    missing,
    stillCached: reports.reduce((sum, r) => sum + r.stillCached, 0),
    removalMismatches: reports.filter((r) => r.invalidatedEntries !== n).length,
    cpu,
    children: reports.map(({ gone: _gone, ...rest }) => rest),
  };
}

function report(ctx: BenchContext, runs: RunResult[], incomplete: string[]): Report {
  const rows: string[][] = [];
  const cpuRows: string[][] = [];
  const data: unknown[] = [];
  const notes: string[] = [];
  for (const rate of ctx.inv.rates) {
    const rs = runs.filter((r) => r.rate === rate);
    if (rs.length === 0) continue;
    const ack = summary(concat(rs.map((r) => r.ackToGone)));
    const send = summary(concat(rs.map((r) => r.sendToGone)));
    const pubAck = summary(concat(rs.map((r) => r.sendToAck)));
    const runP99 = rs.map((r) => summary(r.ackToGone).p99);
    const perNodeP99 = Array.from({ length: NODES }, (_, k) => summary(concat(rs.map((r) => r.perNode[k]!))).p99);
    const achieved = median(rs.map((r) => r.achievedRate));
    const goal = rate === GOAL.rate ? (ack.p99 <= GOAL.p99Ms * 1e6 ? `<= ${GOAL.p99Ms} ms: MET` : `<= ${GOAL.p99Ms} ms: NOT MET`) : '';
    rows.push([
      int(rate),
      `${int(achieved)}${achieved < rate * 0.95 ? ' (SHORT)' : ''}`,
      `${int(rs[0]!.events)} x ${rs.length}`,
      ms(ack.p50),
      ms(ack.p99),
      ms(ack.max),
      `${ms(Math.min(...runP99))} .. ${ms(Math.max(...runP99))}`,
      `${ms(send.p50)} / ${ms(send.p99)}`,
      `${ms(pubAck.p50)} / ${ms(pubAck.p99)}`,
      goal,
    ]);
    const medianCpu = (f: (c: CpuShare) => number | undefined): number | undefined => {
      const v = rs.map((r) => f(r.cpu)).filter((x): x is number => x !== undefined);
      return v.length ? median(v) : undefined;
    };
    cpuRows.push([
      int(rate),
      pct(medianCpu((c) => c.bench)),
      pct(medianCpu((c) => (c.child === undefined ? undefined : c.child / NODES))),
      pct(medianCpu((c) => c.server)),
      pct(medianCpu((c) => c.other)),
      `${Math.max(...rs.map((r) => r.maxBurst))}`,
      perNodeP99.map((v) => ms(v)).join(' / '),
      `${(((100 * ack.negative) / Math.max(1, ack.n)) | 0)}%`,
    ]);
    const busy = rs.filter((r) => (r.cpu.other ?? 0) > 15).map((r) => r.run);
    if (busy.length > 0) {
      notes.push(`  WARNING: other programs used more than 15% of a core during the ${int(rate)}/s run(s) ${busy.join(', ')}: those latencies are inflated; run again on an idle machine.`);
    }
    if (achieved < rate * 0.95) notes.push(`  inv: at ${int(rate)}/s the publisher achieved only ${int(achieved)} events/s (median of runs): the rate fell short.`);
    if (goal) notes.push(`  inv goal: p99 from ack to gone on all ${NODES} nodes ${goal.replace(':', ' at ' + int(rate) + ' events/s:')} (measured ${ms(ack.p99)} ms)`);
    data.push({
      requestedRate: rate,
      achievedRate: achieved,
      events: rs[0]!.events,
      runs: rs.length,
      ackToGoneAllNodesMs: msAll(ack),
      publishToGoneAllNodesMs: msAll(send),
      publishToAckMs: msAll(pubAck),
      p99PerRunMs: runP99.map((v) => v / 1e6),
      p99PerNodeMs: perNodeP99.map((v) => v / 1e6),
      goalMet: rate === GOAL.rate ? ack.p99 <= GOAL.p99Ms * 1e6 : null,
      cpu: rs.map((r) => r.cpu),
      perRun: rs.map((r) => ({
        run: r.run,
        achievedRate: r.achievedRate,
        maxBurst: r.maxBurst,
        failedPublishes: r.failedPublishes,
        missing: r.missing,
        stillCached: r.stillCached,
        ackToGoneAllNodesMs: msAll(summary(r.ackToGone)),
        nodes: r.children,
      })),
    });
  }
  const cpuTable = formatCpu(cpuRows);
  return {
    id: 'inv',
    title:
      `inv: cache invalidation convergence, ${NODES} cache nodes (ForgeBus + ForgeCache, one process each); issue.updated published with ForgeBus.publish, ` +
      `paced; latency per event until its entry is gone on ALL ${NODES} nodes (ms; pooled over the runs)`,
    header: ['events/s asked', 'achieved', 'events x runs', 'ack->gone p50', 'p99', 'max', 'p99 per run', 'publish->gone p50 / p99', 'publish->ack p50 / p99', `goal (p99 at ${int(GOAL.rate)}/s)`],
    rows,
    numeric: [0, 1, 2, 3, 4, 5],
    notes: ['', ...cpuTable, ...notes],
    incomplete,
    data: { nodes: NODES, goal: GOAL, rates: data },
  };
}

const msAll = (s: ReturnType<typeof summary>) => ({
  p50: s.p50 / 1e6,
  p99: s.p99 / 1e6,
  p999: s.p999 / 1e6,
  max: s.max / 1e6,
  min: s.min / 1e6,
  negativeShare: s.n ? s.negative / s.n : null,
  samples: s.n,
});

function formatCpu(rows: string[][]): string[] {
  const header = ['events/s asked', 'bench (publisher)', 'each cache node', 'nats-server', 'other programs', 'max burst', 'ack->gone p99 per node (ms)', 'gone before ack'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const fmt = (cells: string[]): string => `| ${cells.map((c, i) => (i === 6 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(' | ')} |`;
  return [
    `inv: CPU during the runs (median; 100% = one core busy), most events sent in one pacer tick, per-node p99, share of events gone everywhere before the publisher saw the ack`,
    fmt(header),
    `|${widths.map((w, i) => (i === 6 ? '-'.repeat(w + 2) : `${'-'.repeat(w + 1)}:`)).join('|')}|`,
    ...rows.map(fmt),
  ];
}
