#!/usr/bin/env node
// `npm run settings -- <command>`: the cluster-wide settings every forge node must agree on
// (FORGE_SETTINGS), and the safe way to change them. See docs/operations.md.
import { Command, InvalidArgumentError } from 'commander';
import { connectBus, ForgeBusError, MAX_REPLICAS, recordedSettings, recordSetting, REPLICAS_SETTING, rescaleCluster, type SettingValue } from '../bus/index.js';
import { localNatsClient } from './local-nats.js';
import { natsClientFromEnv } from './nats-env.js';
import { repartitionWriteQueue } from '../repo-writes/index.js';

/** The settings `set` may change, with the kind of value each takes. */
const SETTABLE: Record<string, 'integer' | 'storage'> = {
  'events.maxAgeMs': 'integer',
  'events.maxBytes': 'integer',
  'events.duplicateWindowMs': 'integer',
  'writes.ackWaitMs': 'integer',
  'writes.maxDeliver': 'integer',
  'writes.resultTtlMs': 'integer',
  'writes.failureTtlMs': 'integer',
  'cluster.nodeTtlMs': 'integer',
};

function parseCount(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 1024) throw new InvalidArgumentError('an integer from 1 to 1024');
  return n;
}

function parseValue(name: string, value: string): SettingValue {
  const kind = SETTABLE[name];
  if (!kind) {
    const hint = name === 'writes.partitions' ? ' (use `repartition <count>`: queued writes must drain first)' : '';
    throw new InvalidArgumentError(`"${name}" cannot be set here${hint}; settable: ${Object.keys(SETTABLE).join(', ')}`);
  }
  const n = Number(value);
  if (!Number.isInteger(n)) throw new InvalidArgumentError(`${name} takes an integer, got "${value}"`);
  return n;
}

async function withConnection<T>(natsUrl: string, run: (nc: Awaited<ReturnType<typeof connectBus>>) => Promise<T>): Promise<T> {
  // NATS_USER/NATS_PASSWORD, NATS_TOKEN, NATS_CREDS, NATS_TLS_*; else the forge-node user of `npm start`.
  const nc = await connectBus({
    ...(localNatsClient(process.env) ?? natsClientFromEnv(process.env)),
    servers: natsUrl,
    name: 'forgebus-settings',
    waitOnFirstConnect: false,
  });
  try {
    return await run(nc);
  } finally {
    await nc.close();
  }
}

const program = new Command('forgebus-settings')
  .description('Show and change the settings every forge node of a cluster must agree on (the FORGE_SETTINGS bucket).')
  .option('--nats <urls>', 'NATS servers, comma-separated', process.env.NATS_URL ?? 'nats://127.0.0.1:4222');

program
  .command('show')
  .description('print the recorded settings')
  .option('--json', 'as JSON')
  .action(async (options: { json?: boolean }) => {
    const settings = await withConnection(program.opts<{ nats: string }>().nats, recordedSettings);
    if (options.json) return console.log(JSON.stringify(settings, null, 2));
    const names = Object.keys(settings).sort();
    if (names.length === 0) return console.log('no settings recorded yet: the first node to start records its own');
    for (const name of names) console.log(`${name.padEnd(28)} ${JSON.stringify(settings[name])}`);
  });

program
  .command('set')
  .description('record a new value; then restart every node with it (the first updates the stream where NATS allows)')
  .argument('<name>', `one of ${[REPLICAS_SETTING, ...Object.keys(SETTABLE)].join(', ')}`)
  .argument('<value>')
  .action(async (name: string, value: string) => {
    if (name === REPLICAS_SETTING) return setReplicas(value);
    const parsed = parseValue(name, value);
    await withConnection(program.opts<{ nats: string }>().nats, (nc) => recordSetting(nc, name, parsed));
    console.log(`${name} = ${JSON.stringify(parsed)} recorded: restart every node with this value; nodes with the old one are now refused`);
  });

/** Replicas are applied at once (NATS scales streams in place), then recorded. */
async function setReplicas(value: string): Promise<void> {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > MAX_REPLICAS) throw new InvalidArgumentError(`replicas takes an integer from 1 to ${MAX_REPLICAS}, got "${value}"`);
  const results = await withConnection(program.opts<{ nats: string }>().nats, (nc) => rescaleCluster(nc, n));
  for (const r of results) console.log(`${r.stream.padEnd(28)} ${r.changed ? `now ${n} replicas` : 'unchanged'}`);
  console.log(`replicas = ${n} recorded: nodes on FORGE_REPLICAS=auto (the default) or ${n} start; others are refused`);
}

program
  .command('repartition')
  .description('wait until the write queue is empty, drop the old partition consumers, record the new partition count')
  .argument('<count>', 'the new partition count (1-1024)', parseCount)
  .option('--timeout <seconds>', 'how long to wait for the queue to drain', (v) => Number(v), 60)
  .action(async (count: number, options: { timeout: number }) => {
    const result = await withConnection(program.opts<{ nats: string }>().nats, (nc) =>
      repartitionWriteQueue(nc, count, {
        timeoutMs: options.timeout * 1000,
        onPending: (pending) => console.log(`waiting for ${pending} queued write(s) to be applied …`),
      }),
    );
    console.log(`writes.partitions: ${result.from ?? '(none recorded)'} -> ${result.to}. Start every node with FORGE_WRITE_PARTITIONS=${result.to}.`);
  });

program.parseAsync().catch((err: unknown) => {
  const message = err instanceof ForgeBusError ? err.message : `cannot reach NATS or the command failed: ${(err as Error).message}`;
  console.error(`forgebus-settings: ${message}`);
  process.exit(1);
});
