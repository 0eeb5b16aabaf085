import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { alreadyRunningMessage, recordRunning, runningCluster } from './instance-lock.js';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Command, InvalidArgumentError } from 'commander';
import { OPERATOR_INBOX_PREFIX } from '../../ops/nats-config.js';
import { localCredentialsFile, startLocalNats, waitForJetStream, type LocalNats } from '../../ops/local-nats.js';
import { signUserToken } from '../auth/tokens.js';

/**
 * `npm start`: a local forge cluster on one machine. Starts nats-server (JetStream, monitoring)
 * unless NATS_URL is set, then N forge nodes sharing one data directory, prints where
 * everything is and demo tokens, and stops it all on Ctrl-C.
 */

const DEMO_USERS = ['alice', 'bob', 'carol'];
const NODE_MAIN = join(dirname(fileURLToPath(import.meta.url)), '..', 'main.js');

const port = (value: string) => {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new InvalidArgumentError('must be a port number (0 = any free port)');
  return n;
};
const clusterSize = (value: string) => {
  if (value !== '1' && value !== '3') throw new InvalidArgumentError('must be 1 (one server) or 3 (a cluster that survives the loss of one)');
  return Number(value);
};
const count = (value: string) => {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 32) throw new InvalidArgumentError('must be between 1 and 32');
  return n;
};

const program = new Command('forgebus-cluster')
  .description('Run a local forgebus cluster: nats-server + N forge nodes sharing one data directory')
  .option('-n, --nodes <count>', 'number of forge nodes (env FORGE_NODES)', count, Number(process.env.FORGE_NODES ?? 3))
  .option('-p, --base-port <port>', 'HTTP port of the first node; the others follow (env FORGE_BASE_PORT; 0 = free ports)', port, Number(process.env.FORGE_BASE_PORT ?? 3001))
  .option('--nats-port <port>', 'client port of the embedded nats-server (env NATS_PORT; 0 = free port)', port, Number(process.env.NATS_PORT ?? 4222))
  .option('--monitor-port <port>', 'monitoring port of the embedded nats-server (env NATS_MONITOR_PORT; 0 = free port)', port, Number(process.env.NATS_MONITOR_PORT ?? 8222))
  .option('--nats-cluster <servers>', 'embedded nats-servers: 1, or 3 clustered on loopback (env FORGE_NATS_CLUSTER); ports follow --nats-port, --monitor-port and 6222', clusterSize, clusterSize(process.env.FORGE_NATS_CLUSTER ?? '1'))
  .option('--route-port <port>', 'first cluster route port with --nats-cluster 3 (env NATS_ROUTE_PORT; 0 = free ports)', port, Number(process.env.NATS_ROUTE_PORT ?? 6222))
  .option('-d, --data-dir <dir>', 'shared data directory (env FORGE_DATA_DIR)', process.env.FORGE_DATA_DIR ?? '.forgebus-data')
  .option('--host <host>', 'address the nodes and nats-server listen on', process.env.HOST ?? '127.0.0.1')
  .addHelpText('after', '\nSet NATS_URL (and NATS_USER/NATS_PASSWORD, NATS_TOKEN or NATS_CREDS) to use an existing NATS with JetStream instead of the embedded one.');

interface RunningNode {
  id: string;
  child: ChildProcess;
  url?: string;
}

function loadSecret(dataDir: string): string {
  if (process.env.FORGE_SECRET) return process.env.FORGE_SECRET;
  // A development secret kept with the data, so tokens printed once stay valid across restarts.
  const file = join(dataDir, 'dev-secret');
  if (!existsSync(file)) writeFileSync(file, randomBytes(24).toString('hex'), { mode: 0o600 });
  return readFileSync(file, 'utf8').trim();
}

function startNode(id: string, env: NodeJS.ProcessEnv): Promise<RunningNode> {
  const child = spawn(process.execPath, [NODE_MAIN], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const node: RunningNode = { id, child };
  return new Promise((resolveNode, reject) => {
    const prefix = (line: string) => `[${id}] ${line}`;
    createInterface({ input: child.stderr! }).on('line', (line) => console.error(prefix(line)));
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const listening = /listening on (http\S+)/.exec(line);
      if (listening && !node.url) {
        node.url = listening[1];
        resolveNode(node);
      } else if (process.env.FORGE_VERBOSE) {
        console.log(prefix(line));
      }
    });
    child.once('exit', (code, signal) => {
      if (!node.url) reject(new Error(`${id} exited during start-up (code ${code}, signal ${signal}); see its output above`));
      else if (!stopping) console.error(`[cluster] ${id} exited unexpectedly (code ${code}, signal ${signal})`);
    });
  });
}

let stopping = false;
/** The data directory this launcher recorded itself in (cluster.lock), removed when it stops. */
let lockedDataDir: string | undefined;
const nodes: RunningNode[] = [];
let nats: LocalNats | undefined;

async function stopAll(exitCode: number): Promise<never> {
  if (stopping) process.exit(exitCode);
  stopping = true;
  console.log('\n[cluster] stopping ...');
  await Promise.all(
    nodes.map(
      ({ child }) =>
        new Promise<void>((done) => {
          if (child.exitCode !== null || child.signalCode !== null) return done();
          const kill = setTimeout(() => child.kill('SIGKILL'), 10_000);
          child.once('exit', () => {
            clearTimeout(kill);
            done();
          });
          child.kill('SIGTERM');
        }),
    ),
  );
  await nats?.stop();
  if (lockedDataDir) rmSync(join(lockedDataDir, 'cluster.lock'), { force: true });
  console.log('[cluster] stopped');
  process.exit(exitCode);
}

function natsLines(natsUrl: string): string[] {
  if (!nats) return [`  NATS: ${natsUrl} (external)`];
  const { operator } = nats.credentials!;
  return [
    `  NATS: ${nats.servers.length === 1 ? 'one server' : `${nats.servers.length} clustered servers, every stream kept on each`} (${natsUrl})`,
    ...nats.servers.map((s) => `    ${s.name} ${s.url}  monitoring: ${s.monitorUrl ? `${s.monitorUrl} (connections: ${s.monitorUrl}/connz, JetStream: ${s.monitorUrl}/jsz)` : 'off'}`),
    `    NATS users in ${localCredentialsFile(resolve(program.opts<{ dataDir: string }>().dataDir))}; read-only operator: ${operator.user} / ${operator.password} (its inbox prefix is ${OPERATOR_INBOX_PREFIX}: nats CLI --inbox-prefix ${OPERATOR_INBOX_PREFIX})`,
  ];
}

async function main(): Promise<void> {
  const opts = program.parse().opts<{ nodes: number; basePort: number; natsPort: number; monitorPort: number; natsCluster: number; routePort: number; dataDir: string; host: string }>();
  const dataDir = resolve(opts.dataDir);
  mkdirSync(dataDir, { recursive: true });
  const running = runningCluster(dataDir);
  if (running) {
    console.error(`[cluster] ${alreadyRunningMessage(dataDir, running)}`);
    process.exit(1);
  }
  lockedDataDir = dataDir;
  const startedAt = new Date().toISOString();
  recordRunning(dataDir, { pid: process.pid, startedAt, nodes: [] });
  process.once('SIGINT', () => void stopAll(0));
  process.once('SIGTERM', () => void stopAll(0));

  let natsUrl = process.env.NATS_URL;
  let natsUser: Record<string, string> = {};
  if (!natsUrl) {
    nats = await startLocalNats({
      servers: opts.natsCluster,
      dir: join(dataDir, opts.natsCluster === 1 ? 'nats' : 'nats-cluster'),
      host: opts.host,
      clientPort: opts.natsPort,
      monitorPort: opts.monitorPort,
      routePort: opts.routePort,
      credentialsFile: localCredentialsFile(dataDir),
    });
    natsUrl = nats.url;
    natsUser = { NATS_USER: nats.credentials!.forge.user, NATS_PASSWORD: nats.credentials!.forge.password };
    await waitForJetStream(nats);
  }
  const secret = loadSecret(dataDir);
  for (let i = 1; i <= opts.nodes; i++) {
    const id = `node-${i}`;
    const env = {
      ...process.env,
      PORT: String(opts.basePort === 0 ? 0 : opts.basePort + i - 1),
      HOST: opts.host,
      NODE_ID: id,
      NATS_URL: natsUrl,
      ...natsUser,
      // The local servers' monitoring, for the nodes' operations view (GET /api/ops).
      ...(nats && nats.servers.some((s) => s.monitorUrl) && { NATS_MONITOR_URL: nats.servers.flatMap((s) => (s.monitorUrl ? [s.monitorUrl] : [])).join(',') }),
      FORGE_DATA_DIR: dataDir,
      FORGE_SECRET: secret,
    };
    nodes.push(await startNode(id, env));
  }
  recordRunning(dataDir, { pid: process.pid, startedAt, nodes: nodes.map((n) => n.url!), nats: natsUrl });
  const tokens = await Promise.all(DEMO_USERS.map(async (u) => [u, await signUserToken(secret, u)] as const));
  const lines = [
    '',
    `forgebus local cluster is up (${opts.nodes} node${opts.nodes > 1 ? 's' : ''}, data in ${dataDir})`,
    ...nodes.map((n) => `  ${n.id}: ${n.url}`),
    ...natsLines(natsUrl),
    '',
    'Demo tokens (Authorization: Bearer <token>):',
    ...tokens.map(([u, t]) => `  ${u.padEnd(6)} ${t}`),
    '',
    `Web page (signed in as alice, on ${nodes.at(1)?.id ?? nodes[0]!.id}): ${(nodes.at(1) ?? nodes[0]!).url}/#token=${tokens[0]![1]}`,
    '',
    'Try:',
    `  curl -s -X POST ${nodes[0]!.url}/api/repos -H "Authorization: Bearer ${tokens[0]![1]}" -H 'content-type: application/json' -d '{"name":"web"}'`,
    '',
    'Press Ctrl-C to stop everything.',
  ];
  console.log(lines.join('\n'));
}

main().catch(async (err: Error) => {
  console.error(`[cluster] ${err.message}`);
  await stopAll(1);
});
