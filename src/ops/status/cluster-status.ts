/**
 * One snapshot of a forgebus cluster as operators see it: what `forgebus status --json` prints
 * and what the forge node's operations view (`GET /api/ops`) answers. Other programs read this
 * shape: fields are only ever added.
 */
export interface ClusterStatus {
  /** When it was collected (ISO-8601). */
  collectedAt: string;
  nats: NatsStatus;
  nodes: ForgeNodeStatus[];
  /** FORGE_EVENTS; undefined when the stream does not exist (yet). */
  events?: EventStreamStatus;
  partitions: PartitionStatus[];
  /** Writes that failed and are kept for inspection (`GET /api/writes/failures`). */
  failedWrites: number;
  /** Tasks not finished (queued or running); the operations view shows only the user's own. */
  tasks: TaskStatus[];
  cron: CronJobStatus[];
  /** What could not be read (one line each), e.g. a monitoring URL that did not answer. */
  problems: string[];
}

export interface NatsStatus {
  servers: NatsServerStatus[];
  /** The JetStream meta leader's server name, when a cluster has one. */
  metaLeader?: string;
}

export interface NatsServerStatus {
  name: string;
  /** Its monitoring URL, when read from one; absent for a server only known from the connection. */
  monitorUrl?: string;
  version?: string;
  /** /healthz answered ok (undefined: not asked, no monitoring URL). */
  healthy?: boolean;
  /** /healthz's error, or why monitoring did not answer. */
  error?: string;
  uptime?: string;
  connections?: number;
  /** Server names (or addresses) of its cluster routes. */
  routes: string[];
  jetstream?: boolean;
}

export interface ForgeNodeStatus {
  id: string;
  address?: string;
  roles: string[];
  version: string;
  startedAt: string;
  uptimeMs: number;
  /** Name of the NATS server its connection is on, when known. */
  natsServer?: string;
  sseStreams?: number;
  cacheHitRate?: number;
  /** Last FORGE_EVENTS sequence its feed processed. */
  feedPosition?: number;
  /** Events between its feed position and the stream's last sequence. */
  feedLag?: number;
  /**
   * The lag as the node itself measured it at its last stream check (every 2 s): feedPosition
   * and feedLag come with its membership record, refreshed every TTL/3 (5 s by default), so on a
   * busy cluster feedLag also counts events published since that refresh; this one does not.
   */
  feedBehind?: number;
  writesApplied?: number;
  runningTasks?: number;
}

export interface EventStreamStatus {
  name: string;
  messages: number;
  bytes: number;
  firstSeq: number;
  lastSeq: number;
  replicas: number;
  /** Server name of the stream's leader, when replicated. */
  leader?: string;
  /** Each node's feed position (one entry per member with a feed). */
  feeds: { node: string; position: number; lag: number }[];
}

export interface PartitionStatus {
  partition: number;
  /** Durable consumer name. */
  consumer: string;
  /** Writes waiting to be delivered. */
  pending: number;
  /** Delivered, not yet acknowledged (being applied). */
  inFlight: number;
  /** Writes delivered more than once (their worker died or timed out). */
  redelivered: number;
  /** Age of the oldest write not yet applied (ms); undefined when none waits. */
  oldestWaitingMs?: number;
}

export interface TaskStatus {
  id: string;
  kind: string;
  repo?: string;
  node: string;
  user: string;
  state: string;
  progress: number;
  createdAt: string;
  startedAt?: string;
}

export interface CronJobStatus {
  job: string;
  lastRun?: { tick: string; node: string; outcome: string; startedAt: string; finishedAt?: string; error?: string };
}
