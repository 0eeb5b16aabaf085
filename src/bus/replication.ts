import { jetstreamManager, JetStreamApiCodes, JetStreamApiError, type JetStreamManager } from '@nats-io/jetstream';
import { Kvm, type KV, type KvOptions } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { recordSetting, SETTINGS_BUCKET, SettingsDriftError, settingsBucket } from './cluster-settings.js';
import { ForgeBusError } from './errors.js';

/**
 * How many copies JetStream keeps of every forgebus stream, bucket and durable consumer. One
 * value for all of them, recorded in FORGE_SETTINGS: a node that scaled a stream down because it
 * saw fewer servers would undo another node's redundancy.
 */
export type ReplicasOption = number | 'auto';

/** Key of the recorded replica count in FORGE_SETTINGS. */
export const REPLICAS_SETTING = 'replicas';
/** `auto` never asks for more: three copies survive the loss of any one server. */
export const MAX_AUTO_REPLICAS = 3;
/** NATS's own limit on the replicas of a stream. */
export const MAX_REPLICAS = 5;

const CHANGE_REPLICAS =
  'run `npm run settings -- set replicas <n>` (it scales every forgebus stream and bucket in place), then start the nodes with that value or with replicas left on auto';

/** JetStream could not place (or re-place) a stream on as many servers as it was asked to. */
export class ReplicasUnavailableError extends ForgeBusError {
  constructor(
    readonly stream: string,
    readonly replicas: number,
    reason: string,
    readonly servers?: number,
  ) {
    const seen = servers === undefined ? '' : ` (this connection sees ${servers} server${servers === 1 ? '' : 's'})`;
    super(
      'REPLICAS_UNAVAILABLE',
      `cannot keep ${replicas} replicas of stream ${stream}: NATS says "${reason}"${seen}. ` +
        `Run at least ${replicas} JetStream servers in one NATS cluster, or lower the replica count for the whole cluster with \`npm run settings -- set replicas <n>\` and start the nodes with it (FORGE_REPLICAS=<n>, or unset for auto).`,
    );
  }
}

/**
 * Servers of the NATS cluster this connection is part of: the one it is connected to plus the
 * peers that server announces (`connect_urls`). A server that is down at this moment is not
 * counted, which is why `auto` never lowers a recorded count.
 */
export function visibleServers(nc: NatsConnection): number {
  const info = nc.info;
  if (!info?.cluster) return 1;
  return Math.max(1, new Set(info.connect_urls ?? []).size);
}

async function recordedReplicas(kv: KV): Promise<{ value: number; revision: number } | undefined> {
  const entry = await kv.get(REPLICAS_SETTING);
  if (!entry || entry.length === 0 || entry.operation !== 'PUT') return undefined;
  return { value: entry.json<number>(), revision: entry.revision };
}

/**
 * The cluster's replica count, agreed through FORGE_SETTINGS.
 * - `auto`: min(3, servers seen), but never less than what is recorded; a grown cluster raises
 *   the record (compare-and-swap, so concurrent starters agree), and the streams follow.
 * - a number: recorded if nothing is, otherwise it must equal the record (SettingsDriftError).
 * With `record: false` (inspecting tools) nothing is written: the recorded value or the estimate.
 */
export async function agreeOnReplicas(nc: NatsConnection, requested: ReplicasOption, options: { record?: boolean } = {}): Promise<number> {
  const kv = await settingsBucket(nc);
  const wanted = requested === 'auto' ? Math.min(MAX_AUTO_REPLICAS, visibleServers(nc)) : requested;
  for (let attempt = 0; attempt < 5; attempt++) {
    const recorded = await recordedReplicas(kv);
    if (options.record === false) return recorded?.value ?? wanted;
    if (!recorded) {
      try {
        await kv.create(REPLICAS_SETTING, JSON.stringify(wanted));
        return wanted;
      } catch {
        continue; // another node recorded first: compare with its value
      }
    }
    if (recorded.value === wanted) return wanted;
    if (requested !== 'auto') throw new SettingsDriftError(REPLICAS_SETTING, wanted, recorded.value, CHANGE_REPLICAS);
    if (recorded.value > wanted) return recorded.value;
    try {
      await kv.update(REPLICAS_SETTING, JSON.stringify(wanted), recorded.revision);
      return wanted;
    } catch {
      // Someone else changed it in between: read again.
    }
  }
  throw new ForgeBusError('SETTINGS_CONTENDED', `could not agree on ${REPLICAS_SETTING} in ${SETTINGS_BUCKET} after 5 attempts: is another process changing it in a loop?`);
}

/** JSClusterNoPeersErr, JSInsufficientResourcesErr, JSStreamReplicasNotSupportedErr in nats-server's table. */
const PLACEMENT_ERROR_CODES = new Set([10005, 10023, 10074]);

/** NATS's refusal to place `replicas` copies of `stream`, as the error that says what to do. */
export function placementError(err: unknown, stream: string, replicas: number, servers?: number): ReplicasUnavailableError | undefined {
  const refused = err instanceof JetStreamApiError && (PLACEMENT_ERROR_CODES.has(err.code) || /suitable peers|placement|insufficient resources/i.test(err.message));
  return refused ? new ReplicasUnavailableError(stream, replicas, (err as Error).message, servers) : undefined;
}

/**
 * Scales an existing stream to `replicas` copies in place (NATS 2.9 does, consumers included).
 * Resolves with whether it changed anything.
 */
export async function scaleStream(nc: NatsConnection, stream: string, replicas: number): Promise<boolean> {
  const jsm = await jetstreamManager(nc);
  const info = await jsm.streams.info(stream);
  if (info.config.num_replicas === replicas) return false;
  // A standalone server stores any count on update (and keeps one copy): say so instead.
  if (replicas > 1 && !nc.info?.cluster) throw new ReplicasUnavailableError(stream, replicas, 'replicas > 1 not supported in non-clustered mode', 1);
  try {
    await jsm.streams.update(stream, { ...info.config, num_replicas: replicas });
  } catch (err) {
    throw placementError(err, stream, replicas, visibleServers(nc)) ?? err;
  }
  await waitForLeader(jsm, stream);
  return true;
}

/**
 * Waits until a replicated stream has elected its leader: created or re-placed a moment ago, it
 * answers neither reads nor writes until then.
 */
export async function waitForLeader(jsm: JetStreamManager, stream: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = 'no leader yet';
  for (;;) {
    try {
      const info = await jsm.streams.info(stream);
      if (!info.cluster || info.cluster.leader) return;
    } catch (err) {
      last = (err as Error).message;
    }
    if (Date.now() > deadline) {
      throw new ForgeBusError(
        'STREAM_LEADERLESS',
        `stream ${stream} has no leader after ${timeoutMs} ms (${last}): are most of its servers up? See each stream's leader in the monitoring page /jsz?streams=true`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/**
 * The server version from which a replicated stream checks a compare-and-swap
 * (`Nats-Expected-Last-Subject-Sequence`, i.e. `kv.update(key, value, revision)`) inside its
 * RAFT group: before it, two updates of one revision in flight together can both succeed
 * (nats-server#4320; on Debian's 2.9.10, 200 of 200 tries here did).
 */
export const CAS_SERIALIZED_SINCE: [number, number, number] = [2, 9, 21];

/** Whether compare-and-swap on a replicated stream is safe on the server `nc` is connected to. */
export function serializesCompareAndSwap(nc: NatsConnection): boolean {
  const match = /^v?(\d+)\.(\d+)\.(\d+)/.exec(nc.info?.version ?? '');
  if (!match) return false;
  const have = match.slice(1, 4).map(Number);
  for (let i = 0; i < 3; i++) if (have[i] !== CAS_SERIALIZED_SINCE[i]) return have[i]! > CAS_SERIALIZED_SINCE[i]!;
  return true;
}

const warnedCas = new WeakSet<NatsConnection>();

export interface OpenBucketOptions {
  /**
   * The bucket's correctness rests on `kv.update(key, value, revision)` letting one writer win
   * (locks, task state). On a server that does not serialize that on replicated streams, the
   * bucket is kept on one server instead (correct, but unavailable while that server is down),
   * and `warn` is told once per connection.
   */
  compareAndSwap?: { warn: (message: string) => void };
}

/**
 * Opens (creating if needed) a KV bucket with the cluster's replica count, and scales a bucket
 * made earlier with fewer copies: Kvm.create keeps an existing bucket's configuration as it is.
 */
export async function openBucket(nc: NatsConnection, bucket: string, wanted: number, options: Partial<KvOptions> = {}, open: OpenBucketOptions = {}): Promise<KV> {
  let replicas = wanted;
  if (open.compareAndSwap && replicas > 1 && !serializesCompareAndSwap(nc)) {
    replicas = 1;
    if (!warnedCas.has(nc)) {
      warnedCas.add(nc);
      open.compareAndSwap.warn(
        `nats-server ${nc.info?.version ?? '(unknown version)'} does not serialize compare-and-swap on replicated streams (fixed in ${CAS_SERIALIZED_SINCE.join('.')}, nats-server#4320): ` +
          `buckets whose correctness rests on it (locks, tasks) are kept on one server, so they are unavailable while that server is down. Upgrade nats-server to keep them on ${wanted}.`,
      );
    }
  }
  let kv: KV;
  try {
    kv = await new Kvm(nc).create(bucket, { ...options, replicas });
  } catch (err) {
    throw placementError(err, `KV_${bucket}`, replicas, visibleServers(nc)) ?? err;
  }
  const jsm = await jetstreamManager(nc);
  if (!(await scaleStream(nc, `KV_${bucket}`, replicas))) await waitForLeader(jsm, `KV_${bucket}`);
  return kv;
}

/** Every stream whose name marks it as forgebus's (FORGE_*, and the KV_FORGE_* buckets). */
export async function forgebusStreams(jsm: JetStreamManager, eventsStream = 'FORGE_EVENTS'): Promise<string[]> {
  const names: string[] = [];
  for await (const name of jsm.streams.names()) {
    if (name === eventsStream || name.startsWith('FORGE_') || name.startsWith('KV_FORGE_')) names.push(name);
  }
  return names.sort();
}

/**
 * Sets the replica count for the whole cluster: records it, then scales every forgebus stream
 * (each bucket is a stream; durable consumers follow their stream). For `npm run settings`.
 */
export async function rescaleCluster(nc: NatsConnection, replicas: number, eventsStream?: string): Promise<{ stream: string; changed: boolean }[]> {
  const jsm = await jetstreamManager(nc);
  const streams = await forgebusStreams(jsm, eventsStream);
  const results: { stream: string; changed: boolean }[] = [];
  // Scale first, record last: a refused placement leaves the record (and the nodes) as they were.
  for (const stream of streams) {
    try {
      results.push({ stream, changed: await scaleStream(nc, stream, replicas) });
    } catch (err) {
      if (err instanceof JetStreamApiError && err.code === JetStreamApiCodes.StreamNotFound) continue;
      throw err;
    }
  }
  await recordSetting(nc, REPLICAS_SETTING, replicas);
  return results;
}
