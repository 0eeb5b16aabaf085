import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { jetstream } from '@nats-io/jetstream';
import { connect, headers, type NatsConnection } from '@nats-io/transport-node';
import fc from 'fast-check';
import { apiClient, startForgeNode, tokenFor, type TestForgeNode } from '../support/forge-node.js';
import { eventually, startTestNats, type TestNats } from '../support/nats.js';
import { RawSseStream } from '../support/sse-client.js';

const SEED = 20261130;
const MESSAGES = 3_000;

/** Subjects a hostile or broken publisher might use: right and wrong scopes, odd tokens. */
const subjects = fc.constantFrom(
  'forge.repo.alice.fuzz.issue.created',
  'forge.repo.alice.fuzz.issue.deleted',
  'forge.repo.alice.fuzz.repo.collaborator_changed',
  'forge.repo.alice.fuzz.wiki.edited',
  'forge.repo.bob.secret.issue.created',
  'forge.repo.~2E~2E.x.issue.created',
  'forge.user.alice.user.notification_count',
  'forge.user.bob.issue.created',
  'forge.site.repo.created',
  'forge.write.0.alice.fuzz',
  'forge.write.3.alice.fuzz',
  'forge.write.31.bob.secret',
);

/** A valid envelope of alice/fuzz, the template the mutations start from. */
const validEnvelope = (n: number) => ({
  id: `fuzz-${n}`,
  type: 'issue.created',
  version: 1,
  occurredAt: new Date().toISOString(),
  origin: 'fuzzer',
  actor: 'alice',
  repo: { owner: 'alice', name: 'fuzz' },
  payload: { number: 1, title: 'fuzz' },
});

const envelopeFields = ['id', 'type', 'version', 'occurredAt', 'origin', 'actor', 'repo', 'user', 'payload', '__proto__', 'constructor'];
const writeFields = ['id', 'operation', 'repo', 'args', 'acceptedAt', 'replyTo'];

const bodies = fc.oneof(
  fc.uint8Array({ maxLength: 300 }).map((b) => ({ raw: b })),
  fc.jsonValue({ maxDepth: 6 }).map((v) => ({ text: JSON.stringify(v) })),
  // A valid envelope with one field replaced by anything, or a field added.
  fc.tuple(fc.nat(1_000_000), fc.constantFrom(...envelopeFields), fc.jsonValue({ maxDepth: 4 })).map(([n, field, value]) => ({
    text: JSON.stringify(validEnvelope(n)).replace(/^\{/, `{${JSON.stringify(field)}:${JSON.stringify(value)},`),
  })),
  // Deep nesting, huge numbers and long strings in the payload.
  fc.tuple(fc.nat(1_000_000), fc.integer({ min: 1, max: 3_000 })).map(([n, depth]) => ({
    text: JSON.stringify({ ...validEnvelope(n), payload: 'X' }).replace('"X"', '['.repeat(depth) + ']'.repeat(depth)),
  })),
  // Write-queue messages: the fields a worker reads, each possibly wrong.
  fc.record(Object.fromEntries(writeFields.map((f) => [f, fc.jsonValue({ maxDepth: 3 })])), { requiredKeys: [] }).map((w) => ({ text: JSON.stringify(w) })),
  fc.tuple(fc.uuid(), fc.constantFrom('commit', 'createRef', 'deleteRef', 'tag', 'nope'), fc.jsonValue({ maxDepth: 3 })).map(([id, operation, args]) => ({
    text: JSON.stringify({ id, operation, repo: { owner: 'alice', name: 'fuzz' }, args, acceptedAt: new Date().toISOString(), replyTo: `_INBOX.fuzz.${id}` }),
  })),
);

// Malformed messages on every subject the nodes read (FORGE_EVENTS and the write queue), as a
// broken or hostile publisher with NATS access could send them: counted and dropped, no node
// crashes or stops serving, and the next real change still reaches every node.
describe('bus fuzz: thousands of malformed messages against live forge nodes', () => {
  let nats: TestNats;
  let nc: NatsConnection;
  let dataDir: string;
  const nodes: TestForgeNode[] = [];

  before(async () => {
    nats = await startTestNats();
    dataDir = mkdtempSync(join(tmpdir(), 'forgebus-fuzz-bus-'));
    for (const id of ['fz1', 'fz2']) nodes.push(await startForgeNode({ id, natsUrl: nats.url, dataDir }));
    nc = await connect({ servers: nats.url, name: 'fuzzer' });
  });

  after(async () => {
    await nc?.close();
    for (const node of nodes) await node.kill('SIGKILL');
    await nats?.dispose();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  it(`seed ${SEED}: ${MESSAGES} messages; both nodes alive and healthy, malformed ones counted, real events still flow`, async () => {
    const alice1 = apiClient(nodes[0]!.url, await tokenFor('alice'));
    const alice2 = apiClient(nodes[1]!.url, await tokenFor('alice'));
    assert.equal((await alice1('POST', '/api/repos', { name: 'fuzz' })).status, 201);
    assert.equal((await alice1('POST', '/api/repos/alice/fuzz/issues', { title: 'before' })).status, 201);
    assert.equal((await alice2('GET', '/api/repos/alice/fuzz/issues/1')).body.title, 'before', 'node 2 caches the issue');
    const stream = await RawSseStream.open(`${nodes[1]!.url}/api/events?repos=alice/fuzz`, { authorization: `Bearer ${await tokenFor('alice')}` });
    const feedOf = async (node: TestForgeNode) =>
      (await apiClient(node.url, await tokenFor('alice'))('GET', '/api/bus/stats')).body.feed as { received: number; delivered: number; malformed: number };
    const before = await Promise.all(nodes.map(feedOf));
    const js = jetstream(nc);
    const messages = fc.sample(fc.tuple(subjects, bodies), { seed: SEED, numRuns: MESSAGES });
    let toEvents = 0;
    for (let i = 0; i < messages.length; i += 100) {
      await Promise.all(
        messages.slice(i, i + 100).map(async ([subject, body], j) => {
          const data = 'raw' in body ? body.raw : new TextEncoder().encode(body.text);
          const h = headers();
          h.set('Nats-Msg-Id', `fuzz-msg-${i + j}`);
          if (!subject.startsWith('forge.write.')) toEvents++;
          await js.publish(subject, data, { headers: h });
        }),
      );
    }

    // Every fuzzed event message reached each node's feed: the malformed ones (nearly all; a
    // mutation can leave a valid event) were dropped, the rest delivered as events.
    for (const [k, node] of nodes.entries()) {
      const feed = await eventually(async () => {
        const now = await feedOf(node);
        return now.received - before[k]!.received >= toEvents ? now : undefined;
      }, 60_000, `${node.id} to read the fuzz`);
      const malformed = feed.malformed - before[k]!.malformed;
      const delivered = feed.delivered - before[k]!.delivered;
      assert.equal(malformed + delivered, feed.received - before[k]!.received, 'every message either dropped or delivered');
      assert.ok(malformed >= toEvents * 0.8, `most fuzzed messages were dropped as malformed (${malformed} of ${toEvents})`);
      console.log(`# ${node.id}: ${malformed} fuzzed messages dropped as malformed, ${delivered} valid (mutations that kept an envelope valid)`);
      assert.equal(node.child.exitCode, null, `${node.id} is alive`);
      const health = await fetch(`${node.url}/health`);
      assert.equal(health.status, 200, `${node.id} healthy: ${await health.text()}`);
    }
    const writes = await alice1('GET', '/api/writes/stats');
    assert.equal(writes.status, 200);
    console.log(`# write queue after the fuzz: ${JSON.stringify({ malformed: writes.body.malformed, failed: writes.body.failed, applied: writes.body.applied })}`);

    // The bus still carries real changes: node 2's cache is invalidated, its SSE stream delivers.
    assert.equal((await alice1('PATCH', '/api/repos/alice/fuzz/issues/1', { title: 'after' })).status, 200);
    await eventually(async () => (await alice2('GET', '/api/repos/alice/fuzz/issues/1')).body.title === 'after', 10_000, 'node 2 to see the change');
    await stream.waitFor((s) => s.events.some((e) => e.type === 'issue.updated'), 10_000, 'the SSE stream to deliver the change');
    for (const e of stream.events.filter((e) => e.type !== 'reset')) {
      const envelope = JSON.parse(e.data) as { repo?: { owner: string; name: string }; user?: string };
      assert.deepEqual(envelope.repo, { owner: 'alice', name: 'fuzz' }, `only alice/fuzz events reach this stream (${e.data.slice(0, 200)})`);
      assert.equal(envelope.user, undefined);
    }
    stream.close();
  });
});
