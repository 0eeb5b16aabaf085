import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';

const LAUNCHER = fileURLToPath(new URL('../../src/forge-node/cluster/main.js', import.meta.url));

/** PIDs of processes whose command line or environment mentions `marker` (our temp data dir). */
function processesMentioning(marker: string): number[] {
  const out = execFileSync('ps', ['-eo', 'pid=,args='], { encoding: 'utf8' });
  return out
    .split('\n')
    .filter((l) => l.includes(marker) && !l.includes('ps -eo'))
    .map((l) => Number(l.trim().split(/\s+/)[0]));
}

function childrenOf(pid: number): number[] {
  const out = execFileSync('ps', ['-o', 'pid=', '--ppid', String(pid)], { encoding: 'utf8' });
  return out.split('\n').map((l) => Number(l.trim())).filter((n) => n > 0);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('local cluster launcher (npm start)', () => {
  it('starts nats-server and the nodes, prints URLs, monitoring and demo tokens, and Ctrl-C leaves nothing behind', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'forgebus-cluster-'));
    const child = spawn(process.execPath, [LAUNCHER, '--nodes', '2', '--base-port', '0', '--nats-port', '0', '--monitor-port', '0', '--data-dir', dataDir], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, NATS_URL: '', FORGE_SECRET: '' },
    });
    const out: string[] = [];
    createInterface({ input: child.stderr! }).on('line', (l) => out.push(l));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    let launched: number[] = [];
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`cluster did not come up:\n${out.join('\n')}`)), 60_000);
        createInterface({ input: child.stdout! }).on('line', (l) => {
          out.push(l);
          if (l.includes('Press Ctrl-C')) {
            clearTimeout(timer);
            resolve();
          }
        });
      });
      const text = out.join('\n');
      const nodeUrls = [...text.matchAll(/node-\d: (http:\/\/\S+)/g)].map((m) => m[1]!);
      assert.equal(nodeUrls.length, 2, text);
      const monitor = /monitoring: (http:\/\/\S+)/.exec(text)![1]!;
      const tokens = [...text.matchAll(/^\s+(alice|bob|carol)\s+(\S+)$/gm)].map((m) => m[1]);
      assert.deepEqual(tokens, ['alice', 'bob', 'carol']);
      const aliceToken = /^\s+alice\s+(\S+)$/m.exec(text)![1]!;

      for (const url of nodeUrls) assert.equal((await fetch(`${url}/health`)).status, 200);
      const created = await fetch(`${nodeUrls[0]}/api/repos`, {
        method: 'POST',
        headers: { authorization: `Bearer ${aliceToken}`, 'content-type': 'application/json' },
        body: JSON.stringify({ name: 'demo' }),
      });
      assert.equal(created.status, 201);
      const connz = (await (await fetch(`${monitor}/connz`)).json()) as { connections: { name?: string }[] };
      const names = connz.connections.map((c) => c.name).sort();
      assert.deepEqual(names, ['forge-node:node-1', 'forge-node:node-2']);
      assert.ok(processesMentioning(dataDir).length >= 1, 'nats-server runs with the data dir');
      launched = childrenOf(child.pid!);
      assert.equal(launched.length, 3, 'nats-server and two nodes');
    } finally {
      child.kill('SIGINT');
      const code = await exited;
      assert.equal(code, 0, out.join('\n'));
      assert.deepEqual(processesMentioning(dataDir), [], 'no process left behind');
      assert.deepEqual(launched.filter(isAlive), [], 'every launched process exited');
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
