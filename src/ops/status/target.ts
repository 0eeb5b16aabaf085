import { readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { DEFAULT_NATS_URL, parseServers } from '../../bus/index.js';
import { StatusError } from './errors.js';
import { normalizeMonitorUrl } from './monitoring.js';

/**
 * Where `forgebus status` looks: `--nats`/`--monitor`, else NATS_URL / NATS_MONITOR_URL, else
 * the cluster `npm start` runs from the data directory (FORGE_DATA_DIR, default .forgebus-data),
 * else the defaults of `npm start` (nats://127.0.0.1:4222, monitoring on http://127.0.0.1:8222).
 */
export interface StatusTarget {
  /** NATS servers, comma-separated (may carry user:password@, never printed as is). */
  nats: string;
  monitorUrls: string[];
  /** Where each came from, for messages: flag, environment, npm start's data directory or the defaults. */
  natsFrom: 'flag' | 'env' | 'npm start' | 'default';
  monitorFrom: 'flag' | 'env' | 'npm start' | 'derived';
}

/** nats-server's default client and monitoring ports: `npm start` keeps the same offset for every server. */
const CLIENT_TO_MONITOR_OFFSET = 8222 - 4222;

function splitList(value: string | undefined): string[] {
  return (value ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
}

export function parseMonitorUrls(value: string, from: string): string[] {
  const urls = splitList(value);
  if (urls.length === 0) throw new StatusError('INVALID_SETTINGS', `${from} is empty: give http(s) URLs of NATS monitoring ports, comma-separated (e.g. http://127.0.0.1:8222)`);
  return urls.map((u) => {
    let parsed: URL | undefined;
    try {
      parsed = new URL(u);
    } catch {
      /* below */
    }
    if (!parsed || !['http:', 'https:'].includes(parsed.protocol)) {
      throw new StatusError('INVALID_SETTINGS', `${from} must list http(s) URLs of NATS monitoring ports, comma-separated (e.g. http://127.0.0.1:8222), got "${u.slice(0, 100)}"`);
    }
    return normalizeMonitorUrl(u);
  });
}

/** host:port of a NATS URL (default port 4222), or undefined when it is not one. */
function hostPort(server: string): { host: string; port: number } | undefined {
  try {
    const url = new URL(server.includes('://') ? server : `nats://${server}`);
    return { host: url.hostname, port: url.port === '' ? 4222 : Number(url.port) };
  } catch {
    return undefined;
  }
}

/** The monitoring URLs `npm start`'s servers would have for these NATS URLs: same host, port + 4000. */
export function derivedMonitorUrls(nats: string): string[] {
  const urls = parseServers(nats)
    .map(hostPort)
    .filter((hp): hp is { host: string; port: number } => hp !== undefined && hp.port + CLIENT_TO_MONITOR_OFFSET <= 65535)
    .map(({ host, port }) => `http://${host}:${port + CLIENT_TO_MONITOR_OFFSET}`);
  return [...new Set(urls)];
}

interface LocalServerConfig {
  host?: string;
  port?: number;
  http?: string;
}

/**
 * The cluster `npm start` runs from `dataDir`, if its lock file is there: its NATS URLs and,
 * from the nats-server configurations it generated, the monitoring URL of each of them.
 */
export function npmStartCluster(dataDir: string): { nats: string; monitorUrls: string[] } | undefined {
  let lock: { nats?: string };
  try {
    lock = JSON.parse(readFileSync(join(dataDir, 'cluster.lock'), 'utf8')) as { nats?: string };
  } catch {
    return undefined;
  }
  if (typeof lock.nats !== 'string' || lock.nats === '') return undefined;
  const wanted = new Set(parseServers(lock.nats).map((s) => hostPort(s)).filter(Boolean).map((hp) => `${hp!.host}:${hp!.port}`));
  const monitorUrls: string[] = [];
  for (const dir of ['nats', 'nats-cluster']) {
    let files: string[];
    try {
      files = readdirSync(join(dataDir, dir)).filter((f) => f.endsWith('.conf')).sort();
    } catch {
      continue;
    }
    for (const file of files) {
      try {
        const config = JSON.parse(readFileSync(join(dataDir, dir, file), 'utf8')) as LocalServerConfig;
        // URL.hostname keeps an IPv6 address's brackets; the configuration has it bare.
        const host = config.host?.includes(':') ? `[${config.host}]` : config.host;
        if (config.http && wanted.has(`${host}:${config.port}`)) monitorUrls.push(`http://${config.http}`);
      } catch {
        // Not a configuration npm start wrote.
      }
    }
  }
  return { nats: lock.nats, monitorUrls };
}

export function resolveTarget(flags: { nats?: string; monitor?: string }, env: NodeJS.ProcessEnv = process.env): StatusTarget {
  const envNats = env.NATS_URL?.trim() ? env.NATS_URL.trim() : undefined;
  const envMonitor = env.NATS_MONITOR_URL?.trim() ? env.NATS_MONITOR_URL.trim() : undefined;
  const local = flags.nats === undefined && envNats === undefined ? npmStartCluster(resolve(env.FORGE_DATA_DIR ?? '.forgebus-data')) : undefined;
  const target = {
    nats: flags.nats ?? envNats ?? local?.nats ?? DEFAULT_NATS_URL,
    natsFrom: flags.nats !== undefined ? 'flag' : envNats !== undefined ? 'env' : local ? 'npm start' : 'default',
  } as const;
  if (splitList(target.nats).length === 0) throw new StatusError('INVALID_SETTINGS', `${target.natsFrom === 'flag' ? '--nats' : 'NATS_URL'} is empty: give NATS server URLs, comma-separated`);
  if (flags.monitor !== undefined) return { ...target, monitorUrls: parseMonitorUrls(flags.monitor, '--monitor'), monitorFrom: 'flag' };
  if (envMonitor !== undefined) return { ...target, monitorUrls: parseMonitorUrls(envMonitor, 'NATS_MONITOR_URL'), monitorFrom: 'env' };
  if (local && local.monitorUrls.length > 0) return { ...target, monitorUrls: local.monitorUrls, monitorFrom: 'npm start' };
  return { ...target, monitorUrls: derivedMonitorUrls(target.nats), monitorFrom: 'derived' };
}
