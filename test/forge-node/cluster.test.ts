import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { OPERATOR_INBOX_PREFIX } from '../../src/ops/nats-config.js';
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

/** `npm start` with `args` on a fresh data dir; `up` resolves with its output once it is ready. */
function launch(prefix: string, args: string[], existingDataDir?: string) {
  const dataDir = existingDataDir ?? mkdtempSync(join(tmpdir(), prefix));
  const child = spawn(process.execPath, [LAUNCHER, ...args, '--data-dir', dataDir], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, NATS_URL: '', FORGE_SECRET: '' },
  });
  const out: string[] = [];
  createInterface({ input: child.stderr! }).on('line', (l) => out.push(l));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const up = new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`cluster did not come up:\n${out.join('\n')}`)), 60_000);
    createInterface({ input: child.stdout! }).on('line', (l) => {
      out.push(l);
      if (l.includes('Press Ctrl-C')) {
        clearTimeout(timer);
        resolve(out.join('\n'));
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`npm start exited (code ${code}) before it was up:\n${out.join('\n')}`));
    });
  });
  up.catch(() => undefined); // a launch expected to fail is judged by its exit code, not awaited
  return { dataDir, child, out, exited, up };
}

describe('local cluster launcher (npm start)', () => {
  it('starts nats-server and the nodes, prints URLs, monitoring and demo tokens, and Ctrl-C leaves nothing behind', async () => {
    const { dataDir, child, out, exited, up } = launch('forgebus-cluster-', ['--nodes', '2', '--base-port', '0', '--nats-port', '0', '--monitor-port', '0']);
    let launched: number[] = [];
    try {
      const text = await up;
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
      const connz = (await (await fetch(`${monitor}/connz?auth=true`)).json()) as { connections: { name?: string; authorized_user?: string }[] };
      const names = connz.connections.map((c) => c.name).sort();
      assert.deepEqual(names, ['forge-node:node-1', 'forge-node:node-2']);
      // The NATS it started is closed: the nodes are its forge-node user, strangers are refused,
      // and the read-only operator it printed can get in.
      assert.deepEqual(connz.connections.map((c) => c.authorized_user), ['forge-node', 'forge-node']);
      const natsUrl = /NATS: one server \((nats:\/\/\S+)\)/.exec(text)![1]!;
      await assert.rejects(connect({ servers: natsUrl, waitOnFirstConnect: false, maxReconnectAttempts: 0 }), /Authorization Violation|authorization/i);
      const [, operator, password] = /read-only operator: (\S+) \/ (\S+)/.exec(text)!;
      const asOperator = await connect({ servers: natsUrl, user: operator, pass: password, inboxPrefix: OPERATOR_INBOX_PREFIX });
      await asOperator.close();
      const credentials = JSON.parse(readFileSync(join(dataDir, 'nats-credentials.json'), 'utf8'));
      assert.equal(credentials.operator.password, password);
      assert.equal(statSync(join(dataDir, 'nats-credentials.json')).mode & 0o777, 0o600, 'credentials readable by their owner only');
      assert.ok(processesMentioning(dataDir).length >= 1, 'nats-server runs with the data dir');
      launched = childrenOf(child.pid!);
      assert.equal(launched.length, 3, 'nats-server and two nodes');

      // A second npm start on the same data directory says what runs there, and starts nothing.
      const second = launch('', ['--nodes', '2', '--base-port', '0', '--nats-port', '0', '--monitor-port', '0'], dataDir);
      assert.equal(await second.exited, 1);
      const said = second.out.join('\n');
      assert.match(said, new RegExp(`already running from .* \\(pid ${child.pid},`), said);
      assert.ok(said.includes(nodeUrls[0]!) && said.includes(nodeUrls[1]!), `it names the running nodes: ${said}`);
      assert.match(said, /--data-dir .* --base-port/, 'and how to run a second one');
      assert.deepEqual(childrenOf(child.pid!).length, 3, 'the first one is untouched');
    } finally {
      child.kill('SIGINT');
      const code = await exited;
      assert.equal(code, 0, out.join('\n'));
      assert.deepEqual(processesMentioning(dataDir), [], 'no process left behind');
      assert.deepEqual(launched.filter(isAlive), [], 'every launched process exited');
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
  it('--nats-cluster 3 starts three clustered nats-servers, keeps FORGE_EVENTS on all three, and stops them all', async () => {
    const { dataDir, child, out, exited, up } = launch('forgebus-cluster3-', ['--nodes', '1', '--base-port', '0', '--nats-port', '0', '--monitor-port', '0', '--route-port', '0', '--nats-cluster', '3']);
    try {
      const text = await up;
      assert.match(text, /NATS: 3 clustered servers/);
      const servers = [...text.matchAll(/forgebus-\d (nats:\/\/\S+)\s+monitoring: (http:\/\/\S+)/g)];
      assert.equal(servers.length, 3, text);
      const jsz = (await (await fetch(`${servers[0]![2]}/jsz`)).json()) as { meta_cluster?: { cluster_size?: number } };
      assert.equal(jsz.meta_cluster?.cluster_size, 3);
      const [, operator, password] = /read-only operator: (\S+) \/ (\S+)/.exec(text)!;
      const nc = await connect({ servers: servers.map((m) => m[1]!), user: operator, pass: password, inboxPrefix: OPERATOR_INBOX_PREFIX });
      const info = await (await jetstreamManager(nc)).streams.info('FORGE_EVENTS');
      await nc.close();
      assert.equal(info.config.num_replicas, 3);
      assert.equal(info.cluster?.replicas?.length, 2, 'a leader and two replicas');
    } finally {
      child.kill('SIGINT');
      const code = await exited;
      assert.equal(code, 0, out.join('\n'));
      assert.deepEqual(processesMentioning(dataDir), [], 'no process left behind');
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
