/**
 * Case read: cached read throughput of the example forge node.
 *
 * One forge node process (dist/src/forge-node/main.js, SQLite in a temporary directory) serves
 * `GET /api/repos/acme/web/issues/1` to autocannon (in the bench process) over N concurrent
 * keep-alive connections. Each configuration is a fresh node process on the same database,
 * started one after the other, so that only one node runs at a time:
 *   cached    the node's default cache (FORGE_CACHE_MAX_ENTRIES unset: 10,000 entries)
 *   uncached  FORGE_CACHE_MAX_ENTRIES=0: every read goes to SQLite
 * at FORGE_DB_LATENCY_MS=0 (the SQLite file is local) and, by default, also at 2 ms (a remote
 * database, as the node simulates it: each database answer arrives 2 ms later); then the same
 * pair on a real PostgreSQL server on loopback (FORGE_DATABASE_URL, src/ops/local-postgres.ts).
 *
 * A request does the same work in both: JWT check (HS256), the repository record (visibility),
 * the issue. Cached, the last two are cache hits; uncached, they are three SQLite queries
 * (repository, its collaborators, the issue).
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import autocannon from 'autocannon';
import { signUserToken } from '../src/forge-node/auth/tokens.js';
import { startLocalPostgres, type LocalPostgres } from '../src/ops/local-postgres.js';
import type { BenchContext, Row } from './cases.js';
import { cpuMeter, log, now, processCpuUs, type CpuShare } from './common.js';
import { startForgeNodeProcess, type ForgeNodeProcess } from './forge-node-process.js';
import { int, pct, type Report } from './report.js';

const OWNER = 'acme';
const REPO = 'web';
const WARMUP_SECONDS = 2;
/** Measurements of each configuration, taken in turns (cached, uncached, uncached, cached, …). */
const READ_ROUNDS = 4;
const ISSUE = {
  title: 'Crash when pushing a signed tag to a protected branch',
  body:
    'Steps to reproduce:\n\n1. Protect the `main` branch.\n2. Create a signed tag on a commit of `main` (`git tag -s v1.2.3`).\n' +
    '3. Push it: `git push origin v1.2.3`.\n\nExpected: the tag is accepted, or refused with a clear message.\n' +
    'Actual: the push hangs for 30 s, then the node answers 500 and logs "signature verification failed: no public key".\n\n' +
    'Seen on two nodes of a three-node cluster, not on the third. The key is in the user\'s settings on every node.',
};

interface Config {
  cached: boolean;
  database: 'SQLite' | 'PostgreSQL';
  dbLatencyMs: number;
  /** Diagnostic row: GET /api/bus/stats on the cached node (token check, no data read). */
  floor?: boolean;
}

interface Measurement extends Config {
  requestsPerSecond: number;
  requests: number;
  seconds: number;
  latencyMs: { p50: number; p99: number; max: number };
  non2xx: number;
  errors: number;
  timeouts: number;
  cpu: CpuShare;
  /** CPU of the pair's other node, idle during this measurement (percent of a core). */
  idleNodeCpu: number;
  /** CPU of the node process per request, µs. */
  nodeCpuUsPerRequest: number | null;
  /** Cache counters of the node during the measurement (from GET /api/cache/stats). */
  cache: { hits: number; misses: number; bypassedReads: number; entries: number; state: string };
}

function api(baseUrl: string, token: string) {
  return async (method: string, path: string, body?: unknown): Promise<{ status: number; body: any }> => {
    const headers: Record<string, string> = { authorization: `Bearer ${token}` };
    if (body !== undefined) headers['content-type'] = 'application/json';
    const res = await fetch(`${baseUrl}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : undefined };
  };
}

async function expectStatus(p: Promise<{ status: number; body: any }>, status: number, what: string): Promise<any> {
  const res = await p;
  if (res.status !== status) throw new Error(`${what}: HTTP ${res.status} ${JSON.stringify(res.body)}`);
  return res.body;
}

const label = (c: Config): string =>
  c.floor ? 'floor (GET /api/bus/stats)' : `${c.cached ? 'cached' : 'uncached'}, ${c.database}${c.database === 'SQLite' ? `, FORGE_DB_LATENCY_MS=${c.dbLatencyMs}` : ''}`;

export async function caseCachedReads(ctx: BenchContext): Promise<Row[]> {
  const dataDir = mkdtempSync(join(tmpdir(), 'forgebus-bench-read-'));
  const secret = randomBytes(24).toString('hex');
  const token = await signUserToken(secret, OWNER);
  const rounds: Measurement[] = [];
  const incomplete: string[] = [];
  const running = new Set<ForgeNodeProcess>();
  const issuePaths = new Map<Config['database'], string>();
  let postgres: LocalPostgres | undefined;
  let postgresUrl: string | undefined;
  const start = async (config: Config): Promise<ForgeNodeProcess> => {
    if (config.database === 'PostgreSQL' && !postgres) {
      postgres = await startLocalPostgres();
      postgresUrl = await postgres.createDatabase();
    }
    const node = await startForgeNodeProcess({
      id: `bench-read-${config.cached ? 'cached' : 'uncached'}-${config.database === 'SQLite' ? `${config.dbLatencyMs}ms` : 'pg'}`,
      natsUrl: ctx.url,
      dataDir,
      secret,
      env: {
        FORGE_DB_LATENCY_MS: String(config.dbLatencyMs),
        ...(config.cached ? {} : { FORGE_CACHE_MAX_ENTRIES: '0' }),
        ...(config.database === 'PostgreSQL' ? { FORGE_DATABASE_URL: postgresUrl! } : {}),
      },
    });
    running.add(node);
    return node;
  };
  const record = (m: Measurement, round: number): void => {
    rounds.push(m);
    log(
      `read ${label(m)} round ${round}: ${int(m.requestsPerSecond)} requests/s (${ctx.read.connections} connections), latency p50 ${m.latencyMs.p50} ms p99 ${m.latencyMs.p99} ms; ` +
        `CPU node ${pct(m.cpu.child)}, bench (autocannon) ${pct(m.cpu.bench)}, idle node ${pct(m.idleNodeCpu)}, other ${pct(m.cpu.other)}; cache hits ${int(m.cache.hits)}, misses ${int(m.cache.misses)}`,
    );
    if (m.non2xx > 0 || m.errors > 0) incomplete.push(`${label(m)} round ${round}: ${m.non2xx} non-2xx answers, ${m.errors} errors (${m.timeouts} timeouts)`);
  };
  try {
    const settings: Pick<Config, 'database' | 'dbLatencyMs'>[] = [
      ...ctx.read.dbLatencies.map((dbLatencyMs) => ({ database: 'SQLite' as const, dbLatencyMs })),
      ...(ctx.read.postgres ? [{ database: 'PostgreSQL' as const, dbLatencyMs: 0 }] : []),
    ];
    for (const [k, setting] of settings.entries()) {
      // Both nodes of this setting run at once (on the same database); only the one measured
      // gets requests. They are measured in turns, A B B A …, so that a drift of the machine's
      // speed during the case (other VMs on the host) does not favour either.
      const cached: Config = { cached: true, ...setting };
      const uncached: Config = { cached: false, ...setting };
      const nodes = new Map<Config, ForgeNodeProcess>();
      for (const config of [cached, uncached]) nodes.set(config, await start(config));
      const first = nodes.get(cached)!;
      if (!issuePaths.has(setting.database)) {
        const call = api(first.url, token);
        await expectStatus(call('POST', '/api/repos', { name: REPO }), 201, 'create repository');
        const issue = await expectStatus(call('POST', `/api/repos/${OWNER}/${REPO}/issues`, ISSUE), 201, 'create issue');
        issuePaths.set(setting.database, `/api/repos/${OWNER}/${REPO}/issues/${issue.number}`);
      }
      const issuePath = issuePaths.get(setting.database)!;
      for (const [config, node] of nodes) {
        const got = await expectStatus(api(node.url, token)('GET', issuePath), 200, 'read issue');
        if (got.title !== ISSUE.title) throw new Error(`read issue: unexpected body ${JSON.stringify(got)}`);
        await warmUp(ctx, `${node.url}${issuePath}`, token);
        if (config === cached && k === 0) await warmUp(ctx, `${node.url}/api/bus/stats`, token);
      }
      // At the first latency, also what the cached node serves with no data at all (the same
      // token check, a small JSON answer from memory), between the two.
      const floor: Config = { ...cached, floor: true };
      const turn = k === 0 ? [cached, floor, uncached] : [cached, uncached];
      for (let round = 1; round <= READ_ROUNDS; round++) {
        for (const config of round % 2 === 1 ? turn : [...turn].reverse()) {
          const node = nodes.get(config.floor ? cached : config)!;
          const others = [...nodes.values()].filter((n) => n !== node);
          const path = config.floor ? '/api/bus/stats' : issuePath;
          record(await measure(ctx, node, `${node.url}${path}`, token, config, others), round);
        }
      }
      for (const node of nodes.values()) {
        await node.stop();
        running.delete(node);
      }
    }
  } catch (err) {
    for (const node of running) log(`read: output of forge node ${node.id}:\n${node.output.join('\n')}`);
    throw err;
  } finally {
    await Promise.all([...running].map((node) => node.stop()));
    await postgres?.dispose();
    rmSync(dataDir, { recursive: true, force: true });
  }
  ctx.reports.push(report(ctx, rounds, incomplete));
  return [];
}

async function warmUp(ctx: BenchContext, url: string, token: string): Promise<void> {
  await autocannon({ url, connections: ctx.read.connections, pipelining: 1, headers: { authorization: `Bearer ${token}` }, duration: WARMUP_SECONDS });
}

async function measure(
  ctx: BenchContext,
  node: ForgeNodeProcess,
  url: string,
  token: string,
  config: Config,
  idle: ForgeNodeProcess[] = [],
): Promise<Measurement> {
  const options = {
    url,
    connections: ctx.read.connections,
    pipelining: 1,
    headers: { authorization: `Bearer ${token}` },
  };
  const call = api(node.url, token);
  const stats0 = await expectStatus(call('GET', '/api/cache/stats'), 200, 'cache stats');
  const meter = cpuMeter(ctx.serverPid);
  const node0 = processCpuUs(node.pid);
  const idle0 = idle.map((n) => processCpuUs(n.pid));
  const t0 = now();
  const r = await autocannon({ ...options, duration: ctx.read.seconds });
  const t1 = now();
  const node1 = processCpuUs(node.pid);
  const idleUs = idle.reduce((sum, n, i) => sum + ((processCpuUs(n.pid) ?? 0) - (idle0[i] ?? 0)), 0);
  const cpu = meter.end(t1 - t0, node0 !== undefined && node1 !== undefined ? node1 - node0 : undefined);
  // The other node of the pair, idle meanwhile (its timers, heartbeats), is ours, not "other programs".
  const idleNodeCpu = (idleUs * 1000 * 100) / Number(t1 - t0);
  if (cpu.other !== undefined) cpu.other = Math.max(0, cpu.other - idleNodeCpu);
  const stats1 = await expectStatus(call('GET', '/api/cache/stats'), 200, 'cache stats');
  const requestsPerSecond = r.requests.total / r.duration;
  return {
    ...config,
    requestsPerSecond,
    requests: r.requests.total,
    seconds: r.duration,
    latencyMs: { p50: r.latency.p50, p99: r.latency.p99, max: r.latency.max },
    non2xx: r.non2xx,
    errors: r.errors,
    timeouts: r.timeouts,
    cpu,
    idleNodeCpu,
    nodeCpuUsPerRequest: node0 !== undefined && node1 !== undefined && r.requests.total > 0 ? (node1 - node0) / r.requests.total : null,
    cache: {
      hits: stats1.hits - stats0.hits,
      misses: stats1.misses - stats0.misses,
      bypassedReads: stats1.bypassedReads - stats0.bypassedReads,
      entries: stats1.entries,
      state: stats1.state,
    },
  };
}

interface Aggregate extends Config {
  rounds: Measurement[];
  requestsPerSecond: number;
  min: number;
  max: number;
}

const mean = (values: number[]): number => values.reduce((a, b) => a + b, 0) / Math.max(1, values.length);
const same = (a: Config, b: Config): boolean => a.cached === b.cached && a.database === b.database && a.dbLatencyMs === b.dbLatencyMs && !!a.floor === !!b.floor;

function report(ctx: BenchContext, rounds: Measurement[], incomplete: string[]): Report {
  const groups: Aggregate[] = [];
  for (const m of rounds) {
    let g = groups.find((x) => same(x, m));
    if (!g) groups.push((g = { cached: m.cached, database: m.database, dbLatencyMs: m.dbLatencyMs, floor: m.floor, rounds: [], requestsPerSecond: 0, min: 0, max: 0 }));
    g.rounds.push(m);
  }
  for (const g of groups) {
    const rps = g.rounds.map((m) => m.requestsPerSecond);
    g.requestsPerSecond = mean(rps);
    g.min = Math.min(...rps);
    g.max = Math.max(...rps);
  }
  // Rows: per latency cached, uncached; the floor after the first cached row.
  const order = (g: Aggregate): number => (g.database === 'PostgreSQL' ? 1e9 : 0) + g.dbLatencyMs * 10 + (g.floor ? 1 : g.cached ? 0 : 2);
  groups.sort((a, b) => order(a) - order(b));
  const uncachedOf = (g: Aggregate): Aggregate | undefined => groups.find((u) => !u.cached && u.database === g.database && u.dbLatencyMs === g.dbLatencyMs);
  const ratios: { database: string; dbLatencyMs: number; ratio: number; perRound: number[] }[] = [];
  const rows = groups.map((g) => {
    const u = uncachedOf(g);
    const ratio = g.cached && u ? g.requestsPerSecond / u.requestsPerSecond : null;
    if (ratio !== null && !g.floor) {
      // Round i of cached against round i of uncached (measured next to each other).
      const perRound = g.rounds.map((m, i) => m.requestsPerSecond / (u!.rounds[i] ?? u!.rounds[0]!).requestsPerSecond);
      ratios.push({ database: g.database, dbLatencyMs: g.dbLatencyMs, ratio, perRound });
    }
    const nodeCpuUs = g.rounds.every((m) => m.nodeCpuUsPerRequest !== null)
      ? g.rounds.reduce((sum, m) => sum + m.nodeCpuUsPerRequest! * m.requests, 0) / g.rounds.reduce((sum, m) => sum + m.requests, 0)
      : null;
    const cpuMean = (f: (c: CpuShare) => number | undefined): number | undefined => {
      const v = g.rounds.map((m) => f(m.cpu)).filter((x): x is number => x !== undefined);
      return v.length ? mean(v) : undefined;
    };
    const sum = (f: (m: Measurement) => number): number => g.rounds.reduce((acc, m) => acc + f(m), 0);
    return [
      g.floor ? 'floor: GET /api/bus/stats, cached node' : g.cached ? 'cached (default)' : 'uncached (FORGE_CACHE_MAX_ENTRIES=0)',
      g.floor ? '-' : g.database === 'SQLite' ? `SQLite, ${g.dbLatencyMs} ms` : 'PostgreSQL',
      int(g.requestsPerSecond),
      g.rounds.length > 1 ? `${int(g.min)} .. ${int(g.max)}` : '-',
      `${mean(g.rounds.map((m) => m.latencyMs.p50)).toFixed(0)} / ${mean(g.rounds.map((m) => m.latencyMs.p99)).toFixed(0)}`,
      ratio === null ? (g.cached ? '-' : '1.00x') : `${ratio.toFixed(2)}x${g.floor ? ' (no data)' : ''}`,
      pct(cpuMean((c) => c.child)),
      nodeCpuUs === null ? '-' : nodeCpuUs.toFixed(0),
      pct(cpuMean((c) => c.bench)),
      pct(cpuMean((c) => c.other)),
      `${int(sum((m) => m.cache.hits))} / ${int(sum((m) => m.cache.misses))}`,
    ];
  });
  const notes = ratios.map(
    (r) => `  read: cached / uncached on ${r.database === 'SQLite' ? `SQLite at FORGE_DB_LATENCY_MS=${r.dbLatencyMs}` : r.database}: ${r.ratio.toFixed(2)}x (round by round: ${r.perRound.map((x) => `${x.toFixed(2)}x`).join(', ')})`,
  );
  const busy = rounds.filter((m) => (m.cpu.other ?? 0) > 15).map(label);
  if (busy.length > 0) {
    notes.push(`  WARNING: other programs used more than 15% of a core during ${[...new Set(busy)].join('; ')}: those figures are low and noisy; run again on an idle machine.`);
  }
  return {
    id: 'read',
    title:
      `read: GET /api/repos/acme/web/issues/1 on a forge node process, ${ctx.read.connections} keep-alive connections (autocannon in the bench process); ` +
      `cached and uncached node measured in turns, ${READ_ROUNDS} x ${ctx.read.seconds} s each after ${WARMUP_SECONDS} s warm-up (mean); SQLite local, PostgreSQL on loopback`,
    header: [
      'node',
      'database',
      'requests/s',
      'rounds min .. max',
      'latency p50 / p99 ms',
      'cached / uncached',
      'node CPU',
      'node µs CPU/req',
      'autocannon CPU',
      'other programs',
      'cache hits / misses',
    ],
    rows,
    numeric: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
    notes,
    incomplete,
    data: { connections: ctx.read.connections, seconds: ctx.read.seconds, rounds: READ_ROUNDS, warmupSeconds: WARMUP_SECONDS, measurements: rounds, ratios },
  };
}
