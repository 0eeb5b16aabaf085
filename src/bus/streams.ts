import {
  jetstreamManager,
  RetentionPolicy,
  StorageType,
  JetStreamApiCodes,
  JetStreamApiError,
  DiscardPolicy,
  type JetStreamManager,
  type StreamConfig,
} from '@nats-io/jetstream';
import { nanos, type NatsConnection } from '@nats-io/transport-node';
import type { ClusterSetting, SettingValue } from './cluster-settings.js';
import { StreamConfigConflictError } from './errors.js';
import { placementError, waitForLeader } from './replication.js';
import { integer, matching, millis, oneOf, type OptionRules } from './options.js';
import { EVENT_STREAM_SUBJECTS } from './subjects.js';

export const EVENTS_STREAM = 'FORGE_EVENTS';

export interface EventStreamOptions {
  /** Stream name (default FORGE_EVENTS). */
  name?: string;
  /** Oldest event kept, in ms (default 7 days; 0 = unlimited). */
  maxAgeMs?: number;
  /** Size bound in bytes (default 1 GiB; -1 = unlimited). */
  maxBytes?: number;
  /**
   * Window in which a repeated Nats-Msg-Id is stored once (default 2 minutes, or `maxAgeMs` when
   * that is shorter: NATS refuses a duplicate window longer than the max age).
   */
  duplicateWindowMs?: number;
  /** Copies kept in a clustered JetStream (default 1; ForgeBus passes the cluster's agreed count). */
  replicas?: number;
  /** Storage kind (default file). Cannot be changed on an existing stream. */
  storage?: 'file' | 'memory';
}

export const STREAM_OPTION_RULES: OptionRules<EventStreamOptions> = {
  name: matching(/^[A-Za-z0-9_-]{1,64}$/, 'a stream name: 1-64 characters of [A-Za-z0-9_-]'),
  maxAgeMs: integer(0),
  maxBytes: integer(-1),
  duplicateWindowMs: millis(1, Number.MAX_SAFE_INTEGER),
  replicas: integer(1, 5),
  storage: oneOf('file', 'memory'),
};

export const EVENT_STREAM_DEFAULTS: Required<EventStreamOptions> = {
  name: EVENTS_STREAM,
  maxAgeMs: 7 * 24 * 3600 * 1000,
  maxBytes: 1024 ** 3,
  duplicateWindowMs: 2 * 60 * 1000,
  replicas: 1,
  storage: 'file',
};

export function eventStreamConfig(options: EventStreamOptions = {}): StreamConfig {
  const o = { ...EVENT_STREAM_DEFAULTS, ...options };
  if (options.duplicateWindowMs === undefined && o.maxAgeMs > 0) o.duplicateWindowMs = Math.min(o.duplicateWindowMs, o.maxAgeMs);
  return {
    name: o.name,
    subjects: [...EVENT_STREAM_SUBJECTS],
    retention: RetentionPolicy.Limits,
    storage: o.storage === 'memory' ? StorageType.Memory : StorageType.File,
    max_age: nanos(o.maxAgeMs),
    max_bytes: o.maxBytes,
    duplicate_window: nanos(o.duplicateWindowMs),
    num_replicas: o.replicas,
    discard: DiscardPolicy.Old,
  } as StreamConfig;
}

type Diff = { field: keyof StreamConfig; want: unknown; have: unknown };

const MUTABLE: (keyof StreamConfig)[] = ['subjects', 'max_age', 'max_bytes', 'duplicate_window', 'num_replicas', 'discard'];
const IMMUTABLE: (keyof StreamConfig)[] = ['retention', 'storage'];

function differs(want: unknown, have: unknown): boolean {
  if (Array.isArray(want) && Array.isArray(have)) {
    return want.length !== have.length || [...want].sort().some((v, i) => v !== [...have].sort()[i]);
  }
  return want !== have;
}

function diff(want: StreamConfig, have: StreamConfig, fields: (keyof StreamConfig)[]): Diff[] {
  return fields
    .filter((field) => differs(want[field], have[field]))
    .map((field) => ({ field, want: want[field], have: have[field] }));
}

export interface ProvisionResult {
  action: 'created' | 'updated' | 'unchanged';
  config: StreamConfig;
}

/**
 * Makes sure a stream exists with `want`'s configuration. Safe to call at every start, from
 * every node at once: creation races end in "already exists" and fall through to comparison.
 * Differences NATS can apply in place are updated; the others raise StreamConfigConflictError.
 */
export async function ensureStream(jsm: JetStreamManager, want: StreamConfig): Promise<ProvisionResult> {
  let have: StreamConfig;
  try {
    have = (await jsm.streams.info(want.name)).config;
  } catch (err) {
    if (!(err instanceof JetStreamApiError && err.code === JetStreamApiCodes.StreamNotFound)) throw err;
    try {
      const created = (await jsm.streams.add(want)).config;
      await waitForLeader(jsm, want.name);
      return { action: 'created', config: created };
    } catch (addErr) {
      const unplaced = placementError(addErr, want.name, want.num_replicas);
      if (unplaced) throw unplaced;
      // Another node created it between our info and add: compare with what it made.
      have = (await jsm.streams.info(want.name).catch(() => {
        throw addErr;
      })).config;
    }
  }
  const conflicts = diff(want, have, IMMUTABLE);
  if (conflicts.length > 0) {
    throw new StreamConfigConflictError(
      want.name,
      conflicts.map((c) => c.field),
      conflicts.map((c) => `${c.field} is ${JSON.stringify(c.have)}, wanted ${JSON.stringify(c.want)}`).join('; '),
    );
  }
  const changes = diff(want, have, MUTABLE);
  if (changes.length === 0) return { action: 'unchanged', config: have };
  try {
    const updated = await jsm.streams.update(want.name, { ...have, ...want });
    await waitForLeader(jsm, want.name);
    return { action: 'updated', config: updated.config };
  } catch (err) {
    const unplaced = placementError(err, want.name, want.num_replicas);
    if (unplaced) throw unplaced;
    throw new StreamConfigConflictError(
      want.name,
      changes.map((c) => c.field),
      `NATS refused the update (${(err as Error).message})`,
    );
  }
}

/** Provisions FORGE_EVENTS (or the configured name). */
const CHANGE_EVENT_STREAM =
  'record the new value with `npm run settings -- set <setting> <value>`, then restart the nodes with it (the first one updates FORGE_EVENTS in place where NATS allows it); see docs/operations.md';

/** The FORGE_EVENTS limits every node must agree on, as this process would provision them. */
export function eventStreamSettings(options: EventStreamOptions = {}): ClusterSetting[] {
  const config = eventStreamConfig(options);
  const setting = (name: string, value: SettingValue): ClusterSetting => ({ name: `events.${name}`, value, change: CHANGE_EVENT_STREAM });
  return [
    setting('stream', config.name),
    setting('maxAgeMs', Number(config.max_age) / 1e6),
    setting('maxBytes', config.max_bytes),
    setting('duplicateWindowMs', Number(config.duplicate_window) / 1e6),
    setting('storage', options.storage ?? EVENT_STREAM_DEFAULTS.storage),
  ];
}

export async function ensureEventStream(nc: NatsConnection, options: EventStreamOptions = {}): Promise<ProvisionResult> {
  return ensureStream(await jetstreamManager(nc), eventStreamConfig(options));
}

