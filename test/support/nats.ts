import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startNatsServer, type NatsServerOptions, type RunningNatsServer } from '../../src/ops/nats-server.js';

export interface TestNats extends RunningNatsServer {
  storeDir: string;
  /** Stops the server and removes its storage. */
  dispose(): Promise<void>;
  /** Starts the server again on the same port with the same storage (after stop/kill). */
  restart(): Promise<TestNats>;
}

/** A nats-server with JetStream on free loopback ports and temporary storage. */
export async function startTestNats(options: Partial<NatsServerOptions> = {}): Promise<TestNats> {
  const storeDir = options.storeDir ?? mkdtempSync(join(tmpdir(), 'forgebus-nats-'));
  const server = await startNatsServer({ ...options, storeDir });
  const wrap = (s: RunningNatsServer): TestNats => ({
    ...s,
    storeDir,
    async dispose() {
      await s.stop();
      rmSync(storeDir, { recursive: true, force: true });
    },
    async restart() {
      return wrap(await startNatsServer({ ...options, storeDir, port: s.port, monitorPort: -1 }));
    },
  });
  return wrap(server);
}

/** Polls `check` until it returns a truthy value or the deadline passes (then throws). */
export async function eventually<T>(check: () => T | Promise<T>, timeoutMs = 10_000, what = 'condition'): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value) return value as NonNullable<T>;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
    }
    await new Promise((r) => setTimeout(r, 25));
  }
}
