import { EVENTS_STREAM, SETTINGS_BUCKET } from '../bus/index.js';
import { CRON_CLAIMS_BUCKET, CRON_RUNS_STREAM } from '../cluster/cron.js';
import { LOCKS_BUCKET } from '../cluster/locks.js';
import { MEMBERS_BUCKET } from '../cluster/membership.js';
import { TASKS_BUCKET } from '../cluster/tasks.js';
import { WRITES_STREAM } from '../repo-writes/partitions.js';
import { FAILURES_BUCKET, RESULTS_BUCKET } from '../repo-writes/write-queue.js';

/**
 * nats-server configurations for the local modes of `npm start` and for the tests: a forge-node
 * user that may touch only forgebus's subjects, streams, consumers and buckets, and a read-only
 * operator user. Rendered as JSON, which nats-server's configuration format accepts as it is
 * (and which quotes every `$JS…` subject, so none is read as a variable).
 */

/** The KV buckets forgebus creates (each is the stream `KV_<bucket>`). */
export const FORGEBUS_BUCKETS = [SETTINGS_BUCKET, MEMBERS_BUCKET, TASKS_BUCKET, LOCKS_BUCKET, CRON_CLAIMS_BUCKET, RESULTS_BUCKET, FAILURES_BUCKET] as const;
/** Every stream forgebus creates, buckets included. */
export const FORGEBUS_STREAMS = [EVENTS_STREAM, WRITES_STREAM, CRON_RUNS_STREAM, ...FORGEBUS_BUCKETS.map((b) => `KV_${b}`)];

/**
 * Inbox prefix of the operator user (nats.js `inboxPrefix`): its own, so that it cannot
 * subscribe to the replies forge nodes receive on `_INBOX.>` (and they not to its).
 */
export const OPERATOR_INBOX_PREFIX = '_INBOX_OPS';

export interface Permissions {
  publish: { allow: string[] };
  subscribe: { allow: string[] };
}

/** What a stream's owner does with it: manage it, its consumers, read, ack and page through it. */
function streamApi(stream: string): string[] {
  return [
    `$JS.API.STREAM.*.${stream}`, // CREATE, UPDATE, INFO, DELETE, PURGE
    `$JS.API.STREAM.MSG.*.${stream}`, // GET, DELETE
    `$JS.API.DIRECT.GET.${stream}`,
    `$JS.API.DIRECT.GET.${stream}.>`,
    `$JS.API.CONSUMER.*.${stream}`, // CREATE (ephemeral), NAMES, LIST
    `$JS.API.CONSUMER.*.${stream}.>`, // CREATE <name> <filter>, INFO, DELETE
    `$JS.API.CONSUMER.DURABLE.CREATE.${stream}.*`,
    `$JS.API.CONSUMER.MSG.NEXT.${stream}.*`,
    `$JS.ACK.${stream}.>`,
    `$JS.FC.${stream}.>`,
  ];
}

/** A forge node: forge subjects, its inboxes, and the JetStream API of forgebus's own streams only. */
export function forgeNodePermissions(): Permissions {
  return {
    publish: {
      allow: [
        'forge.>',
        '_INBOX.>',
        `${OPERATOR_INBOX_PREFIX}.>`, // answers to the operator's ping and status requests
        '$JS.API.INFO',
        '$JS.API.STREAM.NAMES',
        ...FORGEBUS_STREAMS.flatMap(streamApi),
        ...FORGEBUS_BUCKETS.map((b) => `$KV.${b}.>`),
      ],
    },
    subscribe: { allow: ['forge.>', '_INBOX.>'] },
  };
}

/**
 * An operator: stream and consumer information, the buckets' contents (membership, tasks, cron,
 * settings) and the read-only control verbs. It cannot publish events, submit writes, change a
 * bucket, read FORGE_EVENTS's messages or cancel anything.
 */
export function operatorPermissions(): Permissions {
  const readBucket = (b: string) => [
    `$JS.API.DIRECT.GET.KV_${b}.>`,
    `$JS.API.STREAM.MSG.GET.KV_${b}`,
    `$JS.API.CONSUMER.CREATE.KV_${b}`,
    `$JS.API.CONSUMER.CREATE.KV_${b}.>`,
    `$JS.API.CONSUMER.DELETE.KV_${b}.*`,
    `$JS.FC.KV_${b}.>`,
  ];
  return {
    publish: {
      allow: [
        '$JS.API.INFO',
        '$JS.API.STREAM.NAMES',
        '$JS.API.STREAM.LIST',
        '$JS.API.STREAM.INFO.*',
        '$JS.API.CONSUMER.NAMES.*',
        '$JS.API.CONSUMER.LIST.*',
        '$JS.API.CONSUMER.INFO.*.*',
        // `forgebus status`: each cron job's last run record, and the time of each partition's
        // oldest waiting write (write arguments are readable in FORGE_WRITE_FAILURES already).
        `$JS.API.STREAM.MSG.GET.${CRON_RUNS_STREAM}`,
        `$JS.API.STREAM.MSG.GET.${WRITES_STREAM}`,
        ...FORGEBUS_BUCKETS.flatMap(readBucket),
        ...['ping', 'status'].flatMap((verb) => [`forge.node.*.ctl.${verb}`, `forge.nodes.ctl.${verb}`]),
      ],
    },
    subscribe: { allow: [`${OPERATOR_INBOX_PREFIX}.>`] },
  };
}

export interface NatsUserSecret {
  user: string;
  password: string;
}

/** The users of a generated configuration. */
export interface LocalNatsCredentials {
  /** What forge nodes connect as (NATS_USER / NATS_PASSWORD). */
  forge: NatsUserSecret;
  /** Read-only: monitoring, status tools. */
  operator: NatsUserSecret;
  /** Authenticates the routes between the servers of the cluster. */
  routes: NatsUserSecret;
}

export interface ServerConfigInput {
  serverName: string;
  host: string;
  port: number;
  /** Monitoring port; -1: no monitoring. Ports are given, not picked: routes must know them. */
  monitorPort: number;
  storeDir: string;
  credentials?: LocalNatsCredentials;
  cluster?: { name: string; port: number; routePorts: number[] };
  tls?: { certFile: string; keyFile: string; caFile?: string; verify?: boolean };
  /** Server version as [major, minor]: decides which durability settings exist. */
  version?: [number, number];
}

/** Whether the server can fsync each write (`sync_interval`, nats-server 2.10 and later). */
export function supportsSyncAlways(version: [number, number] | undefined): boolean {
  return version !== undefined && (version[0] > 2 || (version[0] === 2 && version[1] >= 10));
}

const bracketed = (host: string) => (host.includes(':') ? `[${host}]` : host);

export function renderServerConfig(input: ServerConfigInput): string {
  const jetstream: Record<string, unknown> = { store_dir: input.storeDir };
  // The safest durability the server has: fsync before acknowledging (2.10+); 2.9 rejects the field.
  if (supportsSyncAlways(input.version)) jetstream.sync_interval = 'always';
  const config: Record<string, unknown> = {
    server_name: input.serverName,
    host: input.host,
    port: input.port,
    jetstream,
  };
  if (input.monitorPort !== -1) config.http = `${bracketed(input.host)}:${input.monitorPort}`;
  if (input.credentials) {
    const { forge, operator } = input.credentials;
    config.authorization = {
      users: [
        { user: forge.user, password: forge.password, permissions: forgeNodePermissions() },
        { user: operator.user, password: operator.password, permissions: operatorPermissions() },
      ],
    };
  }
  if (input.cluster) {
    const routes = input.credentials?.routes;
    const auth = routes ? `${encodeURIComponent(routes.user)}:${encodeURIComponent(routes.password)}@` : '';
    const host = bracketed(input.host);
    config.cluster = {
      name: input.cluster.name,
      listen: `${host}:${input.cluster.port}`,
      ...(routes && { authorization: { user: routes.user, password: routes.password } }),
      routes: input.cluster.routePorts.filter((p) => p !== input.cluster!.port).map((p) => `nats-route://${auth}${host}:${p}`),
    };
  }
  if (input.tls) {
    config.tls = {
      cert_file: input.tls.certFile,
      key_file: input.tls.keyFile,
      ...(input.tls.caFile && { ca_file: input.tls.caFile }),
      ...(input.tls.verify && { verify: true }),
    };
  }
  return `${JSON.stringify(config, null, 2)}\n`;
}
