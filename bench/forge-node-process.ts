import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { trackChild } from './children.js';

const NODE_MAIN = fileURLToPath(new URL('../src/forge-node/main.js', import.meta.url));

export interface ForgeNodeProcess {
  id: string;
  url: string;
  pid: number;
  /** The node's last output lines (for error messages). */
  output: string[];
  /** SIGTERM, then SIGKILL after 5 s; resolves once it exited. */
  stop(): Promise<void>;
}

/**
 * Starts the example forge node (`dist/src/forge-node/main.js`) as its own process on a free
 * loopback port, as the tests do; it is killed with the bench if the bench exits first.
 */
export async function startForgeNodeProcess(options: {
  id: string;
  natsUrl: string;
  dataDir: string;
  secret: string;
  env?: Record<string, string>;
}): Promise<ForgeNodeProcess> {
  // FORGEBUS_BENCH_NODE_ARGS: Node flags for the forge node processes (diagnostics, e.g. "--prof").
  const flags = (process.env.FORGEBUS_BENCH_NODE_ARGS ?? '').split(/\s+/).filter(Boolean);
  const child = spawn(process.execPath, [...flags, NODE_MAIN], {
    env: {
      ...process.env,
      PORT: '0',
      HOST: '127.0.0.1',
      NODE_ID: options.id,
      NATS_URL: options.natsUrl,
      FORGE_DATA_DIR: options.dataDir,
      FORGE_SECRET: options.secret,
      NO_COLOR: '1',
      NODE_OPTIONS: '', // the bench's own are not passed on
      ...options.env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  trackChild(child);
  const output: string[] = [];
  const keep = (line: string): void => {
    output.push(line);
    if (output.length > 50) output.shift();
  };
  createInterface({ input: child.stderr! }).on('line', keep);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const gone = await Promise.race([exited.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 5_000))]);
    if (!gone) {
      child.kill('SIGKILL');
      await exited;
    }
  };
  try {
    const url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`forge node ${options.id} did not start in 30 s:\n${output.join('\n')}`)), 30_000);
      createInterface({ input: child.stdout! }).on('line', (line) => {
        keep(line);
        const m = /listening on (http\S+)/.exec(line);
        if (m) {
          clearTimeout(timer);
          resolve(m[1]!);
        }
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`forge node ${options.id} exited with code ${code} during start-up:\n${output.join('\n')}`));
      });
    });
    return { id: options.id, url, pid: child.pid!, output, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
