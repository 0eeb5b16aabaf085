import { Kvm, type KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { ForgeBusError } from './errors.js';

/** KV bucket of the settings every node of a cluster must agree on. */
export const SETTINGS_BUCKET = 'FORGE_SETTINGS';

export type SettingValue = string | number | boolean;

/** One setting that must be the same on every node, and how to change it without harm. */
export interface ClusterSetting {
  /** Key in FORGE_SETTINGS, e.g. `writes.partitions`. */
  name: string;
  value: SettingValue;
  /** The safe way to change it, for the error message (e.g. the procedure in docs/operations). */
  change: string;
}

/**
 * This process's value of a cluster-wide setting differs from the one the cluster recorded. The
 * process must not start: two partition counts, for one, would let two writes of the same
 * repository run at once.
 */
export class SettingsDriftError extends ForgeBusError {
  constructor(
    readonly setting: string,
    readonly mine: SettingValue,
    readonly recorded: SettingValue,
    change: string,
  ) {
    super(
      'SETTINGS_DRIFT',
      `cluster setting ${setting} is ${JSON.stringify(recorded)} in this cluster (recorded in the ${SETTINGS_BUCKET} bucket by the first node), ` +
        `but this process has ${JSON.stringify(mine)}: start it with ${JSON.stringify(recorded)}. To change it for the whole cluster: ${change}`,
    );
  }
}

/** The FORGE_SETTINGS bucket (created when missing). */
export async function settingsBucket(nc: NatsConnection): Promise<KV> {
  return new Kvm(nc).create(SETTINGS_BUCKET, { history: 1 });
}

/**
 * Records each setting if the cluster has none yet (the first node's values win, by `kv.create`,
 * which only one of several nodes starting at once can do) and refuses to go on when this
 * process's value differs from the recorded one.
 */
export async function agreeOnSettings(nc: NatsConnection, settings: ClusterSetting[]): Promise<void> {
  const kv = await settingsBucket(nc);
  for (const setting of settings) {
    const encoded = JSON.stringify(setting.value);
    try {
      await kv.create(setting.name, encoded);
      continue;
    } catch {
      // Recorded already (or created by another node this very moment): compare below.
    }
    const entry = await kv.get(setting.name);
    if (!entry || entry.length === 0) {
      await kv.put(setting.name, encoded);
      continue;
    }
    const recorded = entry.json<SettingValue>();
    if (recorded !== setting.value) throw new SettingsDriftError(setting.name, setting.value, recorded, setting.change);
  }
}

/** The recorded settings (for operators' tools). */
export async function recordedSettings(nc: NatsConnection): Promise<Record<string, SettingValue>> {
  const kv = await settingsBucket(nc);
  const out: Record<string, SettingValue> = {};
  for await (const key of await kv.keys()) {
    const entry = await kv.get(key);
    if (entry && entry.length > 0) out[key] = entry.json<SettingValue>();
  }
  return out;
}

/**
 * Records `value` under `name` unless something is recorded already; returns what is recorded
 * (first writer wins, as with the settings).
 */
export async function recordOnce(nc: NatsConnection, name: string, value: SettingValue): Promise<SettingValue> {
  const kv = await settingsBucket(nc);
  try {
    await kv.create(name, JSON.stringify(value));
    return value;
  } catch {
    const entry = await kv.get(name);
    if (!entry || entry.length === 0) {
      await kv.put(name, JSON.stringify(value));
      return value;
    }
    return entry.json<SettingValue>();
  }
}

/** Changes a recorded setting (a deliberate cluster-wide change; see the procedures in the docs). */
export async function recordSetting(nc: NatsConnection, name: string, value: SettingValue): Promise<void> {
  await (await settingsBucket(nc)).put(name, JSON.stringify(value));
}
