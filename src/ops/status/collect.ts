import { jetstreamManager, type ConsumerInfo, type JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { decodeToken, EVENTS_STREAM } from '../../bus/index.js';
import { CRON_RUNS_STREAM, type CronRun } from '../../cluster/cron.js';
import { MEMBERS_BUCKET, type MemberRecord } from '../../cluster/membership.js';
import { TASKS_BUCKET, type TaskRecord } from '../../cluster/tasks.js';
import { WRITE_SUBJECT_ROOT, WRITES_STREAM } from '../../repo-writes/partitions.js';
import { FAILURES_BUCKET } from '../../repo-writes/write-queue.js';
import type { ClusterStatus, CronJobStatus, EventStreamStatus, ForgeNodeStatus, NatsServerStatus, NatsStatus, PartitionStatus, TaskStatus } from './cluster-status.js';
import { natsPermissionError } from './errors.js';
import { bucketValues, streamInfo } from './jetstream-reads.js';
import { readMonitors, type JszStream, type MonitorSnapshot } from './monitoring.js';

export interface CollectOptions {
  /** NATS monitoring URLs (http://host:8222); none: the servers are known from the connection only. */
  monitorUrls?: string[];
  /** The monitoring endpoints already read (by the caller, e.g. to fail fast): then not read again. */
  monitors?: MonitorSnapshot[];
  /** Per monitoring request (default 3 s). */
  monitorTimeoutMs?: number;
  /** Per JetStream API request (default 5 s). */
  requestTimeoutMs?: number;
  /** The node collecting, when it is a forge node: its NATS server is known from its own connection. */
  selfNodeId?: string;
  /**
   * Throw (a StatusError) when NATS refuses this user its reply inbox or the JetStream API,
   * instead of answering a status with nothing in it (for the CLI's first read).
   */
  strictPermissions?: boolean;
  /** Clock (tests). */
  now?: () => number;
}

/** The name a forge node's connection has (ForgeBus's default), as /connz lists it. */
const NODE_CONNECTION = /^forge-node:(.+)$/;
const PARTITION_CONSUMER = /^writes-p(\d+)$/;
const CRON_SUBJECT_ROOT = 'forge.cron.run.';
/** Partitions whose oldest waiting write is looked up at once. */
const OLDEST_LOOKUPS = 8;

const message = (err: unknown) => (err instanceof Error ? err.message : String(err)).split('\n')[0]!;

/**
 * One snapshot of the cluster (see ClusterStatus): NATS servers from the monitoring endpoints,
 * everything else from JetStream over `nc`. Each part that cannot be read is left empty and
 * named in `problems`; this never throws for an unreadable part.
 */
export async function collectClusterStatus(nc: NatsConnection, options: CollectOptions = {}): Promise<ClusterStatus> {
  const now = options.now ?? Date.now;
  const problems: string[] = [];
  const requestTimeoutMs = options.requestTimeoutMs ?? 5_000;
  const monitorsRead = options.monitors ? Promise.resolve(options.monitors) : readMonitors(options.monitorUrls ?? [], options.monitorTimeoutMs ?? 3_000);

  let jsm: JetStreamManager | undefined;
  try {
    jsm = await jetstreamManager(nc, { timeout: requestTimeoutMs });
  } catch (err) {
    const denied = options.strictPermissions ? natsPermissionError(err) : undefined;
    if (denied) {
      await monitorsRead;
      throw denied;
    }
    problems.push(`JetStream: ${message(err)}`);
  }
  const part = async <T>(what: string, read: (jsm: JetStreamManager) => Promise<T>, fallback: T): Promise<T> => {
    if (!jsm) return fallback;
    try {
      return await read(jsm);
    } catch (err) {
      problems.push(`${what}: ${message(err)}`);
      return fallback;
    }
  };

  const [monitors, members, eventsInfo, feedConsumers, partitionConsumers, failedWrites, tasks, cron] = await Promise.all([
    monitorsRead,
    part(`membership (KV ${MEMBERS_BUCKET})`, (j) => bucketValues<MemberRecord>(nc, j, MEMBERS_BUCKET, requestTimeoutMs), undefined),
    part(EVENTS_STREAM, (j) => streamInfo(j, EVENTS_STREAM), undefined),
    part(`${EVENTS_STREAM} consumers`, (j) => consumersOf(j, EVENTS_STREAM, (name) => name.startsWith('forge_feed_')), [] as ConsumerInfo[]),
    part(`write partitions (${WRITES_STREAM})`, (j) => consumersOf(j, WRITES_STREAM, (name) => PARTITION_CONSUMER.test(name)), undefined),
    part(`failed writes (KV ${FAILURES_BUCKET})`, async (j) => (await streamInfo(j, `KV_${FAILURES_BUCKET}`))?.state.messages ?? 0, 0),
    part(`tasks (KV ${TASKS_BUCKET})`, (j) => bucketValues<TaskRecord>(nc, j, TASKS_BUCKET, requestTimeoutMs), undefined),
    part(`cron runs (${CRON_RUNS_STREAM})`, (j) => cronJobs(j), [] as CronJobStatus[]),
  ]);

  for (const m of monitors) {
    if (m.error) problems.push(`NATS monitoring at ${m.url} did not answer: ${m.error}`);
    problems.push(...m.problems);
  }
  const nats = natsStatus(nc, monitors);
  const serverOf = nodeServers(monitors);
  if (options.selfNodeId && nc.info?.server_name) serverOf.set(options.selfNodeId, nc.info.server_name);

  const events = eventsInfo ? eventStream(eventsInfo) : jszEvents(monitors);
  const memberList = (members ?? []).filter((m) => typeof m?.id === 'string').sort((a, b) => a.id.localeCompare(b.id));
  const consumerPositions = feedPositions(feedConsumers ?? [], memberList.map((m) => m.id));
  const nodes = memberList.map((m) => nodeStatus(m, now(), serverOf.get(m.id), consumerPositions.get(m.id), events?.lastSeq));
  if (events) {
    events.feeds = nodes.filter((n) => n.feedPosition !== undefined).map((n) => ({ node: n.id, position: n.feedPosition!, lag: n.feedLag ?? 0 }));
  }

  let partitions: PartitionStatus[];
  if (partitionConsumers) partitions = await partitionStatus(jsm!, partitionConsumers, now(), problems);
  else partitions = jszPartitions(monitors);

  return {
    collectedAt: new Date(now()).toISOString(),
    nats,
    nodes,
    ...(events && { events }),
    partitions,
    failedWrites,
    tasks: (tasks ?? []).filter((t) => t.state === 'queued' || t.state === 'running').map(taskStatus).sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.id.localeCompare(b.id)),
    cron,
    problems,
  };
}

async function consumersOf(jsm: JetStreamManager, stream: string, keep: (name: string) => boolean): Promise<ConsumerInfo[] | undefined> {
  if (!(await streamInfo(jsm, stream))) return undefined;
  const found: ConsumerInfo[] = [];
  for await (const info of jsm.consumers.list(stream)) if (keep(info.name)) found.push(info);
  return found;
}

// ---------------------------------------------------------------- NATS servers

function natsStatus(nc: NatsConnection, monitors: MonitorSnapshot[]): NatsStatus {
  if (monitors.length === 0) {
    // Known from the connection only: the server this connection is on.
    const info = nc.info;
    const servers: NatsServerStatus[] = info ? [{ name: info.server_name, version: info.version, routes: [], jetstream: info.jetstream === true }] : [];
    return { servers };
  }
  const nameById = new Map<string, string>();
  for (const m of monitors) if (m.varz) nameById.set(m.varz.server_id, m.varz.server_name);
  const servers: NatsServerStatus[] = monitors.map((m) => {
    if (!m.varz) return { name: m.url, monitorUrl: m.url, healthy: false, error: m.error, routes: [] };
    const status: NatsServerStatus = {
      name: m.varz.server_name,
      monitorUrl: m.url,
      version: m.varz.version,
      healthy: m.healthz ? m.healthz.status === 'ok' : undefined,
      ...(m.healthz && m.healthz.status !== 'ok' && { error: m.healthz.error ?? m.healthz.status }),
      ...(m.varz.uptime !== undefined && { uptime: m.varz.uptime }),
      ...(m.varz.connections !== undefined && { connections: m.varz.connections }),
      routes: (m.routez?.routes ?? []).map((r) => r.remote_name ?? nameById.get(r.remote_id) ?? `${r.ip}:${r.port}`).sort(),
      jetstream: m.varz.jetstream?.config !== undefined,
    };
    return status;
  });
  const metaLeader = monitors.map((m) => m.jsz?.meta_cluster?.leader ?? m.varz?.jetstream?.meta?.leader).find((l) => l);
  // Servers of the JetStream cluster that no given URL monitors: named, nothing more is known.
  const listed = new Set(servers.map((s) => s.name));
  const peers = monitors.flatMap((m) => {
    const meta = m.varz?.jetstream?.meta;
    return [meta?.leader, ...(meta?.replicas ?? []).map((r) => r.name)];
  });
  for (const name of peers) {
    if (name && !listed.has(name)) {
      listed.add(name);
      servers.push({ name, routes: [], jetstream: true });
    }
  }
  return { servers, ...(metaLeader && { metaLeader }) };
}

/** Node id → the server its connection is on, from the connections each server lists. */
function nodeServers(monitors: MonitorSnapshot[]): Map<string, string> {
  const found = new Map<string, string>();
  for (const m of monitors) {
    for (const c of m.connz?.connections ?? []) {
      const match = NODE_CONNECTION.exec(c.name ?? '');
      if (match && m.varz) found.set(match[1]!, m.varz.server_name);
    }
  }
  return found;
}

// ---------------------------------------------------------------- nodes, events

function count(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isFinite(value) ? value : undefined;
}

function nodeStatus(m: MemberRecord, now: number, natsServer: string | undefined, consumerPosition: number | undefined, lastSeq: number | undefined): ForgeNodeStatus {
  const c = m.counters ?? {};
  const started = Date.parse(m.startedAt);
  // The record is up to a refresh old (ttl/3); the consumer's delivered sequence is live: the
  // further one is the truer position.
  const reported = count(c.feedPosition);
  const feedPosition = reported !== undefined && consumerPosition !== undefined ? Math.max(reported, consumerPosition) : (reported ?? consumerPosition);
  const status: ForgeNodeStatus = {
    id: m.id,
    ...(m.address && { address: m.address }),
    roles: Array.isArray(m.roles) ? m.roles : [],
    version: m.version,
    startedAt: m.startedAt,
    uptimeMs: Number.isFinite(started) ? Math.max(0, now - started) : 0,
    ...(natsServer && { natsServer }),
  };
  const set = <K extends keyof ForgeNodeStatus>(key: K, value: ForgeNodeStatus[K] | undefined) => {
    if (value !== undefined) status[key] = value;
  };
  set('sseStreams', count(c.sseStreams));
  set('cacheHitRate', count(c.cacheHitRate));
  set('feedPosition', feedPosition);
  if (feedPosition !== undefined && lastSeq !== undefined) status.feedLag = Math.max(0, lastSeq - feedPosition);
  set('feedBehind', count(c.feedBehind));
  set('writesApplied', count(c.writesApplied));
  set('runningTasks', count(c.runningTasks));
  return status;
}

/**
 * Feed positions from FORGE_EVENTS's consumers (`forge_feed_<nodeId>_…`), for members that do
 * not report `feedPosition` themselves. A node id may contain "_": the longest id that fits wins.
 */
function feedPositions(consumers: ConsumerInfo[], ids: string[]): Map<string, number> {
  const byLength = [...ids].sort((a, b) => b.length - a.length);
  const positions = new Map<string, number>();
  for (const c of consumers) {
    const id = byLength.find((i) => c.name.startsWith(`forge_feed_${i}_`));
    if (id === undefined) continue;
    positions.set(id, Math.max(positions.get(id) ?? 0, c.delivered.stream_seq));
  }
  return positions;
}

function eventStream(info: Awaited<ReturnType<JetStreamManager['streams']['info']>>): EventStreamStatus {
  return {
    name: info.config.name,
    messages: info.state.messages,
    bytes: info.state.bytes,
    firstSeq: info.state.first_seq,
    lastSeq: info.state.last_seq,
    replicas: info.config.num_replicas,
    ...(info.cluster?.leader && { leader: info.cluster.leader }),
    feeds: [],
  };
}

/** A stream as the monitoring endpoints show it (its leader's view when one of them leads it). */
function jszStream(monitors: MonitorSnapshot[], name: string): JszStream | undefined {
  const details = monitors.flatMap((m) => (m.jsz?.account_details ?? []).flatMap((a) => a.stream_detail ?? []).filter((s) => s.name === name).map((s) => ({ s, server: m.varz?.server_name })));
  return (details.find((d) => d.s.cluster?.leader === undefined || d.s.cluster.leader === d.server) ?? details[0])?.s;
}

/** FORGE_EVENTS from /jsz, when the JetStream API did not answer (e.g. no permission). */
function jszEvents(monitors: MonitorSnapshot[]): EventStreamStatus | undefined {
  const s = jszStream(monitors, EVENTS_STREAM);
  if (!s?.state) return undefined;
  return {
    name: EVENTS_STREAM,
    messages: s.state.messages ?? 0,
    bytes: s.state.bytes ?? 0,
    firstSeq: s.state.first_seq ?? 0,
    lastSeq: s.state.last_seq ?? 0,
    replicas: s.config?.num_replicas ?? 1 + (s.cluster?.replicas?.length ?? 0),
    ...(s.cluster?.leader && { leader: s.cluster.leader }),
    feeds: [],
  };
}

// ---------------------------------------------------------------- write partitions

async function partitionStatus(jsm: JetStreamManager, consumers: ConsumerInfo[], now: number, problems: string[]): Promise<PartitionStatus[]> {
  const partitions = consumers
    .map((c): PartitionStatus & { ackFloor: number } => ({
      partition: Number(PARTITION_CONSUMER.exec(c.name)![1]),
      consumer: c.name,
      pending: c.num_pending,
      inFlight: c.num_ack_pending,
      redelivered: c.num_redelivered,
      ackFloor: c.ack_floor.stream_seq,
    }))
    .sort((a, b) => a.partition - b.partition);
  // The oldest write not yet applied: a WorkQueue stream holds exactly those (applied ones are
  // acked and removed), so it is the partition's first message. Only its time is used.
  const waiting = partitions.filter((p) => p.pending + p.inFlight > 0);
  let failures = 0;
  for (let i = 0; i < waiting.length; i += OLDEST_LOOKUPS) {
    await Promise.all(
      waiting.slice(i, i + OLDEST_LOOKUPS).map(async (p) => {
        try {
          const query = { seq: p.ackFloor + 1, next_by_subj: `${WRITE_SUBJECT_ROOT}.${p.partition}.>` };
          const msg = await jsm.streams.getMessage(WRITES_STREAM, query as unknown as { seq: number });
          if (msg) p.oldestWaitingMs = Math.max(0, now - msg.time.getTime());
        } catch (err) {
          if (failures++ === 0) problems.push(`oldest waiting write: ${message(err)}`);
        }
      }),
    );
  }
  return partitions.map(({ ackFloor: _ackFloor, ...p }) => p);
}

/** Partitions from /jsz, when the JetStream API did not answer. */
function jszPartitions(monitors: MonitorSnapshot[]): PartitionStatus[] {
  const s = jszStream(monitors, WRITES_STREAM);
  return (s?.consumer_detail ?? [])
    .filter((c) => PARTITION_CONSUMER.test(c.name))
    .map((c) => ({
      partition: Number(PARTITION_CONSUMER.exec(c.name)![1]),
      consumer: c.name,
      pending: c.num_pending ?? 0,
      inFlight: c.num_ack_pending ?? 0,
      redelivered: c.num_redelivered ?? 0,
    }))
    .sort((a, b) => a.partition - b.partition);
}

// ---------------------------------------------------------------- tasks, cron

function taskStatus(t: TaskRecord): TaskStatus {
  return {
    id: t.id,
    kind: t.kind,
    ...(t.repo !== undefined && { repo: t.repo }),
    node: t.node,
    user: t.user,
    state: t.state,
    progress: t.progress,
    createdAt: t.createdAt,
    ...(t.startedAt !== undefined && { startedAt: t.startedAt }),
  };
}

/** Each job that has a run record, with its latest (the last message of its subject). */
async function cronJobs(jsm: JetStreamManager): Promise<CronJobStatus[]> {
  const info = await streamInfo(jsm, CRON_RUNS_STREAM, `${CRON_SUBJECT_ROOT}>`);
  const subjects = Object.keys(info?.state.subjects ?? {}).sort();
  return Promise.all(
    subjects.map(async (subject): Promise<CronJobStatus> => {
      const job = decodeToken(subject.slice(CRON_SUBJECT_ROOT.length));
      const msg = await jsm.streams.getMessage(CRON_RUNS_STREAM, { last_by_subj: subject });
      if (!msg) return { job };
      const run = msg.json<CronRun>();
      return {
        job,
        lastRun: {
          tick: run.tick,
          node: run.node,
          outcome: run.outcome,
          startedAt: run.startedAt,
          ...(run.finishedAt !== undefined && { finishedAt: run.finishedAt }),
          ...(run.error !== undefined && { error: run.error }),
        },
      };
    }),
  );
}
