import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { OPERATOR_INBOX_PREFIX, renderServerConfig, type LocalNatsCredentials, type ServerConfigInput } from './nats-config.js';
import { natsServerVersion, startNatsServer, type RunningNatsServer } from './nats-server.js';

/**
 * The NATS of `npm start` and of the tests: one nats-server, or several clustered on loopback
 * ports, each with its own store directory and server name, started from generated
 * configurations (users, permissions, routes). The servers can be stopped, killed and started
 * again one by one, for rolling restarts and failover tests.
 */

export interface LocalNatsOptions {
  /** Number of servers (1, or 3 for a cluster that survives the loss of one). */
  servers: number;
  /** Directory for the configurations, credentials and the servers' storage. */
  dir: string;
  host?: string;
  /** First client port; the others follow (default 0: free ports). */
  clientPort?: number;
  /** First monitoring port; the others follow (default 0: free ports; -1: none). */
  monitorPort?: number;
  /** First route port of a cluster (default 0: free ports). */
  routePort?: number;
  /** Generate users and permissions (default true); false leaves the servers open (tests of the bare bus). */
  auth?: boolean;
  /** Where the generated users are kept (default `<dir>/credentials.json`). */
  credentialsFile?: string;
  /** TLS for client connections (files made by the caller). */
  tls?: ServerConfigInput['tls'];
  onLog?: (server: string, line: string) => void;
}

export interface LocalNatsServer {
  name: string;
  url: string;
  monitorUrl?: string;
  configFile: string;
  /** Whether the server process is up. */
  readonly running: boolean;
  /** Starts it again with the same configuration and storage (after stop or kill). */
  start(): Promise<void>;
  /** SIGTERM (lame-duck: clients move on), then SIGKILL after 5 s. */
  stop(): Promise<void>;
  /** SIGKILL: a crash. */
  kill(): Promise<void>;
  /** The process, while running (for SIGSTOP/SIGCONT tests). */
  readonly process: RunningNatsServer['process'] | undefined;
}

export interface LocalNats {
  servers: LocalNatsServer[];
  /** Every client URL, comma-separated (what NATS_URL takes). */
  url: string;
  /** Users of the generated configuration, unless `auth` was false. */
  credentials?: LocalNatsCredentials;
  stop(): Promise<void>;
}

/** A port nobody listens on right now, on `host`. */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, host, () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

async function ports(base: number | undefined, count: number, host: string): Promise<number[]> {
  if (base !== undefined && base !== 0) return Array.from({ length: count }, (_, i) => base + i);
  const picked: number[] = [];
  while (picked.length < count) {
    const port = await freePort(host);
    if (!picked.includes(port)) picked.push(port);
  }
  return picked;
}

const secret = () => randomBytes(18).toString('base64url');

/**
 * The users of a local NATS, generated once and kept in `file` (mode 0600), so that restarts
 * keep them and operators' tools next to `npm start` can read them.
 */
export function localCredentials(file: string): LocalNatsCredentials {
  const existing = readLocalCredentials(file);
  if (existing) return existing;
  const credentials: LocalNatsCredentials = {
    forge: { user: 'forge-node', password: secret() },
    operator: { user: 'operator', password: secret() },
    routes: { user: 'route', password: secret() },
  };
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, `${JSON.stringify(credentials, null, 2)}\n`, { mode: 0o600 });
  return credentials;
}

/** Reads the users a local NATS was started with, if any (for the operators' tools). */
export function readLocalCredentials(file: string): LocalNatsCredentials | undefined {
  return existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as LocalNatsCredentials) : undefined;
}

/** Where `npm start` keeps the users of the NATS it runs, one file for both local modes. */
export const localCredentialsFile = (dataDir: string) => join(dataDir, 'nats-credentials.json');

/**
 * Without any NATS credentials in the environment, tools next to `npm start` (settings, status)
 * use the forge-node user of the local NATS it generated, read from the data directory
 * (FORGE_DATA_DIR, default .forgebus-data). Undefined when credentials are given or none exist.
 */
export function localNatsClient(env: NodeJS.ProcessEnv, role: 'forge' | 'operator' = 'forge'): { user: string; pass: string; inboxPrefix?: string } | undefined {
  if (env.NATS_USER || env.NATS_TOKEN || env.NATS_CREDS) return undefined;
  const credentials = readLocalCredentials(localCredentialsFile(env.FORGE_DATA_DIR ?? '.forgebus-data'));
  if (!credentials) return undefined;
  return { user: credentials[role].user, pass: credentials[role].password, ...(role === 'operator' && { inboxPrefix: OPERATOR_INBOX_PREFIX }) };
}

export async function startLocalNats(options: LocalNatsOptions): Promise<LocalNats> {
  const host = options.host ?? '127.0.0.1';
  const count = options.servers;
  if (!Number.isInteger(count) || count < 1 || count > 5) throw new Error(`a local NATS has 1 to 5 servers, not ${count}`);
  mkdirSync(options.dir, { recursive: true });
  const credentials = options.auth === false ? undefined : localCredentials(options.credentialsFile ?? join(options.dir, 'credentials.json'));
  const clientPorts = await ports(options.clientPort, count, host);
  const monitorPorts = options.monitorPort === -1 ? undefined : await ports(options.monitorPort, count, host);
  const routePorts = count > 1 ? await ports(options.routePort, count, host) : undefined;
  const version = natsServerVersion();
  const urlHost = host.includes(':') ? `[${host}]` : host;

  const servers = clientPorts.map((port, i): LocalNatsServer => {
    const name = count === 1 ? 'forgebus-local' : `forgebus-${i + 1}`;
    const storeDir = join(options.dir, name);
    const configFile = join(options.dir, `${name}.conf`);
    writeFileSync(
      configFile,
      renderServerConfig({
        serverName: name,
        host,
        port,
        monitorPort: monitorPorts?.[i] ?? -1,
        storeDir,
        credentials,
        cluster: routePorts && { name: 'forgebus', port: routePorts[i]!, routePorts },
        tls: options.tls,
        version,
      }),
      { mode: 0o600 },
    );
    let running: RunningNatsServer | undefined;
    return {
      name,
      url: `${options.tls ? 'tls' : 'nats'}://${urlHost}:${port}`,
      monitorUrl: monitorPorts ? `http://${urlHost}:${monitorPorts[i]}` : undefined,
      configFile,
      get running() {
        return running !== undefined && running.process.exitCode === null && running.process.signalCode === null;
      },
      get process() {
        return running?.process;
      },
      async start() {
        if (this.running) return;
        running = await startNatsServer({ configFile, storeDir, onLog: options.onLog && ((line) => options.onLog!(name, line)) });
      },
      async stop() {
        await running?.stop();
      },
      async kill() {
        await running?.kill();
      },
    };
  });
  try {
    // Together: a clustered server waits for its routes before it reports ready.
    await Promise.all(servers.map((s) => s.start()));
  } catch (err) {
    await Promise.all(servers.map((s) => s.kill()));
    throw err;
  }
  return {
    servers,
    url: servers.map((s) => s.url).join(','),
    credentials,
    async stop() {
      await Promise.all(servers.map((s) => s.stop()));
    },
  };
}

/**
 * Resolves when JetStream answers on every running server: a clustered JetStream elects its
 * meta leader a few seconds after the servers are up, and refuses API calls until then.
 */
export async function waitForJetStream(nats: LocalNats, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const forge = nats.credentials?.forge;
  for (const server of nats.servers.filter((s) => s.running)) {
    const nc = await connect({ servers: server.url, ...(forge && { user: forge.user, pass: forge.password }) });
    try {
      for (;;) {
        try {
          await (await jetstreamManager(nc, { timeout: 2_000 })).getAccountInfo();
          break;
        } catch (err) {
          if (Date.now() > deadline) throw new Error(`JetStream on ${server.name} is not available after ${timeoutMs} ms: ${(err as Error).message}`);
          await new Promise((r) => setTimeout(r, 200));
        }
      }
    } finally {
      await nc.close();
    }
  }
}
