import { JetStreamApiCodes, JetStreamApiError, type JetStreamManager, type StreamInfo } from '@nats-io/jetstream';
import { Kvm, type KvEntry } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';

/**
 * Small read-only JetStream helpers for the status: what the operator user of the generated
 * configuration may do (stream and consumer information, message get on the streams it is
 * allowed, KV reads through push consumers).
 */

export const isStreamNotFound = (err: unknown) => err instanceof JetStreamApiError && err.code === JetStreamApiCodes.StreamNotFound;

/** Stream information, or undefined when the stream does not exist. */
export async function streamInfo(jsm: JetStreamManager, name: string, subjectsFilter?: string): Promise<StreamInfo | undefined> {
  try {
    return await jsm.streams.info(name, subjectsFilter === undefined ? undefined : { subjects_filter: subjectsFilter });
  } catch (err) {
    if (isStreamNotFound(err)) return undefined;
    throw err;
  }
}

/**
 * The current value of every key of a KV bucket (undefined when it does not exist), read with
 * one push consumer (a `get` per key would cost a request each: the tasks bucket keeps every
 * finished task). Deleted keys are left out; a key seen twice keeps its newest revision.
 */
export async function bucketValues<T>(nc: NatsConnection, jsm: JetStreamManager, bucket: string, timeoutMs: number): Promise<T[] | undefined> {
  const info = await streamInfo(jsm, `KV_${bucket}`);
  if (!info) return undefined;
  if (info.state.messages === 0) return [];
  const kv = await new Kvm(nc).open(bucket);
  const latest = new Map<string, KvEntry>();
  const entries = await kv.history();
  const deadline = setTimeout(() => entries.stop(), timeoutMs);
  try {
    for await (const entry of entries) {
      const seen = latest.get(entry.key);
      if (!seen || seen.revision < entry.revision) latest.set(entry.key, entry);
    }
  } finally {
    clearTimeout(deadline);
  }
  const values: T[] = [];
  for (const entry of latest.values()) {
    if (entry.operation !== 'PUT' || entry.value.length === 0) continue;
    try {
      values.push(entry.json<T>());
    } catch {
      // Not JSON: not written by forgebus; skipped.
    }
  }
  return values;
}
