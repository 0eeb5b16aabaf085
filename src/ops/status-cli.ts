#!/usr/bin/env node
// `forgebus status` (also `npm run status`, and `forgebus` alone): what a forgebus cluster is
// doing, from NATS's monitoring endpoints and the cluster's own records. See docs/status.md.
import { Command, InvalidArgumentError } from 'commander';
import type { NatsConnection } from '@nats-io/transport-node';
import { connectBus, silentLogger } from '../bus/index.js';
import { localNatsClient } from './local-nats.js';
import { natsClientFromEnv, NatsEnvError, redactServers, type NatsClientSettings } from './nats-env.js';
import type { ClusterStatus } from './status/cluster-status.js';
import { collectClusterStatus } from './status/collect.js';
import { natsConnectError, StatusError } from './status/errors.js';
import { readMonitors, type MonitorSnapshot } from './status/monitoring.js';
import { renderStatus } from './status/render.js';
import { resolveTarget, type StatusTarget } from './status/target.js';
import { watch } from './status/watch.js';

/** Exit codes: 0 shown, 1 nothing could be shown (the reason on stderr), 2 shown but some monitoring URL did not answer. */
const EXIT_UNAVAILABLE = 1;
const EXIT_PARTIAL = 2;

interface StatusOptions {
  nats?: string;
  monitor?: string;
  json?: boolean;
  watch?: number | true;
  inboxPrefix?: string;
  timeout: number;
}

function positiveNumber(min: number, max: number, what: string) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isFinite(n) || n < min || n > max) throw new InvalidArgumentError(`${what} from ${min} to ${max}`);
    return n;
  };
}

/** The connection settings: credentials and TLS from the environment, else npm start's operator user. */
function connectionSettings(target: StatusTarget, options: StatusOptions, env: NodeJS.ProcessEnv): NatsClientSettings & { inboxPrefix?: string } {
  let fromEnv: NatsClientSettings;
  try {
    fromEnv = natsClientFromEnv(env);
  } catch (err) {
    if (err instanceof NatsEnvError) throw new StatusError('INVALID_SETTINGS', err.message, { cause: err });
    throw err;
  }
  // No credentials in the environment: the read-only operator user of the NATS npm start runs.
  const local = localNatsClient(env, 'operator');
  const inboxPrefix = options.inboxPrefix ?? (env.NATS_INBOX_PREFIX?.trim() || undefined) ?? local?.inboxPrefix;
  return { ...fromEnv, ...local, servers: target.nats, ...(inboxPrefix !== undefined && { inboxPrefix }) };
}

async function connect(target: StatusTarget, settings: NatsClientSettings & { inboxPrefix?: string }): Promise<NatsConnection> {
  try {
    return await connectBus({ ...settings, name: 'forgebus-status', waitOnFirstConnect: false }, silentLogger);
  } catch (err) {
    if (err instanceof Error && err.name === 'ForgeBusConfigError') throw new StatusError('INVALID_SETTINGS', err.message, { cause: err });
    throw natsConnectError(err, target.nats, settings.user);
  }
}

const unreachable = (monitors: MonitorSnapshot[]) => monitors.filter((m) => m.error !== undefined);
const monitorLine = (monitors: MonitorSnapshot[]) => `NATS monitoring did not answer at ${monitors.map((m) => `${m.url} (${m.error})`).join(', ')}`;

function output(status: ClusterStatus, options: StatusOptions, target: StatusTarget, compact = false): string {
  if (options.json) return compact ? JSON.stringify(status) : JSON.stringify(status, null, 2);
  return renderStatus(status, { nats: redactServers(target.nats) });
}

async function runStatus(options: StatusOptions): Promise<number> {
  const target = resolveTarget({ nats: options.nats, monitor: options.monitor }, process.env);
  const settings = connectionSettings(target, options, process.env);
  const timeouts = { requestTimeoutMs: options.timeout, monitorTimeoutMs: options.timeout };
  // NATS and monitoring at once; a NATS failure is said first (without it nothing can be shown).
  const [connected, monitors] = await Promise.all([
    connect(target, settings).then(
      (nc) => ({ nc }),
      (error: unknown) => ({ error }),
    ),
    readMonitors(target.monitorUrls, options.timeout),
  ]);
  if ('error' in connected) throw connected.error;
  const { nc } = connected;
  try {
    const dead = unreachable(monitors);
    if (dead.length === monitors.length && monitors.length > 0) throw new StatusError('MONITOR_UNREACHABLE', monitorLine(dead));

    if (options.watch === undefined) {
      const status = await collectClusterStatus(nc, { ...timeouts, monitors, strictPermissions: true });
      process.stdout.write(`${output(status, options, target)}\n`);
      if (dead.length > 0) {
        process.stderr.write(`forgebus status: ${monitorLine(dead)}\n`);
        return EXIT_PARTIAL;
      }
      return 0;
    }

    const stop = new AbortController();
    for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => stop.abort());
    // The first frame is read before the loop: a user NATS refuses everything ends the command.
    let first: ClusterStatus | undefined = await collectClusterStatus(nc, { ...timeouts, monitors, strictPermissions: true });
    await watch({
      intervalMs: (options.watch === true ? 2 : options.watch) * 1000,
      json: options.json === true,
      out: process.stdout,
      signal: stop.signal,
      frame: async () => {
        try {
          const status = first ?? (await collectClusterStatus(nc, { ...timeouts, monitorUrls: target.monitorUrls }));
          first = undefined;
          return output(status, options, target, true);
        } catch (err) {
          const reason = `cannot read the cluster: ${(err as Error).message.split('\n')[0]}`;
          return options.json ? JSON.stringify({ collectedAt: new Date().toISOString(), error: reason }) : `forgebus status at ${new Date().toISOString()}: ${reason}`;
        }
      },
    });
    return 0;
  } finally {
    await nc.close().catch(() => undefined);
  }
}

const program = new Command('forgebus')
  .description('Operators\' tools for a forgebus cluster (NATS + forge nodes).')
  .showHelpAfterError('(add --help for usage)')
  .addHelpText('after', '\n`forgebus` alone runs `forgebus status`; its options: `forgebus status --help`.');

program
  .command('status', { isDefault: true })
  .description(
    'show the NATS servers (health, routes, JetStream meta leader), the forge nodes, FORGE_EVENTS and each node\'s feed position, ' +
      'the write partitions and failed writes, running tasks and cron jobs',
  )
  .option('--nats <urls>', 'NATS servers, comma-separated (env NATS_URL; default: the cluster `npm start` runs from FORGE_DATA_DIR, else nats://127.0.0.1:4222)')
  .option(
    '--monitor <urls>',
    'NATS monitoring URLs, comma-separated (env NATS_MONITOR_URL; default: those of the servers `npm start` runs, else each NATS host with its port + 4000, e.g. http://127.0.0.1:8222)',
  )
  .option('--json', 'print the status as JSON (with --watch: one line per refresh)')
  .option('-w, --watch [seconds]', 'refresh in place every N seconds (default 2) until Ctrl-C', positiveNumber(0.5, 3600, 'seconds'))
  .option('--inbox-prefix <prefix>', 'reply subject prefix the NATS user may subscribe to (env NATS_INBOX_PREFIX; npm start\'s operator user: _INBOX_OPS)')
  .option('--timeout <ms>', 'how long each NATS request and monitoring read may take', positiveNumber(100, 120_000, 'milliseconds'), 5_000)
  .addHelpText(
    'after',
    [
      '',
      'Credentials: NATS_USER + NATS_PASSWORD, NATS_TOKEN or NATS_CREDS, and NATS_TLS_CA/CERT/KEY; without any, the read-only',
      'operator user that `npm start` generated in FORGE_DATA_DIR (default .forgebus-data).',
      'Exit codes: 0 shown; 1 nothing shown (NATS or monitoring unreachable, credentials refused, bad option); 2 shown, but a',
      'monitoring URL did not answer.',
    ].join('\n'),
  )
  .action(async (options: StatusOptions) => {
    process.exitCode = await runStatus(options);
  });

program.parseAsync().then(
  () => process.exit(process.exitCode ?? 0),
  (err: unknown) => {
    const text = err instanceof StatusError ? err.message : `${(err as Error)?.message ?? String(err)}`;
    process.stderr.write(`forgebus status: ${redactServers(text.split('\n')[0]!)}\n`);
    process.exit(EXIT_UNAVAILABLE);
  },
);
