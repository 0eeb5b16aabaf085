import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { ForgeBus } from '../../index.js';
import type { ForgeCache } from '../../cache/index.js';
import type { CronScheduler, TaskRegistry } from '../../cluster/index.js';
import type { RepoWriteQueue } from '../../repo-writes/index.js';
import type { SseHub } from '../../sse/index.js';

/**
 * The node's Prometheus metrics (prom-client): the bus, the cache, SSE, the write queue, tasks
 * and cron, and Node's own process metrics. Counters the components already keep are read at
 * scrape time and advanced by what changed since the last scrape; publishes, consumed events and
 * writes are counted as they happen (by type or operation), with latency histograms.
 */
export interface MetricSources {
  bus: ForgeBus;
  cache?: ForgeCache;
  sse?: SseHub;
  queue?: RepoWriteQueue;
  tasks?: TaskRegistry;
  cron?: CronScheduler;
}

/** A counter that follows a monotonic value kept elsewhere (advanced by its growth at each scrape). */
function following(registry: Registry, name: string, help: string, labelNames: string[], values: () => Record<string, number>[] | Record<string, number>): Counter {
  const seen = new Map<string, number>();
  const counter: Counter = new Counter({
    name,
    help,
    labelNames,
    registers: [registry],
    collect() {
      const rows = values();
      for (const row of Array.isArray(rows) ? rows : [rows]) {
        const { value, ...labels } = row as Record<string, number | string>;
        const key = JSON.stringify(labels);
        const now = Number(value);
        const before = seen.get(key) ?? 0;
        // A component that was re-created starts from 0 again: count from there.
        counter.inc(labels as Record<string, string>, now >= before ? now - before : now);
        seen.set(key, now);
      }
    },
  });
  return counter;
}

export function forgeMetrics(sources: MetricSources): Registry {
  const registry = new Registry();
  const { bus, cache, sse, queue, tasks, cron } = sources;
  registry.setDefaultLabels({ node: bus.nodeId });
  collectDefaultMetrics({ register: registry });

  const published = new Counter({ name: 'forgebus_events_published_total', help: 'Events this node published and JetStream acknowledged, by type', labelNames: ['type'], registers: [registry] });
  const publishSeconds = new Histogram({
    name: 'forgebus_publish_duration_seconds',
    help: 'From publish to JetStream acknowledgement (re-sends included)',
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
  });
  bus.publisher.onAcked((ack) => {
    published.inc({ type: ack.type ?? 'unknown' });
    publishSeconds.observe(ack.seconds);
  });
  const consumed = new Counter({ name: 'forgebus_events_consumed_total', help: 'Events this node\'s feed delivered to its handlers, by type', labelNames: ['type'], registers: [registry] });
  bus.on('*', ({ envelope }) => void consumed.inc({ type: envelope.type }));

  new Gauge({ name: 'forgebus_feed_lag_events', help: 'Events the stream held beyond the feed\'s position at its last check', registers: [registry], collect() { this.set(bus.feed.stats.behind); } });
  new Gauge({ name: 'forgebus_feed_position', help: 'Stream sequence the feed processed last', registers: [registry], collect() { this.set(bus.feed.stats.lastSeq); } });
  new Gauge({ name: 'forgebus_feed_stuck_seconds', help: 'How long the feed has sat behind the stream without moving (0: it keeps up)', registers: [registry], collect() { this.set(bus.feed.stuckForMs / 1000); } });
  following(registry, 'forgebus_handler_errors_total', 'Feed handler invocations that threw or rejected', [], () => ({ value: bus.feed.stats.handlerErrors }));
  following(registry, 'forgebus_malformed_messages_total', 'Bus messages dropped as malformed (feed and SSE replays)', ['where'], () => [
    { where: 'feed', value: bus.feed.stats.malformed } as unknown as Record<string, number>,
    ...(sse ? [{ where: 'sse', value: sse.stats.malformed } as unknown as Record<string, number>] : []),
  ]);
  following(registry, 'forgebus_feed_gaps_total', 'Times the feed found events it can no longer read', [], () => ({ value: bus.feed.stats.gaps }));
  following(registry, 'forgebus_publish_resends_total', 'Publishes sent again (ack timeout, reconnect, leader election)', [], () => ({ value: bus.publisher.stats.resends + bus.publisher.stats.leaderWaits }));

  new Gauge({ name: 'forgebus_nats_connected', help: '1 while the NATS connection is up', registers: [registry], collect() { this.set(bus.connected ? 1 : 0); } });
  const reconnects = new Counter({ name: 'forgebus_nats_reconnects_total', help: 'Reconnections of this node\'s NATS connection', registers: [registry] });
  bus.onStatus((status) => {
    if (status.type === 'reconnect') reconnects.inc();
  });

  if (cache) {
    following(registry, 'forgebus_cache_hits_total', 'Cached reads served from the cache', [], () => ({ value: cache.stats.hits }));
    following(registry, 'forgebus_cache_misses_total', 'Cached reads that went to the source', [], () => ({ value: cache.stats.misses }));
    following(registry, 'forgebus_cache_invalidations_total', 'Entries removed by invalidation rules', [], () => ({ value: cache.stats.invalidatedEntries }));
    following(registry, 'forgebus_cache_flushes_total', 'Whole-cache flushes (gaps, resets, failing rules)', [], () => ({ value: cache.stats.flushes }));
    new Gauge({ name: 'forgebus_cache_entries', help: 'Entries in the cache', registers: [registry], collect() { this.set(cache.stats.entries); } });
  }
  if (sse) {
    new Gauge({ name: 'forgebus_sse_streams', help: 'Open SSE streams on this node', registers: [registry], collect() { this.set(sse.stats.clients); } });
    following(registry, 'forgebus_sse_deliveries_total', 'Events written to SSE streams', [], () => ({ value: sse.stats.deliveries }));
    following(registry, 'forgebus_sse_drops_total', 'SSE clients disconnected for reading too slowly', [], () => ({ value: sse.stats.slowDisconnects }));
    following(registry, 'forgebus_sse_replays_total', 'Resuming SSE clients given the events they missed', [], () => ({ value: sse.stats.replays }));
  }
  if (queue) {
    following(registry, 'forgebus_writes_submitted_total', 'Repository writes this node submitted to the queue', [], () => ({ value: queue.stats.submitted }));
    const ran = new Counter({ name: 'forgebus_writes_total', help: 'Repository writes this node\'s workers ran, by operation and outcome (applied, failed, retried)', labelNames: ['operation', 'outcome'], registers: [registry] });
    const writeSeconds = new Histogram({
      name: 'forgebus_write_duration_seconds',
      help: 'How long a repository write\'s handler ran',
      labelNames: ['operation'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers: [registry],
    });
    queue.onApplied((write) => {
      ran.inc({ operation: write.operation, outcome: write.outcome });
      writeSeconds.observe({ operation: write.operation }, write.seconds);
    });
  }
  if (tasks) {
    new Gauge({
      name: 'forgebus_tasks',
      help: 'The cluster\'s tasks by state (as this node reads the tasks bucket)',
      labelNames: ['state'],
      registers: [registry],
      async collect() {
        this.reset();
        try {
          const counts = new Map<string, number>();
          for (const task of await tasks.list()) counts.set(task.state, (counts.get(task.state) ?? 0) + 1);
          for (const [state, n] of counts) this.set({ state }, n);
        } catch {
          // NATS unavailable: no task figures in this scrape (forgebus_nats_connected says why)
        }
      },
    });
  }
  if (cron) {
    following(registry, 'forgebus_cron_ticks_total', 'Cluster cron ticks as this node saw them: ran here, run elsewhere, skipped, failed', ['outcome'], () => [
      { outcome: 'ran', value: cron.stats.claimed },
      { outcome: 'elsewhere', value: cron.stats.lostClaims },
      { outcome: 'skipped', value: cron.stats.skipped },
      { outcome: 'failed', value: cron.stats.failed },
    ] as unknown as Record<string, number>[]);
  }
  return registry;
}
