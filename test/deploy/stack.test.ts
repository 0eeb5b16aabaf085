import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { OPERATOR_INBOX_PREFIX } from '../../src/ops/nats-config.js';
import { apiClient, startForgeNode, tokenFor, type TestForgeNode } from '../support/forge-node.js';
import { eventually } from '../support/nats.js';
import { RawSseStream, type RawFrame } from '../support/sse-client.js';
import { exampleEnv, loadCompose, mountedFile, natsServiceNames, nodeServiceNames, type ComposeService } from './deploy-files.js';
import {
  freePort,
  isAlive,
  localNatsConf,
  natsServerBinary,
  spawnServer,
  startNginx,
  startPrometheus,
  versionOf,
  waitReady,
  type LocalNginx,
  type LocalPrometheus,
  type NatsPorts,
  type Spawned,
} from './servers.js';

/**
 * The deployment of docker-compose.yml without Docker: its NATS, nginx and Prometheus files run
 * with this machine's nats-server, nginx and Prometheus (Debian's), and the forge nodes with the
 * environment compose gives them. Only addresses and ports change (compose's service names become
 * loopback ports; see servers.ts for each rewrite). The nodes use SQLite here instead of
 * compose's PostgreSQL (FORGE_DATABASE_URL is left out); everything else in their environment is
 * compose's, with the example env file's secrets.
 *
 * One stack for every check (three NATS servers, three nodes, nginx, Prometheus): starting it
 * costs more than all the checks together.
 */

const env = exampleEnv();
const { compose } = loadCompose(env);
const SECRET = env.FORGE_SECRET!;
let alice = '';

interface ArrivedFrame {
  frame: RawFrame;
  /** performance.now() and Date.now() at arrival. */
  at: number;
  wall: number;
}

/** An SSE stream through nginx whose frames carry their arrival time. */
async function openStream(url: string, headers: Record<string, string>) {
  const arrivals: ArrivedFrame[] = [];
  const stream = await RawSseStream.open(url, headers, {
    summarize: (frame) => {
      arrivals.push({ frame, at: performance.now(), wall: Date.now() });
      return frame;
    },
  });
  const events = () =>
    arrivals
      .filter((a) => a.frame.data !== undefined && a.frame.event !== 'position')
      .map((a) => ({ id: a.frame.id!, type: a.frame.event!, data: JSON.parse(a.frame.data!) as { occurredAt: string; payload: { title?: string; number?: number } }, at: a.at, wall: a.wall }));
  return { stream, arrivals, events };
}

const titlesOf = (events: { data: { payload: { title?: string } } }[]) => events.map((e) => e.data.payload.title);
const seqOf = (id: string) => Number(id.split('-')[0]);

describe('the deployment files run for real (deploy/: NATS, nginx, Prometheus; three forge nodes)', () => {
  let dir: string;
  const nats: { service: string; ports: NatsPorts; server: Spawned }[] = [];
  const nodes: TestForgeNode[] = [];
  let nginx: LocalNginx | undefined;
  let prometheus: LocalPrometheus | undefined;
  let lb: ReturnType<typeof apiClient>;
  /** node service name → its local address (127.0.0.1:port). */
  const nodeAddress: Record<string, string> = {};
  const natsUrlOf = (service: string) => `nats://127.0.0.1:${nats.find((n) => n.service === service)!.ports.client}`;
  let published = 0;

  before(async () => {
    alice = await tokenFor('alice', SECRET);
    dir = mkdtempSync(join(tmpdir(), 'forgebus-deploy-'));
    const natsBin = natsServerBinary();
    const version = versionOf(natsBin);

    // ---- three nats-servers from deploy/nats/nats-server.conf, with compose's command and environment
    const services = natsServiceNames(compose);
    const ports: Record<string, NatsPorts> = {};
    for (const s of services) ports[s] = { client: await freePort(), monitor: await freePort(), cluster: await freePort() };
    for (const service of services) {
      const svc = compose.services[service]!;
      const command = svc.command as string[];
      assert.equal(command[0], 'nats-server', `${service} runs nats-server`);
      const configTarget = command[command.indexOf('--config') + 1]!;
      assert.equal(mountedFile(svc, configTarget), 'deploy/nats/nats-server.conf');
      const confFile = join(dir, `${service}.conf`);
      writeFileSync(confFile, localNatsConf(ports[service]!, join(dir, `${service}-store`), version));
      // Compose's environment for the server; the route URLs point at the other servers' local ports.
      const serverEnv: Record<string, string> = { PATH: process.env.PATH ?? '' };
      for (const [key, value] of Object.entries(svc.environment ?? {})) {
        serverEnv[key] = value.replace(/@(nats-\d+):6222$/, (_m, host: string) => {
          assert.ok(ports[host], `${key} routes to ${host}, a nats service`);
          return `@127.0.0.1:${ports[host]!.cluster}`;
        });
      }
      const args = command.slice(1).map((a) => (a === configTarget ? confFile : a));
      nats.push({ service, ports: ports[service]!, server: spawnServer(service, natsBin, args, { env: serverEnv }) });
    }
    // Ready as compose's healthcheck sees it: /healthz answers 200 once JetStream has its meta leader.
    const healthUrl = (compose.services[services[0]!]!.healthcheck!.test as string[]).find((a) => a.startsWith('http://'))!;
    for (const n of nats) {
      const url = healthUrl.replace(/^http:\/\/127\.0\.0\.1:8222\//, `http://127.0.0.1:${n.ports.monitor}/`);
      assert.notEqual(url, healthUrl, 'the healthcheck asks the monitoring port 8222');
      await waitReady(n.server, async () => (await fetch(url)).status === 200, 30_000, `${n.service} ${url} to answer 200`);
    }

    // ---- three forge nodes with compose's environment (node-1 first, as compose starts them)
    const dataDir = join(dir, 'forge-data');
    mkdirSync(dataDir);
    const nodeEnv = (svc: ComposeService): Record<string, string> => {
      const e = { ...svc.environment! };
      e.NATS_URL = e.NATS_URL!.replace(/nats:\/\/(nats-\d+):4222/g, (_m, host: string) => natsUrlOf(host));
      e.NATS_MONITOR_URL = e.NATS_MONITOR_URL!.replace(/http:\/\/(nats-\d+):8222/g, (_m, host: string) => `http://127.0.0.1:${ports[host]!.monitor}`);
      assert.ok(!/nats-\d/.test(e.NATS_URL + e.NATS_MONITOR_URL), 'every NATS address was a nats service');
      delete e.FORGE_DATABASE_URL; // PostgreSQL is compose's; these nodes share SQLite in the data dir
      return { ...e, HOST: '127.0.0.1', PORT: '0', FORGE_DATA_DIR: dataDir };
    };
    const start = (service: string) => {
      const e = nodeEnv(compose.services[service]!);
      return startForgeNode({ id: e.NODE_ID!, natsUrl: e.NATS_URL!, dataDir, secret: SECRET, env: e });
    };
    const [first, ...rest] = nodeServiceNames(compose);
    nodes.push(await start(first!));
    const others = await Promise.allSettled(rest.map(start));
    for (const o of others) if (o.status === 'fulfilled') nodes.push(o.value); // stopped in after() even if another failed
    const failed = others.find((o) => o.status === 'rejected');
    if (failed) throw (failed as PromiseRejectedResult).reason;
    nodeServiceNames(compose).forEach((service, i) => (nodeAddress[service] = new URL(nodes[i]!.url).host));

    // ---- nginx in front of them
    nginx = await startNginx(join(dir, 'nginx'), nodeAddress);
    lb = apiClient(nginx.url, alice);
    const repo = await lb('POST', '/api/repos', { name: 'web' });
    assert.equal(repo.status, 201, JSON.stringify(repo.body));
    published++;
  });

  after(async () => {
    const pids = [...nats.map((n) => n.server.pid), ...nodes.map((n) => n.child.pid!), ...(nginx ? [nginx.server.pid, ...nginx.workers] : []), ...(prometheus ? [prometheus.server.pid] : [])];
    await prometheus?.stop();
    await nginx?.stop();
    await Promise.all(nodes.map((n) => n.stop()));
    await Promise.all(nats.map((n) => n.server.stop()));
    if (dir) rmSync(dir, { recursive: true, force: true });
    await eventually(() => pids.every((p) => !isAlive(p)), 10_000, 'every process of the stack to exit');
  });

  it('the three nats-servers of deploy/nats form one JetStream cluster; the nodes are its forge-node user, strangers are refused', async () => {
    const seen: { name?: string; authorized_user?: string }[] = [];
    for (const n of nats) {
      const mon = `http://127.0.0.1:${n.ports.monitor}`;
      const varz = (await (await fetch(`${mon}/varz`)).json()) as { server_name: string };
      assert.equal(varz.server_name, n.service, 'compose names the server (--name)');
      const routez = (await (await fetch(`${mon}/routez`)).json()) as { num_routes: number };
      assert.equal(routez.num_routes, 2, `${n.service} routes to the two others (and skips itself)`);
      const jsz = (await (await fetch(`${mon}/jsz`)).json()) as { meta_cluster?: { cluster_size: number; leader?: string } };
      assert.equal(jsz.meta_cluster?.cluster_size, 3);
      assert.ok(jsz.meta_cluster?.leader);
      const connz = (await (await fetch(`${mon}/connz?auth=true`)).json()) as { connections: { name?: string; authorized_user?: string }[] };
      seen.push(...connz.connections);
    }
    assert.deepEqual(seen.filter((c) => c.name?.startsWith('forge-node:')).map((c) => c.name).sort(), ['forge-node:node-1', 'forge-node:node-2', 'forge-node:node-3']);
    assert.ok(seen.every((c) => c.authorized_user === 'forge-node'), JSON.stringify(seen));

    const servers = nats.map((n) => natsUrlOf(n.service));
    const refused = /Authorization Violation|authorization/i;
    await assert.rejects(connect({ servers, waitOnFirstConnect: false, maxReconnectAttempts: 0 }), refused, 'no credentials');
    await assert.rejects(connect({ servers, waitOnFirstConnect: false, maxReconnectAttempts: 0, user: 'forge-node', pass: `${env.NATS_FORGE_PASSWORD}x` }), refused, 'a wrong password');
    const operator = await connect({ servers, user: 'operator', pass: env.NATS_OPERATOR_PASSWORD, inboxPrefix: OPERATOR_INBOX_PREFIX });
    try {
      const names: string[] = [];
      for await (const name of (await jetstreamManager(operator)).streams.names()) names.push(name);
      assert.ok(names.includes('FORGE_EVENTS'), `the read-only operator lists the streams: ${names.join(', ')}`);
    } finally {
      await operator.close();
    }
  });

  it('nginx spreads requests over the three nodes, answers its own health check and keeps /metrics inside', async () => {
    const served: string[] = [];
    for (let i = 0; i < 9; i++) {
      const res = await lb('GET', '/api/bus/stats');
      assert.equal(res.status, 200);
      served.push(res.body.nodeId as string);
    }
    assert.deepEqual([...new Set(served)].sort(), ['node-1', 'node-2', 'node-3'], `nodes that answered: ${served.join(' ')}`);
    const health = await fetch(`${nginx!.url}/nginx-health`);
    assert.equal(health.status, 200);
    assert.equal(await health.text(), 'ok\n');
    assert.equal((await fetch(`${nginx!.url}/metrics`)).status, 403);
    assert.equal((await fetch(`${nginx!.url}/health`)).status, 200);
  });

  let lastSeen = '';

  it('an event stream through nginx receives each event within 1 s of its publish', async (t) => {
    const { stream, arrivals, events } = await openStream(`${nginx!.url}/api/events?repos=alice/web`, { authorization: `Bearer ${alice}` });
    try {
      assert.equal(stream.status, 200, stream.body);
      assert.match(stream.headers.get('content-type') ?? '', /^text\/event-stream/);
      await eventually(() => arrivals.some((a) => a.frame.event === 'position'), 10_000, 'the stream to open (its position event)');
      const latencies: number[] = [];
      const sinceOccurred: number[] = [];
      for (let k = 1; k <= 5; k++) {
        const title = `latency-${k}`;
        const sent = performance.now();
        const res = await lb('POST', '/api/repos/alice/web/issues', { title });
        assert.equal(res.status, 201, JSON.stringify(res.body));
        published++;
        const event = await eventually(() => events().find((e) => e.data.payload.title === title), 5_000, `${title} on the stream`);
        latencies.push(event.at - sent);
        // occurredAt: set by the node that took the request, before its commit and publish (same clock).
        sinceOccurred.push(event.wall - Date.parse(event.data.occurredAt));
      }
      t.diagnostic(`SSE through nginx, request sent → event received (ms): ${latencies.map((l) => l.toFixed(1)).join(', ')}`);
      t.diagnostic(`SSE through nginx, event occurredAt → received (ms): ${sinceOccurred.join(', ')}`);
      for (const l of latencies) assert.ok(l < 1_000, `an event took ${l.toFixed(0)} ms through nginx: ${latencies.join(', ')}`);
      assert.deepEqual(titlesOf(events()), ['latency-1', 'latency-2', 'latency-3', 'latency-4', 'latency-5']);
      lastSeen = events().at(-1)!.id;
    } finally {
      stream.close();
    }
  });

  it('a stream resumed through nginx with Last-Event-ID gets exactly the events it missed, on whichever node', async () => {
    assert.ok(lastSeen, 'the previous test saw events');
    // A live observer: once it has them, the missed events are in FORGE_EVENTS (not in an outbox).
    const observer = await openStream(`${nginx!.url}/api/events?repos=alice/web`, { authorization: `Bearer ${alice}` });
    const missed = ['missed-1', 'missed-2', 'missed-3', 'missed-4', 'missed-5'];
    try {
      await eventually(() => observer.arrivals.some((a) => a.frame.event === 'position'), 10_000, 'the observer to open');
      for (const title of missed) {
        assert.equal((await lb('POST', '/api/repos/alice/web/issues', { title })).status, 201);
        published++;
      }
      await eventually(() => observer.events().length === missed.length, 10_000, 'the observer to see the missed events');
    } finally {
      observer.stream.close();
    }
    const expected = observer.events().map((e) => ({ id: e.id, title: e.data.payload.title }));
    // Stream order, not request order: each node relays its own outbox, so requests answered by
    // different nodes can land in FORGE_EVENTS in another order. The stream's order is the truth.
    assert.deepEqual(expected.map((e) => e.title).sort(), missed);
    // No stream open anywhere: least_conn then gives each of the three resumes to another node.
    const streamsOpen = async () => {
      let total = 0;
      for (const n of nodes) total += Number(/^forgebus_sse_streams\{[^}]*\} (\d+)/m.exec(await (await fetch(`${n.url}/metrics`)).text())?.[1] ?? 0);
      return total;
    };
    await eventually(async () => (await streamsOpen()) === 0, 10_000, 'the closed streams to end on the nodes');
    const logBefore = nginx!.accessLog().length;

    // Three resumes at once, the browser way (the header) and the EventSource-without-headers way
    // (?access_token=, ?lastEventId=); the log must not show the token.
    const resumes = [
      await openStream(`${nginx!.url}/api/events?repos=alice/web`, { authorization: `Bearer ${alice}`, 'last-event-id': lastSeen }),
      await openStream(`${nginx!.url}/api/events?repos=alice/web`, { authorization: `Bearer ${alice}`, 'last-event-id': lastSeen }),
      await openStream(`${nginx!.url}/api/events?repos=alice/web&lastEventId=${lastSeen}&access_token=${alice}`, {}),
    ];
    try {
      for (const r of resumes) assert.equal(r.stream.status, 200, r.stream.body);
      for (const r of resumes) await eventually(() => r.events().length >= missed.length, 10_000, 'the missed events to be replayed');
      assert.equal((await lb('POST', '/api/repos/alice/web/issues', { title: 'after-resume' })).status, 201);
      published++;
      for (const r of resumes) await eventually(() => r.events().length >= missed.length + 1, 10_000, 'the live event after the replay');
      await new Promise((r) => setTimeout(r, 300)); // anything extra (a duplicate) would arrive now
      for (const r of resumes) {
        const got = r.events().map((e) => ({ id: e.id, title: e.data.payload.title }));
        assert.deepEqual(got.slice(0, missed.length), expected, 'exactly the missed events, in order, with the ids the live observer saw');
        assert.equal(got.length, missed.length + 1, `then only the live one: ${JSON.stringify(got)}`);
        assert.equal(got.at(-1)!.title, 'after-resume');
        assert.ok(got.every((e, i) => seqOf(e.id) > seqOf(i === 0 ? lastSeen : got[i - 1]!.id)), `ids increase: ${got.map((e) => e.id).join(' ')}`);
      }
    } finally {
      for (const r of resumes) r.stream.close();
    }
    // nginx logs a stream when it ends: the three resumes went to three different nodes.
    const lines = await eventually(() => {
      const l = nginx!.accessLog().slice(logBefore).filter((x) => x.includes('"GET /api/events HTTP/1.1" 200'));
      return l.length >= 3 ? l : undefined;
    }, 10_000, 'nginx to log the three resumed streams');
    const upstreams = lines.map((l) => / upstream=(\S+)/.exec(l)![1]!);
    assert.deepEqual([...new Set(upstreams)].sort(), Object.values(nodeAddress).sort(), `resumes served by ${upstreams.join(', ')}`);
    assert.ok(!nginx!.accessLog().some((l) => l.includes(alice) || l.includes('access_token')), 'no token in the access log');
  });

  it('git pushes a chunked request body through nginx, and clones back through it', async () => {
    const work = join(dir, 'git-work');
    mkdirSync(work);
    const gitEnv = { ...process.env, HOME: work, GIT_CONFIG_NOSYSTEM: '1', GIT_TERMINAL_PROMPT: '0', GIT_TRACE_CURL: '1', GIT_TRACE_CURL_NO_DATA: '1' };
    const git = (args: string[], cwd = work) => spawnSync('git', ['-c', 'user.name=Alice', '-c', 'user.email=alice@example.invalid', ...args], { cwd, env: gitEnv, encoding: 'utf8' });
    const remote = `http://alice:${alice}@${new URL(nginx!.url).host}/alice/web.git`;
    const repoDir = join(work, 'repo');
    assert.equal(git(['init', '-q', '-b', 'main', repoDir]).status, 0);
    // Incompressible and larger than git's smallest post buffer (64 KiB): the push body is chunked.
    writeFileSync(join(repoDir, 'blob.bin'), randomBytes(256 * 1024));
    assert.equal(git(['add', '.'], repoDir).status, 0);
    assert.equal(git(['commit', '-q', '-m', 'through nginx'], repoDir).status, 0);
    const head = execFileSync('git', ['rev-parse', 'HEAD'], { cwd: repoDir, encoding: 'utf8' }).trim();
    const push = git(['-c', 'http.postBuffer=65536', 'push', remote, 'main'], repoDir);
    assert.equal(push.status, 0, push.stderr.split('\n').filter((l) => !l.includes('Authorization')).slice(-20).join('\n'));
    assert.match(push.stderr, /Transfer-Encoding: chunked/i, 'the push went out chunked');
    published++;
    const clone = git(['clone', '-q', remote, join(work, 'clone')]);
    assert.equal(clone.status, 0, clone.stderr.slice(-2000));
    assert.equal(execFileSync('git', ['rev-parse', 'HEAD'], { cwd: join(work, 'clone'), encoding: 'utf8' }).trim(), head);
  });

  it('Prometheus with deploy/prometheus/prometheus.yml scrapes every node (up == 1) and their forgebus counters', async () => {
    prometheus = await startPrometheus(join(dir, 'prometheus'), compose.services.prometheus!.command as string[], nodeAddress);
    const up = await eventually(
      async () => {
        const r = await prometheus!.query('up');
        return r.length === 3 && r.every((s) => s.value[1] === '1') ? r : undefined;
      },
      30_000,
      'up == 1 for the three nodes',
    );
    assert.deepEqual(up.map((s) => s.metric.instance).sort(), Object.values(nodeAddress).sort());
    assert.deepEqual([...new Set(up.map((s) => s.metric.job))], ['forgebus-nodes']);
    // Every node's feed consumed every event; the events were published by whichever node took the request.
    const consumed = await eventually(
      async () => {
        const r = await prometheus!.query('sum by (node) (forgebus_events_consumed_total)');
        return r.length === 3 && r.every((s) => Number(s.value[1]) >= published) ? r : undefined;
      },
      30_000,
      `forgebus_events_consumed_total >= ${published} on every node`,
    );
    assert.deepEqual(consumed.map((s) => s.metric.node).sort(), ['node-1', 'node-2', 'node-3']);
    const total = await prometheus.query('sum(forgebus_events_published_total)');
    assert.ok(Number(total[0]?.value[1]) >= published, `forgebus_events_published_total: ${JSON.stringify(total)}, published ${published}`);
  });
});
