import { spawn, spawnSync, execFileSync, type ChildProcess } from 'node:child_process';
import { chmodSync, closeSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { parse, stringify } from 'yaml';
import { TEST_SERVERS } from '../../src/ops/ensure-test-servers.js';
import { findNatsServer } from '../../src/ops/nats-server.js';
import { eventually } from '../support/nats.js';
import { readRepoFile } from './deploy-files.js';

/**
 * The deployment's servers run from the repository's own files on this machine: nats-server with
 * deploy/nats/nats-server.conf, nginx with deploy/nginx/{nginx,forgebus}.conf, Prometheus with
 * deploy/prometheus/prometheus.yml. What is rewritten is listed at each function: addresses and
 * ports (compose's service names become loopback ports), and what a process needs to run from a
 * temporary directory (store, pid file, logs, temp paths); nothing else.
 */

/** A free loopback TCP port (closed again: the server that uses it binds it right after). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

export interface Spawned {
  name: string;
  child: ChildProcess;
  pid: number;
  /** stdout and stderr lines, in arrival order. */
  output: string[];
  exited: Promise<void>;
  /** SIGTERM, SIGKILL after 5 s; resolves when it exited. */
  stop(): Promise<void>;
}

const live = new Set<ChildProcess>();
let exitHook = false;

/** Spawns a server; it is stopped (SIGTERM, which nginx's master passes on to its workers) if the test process exits first. */
export function spawnServer(name: string, bin: string, args: string[], options: { env?: NodeJS.ProcessEnv; cwd?: string; stdoutFile?: string } = {}): Spawned {
  // A file rather than a pipe when asked: Node's pipes are sockets, which nginx cannot open as /dev/stdout.
  const stdoutFd = options.stdoutFile ? openSync(options.stdoutFile, 'a') : undefined;
  const child = spawn(bin, args, { env: options.env ?? process.env, cwd: options.cwd, stdio: ['ignore', stdoutFd ?? 'pipe', 'pipe'] });
  if (stdoutFd !== undefined) closeSync(stdoutFd);
  live.add(child);
  if (!exitHook) {
    exitHook = true;
    process.once('exit', () => {
      for (const c of live) c.kill('SIGTERM');
    });
  }
  const output: string[] = [];
  if (child.stdout) createInterface({ input: child.stdout }).on('line', (l) => output.push(l));
  createInterface({ input: child.stderr! }).on('line', (l) => output.push(l));
  const exited = new Promise<void>((resolve) =>
    child.once('exit', () => {
      live.delete(child);
      resolve();
    }),
  );
  child.once('error', (err) => output.push(`spawn error: ${err.message}`));
  return {
    name,
    child,
    pid: child.pid ?? -1,
    output,
    exited,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** Fails with the process's output when it exits before `ready` holds. */
export async function waitReady(server: Spawned, ready: () => Promise<boolean> | boolean, timeoutMs: number, what: string): Promise<void> {
  let died = false;
  void server.exited.then(() => (died = true));
  await eventually(
    async () => {
      if (died) throw new Error(`${server.name} exited: ${server.output.slice(-15).join('\n')}`);
      return ready();
    },
    timeoutMs,
    what,
  ).catch((err: Error) => {
    throw new Error(`${err.message}\n--- ${server.name} output:\n${server.output.slice(-30).join('\n')}`);
  });
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Child pids of `pid` (nginx's workers). */
export function childPids(pid: number): number[] {
  try {
    return execFileSync('ps', ['-o', 'pid=', '--ppid', String(pid)], { encoding: 'utf8' })
      .split('\n')
      .map((l) => Number(l.trim()))
      .filter((n) => n > 0);
  } catch {
    return [];
  }
}

/** Replaces `pattern` in `text`, and fails unless it matched exactly `times` times (a changed file must fail loudly). */
export function rewrite(text: string, pattern: RegExp, replacement: string | ((...m: string[]) => string), times: number, what: string): string {
  const found = text.match(new RegExp(pattern.source, pattern.flags.includes('g') ? pattern.flags : `${pattern.flags}g`))?.length ?? 0;
  if (found !== times) throw new Error(`rewriting ${what}: expected ${times} match(es) of ${pattern}, found ${found}`);
  return text.replace(new RegExp(pattern.source, pattern.flags.includes('g') ? pattern.flags : `${pattern.flags}g`), replacement as string);
}

// ---- binaries --------------------------------------------------------------------------------

function testServerBinary(pkg: 'nginx' | 'prometheus'): string {
  const server = TEST_SERVERS.find((s) => s.package === pkg)!;
  const bin = server.find();
  if (!bin) {
    throw new Error(`${pkg} is not installed (${pkg === 'nginx' ? 'NGINX_BIN' : 'PROMETHEUS_BIN'} or the Debian path): npm test installs it (dist/src/ops/ensure-test-servers.js), or apt-get install --no-install-recommends ${pkg}`);
  }
  return bin;
}

export function nginxBinary(): string {
  return testServerBinary('nginx');
}

export function prometheusBinary(): string {
  return testServerBinary('prometheus');
}

export function natsServerBinary(): string {
  const bin = findNatsServer();
  if (!bin) throw new Error('nats-server is not installed (NATS_SERVER_BIN, PATH or Debian\'s nats-server package)');
  return bin;
}

/** [major, minor] of an executable's --version output. */
export function versionOf(bin: string, args = ['--version']): [number, number] {
  const out = spawnSync(bin, args, { encoding: 'utf8' });
  const m = /(\d+)\.(\d+)\.\d+/.exec(`${out.stdout ?? ''}${out.stderr ?? ''}`);
  if (!m) throw new Error(`no version in the output of ${bin} ${args.join(' ')}`);
  return [Number(m[1]), Number(m[2])];
}

// ---- NATS ---------------------------------------------------------------------------------------

export interface NatsPorts {
  client: number;
  monitor: number;
  cluster: number;
}

/**
 * deploy/nats/nats-server.conf for one local server. Rewritten: the client, monitoring and
 * cluster listen addresses (0.0.0.0:4222/8222/6222 → 127.0.0.1 and free ports), the JetStream
 * store directory (the compose volume → a temp directory), and, on nats-server before 2.10,
 * `sync_interval: always` is dropped (2.9 rejects the field; docs/operations.md, "Durability").
 */
export function localNatsConf(ports: NatsPorts, storeDir: string, version: [number, number]): string {
  let text = readRepoFile('deploy/nats/nats-server.conf');
  text = rewrite(text, /^listen: 0\.0\.0\.0:4222$/m, `listen: 127.0.0.1:${ports.client}`, 1, 'the client listen address');
  text = rewrite(text, /^http: 0\.0\.0\.0:8222$/m, `http: 127.0.0.1:${ports.monitor}`, 1, 'the monitoring address');
  text = rewrite(text, /^(\s+)listen: 0\.0\.0\.0:6222$/m, (_m: string, indent: string) => `${indent}listen: 127.0.0.1:${ports.cluster}`, 1, 'the cluster listen address');
  text = rewrite(text, /^(\s+)store_dir: \/data$/m, (_m: string, indent: string) => `${indent}store_dir: ${JSON.stringify(storeDir)}`, 1, 'the store directory');
  if (version[0] === 2 && version[1] < 10) text = rewrite(text, /^\s+sync_interval: always\n/m, '', 1, 'sync_interval (not known before nats-server 2.10)');
  return text;
}

// ---- nginx --------------------------------------------------------------------------------------

export interface LocalNginx {
  url: string;
  server: Spawned;
  /** Access log lines (the repository's log format, written to nginx's stdout). */
  accessLog(): string[];
  /** The worker processes seen while it ran (for the leftover check). */
  workers: number[];
  stop(): Promise<void>;
}

/**
 * nginx with deploy/nginx/nginx.conf and forgebus.conf in a temp prefix directory. Rewritten in
 * forgebus.conf: each `server node-N:3000` of the upstream → the local node's address, and
 * `listen 80` → a free loopback port; prepended to it: the temp paths inside the prefix. Given on
 * the command line: the prefix (-p), the error log (-e), and `daemon off; pid …;` (-g).
 * nginx.conf is copied as it is.
 */
export async function startNginx(dir: string, upstreams: Record<string, string>): Promise<LocalNginx> {
  const bin = nginxBinary();
  mkdirSync(dir, { recursive: true });
  // Workers run as an unprivileged user when nginx starts as root: they must reach the temp paths.
  chmodSync(dir, 0o755);
  const port = await freePort();
  let site = readRepoFile('deploy/nginx/forgebus.conf');
  for (const [service, address] of Object.entries(upstreams)) {
    site = rewrite(site, new RegExp(`^(\\s*server\\s+)${service}:3000\\b`, 'm'), (_m: string, head: string) => `${head}${address}`, 1, `the upstream server ${service}`);
  }
  site = rewrite(site, /^(\s*)listen 80;$/m, (_m: string, indent: string) => `${indent}listen 127.0.0.1:${port};`, 1, 'the listen port');
  const temp = ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((k) => `${k}_temp_path ${join(dir, `${k}_temp`)};`).join('\n');
  writeFileSync(join(dir, 'forgebus.conf'), `# test only: temp paths inside the prefix\n${temp}\n\n${site}`);
  writeFileSync(join(dir, 'nginx.conf'), readRepoFile('deploy/nginx/nginx.conf'));
  // The repository's access_log is /dev/stdout (the container's log): here stdout is a file.
  const stdoutFile = join(dir, 'stdout.log');
  const server = spawnServer('nginx', bin, ['-p', `${dir}/`, '-e', join(dir, 'error.log'), '-c', join(dir, 'nginx.conf'), '-g', `daemon off; pid ${join(dir, 'nginx.pid')};`], { stdoutFile });
  const url = `http://127.0.0.1:${port}`;
  await waitReady(server, async () => (await fetch(`${url}/nginx-health`)).status === 200, 15_000, 'nginx to answer /nginx-health').catch((err: Error) => {
    let log = '';
    try {
      log = readFileSync(join(dir, 'error.log'), 'utf8');
    } catch {
      /* none */
    }
    throw new Error(`${err.message}\n--- error.log:\n${log}`);
  });
  const workers = childPids(server.pid);
  return {
    url,
    server,
    workers,
    accessLog: () => readFileSync(stdoutFile, 'utf8').split('\n').filter((l) => / upstream=/.test(l)),
    async stop() {
      await server.stop();
    },
  };
}

// ---- Prometheus ---------------------------------------------------------------------------------

export interface LocalPrometheus {
  url: string;
  server: Spawned;
  query(promql: string): Promise<{ metric: Record<string, string>; value: [number, string] }[]>;
  stop(): Promise<void>;
}

/**
 * Prometheus with deploy/prometheus/prometheus.yml. Rewritten: each target `node-N:3000` → the
 * local node's address. Its command line is compose's, with the config file, the storage path
 * (the compose volume → a temp directory) and the listen address (→ a free loopback port) changed.
 */
export async function startPrometheus(dir: string, composeCommand: string[], targets: Record<string, string>): Promise<LocalPrometheus> {
  const bin = prometheusBinary();
  mkdirSync(dir, { recursive: true });
  const config = parse(readRepoFile('deploy/prometheus/prometheus.yml')) as { scrape_configs: { static_configs: { targets: string[] }[] }[] };
  let rewritten = 0;
  for (const job of config.scrape_configs) {
    for (const sc of job.static_configs) {
      sc.targets = sc.targets.map((t) => {
        const host = t.replace(/:3000$/, '');
        const address = targets[host];
        if (!address || !t.endsWith(':3000')) throw new Error(`prometheus.yml target ${t} is not a node service on port 3000 (${Object.keys(targets).join(', ')})`);
        rewritten++;
        return address;
      });
    }
  }
  if (rewritten !== Object.keys(targets).length) throw new Error(`prometheus.yml has ${rewritten} node targets, expected ${Object.keys(targets).length}`);
  const configFile = join(dir, 'prometheus.yml');
  writeFileSync(configFile, stringify(config));
  const port = await freePort();
  const args = composeCommand.map((arg) => {
    if (arg.startsWith('--config.file=')) return `--config.file=${configFile}`;
    if (arg.startsWith('--storage.tsdb.path=')) return `--storage.tsdb.path=${join(dir, 'data')}`;
    if (arg.startsWith('--web.listen-address=')) return `--web.listen-address=127.0.0.1:${port}`;
    return arg;
  });
  for (const flag of ['--config.file=', '--storage.tsdb.path=', '--web.listen-address=']) {
    if (!args.some((a) => a.startsWith(flag))) throw new Error(`compose's prometheus command has no ${flag}`);
  }
  const server = spawnServer('prometheus', bin, args, { cwd: dir });
  const url = `http://127.0.0.1:${port}`;
  await waitReady(server, async () => (await fetch(`${url}/-/ready`)).status === 200, 30_000, 'Prometheus to be ready');
  return {
    url,
    server,
    async query(promql) {
      const res = await fetch(`${url}/api/v1/query?query=${encodeURIComponent(promql)}`);
      const body = (await res.json()) as { status: string; data?: { result: { metric: Record<string, string>; value: [number, string] }[] }; error?: string };
      if (body.status !== 'success') throw new Error(`query ${promql}: ${body.error}`);
      return body.data!.result;
    },
    stop: () => server.stop(),
  };
}
