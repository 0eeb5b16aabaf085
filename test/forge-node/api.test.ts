import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { connect } from '@nats-io/transport-node';
import { ForgeBus, silentLogger, type DeliveredEvent } from '../../src/bus/index.js';
import { apiClient, startForgeNode, tokenFor, type TestForgeNode } from '../support/forge-node.js';
import { eventually, startTestNats, type TestNats } from '../support/nats.js';
import { openTestDatabase, TEST_DATABASES, type TestDatabase } from '../support/database.js';

for (const kind of TEST_DATABASES) describe(`example forge node, end to end (2 node processes, real nats-server, shared ${kind === 'sqlite' ? 'SQLite' : 'PostgreSQL'})`, () => {
  let nats: TestNats;
  let dataDir: string;
  let database: TestDatabase | undefined;
  let nodeA: TestForgeNode;
  let nodeB: TestForgeNode;
  let watcher: ForgeBus;
  const seen: DeliveredEvent[] = [];
  let alice: ReturnType<typeof apiClient>;
  let aliceOnB: ReturnType<typeof apiClient>;
  let bob: ReturnType<typeof apiClient>;
  let bobOnB: ReturnType<typeof apiClient>;

  before(async () => {
    nats = await startTestNats();
    dataDir = mkdtempSync(join(tmpdir(), 'forgebus-data-'));
    database = await openTestDatabase(kind, dataDir);
    nodeA = await startForgeNode({ id: 'node-a', natsUrl: nats.url, dataDir, env: database.env });
    nodeB = await startForgeNode({ id: 'node-b', natsUrl: nats.url, dataDir, env: database.env });
    watcher = await ForgeBus.connect({ nodeId: 'watcher', connection: { servers: nats.url }, logger: silentLogger });
    watcher.on('*', (e) => {
      seen.push(e);
    });
    await watcher.start();
    const [ta, tb] = await Promise.all([tokenFor('alice'), tokenFor('bob')]);
    alice = apiClient(nodeA.url, ta);
    aliceOnB = apiClient(nodeB.url, ta);
    bob = apiClient(nodeA.url, tb);
    bobOnB = apiClient(nodeB.url, tb);
  });

  after(async () => {
    await watcher?.close();
    await Promise.all([nodeA?.stop(), nodeB?.stop()]);
    await nats?.dispose();
    await database?.dispose();
    rmSync(dataDir, { recursive: true, force: true });
  });

  const eventsFor = (repo: string) => seen.filter((e) => `${e.envelope.repo?.owner}/${e.envelope.repo?.name}` === repo);

  it('answers 401 with a JSON reason without a valid token', async () => {
    const none = await apiClient(nodeA.url)('GET', '/api/repos/alice/web');
    assert.equal(none.status, 401);
    assert.match(none.body.message, /Authorization/);
    const garbage = await apiClient(nodeA.url, 'not-a-jwt')('GET', '/api/repos/alice/web');
    assert.equal(garbage.status, 401);
    assert.match(garbage.body.message, /invalid token/);
    const forged = await apiClient(nodeA.url, await tokenFor('alice', 'some-other-secret-0123456789'))('GET', '/api/repos/alice/web');
    assert.equal(forged.status, 401);
    const health = await apiClient(nodeA.url)('GET', '/health');
    assert.equal(health.status, 200);
    assert.equal(health.body.details.bus.connected, true);
  });

  it('refuses invalid names with a 400 that gives the reason', async () => {
    const cases: [string, RegExp][] = [
      ['bad name', /may only contain/],
      ['..', /must not be/],
      ['x.git', /must not end with "\.git"/],
      ['a'.repeat(101), /at most 100/],
      ['', /must not be empty/],
      ['caf\u00e9', /may only contain/],
    ];
    for (const [name, reason] of cases) {
      const res = await alice('POST', '/api/repos', { name });
      assert.equal(res.status, 400, name);
      assert.match(res.body.message, reason, name);
    }
    const missing = await alice('POST', '/api/repos', {});
    assert.equal(missing.status, 400);
    const viaPath = await alice('GET', '/api/repos/alice/x.git');
    assert.equal(viaPath.status, 400);
    assert.match(viaPath.body.message, /\.git/);
    const badNumber = await alice('GET', '/api/repos/alice/web/issues/abc');
    assert.equal(badNumber.status, 400);
    assert.match(badNumber.body.message, /issue number/);
  });

  it('creates repositories visible from every node; private ones only to owner and collaborators', async () => {
    assert.equal((await alice('POST', '/api/repos', { name: 'web' })).status, 201);
    assert.equal((await alice('POST', '/api/repos', { name: 'web' })).status, 409);
    assert.equal((await bobOnB('GET', '/api/repos/alice/web')).status, 200);
    // The record is in the database under test (PostgreSQL: not some SQLite file beside it).
    assert.deepEqual(await database!.query('SELECT owner, private FROM repos WHERE owner = ? AND name = ?', ['alice', 'web']), { owner: 'alice', private: 0 });

    const created = await alice('POST', '/api/repos', { name: 'secret.repo', private: true });
    assert.equal(created.status, 201);
    assert.equal(created.body.private, true);
    assert.equal((await aliceOnB('GET', '/api/repos/alice/secret.repo')).status, 200);
    assert.equal((await bob('GET', '/api/repos/alice/secret.repo')).status, 404);
    assert.equal((await bobOnB('GET', '/api/repos/alice/secret.repo/issues')).status, 404);
    assert.equal((await bob('PUT', '/api/repos/alice/secret.repo/collaborators/bob')).status, 404);

    const added = await alice('PUT', '/api/repos/alice/secret.repo/collaborators/bob');
    assert.equal(added.status, 200);
    assert.deepEqual(added.body.collaborators, ['bob']);
    assert.equal((await bob('GET', '/api/repos/alice/secret.repo')).status, 200, 'read-your-writes on the node that made the change');
    // Node B learns of the change through the bus: within milliseconds, not synchronously.
    await eventually(async () => (await bobOnB('GET', '/api/repos/alice/secret.repo')).status === 200, 5_000, 'bob to see the repo on node B');
    assert.equal((await bob('DELETE', '/api/repos/alice/secret.repo')).status, 403);

    assert.equal((await alice('DELETE', '/api/repos/alice/secret.repo/collaborators/bob')).status, 200);
    assert.equal((await bob('GET', '/api/repos/alice/secret.repo')).status, 404);
    await eventually(async () => (await bobOnB('GET', '/api/repos/alice/secret.repo')).status === 404, 5_000, 'bob to lose the repo on node B');
  });

  it('keeps a bare git repository per repository, and deletes it with the repository', async () => {
    assert.equal((await alice('POST', '/api/repos', { name: 'short-lived' })).status, 201);
    const gitDir = join(dataDir, 'repos', 'alice', 'short-lived.git');
    assert.ok(existsSync(join(gitDir, 'HEAD')), 'bare repository created');
    assert.equal((await aliceOnB('DELETE', '/api/repos/alice/short-lived')).status, 204);
    assert.equal(existsSync(gitDir), false, 'bare repository removed');
    await eventually(async () => (await alice('GET', '/api/repos/alice/short-lived')).status === 404, 5_000, 'node A to forget the repo');
    assert.equal((await alice('DELETE', '/api/repos/alice/short-lived')).status, 404);
    const events = await eventually(() => {
      const got = eventsFor('alice/short-lived');
      return got.length >= 2 ? got : undefined;
    }, 10_000, 'repo events');
    assert.deepEqual(events.map((e) => [e.envelope.type, e.envelope.origin]), [['repo.created', 'node-a'], ['repo.deleted', 'node-b']]);
  });

  it('deletes a repository while commits to it are still being applied: 204, never a 500, nothing left behind', async () => {
    for (let round = 0; round < 5; round++) {
      const name = `racing-${round}`;
      assert.equal((await alice('POST', '/api/repos', { name })).status, 201);
      const commits = Array.from({ length: 8 }, (_, i) => alice('POST', `/api/repos/alice/${name}/commits`, { branch: 'main', path: `f${i}.txt`, content: `${i}`, message: `c${i}` }));
      await new Promise((r) => setTimeout(r, 20 * round)); // delete at different points of the commits
      const deleted = await aliceOnB('DELETE', `/api/repos/alice/${name}`);
      assert.equal(deleted.status, 204, `round ${round}: ${JSON.stringify(deleted.body)}`);
      for (const res of await Promise.all(commits)) assert.ok(res.status < 500, `round ${round}: a commit answered ${res.status} ${JSON.stringify(res.body)}`);
      assert.equal(existsSync(join(dataDir, 'repos', 'alice', `${name}.git`)), false, `round ${round}: the repository is gone`);
    }
  });

  it('serves the issue routes and publishes each mutation once, in order, for every node', async () => {
    assert.equal((await alice('POST', '/api/repos', { name: 'tracker' })).status, 201);
    const one = await alice('POST', '/api/repos/alice/tracker/issues', { title: 'first', body: 'hello' });
    assert.equal(one.status, 201);
    assert.equal(one.body.number, 1);
    const two = await bobOnB('POST', '/api/repos/alice/tracker/issues', { title: 'second', body: '' });
    assert.equal(two.body.number, 2);
    await eventually(async () => (await alice('GET', '/api/repos/alice/tracker/issues')).body.length === 2, 5_000, 'both issues on node A');
    assert.deepEqual((await aliceOnB('GET', '/api/repos/alice/tracker/issues')).body.map((i: { number: number }) => i.number), [1, 2]);

    const closed = await aliceOnB('PATCH', '/api/repos/alice/tracker/issues/1', { state: 'closed', title: 'first!' });
    assert.equal(closed.status, 200);
    assert.equal(closed.body.state, 'closed');
    assert.equal(closed.body.body, 'hello');
    assert.equal((await alice('PATCH', '/api/repos/alice/tracker/issues/1', { state: 'weird' })).status, 400);
    assert.equal((await alice('PATCH', '/api/repos/alice/tracker/issues/1', { unknown: 1 })).status, 400);

    assert.equal((await bob('DELETE', '/api/repos/alice/tracker/issues/1')).status, 403);
    assert.equal((await alice('DELETE', '/api/repos/alice/tracker/issues/1')).status, 204);
    await eventually(async () => (await bobOnB('GET', '/api/repos/alice/tracker/issues/1')).status === 404, 5_000, 'the deleted issue gone on node B');
    assert.equal((await alice('DELETE', '/api/repos/alice/tracker/issues/1')).status, 404);

    const expected = ['repo.created', 'issue.created', 'issue.created', 'issue.updated', 'issue.status_changed', 'issue.deleted'];
    const events = await eventually(() => {
      const got = eventsFor('alice/tracker');
      return got.length >= expected.length ? got : undefined;
    }, 10_000, 'tracker events');
    assert.deepEqual(events.map((e) => e.envelope.type), expected);
    assert.deepEqual(events.map((e) => e.envelope.origin), ['node-a', 'node-a', 'node-b', 'node-b', 'node-b', 'node-a']);
    assert.deepEqual(events[3]!.envelope.payload, { number: 1, changed: ['title', 'state'] });
    for (let i = 1; i < events.length; i++) assert.ok(events[i]!.seq > events[i - 1]!.seq);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(eventsFor('alice/tracker').length, expected.length, 'no event twice');

    // Both node processes' feeds saw every event too.
    const lastSeq = events.at(-1)!.seq;
    for (const client of [alice, aliceOnB]) {
      await eventually(async () => (await client('GET', '/api/bus/stats')).body.feed.lastSeq >= lastSeq, 10_000, 'node feeds');
    }
  });

  it('keeps accepting mutations while NATS is down and publishes their events, in order, once it is back', async () => {
    assert.equal((await alice('POST', '/api/repos', { name: 'offline' })).status, 201);
    await eventually(() => eventsFor('alice/offline').length === 1, 10_000, 'repo.created');
    await nats.stop();
    await eventually(async () => (await apiClient(nodeA.url)('GET', '/health')).status === 503, 10_000, 'node A to notice');

    const numbers: number[] = [];
    for (let i = 0; i < 5; i++) {
      const res = await alice('POST', '/api/repos/alice/offline/issues', { title: `offline ${i}` });
      assert.equal(res.status, 201, JSON.stringify(res.body));
      numbers.push(res.body.number);
    }
    assert.equal((await aliceOnB('PATCH', `/api/repos/alice/offline/issues/${numbers[0]}`, { state: 'closed' })).status, 200);

    nats = await nats.restart();
    // Each node relays its own outbox, so a node's events keep their order; across nodes the
    // order after an outage is whichever node reconnects first.
    const expectedFromA = ['repo.created', 'issue.created', 'issue.created', 'issue.created', 'issue.created', 'issue.created'];
    const expectedFromB = ['issue.updated', 'issue.status_changed'];
    const total = expectedFromA.length + expectedFromB.length;
    const events = await eventually(() => {
      const got = eventsFor('alice/offline');
      return got.length >= total ? got : undefined;
    }, 30_000, 'events after NATS came back');
    const fromA = events.filter((e) => e.envelope.origin === 'node-a');
    const fromB = events.filter((e) => e.envelope.origin === 'node-b');
    assert.deepEqual(fromA.map((e) => e.envelope.type), expectedFromA);
    assert.deepEqual(fromB.map((e) => e.envelope.type), expectedFromB);
    assert.deepEqual(fromA.slice(1).map((e) => (e.envelope.payload as { number: number }).number), numbers);
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(eventsFor('alice/offline').length, total, 'each event stored once');
  });

  it('counts and drops 1,000 malformed messages on forge subjects and keeps serving', async () => {
    const before = (await aliceOnB('GET', '/api/bus/stats')).body.feed;
    const nc = await connect({ servers: nats.url });
    try {
      const subject = 'forge.repo.alice.tracker.issue.deleted';
      const bad = [
        'not json',
        JSON.stringify({ hello: 'world' }),
        JSON.stringify({ id: 'x', type: 'issue.deleted', version: 1, occurredAt: new Date().toISOString(), origin: 'evil', actor: null, repo: { owner: 'alice', name: 'tracker' }, payload: { number: -1 } }),
        JSON.stringify({ id: 'y', type: 'issue.deleted', version: 9, occurredAt: new Date().toISOString(), origin: 'evil', actor: null, repo: { owner: 'alice', name: 'tracker' }, payload: { number: 1 } }),
      ];
      const acks = [];
      for (let i = 0; i < 1000; i++) {
        acks.push(nc.request(subject, bad[i % bad.length]!, { timeout: 10_000 }));
      }
      await Promise.all(acks);
    } finally {
      await nc.close();
    }
    const stats = await eventually(async () => {
      const s = (await aliceOnB('GET', '/api/bus/stats')).body.feed;
      return s.malformed - before.malformed >= 1000 ? s : undefined;
    }, 15_000, 'malformed count');
    assert.equal(stats.malformed - before.malformed, 1000);
    assert.equal(stats.delivered, before.delivered);
    assert.equal((await apiClient(nodeB.url)('GET', '/health')).status, 200);
    const res = await aliceOnB('POST', '/api/repos/alice/tracker/issues', { title: 'after the flood' });
    assert.equal(res.status, 201);
    await eventually(() => seen.some((e) => e.envelope.type === 'issue.created' && (e.envelope.payload as { title: string }).title === 'after the flood'), 10_000, 'a valid event after the flood');
  });
});
