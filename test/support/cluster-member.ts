import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const MEMBER = fileURLToPath(new URL('../fixtures/cluster-member.js', import.meta.url));

/** Starts test/fixtures/cluster-member.ts as a process; resolves once it joined the cluster. */
export function startClusterMember(natsUrl: string, id: string, ttlMs: number): Promise<ChildProcess> {
  const child = spawn(process.execPath, [MEMBER], { env: { ...process.env, NATS_URL: natsUrl, NODE_ID: id, NODE_TTL_MS: String(ttlMs) }, stdio: ['pipe', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${id} did not join in 15 s`)), 15_000);
    createInterface({ input: child.stdout! }).on('line', (line) => {
      if (line !== 'joined') return;
      clearTimeout(timer);
      resolve(child);
    });
    child.once('exit', (code) => reject(new Error(`${id} exited with ${code}`)));
  });
}
