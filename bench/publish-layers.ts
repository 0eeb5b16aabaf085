/**
 * Diagnostic, not part of `npm run bench`: where ForgeBus.publish spends its CPU. Publishes the
 * same event through successively fewer SDK layers (acked every time, same stream, same window)
 * and prints events/s and CPU µs per event of this process.
 *
 *   npm run build && node dist/bench/publish-layers.js [--events N] [--runs R]
 *
 * Variant `no-validation` replaces the catalog's payload validation by a no-op in this process,
 * to measure its share; everything else calls the SDK as it is.
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ForgeBus } from '../src/bus/bus.js';
import { startNatsServer } from '../src/ops/nats-server.js';
import { resetEventStream } from './cases.js';
import { ENVELOPE, ENVELOPE_BYTES, EVENT_INPUT, EVENT_SUBJECT, median, windowed } from './common.js';
import { pipelinedPublish } from './raw-pipeline.js';

const arg = (flag: string, fallback: number): number => {
  const i = process.argv.indexOf(flag);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
};
const N = arg('--events', 100_000);
const RUNS = arg('--runs', 3);
const WINDOW = 4096;

const storeDir = mkdtempSync(join(tmpdir(), 'forgebus-layers-'));
const server = await startNatsServer({ storeDir, monitorPort: -1 });
const bus = await ForgeBus.connect({ nodeId: 'bench-layers', connection: { servers: server.url } });

const variants: [string, string, () => Promise<unknown>][] = [
  ['ForgeBus.publish', 'everything: create envelope (validate), subject, JSON, pipelined publish', () => windowed(N, WINDOW, () => bus.publish(EVENT_INPUT))],
  [
    'no-validation',
    'the same with catalog.validatePayload a no-op',
    async () => {
      const original = bus.catalog.validatePayload;
      bus.catalog.validatePayload = (_t: string, _v: number, payload: unknown) => payload as object;
      try {
        await windowed(N, WINDOW, () => bus.publish(EVENT_INPUT));
      } finally {
        bus.catalog.validatePayload = original;
      }
    },
  ],
  ['publishEnvelope', 'envelope made by the caller (copy with a fresh id)', () => windowed(N, WINDOW, () => bus.publishEnvelope({ ...ENVELOPE, id: randomUUID() }))],
  ['publisher.publish', 'EventPublisher: JSON + encode + pipelined publish', () => windowed(N, WINDOW, () => bus.publisher.publish(EVENT_SUBJECT, { ...ENVELOPE, id: randomUUID() }))],
  ['publisher.publishRaw', 'EventPublisher with pre-encoded bytes', () => windowed(N, WINDOW, () => bus.publisher.publishRaw(EVENT_SUBJECT, randomUUID(), ENVELOPE_BYTES))],
  ['raw floor (c0)', 'nats.js directly, same wire work, no promise per event', () => pipelinedPublish(bus.nc, EVENT_SUBJECT, ENVELOPE_BYTES, N, WINDOW)],
  [
    'events.create only',
    'building + validating envelopes, nothing sent',
    async () => {
      for (let i = 0; i < N; i++) bus.events.create(EVENT_INPUT);
    },
  ],
];

try {
  const results = new Map<string, { rate: number[]; cpu: number[] }>();
  for (let run = 0; run <= RUNS; run++) {
    for (const [name, , fn] of variants) {
      await resetEventStream(bus.nc);
      const t0 = performance.now();
      const c0 = process.cpuUsage();
      await fn();
      const ms = performance.now() - t0;
      const c = process.cpuUsage(c0);
      if (run === 0) continue; // warm-up
      const r = results.get(name) ?? { rate: [], cpu: [] };
      r.rate.push((N / ms) * 1000);
      r.cpu.push((c.user + c.system) / N);
      results.set(name, r);
    }
  }
  console.log(`ForgeBus.publish by layer: ${N} events x ${RUNS} runs (after a warm-up), ${WINDOW} in flight; medians`);
  console.log('| variant | what | events/s | CPU µs/event (this process) |');
  console.log('|---|---|---:|---:|');
  for (const [name, what] of variants) {
    const r = results.get(name)!;
    console.log(`| ${name} | ${what} | ${Math.round(median(r.rate)).toLocaleString('en-US')} | ${median(r.cpu).toFixed(1)} |`);
  }
} finally {
  await bus.close();
  await server.stop();
  rmSync(storeDir, { recursive: true, force: true });
}
