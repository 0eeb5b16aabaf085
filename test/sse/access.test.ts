import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ForgeBus } from '../../src/bus/index.js';
import { signUserToken } from '../../src/forge-node/auth/tokens.js';
import { TEST_DATABASES } from '../support/database.js';
import { SseCluster, topicOf, type StoredEvent } from '../fixtures/sse-cluster.js';
import { TEST_SECRET } from '../support/forge-node.js';
import { lbEventSource, RawSseStream, type LbEventSource, type SseEvent } from '../support/sse-client.js';

/**
 * Issue 4, authorization: who may open a stream, and which events reach whom, live and on
 * replay, as collaborators are added and removed. Two forge node processes: changes are made
 * through node 1, the streams are on node 2 (and replays also on node 1).
 */

/** Stored events of the given topics after `from`, as a client receives them (data parsed). */
function expected(stored: StoredEvent[], topics: string[], from: number) {
  return stored.filter((e) => e.seq > from && topics.includes(topicOf(e.envelope))).map((e) => ({ id: String(e.seq), type: e.envelope.type, data: JSON.parse(e.json) as unknown }));
}

const parsed = (events: SseEvent[]) => events.map((e) => ({ id: e.id, type: e.type, data: JSON.parse(e.data) as unknown }));

for (const kind of TEST_DATABASES) describe(`GET /api/events: authentication and authorization (${kind})`, () => {
  let cluster: SseCluster;
  let bus: ForgeBus;
  const open: { close(): void }[] = [];
  const track = <T extends { close(): void }>(c: T): T => (open.push(c), c);

  before(async () => {
    cluster = await SseCluster.start({ count: 2, prefix: 'sse-access', database: kind });
    // alice: a private and a public repository; bob: one of his own.
    await cluster.call(1, 'alice', 'POST', '/api/repos', { name: 'secret', private: true });
    await cluster.call(1, 'alice', 'POST', '/api/repos', { name: 'open', private: false });
    await cluster.call(1, 'bob', 'POST', '/api/repos', { name: 'own' });
    // User events (notification counts) come from the forge's other services: the SDK, like node 1.
    bus = await ForgeBus.connect({ nodeId: 'sse-access-notifier', connection: { servers: cluster.nats.url }, provisionStream: false });
    await cluster.settle();
  });

  after(async () => {
    for (const c of open) c.close();
    await bus?.close();
    await cluster?.dispose();
  });

  const last = async () => (await cluster.streamInfo()).state.last_seq;
  const stored = async (from: number) => cluster.storedEvents(from + 1, await last());
  const events = (path: string, headers: Record<string, string>, node = 2) => RawSseStream.open(`${cluster.url(node)}${path}`, headers);

  it('401 without a token or with an invalid one, on each of the three ways to send it', async () => {
    const good = await cluster.token('bob');
    const otherSecret = await signUserToken('another-secret-of-16-or-more', 'bob');
    const expired = await signUserToken(TEST_SECRET, 'bob', '-10s');
    const badSub = await signUserToken(TEST_SECRET, 'bob/../alice');
    const refused: [string, string, Record<string, string>, RegExp][] = [
      ['no token at all', '', {}, /no token/],
      ['empty access_token, no cookie', '?access_token=', {}, /no token/],
      ['cookie of another name', '', { cookie: 'session=' + good }, /no token/],
      ['header: not a JWT', '', { authorization: 'Bearer not-a-jwt' }, /invalid token/],
      ['header: not Bearer', '', { authorization: `Basic ${good}` }, /Bearer/],
      ['header: other secret', '', { authorization: `Bearer ${otherSecret}` }, /invalid token/],
      ['header: expired', '', { authorization: `Bearer ${expired}` }, /expired/],
      ['header: bad sub', '', { authorization: `Bearer ${badSub}` }, /sub/],
      ['query: not a JWT', '?access_token=not-a-jwt', {}, /invalid token/],
      ['query: other secret', `?access_token=${otherSecret}`, {}, /invalid token/],
      ['query: expired', `?access_token=${expired}`, {}, /expired/],
      ['cookie: not a JWT', '', { cookie: 'forge_token=not-a-jwt' }, /invalid token/],
      ['cookie: other secret', '', { cookie: `theme=dark; forge_token=${otherSecret}` }, /invalid token/],
      ['cookie: expired', '', { cookie: `forge_token=${expired}` }, /expired/],
      // A bad header is not rescued by a good query token or cookie.
      ['bad header, good query', `?access_token=${good}`, { authorization: 'Bearer not-a-jwt' }, /invalid token/],
    ];
    for (const [what, query, headers, message] of refused) {
      const res = await events(`/api/events${query}`, headers);
      assert.equal(res.status, 401, `${what}: ${res.body}`);
      assert.match(String(res.json().message), message, what);
    }
    // The same three ways with the good token open a stream (so the refusals above are about the token).
    for (const [what, query, headers] of [
      ['header', '', { authorization: `Bearer ${good}` }],
      ['query', `?access_token=${good}`, {}],
      ['cookie', '', { cookie: `theme=dark; forge_token=${good}` }],
    ] as const) {
      const res = track(await events(`/api/events${query}`, headers));
      assert.equal(res.status, 200, what);
      res.close();
    }
    // Browser tokens are for the event stream only: the rest of the API still wants the header.
    const viaQuery = await fetch(`${cluster.url(2)}/api/repos/bob/own?access_token=${good}`);
    assert.equal(viaQuery.status, 401);
    const viaCookie = await fetch(`${cluster.url(2)}/api/repos`, {
      method: 'POST',
      headers: { cookie: `forge_token=${good}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'csrf' }),
    });
    assert.equal(viaCookie.status, 401, 'a cookie never authorizes a write');
  });

  it('403 at connect for a repository the user may not read (or that does not exist); 200 for a public one', async () => {
    const bob = { authorization: `Bearer ${await cluster.token('bob')}` };
    for (const repos of ['alice/secret', 'bob/own,alice/secret', 'alice/nothing-here']) {
      const res = await events(`/api/events?repos=${repos}`, bob);
      assert.equal(res.status, 403, repos);
      assert.match(String(res.json().message), /may not read repository alice\/(secret|nothing-here) \(or it does not exist\)/);
    }
    // Also when resuming: the check comes before any replay.
    const resuming = await events('/api/events?repos=alice/secret', { ...bob, 'last-event-id': '1' });
    assert.equal(resuming.status, 403);
    const ok = track(await events('/api/events?repos=alice/open,bob/own', bob));
    assert.equal(ok.status, 200);
    ok.close();
  });

  it('a repository created after the stream opened joins its owner\'s default stream from its repo.created, and no one else\'s', async () => {
    const start = await cluster.settle();
    const alice = track(lbEventSource({ path: '/api/events', token: await cluster.token('alice'), nodes: () => [cluster.url(2)] }));
    const bob = track(lbEventSource({ path: '/api/events', token: await cluster.token('bob'), nodes: () => [cluster.url(2)] }));
    await Promise.all([alice.opened, bob.opened]);
    await cluster.call(1, 'alice', 'POST', '/api/repos', { name: 'later', private: true });
    await cluster.call(1, 'alice', 'POST', '/api/repos/alice/later/issues', { title: 'in the new repository' });
    await cluster.call(1, 'bob', 'POST', '/api/repos/bob/own/issues', { title: 'marker' });
    await cluster.settle();
    const all = await stored(start);
    await alice.waitForCount(2);
    await bob.waitForCount(1);
    assert.deepEqual(parsed(alice.events), expected(all, ['alice/later'], start));
    assert.deepEqual(alice.events.map((e) => e.type), ['repo.created', 'issue.created']);
    assert.deepEqual(parsed(bob.events), expected(all, ['bob/own'], start));
    alice.close();
    bob.close();
  });

  it('bob never sees alice\'s private repository until he is a collaborator, and stops again (access-revoked) when removed', async () => {
    const start = await cluster.settle();
    const token = await cluster.token('bob');
    const lb = (path: string) => track(lbEventSource({ path, token, nodes: () => [cluster.url(2)] }));
    const bobDefault = lb('/api/events');
    const bobNamed = lb('/api/events?repos=alice/open,bob/own');
    const carol = track(lbEventSource({ path: '/api/events', token: await cluster.token('carol'), nodes: () => [cluster.url(2)] }));
    const alice = track(lbEventSource({ path: '/api/events', token: await cluster.token('alice'), nodes: () => [cluster.url(2)] }));
    await Promise.all([bobDefault.opened, bobNamed.opened, carol.opened, alice.opened]);

    const secretIssue = (title: string) => cluster.call(1, 'alice', 'POST', '/api/repos/alice/secret/issues', { title, body: 'private' });
    const marker = async (title: string) => {
      await cluster.call(1, 'bob', 'POST', '/api/repos/bob/own/issues', { title });
      await cluster.call(1, 'alice', 'POST', '/api/repos/alice/open/issues', { title });
    };
    /** Waits until every stream received everything up to the stream's last sequence (the markers tell). */
    const settled = async (clients: [LbEventSource, string[]][]) => {
      const seq = await cluster.settle();
      const all = await stored(start);
      for (const [client, topics] of clients) await client.waitForCount(expected(all, topics, start).length, 10_000, `events of ${topics.join(', ')}`);
      return seq;
    };

    // 1. Not a collaborator: private events go to alice only; user events to their user only.
    await secretIssue('secret 1');
    await bus.publish({ type: 'user.notification_count', user: 'alice', actor: null, payload: { count: 7 } });
    await bus.publish({ type: 'user.notification_count', user: 'bob', actor: null, payload: { count: 1 } });
    await secretIssue('secret 2');
    await marker('marker 1');
    const beforeGrant = await settled([[bobDefault, ['bob/own', 'user:bob']], [alice, ['alice/secret', 'alice/open', 'user:alice']]]);
    await bobNamed.waitForCount(3); // its user event, bob/own, alice/open
    assert.deepEqual(
      parsed(bobDefault.events),
      expected(await stored(start), ['bob/own', 'user:bob'], start),
      'bob: his notification count and his repository, nothing of alice/secret',
    );
    assert.deepEqual(bobDefault.events.map((e) => e.type), ['user.notification_count', 'issue.created']);

    // 2. Replay: resuming from before those events (on either node) yields no private event either.
    const bobHeaders = { authorization: `Bearer ${token}`, 'last-event-id': String(start) };
    for (const node of [1, 2]) {
      const replay = track(await events('/api/events', bobHeaders, node));
      const want = expected(await stored(start), ['bob/own', 'user:bob'], start).filter((e) => Number(e.id) <= beforeGrant);
      await replay.waitFor((s) => s.events.length >= want.length, 10_000, `bob's replay on node ${node}`);
      // Nothing more after a fresh marker but the marker itself.
      await cluster.call(1, 'bob', 'POST', '/api/repos/bob/own/issues', { title: `replay marker ${node}` });
      const seq = await cluster.settle();
      await replay.waitFor((s) => s.events.some((e) => e.id === String(seq)), 10_000, 'the replay marker');
      const after = await stored(start);
      assert.deepEqual(parsed(replay.events), expected(after, ['bob/own', 'user:bob'], start), `bob's replay on node ${node}`);
      assert.ok(!replay.events.some((e) => e.data.includes('alice/secret') || e.data.includes('"secret"')), 'no trace of the private repository');
      replay.close();
    }
    const namedReplay = track(await events('/api/events?repos=alice/open', bobHeaders));
    await namedReplay.waitFor((s) => s.events.length >= 1, 10_000, 'alice/open on replay');

    // 3. alice adds bob: his default stream gains alice/secret at that event, live.
    await cluster.call(1, 'alice', 'PUT', '/api/repos/alice/secret/collaborators/bob');
    await secretIssue('secret 3 (bob may see this)');
    await marker('marker 2');
    const afterGrant = await settled([[carol, []], [alice, ['alice/secret', 'alice/open', 'user:alice']]]);
    // While a collaborator, naming the private repository works too.
    const bobSecret = track(lbEventSource({ path: '/api/events?repos=alice/secret', token, nodes: () => [cluster.url(2)] }));
    await bobSecret.opened;

    // 4. alice removes bob: he gets the removal, then access-revoked, then nothing of alice/secret.
    await cluster.call(1, 'alice', 'DELETE', '/api/repos/alice/secret/collaborators/bob', undefined, 200);
    await secretIssue('secret 4 (bob may not see this)');
    await marker('marker 3');
    const end = await cluster.settle();
    const all = await stored(start);
    const grant = all.find((e) => e.envelope.type === 'repo.collaborator_changed' && (e.envelope.payload as { change: string }).change === 'added')!;
    const removal = all.find((e) => e.envelope.type === 'repo.collaborator_changed' && (e.envelope.payload as { change: string }).change === 'removed')!;
    assert.ok(grant.seq > beforeGrant && grant.seq <= afterGrant && removal.seq > afterGrant && removal.seq <= end);
    const secretWhileCollaborator = expected(all, ['alice/secret'], start).filter((e) => Number(e.id) >= grant.seq && Number(e.id) <= removal.seq);
    assert.deepEqual(
      secretWhileCollaborator.map((e) => e.type),
      ['repo.collaborator_changed', 'issue.created', 'repo.collaborator_changed'],
      'the events bob may see of alice/secret: added, issue 3, removed',
    );
    const revoked = { id: '', type: 'access-revoked', data: { repo: { owner: 'alice', name: 'secret' } } };
    const bobWants = [
      ...expected(all, ['bob/own', 'user:bob'], start).filter((e) => Number(e.id) < grant.seq),
      ...expected(all, ['bob/own', 'user:bob', 'alice/secret'], start).filter((e) => Number(e.id) >= grant.seq && Number(e.id) <= removal.seq),
      revoked,
      ...expected(all, ['bob/own', 'user:bob'], start).filter((e) => Number(e.id) > removal.seq),
    ];
    await bobDefault.waitForCount(bobWants.length, 10_000, "bob's default stream to the end");
    await bobNamed.waitForCount(expected(all, ['alice/open', 'bob/own', 'user:bob'], start).length, 10_000, "bob's named stream to the end");
    await carol.opened;
    await alice.waitForCount(expected(all, ['alice/secret', 'alice/open', 'user:alice'], start).length);
    await bobSecret.waitForCount(2, 10_000, 'the removal and access-revoked on the named private stream');

    assert.deepEqual(parsed(bobDefault.events), bobWants);
    // Named repositories stay as named (plus the user's own events): the grant did not add alice/secret.
    assert.deepEqual(parsed(bobNamed.events), expected(all, ['alice/open', 'bob/own', 'user:bob'], start));
    assert.deepEqual(parsed(bobSecret.events), [expected(all, ['alice/secret'], start).find((e) => e.id === String(removal.seq)), revoked]);
    assert.deepEqual(carol.events, [], 'carol is in none of this');
    assert.deepEqual(parsed(alice.events), expected(all, ['alice/secret', 'alice/open', 'user:alice'], start), 'alice sees all of hers, no access-revoked');
    assert.deepEqual(parsed(namedReplay.events), expected(all, ['alice/open', 'user:bob'], start), 'bob names a public repository: all of its events (and his own), replay then live');

    // 5. Replay after the removal: none of alice/secret, not even what he saw while a collaborator.
    const replay = track(await events('/api/events', { authorization: `Bearer ${token}`, 'last-event-id': String(start) }, 1));
    const want = expected(all, ['bob/own', 'user:bob'], start);
    await replay.waitFor((s) => s.events.length >= want.length, 10_000, 'the replay after the removal');
    await cluster.call(1, 'bob', 'POST', '/api/repos/bob/own/issues', { title: 'final marker' });
    const final = await cluster.settle();
    await replay.waitFor((s) => s.events.some((e) => e.id === String(final)), 10_000, 'the final marker');
    assert.deepEqual(parsed(replay.events), expected(await stored(start), ['bob/own', 'user:bob'], start));

    const stats = await cluster.sseStats(2);
    assert.ok(stats.accessGranted >= 1 && stats.accessRevoked >= 2, JSON.stringify(stats));
    for (const c of [bobDefault, bobNamed, bobSecret, carol, alice, namedReplay, replay]) c.close();
  });
});
