import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { accessSync, constants, mkdirSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { aptInstall, aptUnavailableReason } from './apt.js';

/**
 * Finding, installing and running a local nats-server: used by `npm start` (the embedded default
 * cluster), the tests and the benchmarks. Production deployments point NATS_URL at their own.
 */

export class NatsServerUnavailableError extends Error {
  constructor(detail: string) {
    super(
      `nats-server is not installed (${detail}). Install it with "apt-get install nats-server" (Debian/Ubuntu), ` +
        `or download it from the NATS project and put it on PATH, or set NATS_URL to an existing NATS server with JetStream enabled.`,
    );
    this.name = 'NatsServerUnavailableError';
  }
}

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** `NATS_SERVER_BIN`, then PATH, then the sbin directories Debian installs to. */
export function findNatsServer(): string | undefined {
  const explicit = process.env.NATS_SERVER_BIN;
  if (explicit) return isExecutable(explicit) ? explicit : undefined;
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', '/usr/local/sbin', '/sbin'];
  return dirs.filter(Boolean).map((d) => join(d, 'nats-server')).find(isExecutable);
}

/**
 * Returns the nats-server path, installing Debian's package when it is missing and we are root
 * with apt-get (fresh CI machines); otherwise fails with a message that says what to do.
 */
export function ensureNatsServer(options: { install?: boolean; log?: (m: string) => void } = {}): string {
  const found = findNatsServer();
  if (found) return found;
  const log = options.log ?? ((m: string) => console.error(m));
  const cannot = options.install === false ? 'installation disabled' : aptUnavailableReason();
  if (cannot) throw new NatsServerUnavailableError(`not on PATH and cannot install it: ${cannot}`);
  log('nats-server not found: installing Debian package nats-server (apt-get) ...');
  try {
    aptInstall(['nats-server']);
  } catch (err) {
    throw new NatsServerUnavailableError((err as Error).message);
  }
  const installed = findNatsServer();
  if (!installed) throw new NatsServerUnavailableError('apt-get reported success but no nats-server binary was found');
  return installed;
}

/** nats-server stopped before it was ready; `output` is what it said last (its reason). */
export class NatsServerStartError extends Error {
  constructor(
    message: string,
    readonly output: string,
  ) {
    super(message);
    this.name = 'NatsServerStartError';
  }
}

/** The installed server's version as [major, minor] (from `nats-server --version`), if it says. */
export function natsServerVersion(bin = ensureNatsServer()): [number, number] | undefined {
  const out = spawnSync(bin, ['--version'], { encoding: 'utf8' });
  const match = /v?(\d+)\.(\d+)\.\d+/.exec(`${out.stdout ?? ''}${out.stderr ?? ''}`);
  return match ? [Number(match[1]), Number(match[2])] : undefined;
}

export interface NatsServerOptions {
  /** Client port; 0 picks a free one (default 0). */
  port?: number;
  /** Monitoring port; 0 picks a free one, -1 disables (default 0). */
  monitorPort?: number;
  host?: string;
  /** JetStream storage directory (created if missing). */
  storeDir: string;
  /** Extra command-line arguments, e.g. cluster routes. */
  args?: string[];
  /**
   * A configuration file (see nats-config.ts): then only `-c <file>` and `args` are passed, and
   * the file says ports, storage, cluster, users and TLS.
   */
  configFile?: string;
  /** Name shown in monitoring; also the JetStream server name. */
  serverName?: string;
  /** Forward the server's log lines. */
  onLog?: (line: string) => void;
  startTimeoutMs?: number;
}

export interface RunningNatsServer {
  url: string;
  port: number;
  monitorUrl?: string;
  process: ChildProcess;
  /** Stops the server (SIGTERM, then SIGKILL after 5 s); resolves when it exited. */
  stop(): Promise<void>;
  /** SIGKILL, for tests of a server crash. */
  kill(): Promise<void>;
}

const running = new Set<ChildProcess>();
let exitHookInstalled = false;
function trackForExit(child: ChildProcess): void {
  running.add(child);
  child.once('exit', () => running.delete(child));
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Never leave a server behind, even when the parent exits without stopping it.
  process.once('exit', () => {
    for (const c of running) c.kill('SIGKILL');
  });
}

function waitForExit(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

/** Starts nats-server with JetStream and waits until it accepts clients. */
export async function startNatsServer(options: NatsServerOptions): Promise<RunningNatsServer> {
  const bin = ensureNatsServer();
  const host = options.host ?? '127.0.0.1';
  mkdirSync(options.storeDir, { recursive: true });
  const port = options.port === undefined || options.port === 0 ? -1 : options.port;
  const monitor = options.monitorPort ?? 0;
  const args = options.configFile ? ['-c', options.configFile] : ['-a', host, '-p', String(port), '-js', '-sd', options.storeDir];
  if (!options.configFile) {
    if (monitor !== -1) args.push('-m', String(monitor === 0 ? -1 : monitor));
    if (options.serverName) args.push('-n', options.serverName);
  }
  args.push(...(options.args ?? []));
  const child = spawn(bin, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  trackForExit(child);

  let clientPort: number | undefined;
  let monitorAddr: string | undefined;
  // nats-server's own reason for failing (e.g. "address already in use") is in its last lines.
  const lastLines: string[] = [];
  const ready = new Promise<void>((resolve, reject) => {
    let buffer = '';
    const timeout = setTimeout(
      () => reject(new Error(`nats-server did not become ready within ${options.startTimeoutMs ?? 10_000} ms`)),
      options.startTimeoutMs ?? 10_000,
    );
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (chunk: string) => {
      buffer += chunk;
      let nl: number;
      while ((nl = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        options.onLog?.(line);
        lastLines.push(line.replace(/^\[\d+\] [\d/]+ [\d:.]+ /, ''));
        if (lastLines.length > 40) lastLines.shift();
        const client = /Listening for client connections on (\S+):(\d+)/.exec(line);
        if (client) clientPort = Number(client[2]);
        const http = /Starting http monitor on (\S+):(\d+)/.exec(line);
        if (http) monitorAddr = `${http[1]}:${http[2]}`;
        if (line.includes('Server is ready')) {
          clearTimeout(timeout);
          resolve();
        }
      }
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timeout);
      const said = [...lastLines, buffer.trim()].filter(Boolean);
      // Its reason is the fatal or error line; the lines before it are its start-up banner.
      const reasons = said.filter((l) => /\[(FTL|ERR)\]/.test(l));
      const output = (reasons.length > 0 ? reasons : said.slice(-5)).join(' | ');
      const hint = /address already in use/.test(output)
        ? '. Another program (a running npm start?) holds that port: stop it, or choose other ports (npm start -- --nats-port, --monitor-port, --route-port)'
        : '';
      reject(new NatsServerStartError(`nats-server exited during start-up (code ${code}, signal ${signal}): ${output || 'no output'}${hint}`, output));
    });
  });
  try {
    await ready;
  } catch (err) {
    child.kill('SIGKILL');
    throw err;
  }
  if (clientPort === undefined) throw new Error('nats-server did not report its client port');
  const urlHost = host.includes(':') ? `[${host}]` : host;
  return {
    url: `nats://${urlHost}:${clientPort}`,
    port: clientPort,
    monitorUrl: monitorAddr ? `http://${monitorAddr}` : undefined,
    process: child,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await waitForExit(child);
      clearTimeout(timer);
    },
    async kill() {
      child.kill('SIGKILL');
      await waitForExit(child);
    },
  };
}
