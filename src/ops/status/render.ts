import type { ClusterStatus, PartitionStatus } from './cluster-status.js';

/** `forgebus status` as people read it: one section per part of the cluster, plain text tables. */

export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return '-';
  const s = Math.floor(ms / 1000);
  if (s < 60) return ms < 1000 ? `${Math.round(ms)}ms` : `${s}s`;
  const units: [number, string][] = [
    [86_400, 'd'],
    [3_600, 'h'],
    [60, 'm'],
    [1, 's'],
  ];
  const parts: string[] = [];
  let rest = s;
  for (const [size, unit] of units) {
    const n = Math.floor(rest / size);
    rest -= n * size;
    if (n > 0 || parts.length > 0) parts.push(`${n}${unit}`);
    if (parts.length === 2) break;
  }
  return parts.join('');
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let value = n / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

const num = (n: number | undefined) => (n === undefined ? '-' : n.toLocaleString('en-US'));

/** Columns padded to their widest cell; the last column is not padded. */
export function table(header: string[], rows: string[][], indent = '  '): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => indent + cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd();
  return [line(header), ...rows.map(line)];
}

function partitionLines(partitions: PartitionStatus[], failedWrites: number): string[] {
  const busy = partitions.filter((p) => p.pending + p.inFlight + p.redelivered > 0);
  const idle = partitions.length - busy.length;
  const lines = [`Write partitions: ${partitions.length} (${busy.length} with writes waiting or redelivered, ${idle} idle); failed writes kept: ${failedWrites}`];
  if (busy.length > 0) {
    lines.push(
      ...table(
        ['PARTITION', 'CONSUMER', 'PENDING', 'IN FLIGHT', 'REDELIVERED', 'OLDEST WAITING'],
        busy.map((p) => [String(p.partition), p.consumer, num(p.pending), num(p.inFlight), num(p.redelivered), p.oldestWaitingMs === undefined ? '-' : formatDuration(p.oldestWaitingMs)]),
      ),
    );
  }
  return lines;
}

/** The whole status as text lines (no trailing newline). `target` says where it was read from. */
export function renderStatus(status: ClusterStatus, target?: { nats?: string }): string {
  const out: string[] = [];
  out.push(`forgebus status at ${status.collectedAt}${target?.nats ? ` (NATS ${target.nats})` : ''}`);
  out.push('');

  const { servers, metaLeader } = status.nats;
  out.push(`NATS servers: ${servers.length}${metaLeader ? `, JetStream meta leader ${metaLeader}` : ''}`);
  out.push(
    ...table(
      ['NAME', 'VERSION', 'HEALTH', 'UPTIME', 'CONNS', 'ROUTES', 'MONITOR'],
      servers.map((s) => [
        s.name + (s.name === metaLeader ? ' *' : ''),
        s.version ?? '-',
        s.healthy === undefined ? (s.error ? 'unreachable' : '-') : s.healthy ? 'ok' : `NOT OK${s.error ? ` (${s.error})` : ''}`,
        s.uptime ?? '-',
        num(s.connections),
        s.routes.length > 0 ? s.routes.join(',') : '-',
        s.monitorUrl ?? '-',
      ]),
    ),
  );
  out.push('');

  out.push(`Forge nodes: ${status.nodes.length}`);
  if (status.nodes.length > 0) {
    out.push(
      ...table(
        ['ID', 'ADDRESS', 'ROLES', 'UPTIME', 'NATS SERVER', 'SSE', 'CACHE HITS', 'FEED POS', 'FEED LAG', 'WRITES', 'TASKS'],
        status.nodes.map((n) => [
          n.id,
          n.address ?? '-',
          n.roles.join(',') || '-',
          formatDuration(n.uptimeMs),
          n.natsServer ?? '-',
          num(n.sseStreams),
          n.cacheHitRate === undefined ? '-' : `${(n.cacheHitRate * 100).toFixed(1)}%`,
          num(n.feedPosition),
          num(n.feedLag),
          num(n.writesApplied),
          num(n.runningTasks),
        ]),
      ),
    );
  }
  out.push('');

  const e = status.events;
  if (!e) {
    const unread = status.problems.some((p) => p.startsWith('FORGE_EVENTS') || p.startsWith('JetStream'));
    out.push(unread ? 'FORGE_EVENTS: could not be read (see problems below)' : 'FORGE_EVENTS: not created yet (no node has started)');
  } else {
    out.push(
      `${e.name}: ${num(e.messages)} messages, ${formatBytes(e.bytes)}, sequences ${num(e.firstSeq)}..${num(e.lastSeq)}, ${e.replicas} replica${e.replicas === 1 ? '' : 's'}${e.leader ? `, leader ${e.leader}` : ''}`,
    );
    if (e.feeds.length > 0) out.push(`  feeds: ${e.feeds.map((f) => `${f.node} at ${num(f.position)} (lag ${num(f.lag)})`).join(', ')}`);
  }
  out.push('');

  out.push(...partitionLines(status.partitions, status.failedWrites));
  out.push('');

  out.push(`Running tasks: ${status.tasks.length}`);
  if (status.tasks.length > 0) {
    out.push(
      ...table(
        ['ID', 'KIND', 'REPO', 'USER', 'NODE', 'STATE', 'PROGRESS', 'STARTED'],
        status.tasks.map((t) => [t.id, t.kind, t.repo ?? '-', t.user, t.node, t.state, `${t.progress}%`, t.startedAt ?? t.createdAt]),
      ),
    );
  }
  out.push('');

  // The cluster records runs, not schedules: a job shows up here once it ran somewhere.
  out.push(status.cron.length > 0 ? `Cron jobs: ${status.cron.length}` : 'Cron jobs: none has run yet');
  if (status.cron.length > 0) {
    out.push(
      ...table(
        ['JOB', 'LAST TICK', 'NODE', 'STARTED', 'FINISHED', 'OUTCOME'],
        status.cron.map((c) => {
          const r = c.lastRun;
          return [c.job, r?.tick ?? '(never ran)', r?.node ?? '-', r?.startedAt ?? '-', r?.finishedAt ?? '-', r ? `${r.outcome}${r.error ? `: ${r.error.split('\n')[0]}` : ''}` : '-'];
        }),
      ),
    );
  }

  if (status.problems.length > 0) {
    out.push('');
    out.push(`Problems: ${status.problems.length}`);
    for (const p of status.problems) out.push(`  ! ${p}`);
  }
  return out.join('\n');
}
