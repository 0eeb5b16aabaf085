import { randomUUID } from 'node:crypto';
import { createRequire } from 'node:module';
import { setImmediate as yieldToIo } from 'node:timers/promises';
import { jetstream, jetstreamManager, JetStreamApiCodes, JetStreamApiError } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { Logger } from '@nestjs/common';
import { ClientProxyFactory, Transport, type ClientProxy } from '@nestjs/microservices';
import { ForgeBus } from '../src/bus/bus.js';
import { ensureEventStream, EVENTS_STREAM } from '../src/bus/streams.js';
import { BenchChild, type Round } from './children.js';
import {
  cpuMeter,
  type CpuShare,
  CORE_SUBJECT,
  ENVELOPE,
  ENVELOPE_BYTES,
  EVENT_INPUT,
  EVENT_SUBJECT,
  EVENT_TYPE,
  log,
  now,
  ratePerSecond,
  TimeoutError,
  windowed,
  withTimeout,
} from './common.js';
import { pipelinedPublish } from './raw-pipeline.js';
import type { Report } from './report.js';

export interface BenchContext {
  url: string;
  /** Events per measured round. */
  events: number;
  /** Measured rounds per case (the table shows the median). */
  runs: number;
  /** Events in the unrecorded warm-up round. */
  warmup: number;
  /** SDK publishes the bench keeps in flight at once (c, d, and the floors c0, d0). */
  window: number;
  /** js.publish calls kept in flight at once (b). */
  jsWindow: number;
  /** Case f: emits kept in flight at once, one row per window; max_ack_pending of its consumer. */
  f: { windows: number[]; maxAckPending?: number };
  /** Messages an ordered consumer buffers (same as the SDK feed's default). */
  consumerBuffer: number;
  /** For the CPU columns (read from /proc). */
  serverPid?: number;
  /** Case inv: requested publish rates (events/s), seconds per run, runs per rate. */
  inv: { rates: number[]; seconds: number; runs: number };
  /** Case read: seconds per measurement, concurrent keep-alive connections, DB latencies (ms). */
  read: { seconds: number; connections: number; dbLatencies: number[]; postgres: boolean };
  /** Where the inv and read cases put their tables. */
  reports: Report[];
}

/** One row of the results table. */
export interface Row {
  id: string;
  label: string;
  events: number;
  rates: number[];
  /** Rounds that did not see all their events (lost or timed out). */
  incomplete: string[];
  notes: string[];
  /** CPU use per measured run (share of one core per process). */
  cpu: CpuShare[];
}

const row = (id: string, label: string, events: number): Row => ({ id, label, events, rates: [], incomplete: [], notes: [], cpu: [] });

export const roundTimeoutMs = (n: number): number => Math.max(20_000, n / 2);

export async function rounds(ctx: BenchContext, what: string, fn: (n: number, measured: boolean, i: number) => Promise<void>): Promise<void> {
  log(`${what}: warm-up (${ctx.warmup} events)`);
  await fn(ctx.warmup, false, 0);
  for (let i = 1; i <= ctx.runs; i++) {
    await fn(ctx.events, true, i);
  }
}

export const fmt = (rate: number): string => Math.round(rate).toLocaleString('en-US');

/** Deletes FORGE_EVENTS (if there) and provisions it again exactly as ForgeBus.connect does. */
export async function resetEventStream(nc: NatsConnection): Promise<void> {
  const jsm = await jetstreamManager(nc);
  try {
    await jsm.streams.delete(EVENTS_STREAM);
  } catch (err) {
    if (!(err instanceof JetStreamApiError && err.code === JetStreamApiCodes.StreamNotFound)) throw err;
  }
  await ensureEventStream(nc);
}

// ---- a. raw core NATS -----------------------------------------------------------------------

export async function caseCore(ctx: BenchContext): Promise<Row[]> {
  const r = row('a', 'raw nats.js core publish -> subscribe (2 connections, 1 process)', ctx.events);
  const pub = await connect({ servers: ctx.url, name: 'bench-core-pub' });
  const sub = await connect({ servers: ctx.url, name: 'bench-core-sub' });
  try {
    let count = 0;
    let target = 0;
    let lastAt = 0n;
    let onAll = (): void => undefined;
    sub.subscribe(CORE_SUBJECT, {
      callback: () => {
        if (++count === target) {
          lastAt = now();
          onAll();
        }
      },
    });
    await sub.flush();
    await rounds(ctx, 'a core', async (n, measured, i) => {
      count = 0;
      target = n;
      const all = new Promise<void>((resolve) => (onAll = resolve));
      const meter = cpuMeter(ctx.serverPid);
      const t0 = now();
      for (let k = 0; k < n; k++) {
        pub.publish(CORE_SUBJECT, ENVELOPE_BYTES);
        // Let the socket and the subscriber run, as an application publishing in bursts would.
        if (k % 1000 === 999) await yieldToIo();
      }
      try {
        await withTimeout(all, roundTimeoutMs(n), 'core round');
      } catch (err) {
        if (!(err instanceof TimeoutError)) throw err;
        if (measured) r.incomplete.push(`run ${i}: ${count}/${n} received`);
        return;
      }
      if (measured) {
        r.cpu.push(meter.end(lastAt - t0));
        r.rates.push(ratePerSecond(n, t0, lastAt));
        log(`a core run ${i}: ${fmt(r.rates.at(-1)!)} events/s`);
      }
    });
  } finally {
    await pub.close();
    await sub.close();
  }
  return [r];
}

// ---- b. raw JetStream -----------------------------------------------------------------------

export async function caseJetStream(ctx: BenchContext): Promise<Row[]> {
  const p = row('b.pub', `raw js.publish, acked (${ctx.jsWindow} in flight)`, ctx.events);
  const rd = row('b.read', `raw ordered consumer reads (consume, max_messages ${ctx.consumerBuffer})`, ctx.events);
  const nc = await connect({ servers: ctx.url, name: 'bench-js' });
  const js = jetstream(nc);
  try {
    await rounds(ctx, 'b jetstream', async (n, measured, i) => {
      await resetEventStream(nc);
      const pubMeter = cpuMeter(ctx.serverPid);
      const t0 = now();
      await windowed(n, ctx.jsWindow, () =>
        js.publish(EVENT_SUBJECT, ENVELOPE_BYTES, { msgID: randomUUID(), expect: { streamName: EVENTS_STREAM } }),
      );
      const pubEnd = now();
      const pubCpu = pubMeter.end(pubEnd - t0);
      const pubRate = ratePerSecond(n, t0, pubEnd);

      const readMeter = cpuMeter(ctx.serverPid);
      const t1 = now();
      const consumer = await js.consumers.get(EVENTS_STREAM); // no name: an ordered consumer
      const messages = await consumer.consume({ max_messages: ctx.consumerBuffer });
      let got = 0;
      let lastAt = 0n;
      const read = (async () => {
        for await (const _m of messages) {
          if (++got === n) {
            lastAt = now();
            break;
          }
        }
      })();
      try {
        await withTimeout(read, roundTimeoutMs(n), 'ordered read');
      } catch (err) {
        if (!(err instanceof TimeoutError)) throw err;
        if (measured) rd.incomplete.push(`run ${i}: ${got}/${n} read`);
      } finally {
        await messages.close().catch(() => undefined);
      }
      if (measured) {
        p.rates.push(pubRate);
        p.cpu.push(pubCpu);
        if (lastAt) {
          rd.rates.push(ratePerSecond(n, t1, lastAt));
          rd.cpu.push(readMeter.end(lastAt - t1));
        }
        log(`b js.publish run ${i}: ${fmt(pubRate)} acks/s; ordered read: ${lastAt ? fmt(rd.rates.at(-1)!) : 'incomplete'} reads/s`);
      }
    });
  } finally {
    await nc.close();
  }
  return [p, rd];
}

// ---- c. SDK acknowledged publish ------------------------------------------------------------

export async function caseSdkPublish(ctx: BenchContext): Promise<Row[]> {
  const r = row('c', `ForgeBus.publish, acked (${ctx.window} in flight)`, ctx.events);
  const admin = await connect({ servers: ctx.url, name: 'bench-admin' });
  await resetEventStream(admin);
  const bus = await ForgeBus.connect({ nodeId: 'bench-pub', connection: { servers: ctx.url } });
  try {
    await rounds(ctx, 'c sdk publish', async (n, measured, i) => {
      await resetEventStream(admin);
      const meter = cpuMeter(ctx.serverPid);
      const t0 = now();
      await windowed(n, ctx.window, () => bus.publish(EVENT_INPUT));
      const t1 = now();
      const rate = ratePerSecond(n, t0, t1);
      if (measured) {
        r.rates.push(rate);
        r.cpu.push(meter.end(t1 - t0));
        log(`c sdk publish run ${i}: ${fmt(rate)} events/s`);
      }
    });
  } finally {
    await bus.close();
    await admin.close();
  }
  return [r];
}

// ---- d. SDK publish -> handler in another process -------------------------------------------

function recordRound(r: Row, round: Round, measured: boolean, i: number, what: string): void {
  if (!measured) return;
  const detail = round.detail ? ` (child: ${JSON.stringify(round.detail)})` : '';
  if (!round.complete) {
    r.incomplete.push(`run ${i}: ${round.received}/${r.events} handled${detail}`);
    log(`${what} run ${i}: INCOMPLETE, ${round.received}/${r.events} handled${detail}`);
    return;
  }
  r.rates.push(round.rate);
  if (round.cpu) r.cpu.push(round.cpu);
  r.notes.push(`run ${i}: send side ${fmt(round.sendRate)}/s`);
  log(`${what} run ${i}: ${fmt(round.rate)} events/s end to end (send side alone ${fmt(round.sendRate)}/s)`);
}

export async function caseSdkEndToEnd(ctx: BenchContext): Promise<Row[]> {
  const r = row('d', 'ForgeBus.publish -> bus.on handler in another process', ctx.events);
  const admin = await connect({ servers: ctx.url, name: 'bench-admin' });
  await resetEventStream(admin);
  await admin.close();
  const child = await BenchChild.start('./child-sdk.js', ctx.url);
  let bus: ForgeBus | undefined;
  try {
    bus = await ForgeBus.connect({ nodeId: 'bench-pub', connection: { servers: ctx.url } });
    const b = bus;
    await rounds(ctx, 'd sdk end to end', async (n, measured, i) => {
      const round = await child.round(n, () => windowed(n, ctx.window, () => b.publish(EVENT_INPUT)), roundTimeoutMs(n), ctx.serverPid);
      recordRound(r, round, measured, i, 'd sdk end to end');
    });
  } finally {
    await bus?.close();
    await child.stop();
  }
  return [r];
}

// ---- e. NestJS built-in NATS transport -------------------------------------------------------

export async function caseNest(ctx: BenchContext): Promise<Row[]> {
  const r = row('e', "NestJS ClientProxy.emit -> @EventPattern handler in another process (Transport.NATS)", ctx.events);
  const child = await BenchChild.start('./child-nest.js', ctx.url);
  let client: ClientProxy | undefined;
  try {
    Logger.overrideLogger(['error', 'warn']); // no "NatsStatus: close" line in the report
    client = ClientProxyFactory.create({ transport: Transport.NATS, options: { servers: [ctx.url], name: 'bench-nest-pub' } });
    await client.connect();
    const c = client;
    await rounds(ctx, 'e nest', async (n, measured, i) => {
      const round = await child.round(
        n,
        // Fire and forget, as Nest documents emit() (the observable is hot): no promise per event.
        // Awaiting each emit with lastValueFrom costs Nest about a third of its rate here.
        async () => {
          for (let k = 0; k < n; k++) {
            c.emit(EVENT_TYPE, ENVELOPE);
            if (k % 1000 === 999) await yieldToIo();
          }
        },
        roundTimeoutMs(n),
        ctx.serverPid,
      );
      recordRound(r, round, measured, i, 'e nest');
    });
  } finally {
    await client?.close();
    await child.stop();
  }
  return [r];
}

// ---- f. NestJS JetStream plugin: what a Nest user installs for persisted events ----------------

export const F_PACKAGE = '@nestjs-plugins/nestjs-nats-jetstream-transport';
/** Case f's stream: FORGE_EVENTS's configuration under another name, so the SDK's feed and the
 * plugin's consumer never see each other's events while both children are up. */
export const F_STREAM = 'BENCH_NEST_JS';
/** The plugin's subject: the SDK's subject under a prefix outside FORGE_EVENTS's subjects. */
export const F_SUBJECT = `nestjs.${EVENT_SUBJECT}`;

/**
 * Baseline for d: `@nestjs-plugins/nestjs-nats-jetstream-transport`. The bench process emits with
 * the plugin's `NatsJetStreamClientProxy` (each `emit()` is a nats.js v2 `js.publish`, acked; its
 * observable completes with the ack), keeping `window` emits in flight; a child runs the plugin's
 * `NatsJetStreamServer` (a durable push consumer, explicit acks) with an @EventPattern handler.
 * One row per window; the same child and consumer serve every window.
 *
 * Row f.sdk is case d again (ForgeBus.publish -> bus.on in a child), its rounds interleaved with
 * the plugin's (run i: one d round, then one round per window), so that the ratio d / plugin is
 * taken under the same conditions: on this 2-core machine other programs come and go within a
 * minute, and back-to-back cases were seen to move the ratio between 1.7x and 5.5x.
 */
export async function caseNestJetStream(ctx: BenchContext): Promise<Row[]> {
  const { NatsJetStreamClientProxy } = await import('@nestjs-plugins/nestjs-nats-jetstream-transport');
  const { lastValueFrom } = await import('rxjs');
  const version = (createRequire(import.meta.url)(`${F_PACKAGE}/package.json`) as { version: string }).version;
  const sdkRow = row('f.sdk', `ForgeBus.publish -> bus.on handler in another process (d, interleaved with f's runs)`, ctx.events);
  const rows = ctx.f.windows.map((w) =>
    row(`f.${w}`, `nestjs-nats-jetstream-transport ${version}: emit, acked (${w} in flight) -> @EventPattern (durable push consumer)`, ctx.events),
  );
  const admin = await connect({ servers: ctx.url, name: 'bench-admin' });
  const jsm = await jetstreamManager(admin);
  await resetEventStream(admin);
  const { config } = await jsm.streams.info(EVENTS_STREAM);
  try {
    await jsm.streams.delete(F_STREAM); // with the durable consumer of an earlier run
  } catch (err) {
    if (!(err instanceof JetStreamApiError && err.code === JetStreamApiCodes.StreamNotFound)) throw err;
  }
  await jsm.streams.add({ ...config, name: F_STREAM, subjects: [F_SUBJECT] });

  const extra = [F_SUBJECT, ...(ctx.f.maxAckPending ? [String(ctx.f.maxAckPending)] : [])];
  let sdkChild: BenchChild | undefined;
  let nestChild: BenchChild | undefined;
  let bus: ForgeBus | undefined;
  const client = new NatsJetStreamClientProxy({ connectionOptions: { servers: ctx.url, name: 'bench-nest-js-pub' } });
  try {
    sdkChild = await BenchChild.start('./child-sdk.js', ctx.url);
    nestChild = await BenchChild.start('./child-nest-jetstream.js', ctx.url, 30_000, extra);
    bus = await ForgeBus.connect({ nodeId: 'bench-pub', connection: { servers: ctx.url } });
    Logger.overrideLogger(['error', 'warn']);
    await client.connect();
    const [sdk, nest, b] = [sdkChild, nestChild, bus];
    const sdkRound = (n: number): Promise<Round> =>
      sdk.round(n, () => windowed(n, ctx.window, () => b.publish(EVENT_INPUT)), roundTimeoutMs(n), ctx.serverPid);
    const emitAcked = (): Promise<unknown> => lastValueFrom(client.emit(F_SUBJECT, ENVELOPE));
    const nestRound = (n: number, w: number): Promise<Round> => nest.round(n, () => windowed(n, w, emitAcked), roundTimeoutMs(n), ctx.serverPid);

    const warmWindow = Math.max(...ctx.f.windows);
    log(`f nest jetstream: warm-up (${ctx.warmup} events each: SDK, then the plugin with ${warmWindow} in flight)`);
    await sdkRound(ctx.warmup);
    await nestRound(ctx.warmup, warmWindow);
    for (let i = 1; i <= ctx.runs; i++) {
      recordRound(sdkRow, await sdkRound(ctx.events), true, i, 'f: d interleaved');
      for (const [k, w] of ctx.f.windows.entries()) {
        recordRound(rows[k]!, await nestRound(ctx.events, w), true, i, `f nest jetstream (${w} in flight)`);
      }
    }
    // What the plugin's consumer looks like on the server, and whether anything was redelivered.
    for await (const ci of jsm.consumers.list(F_STREAM)) {
      const c = ci.config;
      const info =
        `consumer ${ci.name}: durable ${c.durable_name ? 'yes' : 'no'}, push (deliver_subject ${c.deliver_subject ? 'set' : 'none'}), ` +
        `ack ${c.ack_policy}, max_ack_pending ${c.max_ack_pending}; after the runs: ack pending ${ci.num_ack_pending}, ` +
        `redelivered ${ci.num_redelivered}, delivered ${ci.delivered.consumer_seq}`;
      log(`f nest jetstream: ${info}`);
      for (const r of rows) r.notes.push(info);
    }
  } finally {
    await client.close().catch(() => undefined);
    await bus?.close();
    await nestChild?.stop();
    await sdkChild?.stop();
    await admin.close();
  }
  return [sdkRow, ...rows];
}

// ---- diagnostic floors: the same persisted paths written directly on nats.js ------------------

export async function caseFloorPublish(ctx: BenchContext): Promise<Row[]> {
  const r = row('c0', `floor for c: pipelined raw acked publish, no SDK (${ctx.window} in flight)`, ctx.events);
  const nc = await connect({ servers: ctx.url, name: 'bench-floor-pub' });
  try {
    await rounds(ctx, 'c0 floor publish', async (n, measured, i) => {
      await resetEventStream(nc);
      const meter = cpuMeter(ctx.serverPid);
      const t0 = now();
      await pipelinedPublish(nc, EVENT_SUBJECT, ENVELOPE_BYTES, n, ctx.window);
      const t1 = now();
      if (measured) {
        r.rates.push(ratePerSecond(n, t0, t1));
        r.cpu.push(meter.end(t1 - t0));
        log(`c0 floor publish run ${i}: ${fmt(r.rates.at(-1)!)} events/s`);
      }
    });
  } finally {
    await nc.close();
  }
  return [r];
}

export async function caseFloorEndToEnd(ctx: BenchContext): Promise<Row[]> {
  const r = row('d0', 'floor for d: c0 publisher -> raw ordered consumer (JSON decode) in another process', ctx.events);
  const nc = await connect({ servers: ctx.url, name: 'bench-floor-pub' });
  await resetEventStream(nc);
  let child: BenchChild | undefined;
  try {
    child = await BenchChild.start('./child-raw.js', ctx.url);
    const c = child;
    await rounds(ctx, 'd0 floor end to end', async (n, measured, i) => {
      const round = await c.round(n, () => pipelinedPublish(nc, EVENT_SUBJECT, ENVELOPE_BYTES, n, ctx.window), roundTimeoutMs(n), ctx.serverPid);
      recordRound(r, round, measured, i, 'd0 floor end to end');
    });
  } finally {
    await child?.stop();
    await nc.close();
  }
  return [r];
}

/** Cases in the order they run; c0 and d0 are diagnostic floors (what nats.js alone achieves). */
export const CASES: Record<string, (ctx: BenchContext) => Promise<Row[]>> = {
  a: caseCore,
  b: caseJetStream,
  c: caseSdkPublish,
  c0: caseFloorPublish,
  d: caseSdkEndToEnd,
  d0: caseFloorEndToEnd,
  e: caseNest,
  f: caseNestJetStream,
};
