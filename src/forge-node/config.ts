import { Cron } from 'croner';
import { isAbsolute, resolve } from 'node:path';
import { natsClientFromEnv, NatsEnvError, type NatsClientSettings } from '../ops/nats-env.js';
import { parseProtectedBranches } from './git-http/protected-branches.js';

/** The forge node's configuration, from the environment (see README "Configuration"). */
/** A cron expression croner accepts (seconds optional), or a start-up error naming the variable. */
function cronSchedule(value: string): string {
  try {
    new Cron(value, { paused: true });
    return value;
  } catch (err) {
    throw new ForgeNodeConfigError(`FORGE_CRON_REPO_STATS must be a cron expression (seconds optional, e.g. "0 */5 * * * *"), got "${value.slice(0, 100)}": ${(err as Error).message}`);
  }
}

export interface ForgeNodeConfig {
  port: number;
  host: string;
  nodeId: string;
  /** NATS_URL, credentials (NATS_USER + NATS_PASSWORD, NATS_TOKEN or NATS_CREDS) and TLS files (NATS_TLS_*). */
  nats: NatsClientSettings;
  /** FORGE_REPLICAS: copies of every forgebus stream and bucket, 1-5 or auto (default: min(3, NATS servers)). */
  replicas: number | 'auto';
  dataDir: string;
  /**
   * FORGE_DATABASE_URL: a PostgreSQL URL (postgres://user:password@host:port/db) for a cluster on
   * several machines; unset, the nodes share SQLite in `<dataDir>/forge.db` (one machine only).
   */
  databaseUrl?: string;
  /** NATS_MONITOR_URL: the NATS servers' monitoring endpoints (comma-separated http URLs), shown on the operations view. */
  natsMonitorUrls: string[];
  secret: string;
  /** FORGE_EVENTS max_age (FORGE_EVENTS_MAX_AGE_MS); undefined = the SDK default (7 days). */
  eventsMaxAgeMs?: number;
  cache: {
    /** FORGE_CACHE_DISCONNECTED: bypass (default) or serve-stale. */
    disconnectedReads: 'bypass' | 'serve-stale';
    /** FORGE_CACHE_MAX_ENTRIES (default 10,000); 0 turns the cache off. */
    maxEntries: number;
  };
  /**
   * FORGE_DB_LATENCY_MS: delay added between a database read and its answer, to make the
   * example behave like a forge on a remote database (and to widen read/invalidate races in
   * tests). Default 0.
   */
  dbLatencyMs: number;
  /** FORGE_ROLES: what this process does, of "web" and "writer" (default both). */
  roles: { web: boolean; writer: boolean };
  /** FORGE_WRITE_PARTITIONS: partitions of the repository write queue (cluster-wide; default 32). */
  writePartitions: number;
  /** FORGE_WRITE_ACK_WAIT_MS: how long a dead worker's write waits before redelivery (default 30 s). */
  writeAckWaitMs: number;
  /** FORGE_WRITE_TIMEOUT_MS: how long a write request waits for its result before a 504 (default 60 s). */
  writeTimeoutMs: number;
  /** FORGE_NODE_TTL_MS: how long a node that stopped refreshing stays a member (cluster-wide; default 15 s). */
  nodeTtlMs: number;
  /** FORGE_CRON_REPO_STATS: schedule of the repo-stats job (cron, seconds optional; default every 5 minutes). */
  cronRepoStats: string;
  /** git over HTTP (clone, fetch, push); see README "git over HTTP". */
  git: {
    /** FORGE_PROTECTED_BRANCHES: branches that cannot be deleted or force-pushed (comma-separated; default none). */
    protectedBranches: string[];
    /** FORGE_PUSH_MAX_BYTES: largest push request accepted (default 256 MiB). */
    pushMaxBytes: number;
    /** FORGE_PUSH_TIMEOUT_MS: how long a push may wait in the queue and run before it is answered as timed out (default 120 s). */
    pushTimeoutMs: number;
    /** FORGE_GIT_MAX_UPLOADS: clones and fetches served at once by this node; more wait (default 8). */
    maxUploads: number;
  };
  /** Server-Sent Events (GET /api/events); see docs/sse.md. */
  sse: {
    /** FORGE_SSE_HEARTBEAT_MS (default 15 s). */
    heartbeatMs: number;
    /** FORGE_SSE_RETRY_MS: the reconnect delay browsers are told (default 2 s). */
    retryMs: number;
    /** FORGE_SSE_MAX_BUFFER_BYTES: unsent bytes before a client counts as too slow (default 256 KiB). */
    maxBufferedBytes: number;
    /** FORGE_SSE_MAX_CLIENTS: streams per node process (default 50,000). */
    maxClients: number;
    /** FORGE_SSE_MAX_REPLAYS: resuming clients reading the stream at once (default 16). */
    maxConcurrentReplays: number;
  };
}

export class ForgeNodeConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ForgeNodeConfigError';
  }
}

/** Validates the environment; used by @nestjs/config's `validate` so a bad value stops start-up. */
export function loadForgeNodeConfig(env: Record<string, unknown> = process.env): ForgeNodeConfig {
  const str = (key: string) => (typeof env[key] === 'string' && (env[key] as string).trim() !== '' ? (env[key] as string).trim() : undefined);
  const port = Number(str('PORT') ?? '3001');
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new ForgeNodeConfigError(`PORT must be a TCP port number, got "${str('PORT')}"`);
  const nodeId = str('NODE_ID') ?? `node-${port}`;
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(nodeId)) {
    throw new ForgeNodeConfigError(`NODE_ID must be 1-64 characters of [A-Za-z0-9_-], got "${nodeId}"`);
  }
  const secret = str('FORGE_SECRET');
  if (!secret) throw new ForgeNodeConfigError('FORGE_SECRET is required: the HS256 key that signs user tokens (use the same value on every node)');
  if (secret.length < 16) throw new ForgeNodeConfigError('FORGE_SECRET must be at least 16 characters');
  const dataDir = str('FORGE_DATA_DIR') ?? '.forgebus-data';
  const int = (key: string, fallback: number | undefined, min: number): number | undefined => {
    const raw = str(key);
    if (raw === undefined) return fallback;
    const n = Number(raw);
    if (!Number.isInteger(n) || n < min) throw new ForgeNodeConfigError(`${key} must be an integer >= ${min}, got "${raw}"`);
    return n;
  };
  const disconnectedReads = str('FORGE_CACHE_DISCONNECTED') ?? 'bypass';
  if (disconnectedReads !== 'bypass' && disconnectedReads !== 'serve-stale') {
    throw new ForgeNodeConfigError(`FORGE_CACHE_DISCONNECTED must be "bypass" or "serve-stale", got "${disconnectedReads}"`);
  }
  const roles = (str('FORGE_ROLES') ?? 'web,writer').split(',').map((r) => r.trim()).filter(Boolean);
  const unknownRole = roles.find((r) => r !== 'web' && r !== 'writer');
  if (unknownRole || roles.length === 0) {
    throw new ForgeNodeConfigError(`FORGE_ROLES must list "web" and/or "writer" (comma-separated), got "${str('FORGE_ROLES')}"`);
  }
  return {
    port,
    host: str('HOST') ?? '127.0.0.1',
    nodeId,
    nats: natsSettings(env),
    replicas: replicasSetting(str('FORGE_REPLICAS')),
    dataDir: isAbsolute(dataDir) ? dataDir : resolve(dataDir),
    databaseUrl: databaseUrl(str('FORGE_DATABASE_URL')),
    natsMonitorUrls: monitorUrls(str('NATS_MONITOR_URL')),
    secret,
    eventsMaxAgeMs: int('FORGE_EVENTS_MAX_AGE_MS', undefined, 1),
    cache: { disconnectedReads, maxEntries: int('FORGE_CACHE_MAX_ENTRIES', 10_000, 0)! },
    dbLatencyMs: int('FORGE_DB_LATENCY_MS', 0, 0)!,
    roles: { web: roles.includes('web'), writer: roles.includes('writer') },
    writePartitions: int('FORGE_WRITE_PARTITIONS', 32, 1)!,
    writeAckWaitMs: int('FORGE_WRITE_ACK_WAIT_MS', 30_000, 1_000)!,
    writeTimeoutMs: int('FORGE_WRITE_TIMEOUT_MS', 60_000, 1_000)!,
    nodeTtlMs: int('FORGE_NODE_TTL_MS', 15_000, 1_000)!,
    cronRepoStats: cronSchedule(str('FORGE_CRON_REPO_STATS') ?? '0 */5 * * * *'),
    git: {
      protectedBranches: protectedBranches(str('FORGE_PROTECTED_BRANCHES')),
      pushMaxBytes: int('FORGE_PUSH_MAX_BYTES', 256 * 1024 * 1024, 1024)!,
      pushTimeoutMs: int('FORGE_PUSH_TIMEOUT_MS', 120_000, 1_000)!,
      maxUploads: int('FORGE_GIT_MAX_UPLOADS', 8, 1)!,
    },
    sse: {
      heartbeatMs: int('FORGE_SSE_HEARTBEAT_MS', 15_000, 100)!,
      retryMs: int('FORGE_SSE_RETRY_MS', 2_000, 0)!,
      maxBufferedBytes: int('FORGE_SSE_MAX_BUFFER_BYTES', 256 * 1024, 1_024)!,
      maxClients: int('FORGE_SSE_MAX_CLIENTS', 50_000, 1)!,
      maxConcurrentReplays: int('FORGE_SSE_MAX_REPLAYS', 16, 1)!,
    },
  };
}

function natsSettings(env: Record<string, unknown>): NatsClientSettings {
  try {
    return natsClientFromEnv(env);
  } catch (err) {
    if (err instanceof NatsEnvError) throw new ForgeNodeConfigError(err.message);
    throw err;
  }
}

function protectedBranches(raw: string | undefined): string[] {
  const names = parseProtectedBranches(raw);
  const bad = names.find((n) => !/^[A-Za-z0-9._/-]{1,200}$/.test(n) || n.startsWith('-') || n.includes('..'));
  if (bad !== undefined) throw new ForgeNodeConfigError(`FORGE_PROTECTED_BRANCHES must list branch names (letters, digits, . _ / -), comma-separated, got "${bad.slice(0, 100)}"`);
  return names;
}

function databaseUrl(raw: string | undefined): string | undefined {
  if (raw === undefined) return undefined;
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ForgeNodeConfigError('FORGE_DATABASE_URL must be a URL like postgres://user:password@host:5432/forge');
  }
  if (url.protocol !== 'postgres:' && url.protocol !== 'postgresql:') {
    // The value may hold a password: only its scheme is repeated.
    throw new ForgeNodeConfigError(`FORGE_DATABASE_URL must be a postgres:// URL (unset, the nodes share SQLite in FORGE_DATA_DIR), got a ${url.protocol} URL`);
  }
  return raw;
}

function monitorUrls(raw: string | undefined): string[] {
  const urls = (raw ?? '').split(',').map((u) => u.trim()).filter(Boolean);
  for (const u of urls) {
    let ok = false;
    try {
      ok = ['http:', 'https:'].includes(new URL(u).protocol);
    } catch {
      /* not a URL */
    }
    if (!ok) throw new ForgeNodeConfigError(`NATS_MONITOR_URL must list http(s) URLs of NATS monitoring ports, comma-separated (e.g. http://127.0.0.1:8222), got "${u.slice(0, 100)}"`);
  }
  return urls;
}

function replicasSetting(raw: string | undefined): number | 'auto' {
  if (raw === undefined || raw === 'auto') return 'auto';
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1 || n > 5) throw new ForgeNodeConfigError(`FORGE_REPLICAS must be "auto" or an integer from 1 to 5 (NATS's limit), got "${raw}"`);
  return n;
}

export const FORGE_NODE_CONFIG = Symbol('FORGE_NODE_CONFIG');
