import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { signUserToken } from '../../src/forge-node/auth/tokens.js';

const NODE_MAIN = fileURLToPath(new URL('../../src/forge-node/main.js', import.meta.url));

export const TEST_SECRET = 'forgebus-test-secret-0123456789';

export interface TestForgeNode {
  id: string;
  url: string;
  child: ChildProcess;
  output: string[];
  /** SIGTERM and wait for exit. */
  stop(): Promise<void>;
  /** Send a signal (e.g. SIGKILL) and wait for exit. */
  kill(signal?: NodeJS.Signals): Promise<void>;
}

/** Starts `dist/src/forge-node/main.js` as a real process on a free loopback port. */
export async function startForgeNode(options: {
  id: string;
  natsUrl: string;
  dataDir: string;
  secret?: string;
  /** Extra environment variables (e.g. FORGE_DB_LATENCY_MS); they override the defaults above. */
  env?: Record<string, string>;
}): Promise<TestForgeNode> {
  const child = spawn(process.execPath, [NODE_MAIN], {
    env: {
      ...process.env,
      PORT: '0',
      HOST: '127.0.0.1',
      NODE_ID: options.id,
      NATS_URL: options.natsUrl,
      FORGE_DATA_DIR: options.dataDir,
      FORGE_SECRET: options.secret ?? TEST_SECRET,
      NO_COLOR: '1',
      ...options.env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output: string[] = [];
  createInterface({ input: child.stderr! }).on('line', (l) => output.push(l));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${options.id} did not start in 20 s:\n${output.join('\n')}`)), 20_000);
    createInterface({ input: child.stdout! }).on('line', (line) => {
      output.push(line);
      const m = /listening on (http\S+)/.exec(line);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${options.id} exited with code ${code} during start-up:\n${output.join('\n')}`));
    });
  });
  const kill = async (signal: NodeJS.Signals = 'SIGTERM') => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    await exited;
  };
  return { id: options.id, url, child, output, stop: () => kill('SIGTERM'), kill };
}

/** A small JSON HTTP client for one user against one node. */
export function apiClient(baseUrl: string, token?: string) {
  return async (method: string, path: string, body?: unknown): Promise<{ status: number; body: any }> => {
    const headers: Record<string, string> = {};
    if (token) headers.authorization = `Bearer ${token}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    const res = await fetch(`${baseUrl}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : undefined };
  };
}

export const tokenFor = (user: string, secret = TEST_SECRET) => signUserToken(secret, user);
