import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import type { ClusterStatus } from '../../src/ops/status/cluster-status.js';
import { freePort } from '../../src/ops/local-nats.js';
import { OPERATOR_INBOX_PREFIX, renderServerConfig } from '../../src/ops/nats-config.js';
import { SnapshotCache } from '../../src/forge-node/ops/snapshot-cache.js';
import { formatDuration } from '../../src/ops/status/render.js';
import { resolveTarget } from '../../src/ops/status/target.js';
import { apiClient, startForgeNode, tokenFor, type TestForgeNode } from '../support/forge-node.js';
import { startTestNatsCluster, type TestNatsCluster } from '../support/nats-cluster.js';
import { eventually } from '../support/nats.js';
import { runProcess, type ProcessRun } from '../support/run-process.js';

const CLI = fileURLToPath(new URL('../../src/ops/status-cli.js', import.meta.url));
const PRIVATE_REPO = 'hidden-plans';

type CliRun = ProcessRun;

/** The environment without the test's own NATS_* / FORGE_* settings. */
const cleanEnv = () => Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(NATS_|FORGE_)/.test(k))) as NodeJS.ProcessEnv;

/** Polls `check` every 200 ms until it returns a truthy value, or fails with the last value seen. */
async function poll<T>(check: () => Promise<T | undefined | false>, timeoutMs: number, what: string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value) return value;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** A git "source" that accepts connections and never answers: a migration from it runs until cancelled. */
async function silentServer(): Promise<{ url: string; close(): Promise<void> }> {
  const server: Server = createServer(() => undefined);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/source.git`,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

describe('forgebus status and GET /api/ops against three clustered nats-servers and three forge nodes', () => {
  let cluster: TestNatsCluster;
  let dataDir: string;
  let cwd: string;
  let source: Awaited<ReturnType<typeof silentServer>>;
  const nodes: TestForgeNode[] = [];
  const running = new Set<ReturnType<typeof spawn>>();
  let monitors: string;
  let bobTask: string | undefined;

  /** Runs the built CLI; `FORGE_DATA_DIR` points at an empty directory unless given. */
  function cli(args: string[], env: Record<string, string> = {}, timeoutMs = 60_000): Promise<CliRun> {
    return runProcess(process.execPath, [CLI, ...args], {
      cwd,
      env: { ...cleanEnv(), FORGE_DATA_DIR: join(cwd, 'no-data'), ...env },
      timeoutMs,
      running,
      label: `forgebus ${args.join(' ')}`,
    });
  }

  const asOperator = () => ({ NATS_USER: cluster.credentials!.operator.user, NATS_PASSWORD: cluster.credentials!.operator.password, NATS_INBOX_PREFIX: OPERATOR_INBOX_PREFIX });
  const opsOf = async (user: string, node = 0) => (await apiClient(nodes[node]!.url, await tokenFor(user))('GET', '/api/ops')) as { status: number; body: ClusterStatus };

  before(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'forgebus-status-'));
    cwd = mkdtempSync(join(tmpdir(), 'forgebus-status-cwd-'));
    mkdirSync(join(cwd, 'no-data'));
    source = await silentServer();
    // With users and permissions, the credentials where `npm start` keeps them.
    cluster = await startTestNatsCluster({ auth: true, credentialsFile: join(dataDir, 'nats-credentials.json') });
    monitors = cluster.servers.map((s) => s.monitorUrl!).join(',');
    const env = {
      NATS_USER: cluster.credentials!.forge.user,
      NATS_PASSWORD: cluster.credentials!.forge.password,
      FORGE_NODE_TTL_MS: '3000',
      FORGE_WRITE_PARTITIONS: '4',
      FORGE_CRON_REPO_STATS: '*/3 * * * * *',
    };
    // n1 and n2 know the monitoring URLs; n3 does not (its view lists its own server only).
    nodes.push(await startForgeNode({ id: 'n1', natsUrl: cluster.url, dataDir, env: { ...env, NATS_MONITOR_URL: monitors } }));
    nodes.push(await startForgeNode({ id: 'n2', natsUrl: cluster.url, dataDir, env: { ...env, NATS_MONITOR_URL: monitors } }));
    nodes.push(await startForgeNode({ id: 'n3', natsUrl: cluster.url, dataDir, env }));

    // Events and a write: alice's public repository with a commit; bob's private migration runs on.
    const alice = apiClient(nodes[0]!.url, await tokenFor('alice'));
    assert.equal((await alice('POST', '/api/repos', { name: 'web' })).status, 201);
    assert.equal((await alice('POST', '/api/repos/alice/web/commits', { branch: 'main', path: 'a.txt', content: 'x', message: 'first' })).status, 201);
    const bob = apiClient(nodes[1]!.url, await tokenFor('bob'));
    const migration = await bob('POST', `/api/repos/bob/${PRIVATE_REPO}/migrate`, { from: source.url, private: true });
    assert.equal(migration.status, 202, JSON.stringify(migration.body));
    bobTask = migration.body.task.id as string;

    // Settled: every node reports its feed at the stream's end, and the cron job has run once.
    await poll(
      async () => {
        const { body } = await opsOf('alice');
        return body.nodes.length === 3 && body.nodes.every((n) => n.feedPosition === body.events?.lastSeq) && body.cron.some((c) => c.job === 'repo-stats' && c.lastRun);
      },
      30_000,
      'three nodes at the end of FORGE_EVENTS and a repo-stats run',
    );
  });

  after(async () => {
    for (const child of running) child.kill('SIGKILL');
    if (bobTask && nodes[1]) await apiClient(nodes[1].url, await tokenFor('bob'))('DELETE', `/api/tasks/${bobTask}`).catch(() => undefined);
    for (const node of nodes) await node.kill('SIGKILL');
    await source?.close();
    await cluster?.dispose();
    for (const dir of [dataDir, cwd]) if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('--json next to npm start (its operator user from the data directory): servers, nodes, FORGE_EVENTS with feeds, partitions, tasks, cron', async () => {
    // /healthz of nats-server 2.9 is not ok while a replica catches up (after the test's writes,
    // on a busy machine), and a node's counters are as old as its last membership refresh (a
    // third of the TTL): the cluster gets there, and the status must then say so.
    let run!: CliRun;
    let status!: ClusterStatus;
    await eventually(
      async () => {
        run = await cli(['--json', '--nats', cluster.url, '--monitor', monitors], { FORGE_DATA_DIR: dataDir });
        assert.equal(run.code, 0, run.stderr);
        status = JSON.parse(run.stdout) as ClusterStatus;
        return (
          status.nats.servers.length === 3 &&
          status.nats.servers.every((s) => s.healthy === true) &&
          status.nodes.reduce((sum, n) => sum + (n.writesApplied ?? 0), 0) >= 1
        );
      },
      30_000,
      'every NATS server healthy and the commit counted in the status',
    ).catch((err: Error) =>
      assert.fail(`${err.message}: ${JSON.stringify({ servers: status?.nats.servers.map((s) => [s.name, s.healthy, s.error]), writesApplied: status?.nodes.map((n) => n.writesApplied) })}`),
    );
    assert.equal(run.stderr, '');
    assert.deepEqual(status.problems, []);
    assert.ok(!Number.isNaN(Date.parse(status.collectedAt)));

    const names = cluster.servers.map((s) => s.name).sort();
    assert.deepEqual(status.nats.servers.map((s) => s.name).sort(), names);
    assert.ok(names.includes(status.nats.metaLeader!), `meta leader ${status.nats.metaLeader}`);
    for (const s of status.nats.servers) {
      assert.equal(s.healthy, true, s.name);
      assert.equal(s.jetstream, true);
      assert.match(s.version!, /^2\./);
      assert.deepEqual(s.routes, names.filter((n) => n !== s.name), `routes of ${s.name} by server name`);
      assert.ok(cluster.servers.some((c) => c.monitorUrl === s.monitorUrl));
    }

    assert.deepEqual(status.nodes.map((n) => n.id), ['n1', 'n2', 'n3']);
    const events = status.events!;
    assert.equal(events.name, 'FORGE_EVENTS');
    assert.ok(events.messages >= 2 && events.firstSeq === 1 && events.lastSeq >= events.messages, JSON.stringify(events));
    assert.ok(events.bytes > 0);
    assert.equal(events.replicas, 3);
    assert.ok(names.includes(events.leader!));
    for (const [i, n] of status.nodes.entries()) {
      assert.equal(n.address, nodes[i]!.url);
      assert.deepEqual(n.roles, ['web', 'writer']);
      assert.ok(names.includes(n.natsServer!), `${n.id} is on a known server (${n.natsServer})`);
      assert.ok(n.uptimeMs > 0 && n.uptimeMs < 600_000);
      assert.equal(typeof n.sseStreams, 'number');
      assert.equal(typeof n.cacheHitRate, 'number');
      assert.equal(n.feedPosition, events.lastSeq, `${n.id} feed position`);
      assert.equal(n.feedLag, 0);
      assert.deepEqual(events.feeds.find((f) => f.node === n.id), { node: n.id, position: events.lastSeq, lag: 0 });
    }
    assert.equal(status.nodes.reduce((sum, n) => sum + (n.writesApplied ?? 0), 0) >= 1, true, 'the commit was applied somewhere');

    assert.deepEqual(status.partitions.map((p) => [p.partition, p.consumer]), [0, 1, 2, 3].map((p) => [p, `writes-p${p}`]));
    for (const p of status.partitions) {
      for (const field of ['pending', 'inFlight', 'redelivered'] as const) assert.equal(typeof p[field], 'number', `${p.consumer}.${field}`);
      assert.equal(p.pending + p.inFlight, 0, 'the commit was applied');
    }
    assert.equal(status.failedWrites, 0);

    // The operator sees every running task, the private migration included.
    const task = status.tasks.find((t) => t.id === bobTask);
    assert.ok(task, JSON.stringify(status.tasks));
    assert.deepEqual([task.kind, task.repo, task.user, task.node, task.state], ['migrate', `bob/${PRIVATE_REPO}`, 'bob', 'n2', 'running']);
    const cron = status.cron.find((c) => c.job === 'repo-stats')!;
    assert.equal(cron.lastRun?.outcome === 'succeeded' || cron.lastRun?.outcome === 'running', true, JSON.stringify(cron));
    assert.ok(['n1', 'n2', 'n3'].includes(cron.lastRun!.node));
  });

  it('prints the same for people: every node id, FORGE_EVENTS, the partitions (`forgebus status`, credentials from NATS_USER/NATS_PASSWORD)', async () => {
    const run = await cli(['status', '--nats', cluster.url, '--monitor', monitors], asOperator());
    assert.equal(run.code, 0, run.stderr);
    for (const text of ['n1', 'n2', 'n3', 'FORGE_EVENTS', 'forgebus-1', 'JetStream meta leader', 'Write partitions: 4', 'repo-stats', PRIVATE_REPO]) {
      assert.ok(run.stdout.includes(text), `"${text}" in:\n${run.stdout}`);
    }
    assert.ok(!run.stdout.includes(cluster.credentials!.operator.password), 'no password printed');
  });

  it('--watch redraws until stopped', async () => {
    const child = spawn(process.execPath, [CLI, '--watch', '0.5', '--nats', cluster.url, '--monitor', monitors], { cwd, env: { ...cleanEnv(), ...asOperator() }, stdio: ['ignore', 'pipe', 'pipe'] });
    running.add(child);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((r) => child.once('close', (code) => r(code)));
    try {
      await poll(async () => (stdout.match(/^forgebus status at /gm) ?? []).length >= 2, 30_000, `two frames (got:\n${stdout}\n${stderr})`);
    } finally {
      child.kill('SIGTERM');
    }
    assert.equal(await exited, 0, stderr);
    running.delete(child);
    assert.ok((stdout.match(/FORGE_EVENTS:/g) ?? []).length >= 2);
  });

  it('exits non-zero with a one-line reason: dead monitoring, unreachable NATS, refused credentials, a refused inbox', async () => {
    const deadPort = await freePort();
    const dead = `http://127.0.0.1:${deadPort}`;
    const oneLine = (run: CliRun) => {
      assert.equal(run.stderr.trimEnd().split('\n').length, 1, `one line: ${run.stderr}`);
      return run.stderr.trim();
    };

    const noMonitor = await cli(['--json', '--nats', cluster.url, '--monitor', dead], asOperator());
    assert.equal(noMonitor.code, 1);
    assert.equal(noMonitor.stdout, '');
    assert.match(oneLine(noMonitor), new RegExp(`^forgebus status: NATS monitoring did not answer at ${dead} \\(connection refused\\)$`));

    // One of several monitoring URLs dead: the status is shown, the dead one said, exit 2.
    const partial = await cli(['--json', '--nats', cluster.url, '--monitor', `${cluster.servers[0]!.monitorUrl},${dead}`], asOperator());
    assert.equal(partial.code, 2, partial.stderr);
    assert.match(oneLine(partial), new RegExp(`did not answer at ${dead}`));
    const shown = JSON.parse(partial.stdout) as ClusterStatus;
    assert.equal(shown.nodes.length, 3);
    assert.ok(shown.nats.servers.some((s) => s.monitorUrl === dead && s.healthy === false));

    const noNats = await cli(['--nats', `nats://127.0.0.1:${deadPort}`, '--monitor', monitors], asOperator());
    assert.equal(noNats.code, 1);
    assert.equal(noNats.stdout, '');
    assert.equal(oneLine(noNats), `forgebus status: cannot reach NATS at nats://127.0.0.1:${deadPort}: connection refused`);

    const refused = await cli(['--json', '--nats', cluster.url, '--monitor', monitors], { ...asOperator(), NATS_PASSWORD: 'not-the-password' });
    assert.equal(refused.code, 1);
    assert.equal(refused.stdout, '');
    const line = oneLine(refused);
    assert.match(line, /refused the credentials \(user "operator"\)/);
    assert.ok(!line.includes('not-the-password'));

    // The operator user without its inbox prefix: NATS refuses its replies; the fix is named.
    const { NATS_INBOX_PREFIX: _prefix, ...noPrefix } = asOperator();
    const inbox = await cli(['--json', '--nats', cluster.url, '--monitor', monitors], noPrefix);
    assert.equal(inbox.code, 1);
    assert.equal(inbox.stdout, '');
    assert.match(oneLine(inbox), /does not let this user subscribe to its reply inboxes \(_INBOX\.>\).*--inbox-prefix or NATS_INBOX_PREFIX/);

    const badFlag = await cli(['--monitor', 'ftp://x'], asOperator());
    assert.equal(badFlag.code, 1);
    assert.match(oneLine(badFlag), /--monitor must list http\(s\) URLs/);
  });

  it('GET /api/ops answers the same shape, with only the tasks the user may see, one snapshot a second', async () => {
    assert.equal((await apiClient(nodes[0]!.url)('GET', '/api/ops')).status, 401, 'signed-in users only');
    const alice = await opsOf('alice');
    assert.equal(alice.status, 200);
    const status = alice.body;
    assert.deepEqual(status.nodes.map((n) => n.id), ['n1', 'n2', 'n3']);
    assert.equal(status.nats.servers.length, 3);
    assert.ok(status.nats.metaLeader);
    assert.equal(status.events?.feeds.length, 3);
    assert.equal(status.partitions.length, 4);
    assert.deepEqual(status.problems, []);
    // bob's private repository is nowhere in alice's view; bob sees his task.
    assert.deepEqual(status.tasks, []);
    assert.ok(!JSON.stringify(status).includes(PRIVATE_REPO), 'no trace of the private repository');
    const bob = (await opsOf('bob')).body;
    assert.deepEqual(bob.tasks.map((t) => [t.id, t.repo]), [[bobTask, `bob/${PRIVATE_REPO}`]]);
    // The two answers came from one collection (cached for a second), filtered per user.
    assert.equal(bob.collectedAt, status.collectedAt);

    // Without NATS_MONITOR_URL, the node lists the server it is connected to.
    const n3 = (await opsOf('alice', 2)).body;
    assert.equal(n3.nats.servers.length, 1);
    const own = n3.nats.servers[0]!;
    assert.equal(own.monitorUrl, undefined);
    assert.equal(own.name, status.nodes.find((n) => n.id === 'n3')!.natsServer);
    assert.equal(n3.nodes.find((n) => n.id === 'n3')!.natsServer, own.name);
  });
});

describe('where forgebus status looks, and the snapshot cache of GET /api/ops', () => {
  it('flags, then NATS_URL / NATS_MONITOR_URL, then the cluster npm start runs from the data directory, then its defaults', () => {
    const dir = mkdtempSync(join(tmpdir(), 'forgebus-status-target-'));
    try {
      const none = { FORGE_DATA_DIR: join(dir, 'missing') };
      assert.deepEqual(resolveTarget({}, none), { nats: 'nats://127.0.0.1:4222', natsFrom: 'default', monitorUrls: ['http://127.0.0.1:8222'], monitorFrom: 'derived' });
      assert.deepEqual(resolveTarget({}, { ...none, NATS_URL: 'nats://a:4222,nats://b:4223' }).monitorUrls, ['http://a:8222', 'http://b:8223'], 'same hosts, port + 4000');
      assert.deepEqual(resolveTarget({}, { ...none, NATS_URL: 'nats://a:4222', NATS_MONITOR_URL: 'http://m:1/, http://n:2' }), {
        nats: 'nats://a:4222',
        natsFrom: 'env',
        monitorUrls: ['http://m:1', 'http://n:2'],
        monitorFrom: 'env',
      });
      assert.deepEqual(resolveTarget({ nats: 'nats://f:1', monitor: 'http://user:secret@g:2' }, { ...none, NATS_URL: 'nats://a:4222' }), {
        nats: 'nats://f:1',
        natsFrom: 'flag',
        monitorUrls: ['http://g:2'],
        monitorFrom: 'flag',
      });
      assert.throws(() => resolveTarget({ monitor: 'ftp://x' }, none), /--monitor must list http\(s\) URLs/);

      // What npm start --nats-cluster 3 leaves in its data directory: the lock and each server's configuration.
      const dataDir = join(dir, 'data');
      mkdirSync(join(dataDir, 'nats-cluster'), { recursive: true });
      mkdirSync(join(dataDir, 'nats'), { recursive: true });
      const config = (name: string, port: number, monitorPort: number) => renderServerConfig({ serverName: name, host: '127.0.0.1', port, monitorPort, storeDir: join(dataDir, name) });
      for (const i of [1, 2, 3]) writeFileSync(join(dataDir, 'nats-cluster', `forgebus-${i}.conf`), config(`forgebus-${i}`, 14220 + i, 18220 + i));
      writeFileSync(join(dataDir, 'nats', 'forgebus-local.conf'), config('forgebus-local', 4222, 8222)); // an earlier single-server run
      writeFileSync(join(dataDir, 'cluster.lock'), JSON.stringify({ pid: 1, startedAt: '', nodes: [], nats: 'nats://127.0.0.1:14221,nats://127.0.0.1:14222,nats://127.0.0.1:14223' }));
      assert.deepEqual(resolveTarget({}, { FORGE_DATA_DIR: dataDir }), {
        nats: 'nats://127.0.0.1:14221,nats://127.0.0.1:14222,nats://127.0.0.1:14223',
        natsFrom: 'npm start',
        monitorUrls: ['http://127.0.0.1:18221', 'http://127.0.0.1:18222', 'http://127.0.0.1:18223'],
        monitorFrom: 'npm start',
      });
      assert.equal(resolveTarget({ nats: 'nats://elsewhere:4222' }, { FORGE_DATA_DIR: dataDir }).monitorUrls[0], 'http://elsewhere:8222', 'another NATS: not npm start\'s monitoring');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('shares one read among concurrent callers, keeps it for its age, and keeps no failure', async () => {
    let now = 0;
    let reads = 0;
    let fail = false;
    const cache = new SnapshotCache(async () => {
      reads++;
      await new Promise((r) => setTimeout(r, 5));
      if (fail) throw new Error('no NATS');
      return reads;
    }, 1_000, () => now);
    assert.deepEqual(await Promise.all([cache.get(), cache.get(), cache.get()]), [1, 1, 1]);
    now = 999;
    assert.equal(await cache.get(), 1);
    now = 1_000;
    fail = true;
    await assert.rejects(cache.get(), /no NATS/);
    fail = false;
    assert.equal(await cache.get(), 3, 'read again after a failure');
    assert.equal(formatDuration(93_784_000), '1d2h');
    assert.equal(formatDuration(61_000), '1m1s');
  });
});
