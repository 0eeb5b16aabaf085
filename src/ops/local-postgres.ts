import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chownSync, mkdtempSync, rmSync } from 'node:fs';
import { userInfo, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import pg from 'pg';
import { postgresBinDir } from './ensure-test-servers.js';
import { freePort } from './local-nats.js';

/**
 * A throw-away PostgreSQL server for a test file or a benchmark: Debian's binaries, its own data directory in /tmp,
 * a free loopback port, trust authentication for the user `forge`. PostgreSQL refuses to run as
 * root, so as root the server runs as the `postgres` user (setpriv, which execs: the child we
 * hold is the postmaster itself). Durability is off: nothing here needs to survive a crash of
 * the machine, and fsync would make every test slower.
 */
export interface LocalPostgres {
  port: number;
  /** A new empty database; its URL. */
  createDatabase(): Promise<string>;
  dispose(): Promise<void>;
}

const USER = 'forge';

function asServerUser(command: string, args: string[]): [string, string[]] {
  if (process.getuid?.() !== 0) return [command, args];
  return ['setpriv', ['--reuid=postgres', '--regid=postgres', '--init-groups', '--', command, ...args]];
}

export async function startLocalPostgres(): Promise<LocalPostgres> {
  const bin = postgresBinDir();
  if (!bin) throw new Error('PostgreSQL is not installed: run "npm test" (installs Debian\'s postgresql as root) or apt-get install postgresql');
  const dir = mkdtempSync(join(tmpdir(), 'forgebus-pg-'));
  if (process.getuid?.() === 0) {
    const { uid, gid } = userInfoOf('postgres');
    chownSync(dir, uid, gid);
  }
  const data = join(dir, 'data');
  const [initCmd, initArgs] = asServerUser(join(bin, 'initdb'), ['-D', data, '-A', 'trust', '-U', USER, '-E', 'UTF8', '--no-sync', '--no-instructions']);
  const init = spawnSync(initCmd, initArgs, { encoding: 'utf8' });
  if (init.status !== 0) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`initdb failed (${init.status ?? init.signal}): ${init.stderr.slice(-2000)}`);
  }
  const port = await freePort();
  const [cmd, args] = asServerUser(join(bin, 'postgres'), [
    '-D', data, '-p', String(port), '-k', dir,
    '-c', 'listen_addresses=127.0.0.1',
    '-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off',
    '-c', 'max_connections=200',
  ]);
  const child: ChildProcess = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  const output: string[] = [];
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`PostgreSQL did not start in 30 s:\n${output.join('\n')}`)), 30_000);
      createInterface({ input: child.stderr! }).on('line', (line) => {
        if (output.length < 200) output.push(line);
        if (line.includes('ready to accept connections')) {
          clearTimeout(timer);
          resolve();
        }
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`PostgreSQL exited with ${code} during start-up:\n${output.join('\n')}`));
      });
    });
  } catch (err) {
    child.kill('SIGKILL');
    await exited;
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  let databases = 0;
  const admin = new pg.Client({ host: '127.0.0.1', port, user: USER, database: 'postgres' });
  await admin.connect();
  return {
    port,
    async createDatabase() {
      const name = `forge_${++databases}`;
      await admin.query(`CREATE DATABASE ${name}`);
      return `postgres://${USER}@127.0.0.1:${port}/${name}`;
    },
    async dispose() {
      await admin.end().catch(() => undefined);
      // Fast shutdown: ends the sessions of nodes that are still connected.
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGINT');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

function userInfoOf(name: string): { uid: number; gid: number } {
  const out = spawnSync('id', ['-u', name], { encoding: 'utf8' });
  const gid = spawnSync('id', ['-g', name], { encoding: 'utf8' });
  if (out.status !== 0) throw new Error(`no "${name}" user: Debian's postgresql package creates it (running as ${userInfo().username})`);
  return { uid: Number(out.stdout.trim()), gid: Number(gid.stdout.trim()) };
}
