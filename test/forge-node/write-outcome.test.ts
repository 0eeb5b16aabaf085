import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { readStream } from '../bus/helpers.js';
import { apiClient, startForgeNode, tokenFor, type TestForgeNode } from '../support/forge-node.js';
import { eventually, startTestNats, type TestNats } from '../support/nats.js';
import { openTestDatabase, TEST_DATABASES, type TestDatabase } from '../support/database.js';

// A commit that was applied is answered as applied, even when its event cannot be published at
// that moment: before, FORGE_EVENTS being unavailable turned applied commits into 500s, and a
// client retrying them committed twice.
for (const kind of TEST_DATABASES) describe(`the outcome of a write whose event cannot be published yet (${kind})`, () => {
  let database: TestDatabase | undefined;
  let nats: TestNats;
  let nc: NatsConnection;
  let dataDir: string;
  let node: TestForgeNode;

  before(async () => {
    nats = await startTestNats();
    nc = await connect({ servers: nats.url, name: 'outcome-observer' });
    dataDir = mkdtempSync(join(tmpdir(), 'forgebus-outcome-'));
    database = await openTestDatabase(kind, dataDir);
    node = await startForgeNode({ id: 'oc1', natsUrl: nats.url, dataDir, env: database.env });
  });

  after(async () => {
    await node?.kill('SIGKILL');
    await nc?.close();
    await nats?.dispose();
    await database?.dispose();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  it('answers 201 for the applied commit; its events go out, once, when FORGE_EVENTS captures them again', async () => {
    const alice = apiClient(node.url, await tokenFor('alice'));
    assert.equal((await alice('POST', '/api/repos', { name: 'outcome' })).status, 201);
    const jsm = await jetstreamManager(nc);
    const config = (await jsm.streams.info('FORGE_EVENTS')).config;
    // FORGE_EVENTS stops capturing forge subjects (an operator's mistake, a stream being moved).
    await jsm.streams.update('FORGE_EVENTS', { ...config, subjects: ['forge.parked.>'] });

    const shas: string[] = [];
    for (let i = 0; i < 3; i++) {
      const res = await alice('POST', '/api/repos/alice/outcome/commits', { branch: 'main', path: `f${i}.txt`, content: `${i}`, message: `commit ${i}` });
      assert.equal(res.status, 201, `commit ${i}: ${JSON.stringify(res.body)}`);
      shas.push(res.body.sha);
    }
    const history = await alice('GET', '/api/repos/alice/outcome/commits?branch=main');
    assert.deepEqual(history.body.map((c: { sha: string }) => c.sha), [...shas].reverse(), 'exactly the three commits, each once');

    await jsm.streams.update('FORGE_EVENTS', config);
    const pushed = async () =>
      (await readStream(nc)).filter((m) => m.envelope.type === 'repo.pushed' && m.envelope.repo?.name === 'outcome').map((m) => (m.envelope.payload as { after: string }).after);
    await eventually(async () => (await pushed()).length === 3, 20_000, 'the outbox to relay the events');
    assert.deepEqual(await pushed(), shas, 'each commit published once, in order');
  });
});
