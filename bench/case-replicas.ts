import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { jetstreamManager, JetStreamApiCodes, JetStreamApiError } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { ForgeBus } from '../src/index.js';
import { ensureEventStream, EVENTS_STREAM, waitForLeader } from '../src/bus/index.js';
import { startLocalNats, waitForJetStream } from '../src/ops/local-nats.js';
import type { BenchContext, Row } from './cases.js';
import { EVENT_INPUT, log, now, ratePerSecond, windowed } from './common.js';
import { fmt, rounds } from './cases.js';

/**
 * `replicas`: what three copies cost. ForgeBus.publish, acked, with the same window as case c,
 * against (1) the bench's single server (one copy), (2) a 3-server cluster on loopback with
 * FORGE_EVENTS kept on one server, (3) the same cluster with three copies (the default there).
 * Each acknowledgement of (3) waits for a second server to store the event.
 */
export async function caseReplicas(ctx: BenchContext): Promise<Row[]> {
  const dir = mkdtempSync(join(tmpdir(), 'forgebus-bench-replicas-'));
  const cluster = await startLocalNats({ servers: 3, dir, auth: false, monitorPort: -1 });
  try {
    await waitForJetStream(cluster);
    return [
      await measure(ctx, 'r1', 'ForgeBus.publish, acked: 1 server, 1 copy (as c)', ctx.url, 1),
      await measure(ctx, 'r3-1', 'ForgeBus.publish, acked: 3-server cluster, 1 copy', cluster.url, 1),
      await measure(ctx, 'r3', 'ForgeBus.publish, acked: 3-server cluster, 3 copies', cluster.url, 3),
    ];
  } finally {
    await cluster.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function resetStream(nc: NatsConnection, replicas: number): Promise<void> {
  const jsm = await jetstreamManager(nc);
  try {
    await jsm.streams.delete(EVENTS_STREAM);
  } catch (err) {
    if (!(err instanceof JetStreamApiError && err.code === JetStreamApiCodes.StreamNotFound)) throw err;
  }
  await ensureEventStream(nc, { replicas });
  await waitForLeader(jsm, EVENTS_STREAM);
}

async function measure(ctx: BenchContext, id: string, label: string, servers: string, replicas: number): Promise<Row> {
  const r: Row = { id, label, events: ctx.events, rates: [], incomplete: [], notes: [], cpu: [] };
  const admin = await connect({ servers: servers.split(','), name: 'bench-admin' });
  // Each setup records its own count: settings are per cluster, and the bench switches on purpose.
  await (await jetstreamManager(admin)).streams.delete('KV_FORGE_SETTINGS').catch(() => undefined);
  await resetStream(admin, replicas);
  const bus = await ForgeBus.connect({ nodeId: `bench-${id}`, connection: { servers }, replicas });
  try {
    await rounds(ctx, `${id} publish`, async (n, measured, i) => {
      await resetStream(admin, replicas);
      const t0 = now();
      await windowed(n, ctx.window, () => bus.publish(EVENT_INPUT));
      const rate = ratePerSecond(n, t0, now());
      if (measured) {
        r.rates.push(rate);
        log(`${id} run ${i}: ${fmt(rate)} events/s`);
      }
    });
  } finally {
    await bus.close();
    await admin.close();
  }
  return r;
}
