import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { AckPolicy, jetstream, jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { connect, errors, type NatsConnection, type Status } from '@nats-io/transport-node';
import { ForgeBus, type BusLogger, type DeliveredEvent, type RepoRef } from '../../src/bus/index.js';
import { CronScheduler, Locks, Membership, NodeControl, TaskRegistry } from '../../src/cluster/index.js';
import { freePort } from '../../src/ops/local-nats.js';
import { OPERATOR_INBOX_PREFIX, renderServerConfig, type LocalNatsCredentials } from '../../src/ops/nats-config.js';
import { startNatsServer, type RunningNatsServer } from '../../src/ops/nats-server.js';
import { RepoWriteQueue } from '../../src/repo-writes/index.js';
import { parseLastEventId, SseHub, type SseAccessPolicy } from '../../src/sse/index.js';
import { eventually } from '../support/nats.js';
import { startTestNatsCluster, type TestNatsCluster } from '../support/nats-cluster.js';

/**
 * The users of the generated nats-server configuration (src/ops/nats-config.ts), on real
 * servers: nobody gets in without credentials; the forge-node user runs all of forgebus without
 * a single permission violation; the operator reads but cannot change anything; and the
 * forge-node user cannot touch a stream that is not forgebus's.
 */

/** What the server logs when it refuses a publish or a subscription (nats-server 2.9: "Publish Violation - User …"). */
const VIOLATION = /Permissions Violation|Publish Violation|Subscription Violation/;
const REPO: RepoRef = { owner: 'alice', name: 'web' };

/** A logger that keeps every line: forgebus reports refused operations through it. */
function recordingLogger(lines: string[], who: string): BusLogger {
  const keep = (level: string) => (message: string) => void lines.push(`${who} ${level}: ${message}`);
  return { log: keep('log'), warn: keep('warn'), error: keep('error') };
}

/** Whether `err` (or a cause of it) is the server refusing a publish or subscription. */
function permissionDenied(err: unknown, subject?: string): boolean {
  for (let e = err as (Error & { cause?: unknown }) | undefined, depth = 0; e && depth < 5; e = e.cause as typeof e, depth++) {
    if (e instanceof errors.PermissionViolationError) return subject === undefined || e.subject === subject;
    if (subject === undefined && /Permissions Violation/i.test(String(e.message))) return true;
  }
  return false;
}

async function assertDenied(what: string, op: () => Promise<unknown>, subject?: string): Promise<void> {
  await assert.rejects(op, (err: unknown) => {
    assert.ok(permissionDenied(err, subject), `${what}: expected a permission violation${subject ? ` for ${subject}` : ''}, got ${String(err)}`);
    return true;
  }, `${what} must be refused`);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('security: the users of the generated nats-server configuration', () => {
  let cluster: TestNatsCluster;
  const serverLog: string[] = [];
  /** Client-side: status errors and log lines of every forge-node connection. */
  const clientErrors: string[] = [];
  const clientLog: string[] = [];
  const violations = (user?: string) => serverLog.filter((l) => VIOLATION.test(l) && (user === undefined || l.includes(`"${user}"`)));
  const forgeDenials = () => [...clientErrors, ...clientLog.filter((l) => /permission|violation|authoriz/i.test(l))];

  interface Node {
    bus: ForgeBus;
    queue: RepoWriteQueue;
    membership: Membership;
    control: NodeControl;
    locks: Locks;
    cron: CronScheduler;
    tasks: TaskRegistry;
  }
  const nodes: Node[] = [];
  let hub: SseHub | undefined;
  let http: Server | undefined;
  const received: DeliveredEvent[] = [];
  const applied: string[] = [];
  const cronTicks: string[] = [];

  const onStatus = (who: string) => (status: Status) => {
    if (status.type === 'error') clientErrors.push(`${who}: ${String((status as { error?: unknown }).error)}`);
  };

  /** Closers of everything started so far, run in reverse by after() (also after a failed start). */
  const closers: (() => Promise<unknown> | unknown)[] = [];

  async function startNode(nodeId: string, workers: boolean): Promise<Node> {
    const logger = recordingLogger(clientLog, nodeId);
    const bus = await ForgeBus.connect({ nodeId, connection: { servers: cluster.url, ...cluster.forgeAuth, onStatus: onStatus(nodeId) }, logger });
    closers.push(() => bus.close());
    const queue = new RepoWriteQueue(bus, { partitions: 2, logger });
    closers.push(() => queue.stop());
    queue.handle('append', (ctx) => {
      applied.push(`${ctx.repo.owner}/${ctx.repo.name}:${(ctx.args as { line: string }).line}`);
      return { appliedBy: nodeId, seq: ctx.seq };
    });
    await queue.init();
    if (workers) await queue.startWorkers();
    const membership = new Membership(bus, { ttlMs: 3_000, logger });
    closers.push(() => membership.stop());
    await membership.start();
    const control = new NodeControl(bus, membership, { logger });
    const tasks = new TaskRegistry(bus, membership, control, { logger });
    closers.push(() => control.stop(), () => tasks.close());
    await tasks.open();
    control.start();
    const locks = new Locks(bus, { logger });
    const cron = new CronScheduler(bus, locks, { logger });
    closers.push(() => cron.stop());
    cron.schedule('security-tick', '* * * * * *', ({ tick }) => void cronTicks.push(`${nodeId}@${tick.toISOString()}`));
    await cron.start();
    const node = { bus, queue, membership, control, locks, cron, tasks };
    nodes.push(node);
    return node;
  }

  before(async () => {
    cluster = await startTestNatsCluster({ servers: 3, auth: true, onLog: (server, line) => serverLog.push(`${server} ${line}`) });
  });

  after(async () => {
    await hub?.close();
    await new Promise<void>((r) => (http ? http.close(() => r()) : r()));
    for (const close of closers.splice(0).reverse()) await Promise.resolve().then(close).catch(() => undefined);
    await cluster?.dispose();
  });

  it('refuses a connection without credentials or with a wrong password', async () => {
    assert.ok(cluster.credentials, 'the cluster was started with users');
    const servers = cluster.servers.map((s) => s.url);
    const refused = (err: unknown) => {
      assert.ok(err instanceof errors.AuthorizationError, `expected an AuthorizationError, got ${String(err)}`);
      assert.match((err as Error).message, /Authorization Violation/i);
      return true;
    };
    await assert.rejects(connect({ servers, waitOnFirstConnect: false, maxReconnectAttempts: 0 }), refused, 'no credentials');
    await assert.rejects(
      connect({ servers, waitOnFirstConnect: false, maxReconnectAttempts: 0, user: cluster.credentials.forge.user, pass: `${cluster.credentials.forge.password}x` }),
      refused,
      'wrong password',
    );
    await assert.rejects(
      connect({ servers, waitOnFirstConnect: false, maxReconnectAttempts: 0, user: cluster.credentials.operator.user, pass: cluster.credentials.forge.password }),
      refused,
      "the operator with the forge-node user's password",
    );
    // And through forgebus itself: ForgeBus.connect fails instead of retrying for ever.
    await assert.rejects(
      ForgeBus.connect({ nodeId: 'intruder', connection: { servers: cluster.url, user: 'forge-node', pass: 'guess', waitOnFirstConnect: false }, logger: recordingLogger([], 'intruder') }),
      refused,
      'ForgeBus.connect with a wrong password',
    );
  });

  it('the forge-node user runs the whole forgebus stack without a single permission violation', async () => {
    // Settings agreement, stream and bucket provisioning happen at connect and init.
    const a = await startNode('sec-1', true);
    const b = await startNode('sec-2', false);

    // Events: published by one bus, received by the feed of the other (and of its own).
    b.bus.on('issue.*', (event) => void received.push(event));
    await a.bus.start();
    await b.bus.start();
    const published: number[] = [];
    for (let n = 1; n <= 3; n++) published.push((await a.bus.publish({ type: 'issue.created', repo: REPO, payload: { number: n, title: `#${n}` } })).seq);
    await eventually(() => received.length >= 3, 10_000, 'the three events on the feed of sec-2');
    assert.deepEqual(received.map((e) => e.seq), published);
    assert.deepEqual(received.map((e) => e.envelope.origin), ['sec-1', 'sec-1', 'sec-1']);

    // A repository write submitted on sec-2 (no workers) and applied by sec-1's worker.
    const outcome = await b.queue.submit<{ appliedBy: string }>(REPO, 'append', { line: 'hello' }, { timeoutMs: 15_000 });
    assert.equal(outcome.appliedBy, 'sec-1');
    assert.deepEqual(applied, ['alice/web:hello']);
    assert.deepEqual(await b.queue.queued(), { 0: 0, 1: 0 });
    assert.deepEqual(await b.queue.listFailures(), []);

    // Membership and node control, both directions and scattered.
    await eventually(() => a.membership.isMember('sec-2') && b.membership.isMember('sec-1'), 10_000, 'each node sees the other');
    assert.equal((await a.control.request<{ nodeId: string }>('sec-2', 'ping')).nodeId, 'sec-2');
    const status = await b.control.request<{ nodeId: string; verbs: string[] }>('sec-1', 'status');
    assert.equal(status.nodeId, 'sec-1');
    assert.ok(status.verbs.includes('tasks.cancel'));
    const scatter = await a.control.scatter<{ nodeId: string }>('ping');
    assert.deepEqual(scatter.replies.map((r) => r.nodeId), ['sec-1', 'sec-2']);
    assert.deepEqual(scatter.missing, []);

    // A lock, with its lease renewed while held.
    const token = await a.locks.withLock('security.lock', async (grant) => {
      await sleep(800);
      assert.equal(grant.signal.aborted, false, 'the lease was renewed');
      return grant.token;
    }, { ttlMs: 1_000 });
    assert.ok(token > 0);

    // Tasks: one runs to the end; one runs on sec-1 and is cancelled from sec-2.
    // (Its progress write lands before its end: on nats-server 2.9.x, two compare-and-swaps of one
    // key in flight at once on a replicated bucket can both succeed, nats-server#4320.)
    const quick = await a.tasks.start('quick', { user: 'alice', run: async (ctx) => (ctx.progress(50), await sleep(300)) });
    assert.equal((await a.tasks.settled(quick.id))!.state, 'succeeded');
    const long = await a.tasks.start('long', { user: 'alice', run: (ctx) => new Promise((resolve) => ctx.signal.addEventListener('abort', resolve)) });
    assert.equal((await b.tasks.cancel(long.id)).state, 'cancelled');
    // Read on the other node: a replica may lag its leader for a moment (KV direct gets).
    let states: string[] = [];
    await eventually(async () => {
      states = (await b.tasks.list()).map((t) => `${t.kind}:${t.state}`).sort();
      return states.join() === 'long:cancelled,quick:succeeded';
    }, 5_000, 'both tasks recorded finished, as seen from sec-2').catch(() => assert.fail(`tasks seen from sec-2: ${states.join(', ')}`));

    // Cron: a tick claimed, run (under its overlap lock) and recorded; the record read back.
    await eventually(() => cronTicks.length >= 1, 5_000, 'a cron tick');
    const runs = await eventually(async () => {
      const recorded = [...(await a.cron.runs('security-tick')), ...(await b.cron.runs('security-tick'))];
      return recorded.filter((r) => r.outcome === 'succeeded').length;
    }, 5_000, 'a recorded cron run');
    assert.ok(runs >= 1);

    // SSE: a client resuming from a Last-Event-ID replays from the stream (an ephemeral consumer).
    const policy: SseAccessPolicy = {
      canRead: async () => true,
      defaultRepos: async () => [REPO],
      accessChange: () => undefined,
    };
    hub = new SseHub(b.bus, policy, { logger: recordingLogger(clientLog, 'sse') });
    hub.start();
    const h = hub;
    http = createServer((req, res) => {
      h.open(res, { user: 'alice', repos: [REPO], defaultRepos: false, lastEventId: parseLastEventId(req.headers['last-event-id'] as string | undefined) });
    });
    await new Promise<void>((r) => http!.listen(0, '127.0.0.1', () => r()));
    const { port } = http.address() as { port: number };
    await eventually(() => b.bus.feed.stats.lastSeq >= published[2]!, 5_000, 'the hub at the last event');
    const abort = new AbortController();
    const response = await fetch(`http://127.0.0.1:${port}/events`, { headers: { 'Last-Event-ID': String(published[0]! - 1) }, signal: abort.signal });
    assert.equal(response.status, 200);
    const ids: number[] = [];
    const reader = response.body!.getReader();
    const giveUp = setTimeout(() => abort.abort(), 10_000); // a replay that never comes ends the read
    let text = '';
    try {
      while (ids.length < 3) {
        const { value, done } = await reader.read();
        if (done) break;
        text += Buffer.from(value).toString('utf8');
        let end: number;
        while ((end = text.indexOf('\n\n')) >= 0) {
          const frame = text.slice(0, end);
          text = text.slice(end + 2);
          const id = /^id: (\d+)$/m.exec(frame);
          if (id && /^event: issue\.created$/m.test(frame)) ids.push(Number(id[1]));
        }
      }
    } catch (err) {
      if (!abort.signal.aborted) throw err;
    } finally {
      clearTimeout(giveUp);
      abort.abort();
      await reader.cancel().catch(() => undefined);
    }
    assert.deepEqual(ids, published, 'the replayed events, in order');
    assert.ok(hub.stats.replays >= 1 && hub.stats.replayedEvents >= 3, `a replay ran (${JSON.stringify(hub.stats)})`);
    assert.equal(hub.stats.replayFailures, 0);

    // Give timers (membership refreshes, lock renewals, cron ticks, stream watches) a few rounds.
    await sleep(1_500);
    assert.deepEqual(violations(), [], 'no permission violation in any server log');
    assert.deepEqual(forgeDenials(), [], 'no permission error seen by any forge-node connection');
  });

  it('the operator reads monitoring, streams, buckets and node status, and changes nothing', async () => {
    assert.equal(nodes.length, 2, 'the forge nodes of the previous test run');
    const [a, b] = nodes as [Node, Node];
    const { operator } = cluster.credentials!;

    // Monitoring: plain HTTP, no credentials.
    const monitor = cluster.servers[0]!.monitorUrl!;
    const varz = (await (await fetch(`${monitor}/varz`)).json()) as { server_name: string; jetstream?: unknown };
    assert.equal(varz.server_name, cluster.servers[0]!.name);
    const jsz = (await (await fetch(`${monitor}/jsz?streams=true`)).json()) as { account_details?: { stream_detail?: { name: string }[] }[] };
    const monitored = (jsz.account_details ?? []).flatMap((d) => d.stream_detail ?? []).map((s) => s.name);
    assert.ok(monitored.includes('FORGE_EVENTS'), `FORGE_EVENTS in /jsz (${monitored.join(', ')})`);

    const nc = await connect({ servers: cluster.servers.map((s) => s.url), user: operator.user, pass: operator.password, name: 'operator', inboxPrefix: OPERATOR_INBOX_PREFIX });
    try {
      const jsm = await jetstreamManager(nc);
      const events = await jsm.streams.info('FORGE_EVENTS');
      const lastSeq = events.state.last_seq;
      assert.ok(lastSeq >= 3);
      const names: string[] = [];
      for await (const name of jsm.streams.names()) names.push(name);
      for (const s of ['FORGE_EVENTS', 'FORGE_REPO_WRITES', 'KV_FORGE_NODES', 'KV_FORGE_SETTINGS']) assert.ok(names.includes(s), `${s} listed`);

      const members = await new Kvm(nc).open('FORGE_NODES');
      const keys: string[] = [];
      for await (const k of await members.keys()) keys.push(k);
      // A member's refresh landing while keys() runs lists that key twice (nats.js does not dedupe).
      assert.deepEqual([...new Set(keys)].sort(), ['sec-1', 'sec-2']);
      assert.equal((await members.get('sec-1'))!.json<{ id: string }>().id, 'sec-1');

      const pong = await nc.request('forge.nodes.ctl.ping', JSON.stringify({}), { timeout: 2_000 });
      assert.equal(pong.json<{ ok: boolean }>().ok, true);
      const direct = await nc.request('forge.node.sec-2.ctl.status', JSON.stringify({}), { timeout: 2_000 });
      assert.equal(direct.json<{ nodeId: string }>().nodeId, 'sec-2');
      assert.deepEqual(violations('operator'), [], 'reading is no violation');

      // It cannot publish an event: a forged issue.deleted gets no ack and reaches no feed.
      const forged = a.bus.events.createWithSubject({ type: 'issue.deleted', repo: REPO, payload: { number: 1 } });
      assert.equal(forged.subject, 'forge.repo.alice.web.issue.deleted');
      const feedBefore = b.bus.feed.stats.received;
      await assertDenied('an event published by the operator', () => jetstream(nc).publish(forged.subject, JSON.stringify(forged.envelope), { msgID: forged.envelope.id, timeout: 2_000 }), forged.subject);
      nc.publish(forged.subject, JSON.stringify(forged.envelope)); // core NATS: refused the same way
      await sleep(500);
      assert.equal(b.bus.feed.stats.received, feedBefore, 'the feed of sec-2 received nothing');
      assert.equal(received.filter((e) => e.envelope.type === 'issue.deleted').length, 0);
      assert.equal((await jsm.streams.info('FORGE_EVENTS')).state.last_seq, lastSeq, 'FORGE_EVENTS unchanged');
      await eventually(() => violations('operator').some((l) => l.includes(forged.subject)), 5_000, 'the violation in the server log');

      // Nor submit a repository write, change a bucket, read events, or delete a stream.
      await assertDenied('a write submitted by the operator', () => jetstream(nc).publish('forge.write.0.alice.web', '{}', { timeout: 2_000 }), 'forge.write.0.alice.web');
      await assertDenied('a put into FORGE_NODES', () => members.put('sec-1', '{"id":"evil"}'), '$KV.FORGE_NODES.sec-1');
      await assertDenied('a put into FORGE_SETTINGS', async () => (await new Kvm(nc).open('FORGE_SETTINGS')).put('replicas', '1'), '$KV.FORGE_SETTINGS.replicas');
      await assertDenied('a consumer on FORGE_EVENTS', () => jsm.consumers.add('FORGE_EVENTS', { ack_policy: AckPolicy.None }), '$JS.API.CONSUMER.CREATE.FORGE_EVENTS');
      await assertDenied('a durable consumer on FORGE_EVENTS', () => jsm.consumers.add('FORGE_EVENTS', { durable_name: 'peek', ack_policy: AckPolicy.None }));
      await assertDenied('an ordered consumer reading FORGE_EVENTS', async () => (await jetstream(nc).consumers.get('FORGE_EVENTS')).next({ expires: 1_000 }));
      await assertDenied('a message of FORGE_EVENTS', () => jsm.streams.getMessage('FORGE_EVENTS', { seq: 1 }), '$JS.API.STREAM.MSG.GET.FORGE_EVENTS');
      await assertDenied('deleting FORGE_EVENTS', () => jsm.streams.delete('FORGE_EVENTS'), '$JS.API.STREAM.DELETE.FORGE_EVENTS');
      await assertDenied('purging FORGE_REPO_WRITES', () => jsm.streams.purge('FORGE_REPO_WRITES'), '$JS.API.STREAM.PURGE.FORGE_REPO_WRITES');

      // Nor read the replies forge nodes receive: its inboxes are its own (OPERATOR_INBOX_PREFIX).
      const snoop = nc.subscribe('_INBOX.>');
      const ended = await Promise.race([snoop.closed, sleep(5_000).then(() => 'still open' as const)]);
      assert.ok(ended instanceof Error && /permission/i.test(ended.message), `a subscription to the forge nodes' inboxes is refused (got ${String(ended)})`);

      // Everything is still there, unchanged.
      assert.equal((await jsm.streams.info('FORGE_EVENTS')).state.last_seq, lastSeq);
      assert.equal((await members.get('sec-1'))!.json<{ id: string }>().id, 'sec-1');
      assert.equal((await new Kvm(nc).open('FORGE_SETTINGS').then((kv) => kv.get('replicas')))!.json<number>(), 3);
    } finally {
      await nc.close();
    }
    // The forge nodes kept running through all of it without a violation of their own.
    await sleep(500);
    assert.deepEqual(violations('forge-node'), [], 'no violation by the forge-node user');
    assert.deepEqual(forgeDenials(), [], 'no permission error seen by any forge-node connection');
    assert.equal(b.bus.feed.stats.malformed, 0);
  });
});

describe('security: the forge-node user and a stream that is not forgebus\'s', () => {
  let dir: string;
  let server: RunningNatsServer | undefined;
  const serverLog: string[] = [];
  const secret = () => randomBytes(12).toString('base64url');
  const credentials: LocalNatsCredentials = {
    forge: { user: 'forge-node', password: secret() },
    operator: { user: 'operator', password: secret() },
    routes: { user: 'route', password: secret() },
  };
  const admin = { user: 'admin', password: secret() };

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'forgebus-security-'));
    const storeDir = join(dir, 'store');
    const port = await freePort();
    // The generated configuration, plus an administrator with every permission (no permissions block).
    const config = JSON.parse(renderServerConfig({ serverName: 'security-other', host: '127.0.0.1', port, monitorPort: -1, storeDir, credentials })) as {
      authorization: { users: { user: string; password: string; permissions?: unknown }[] };
    };
    config.authorization.users.push(admin);
    const configFile = join(dir, 'server.conf');
    writeFileSync(configFile, JSON.stringify(config, null, 2), { mode: 0o600 });
    server = await startNatsServer({ configFile, storeDir, onLog: (line) => serverLog.push(line) });
  });

  after(async () => {
    await server?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('cannot delete, inspect, read or consume the stream OTHER; the stream survives', async () => {
    const adminNc = await connect({ servers: server!.url, user: admin.user, pass: admin.password });
    let forge: NatsConnection | undefined;
    try {
      const adminJsm = await jetstreamManager(adminNc);
      await adminJsm.streams.add({ name: 'OTHER', subjects: ['other.>'] });
      await jetstream(adminNc).publish('other.secret', 'not for forge nodes');

      forge = await connect({ servers: server!.url, user: credentials.forge.user, pass: credentials.forge.password });
      const jsm: JetStreamManager = await jetstreamManager(forge);
      await assertDenied('deleting OTHER', () => jsm.streams.delete('OTHER'), '$JS.API.STREAM.DELETE.OTHER');
      await assertDenied('info of OTHER', () => jsm.streams.info('OTHER'), '$JS.API.STREAM.INFO.OTHER');
      await assertDenied('a message of OTHER', () => jsm.streams.getMessage('OTHER', { seq: 1 }), '$JS.API.STREAM.MSG.GET.OTHER');
      await assertDenied('a consumer on OTHER', () => jsm.consumers.add('OTHER', { ack_policy: AckPolicy.None }), '$JS.API.CONSUMER.CREATE.OTHER');
      await assertDenied('a durable consumer on OTHER', () => jsm.consumers.add('OTHER', { durable_name: 'steal', ack_policy: AckPolicy.Explicit }));
      await assertDenied('publishing into OTHER', () => jetstream(forge!).publish('other.secret', 'overwrite', { timeout: 2_000 }), 'other.secret');
      await eventually(() => serverLog.filter((l) => VIOLATION.test(l) && l.includes('"forge-node"') && l.includes('OTHER')).length >= 4, 5_000, 'the violations in the server log');

      const info = await adminJsm.streams.info('OTHER');
      assert.equal(info.state.messages, 1, 'OTHER still exists, with its message');
      assert.equal(info.state.consumer_count, 0);
    } finally {
      await forge?.close();
      await adminNc.close();
    }
  });
});
