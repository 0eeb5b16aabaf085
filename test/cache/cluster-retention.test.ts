import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { nanos } from '@nats-io/transport-node';
import { eventually } from '../support/nats.js';
import { Cluster, titleOn, type ClusterNode } from './cluster.js';

const MAX_AGE_MS = 1_500;

/**
 * Issue 3, "Done when" 4: FORGE_EVENTS keeps events for MAX_AGE_MS only; node 3 is cut from NATS
 * for longer than that while the issue changes, so the events it missed are gone when it comes
 * back. It must flush (counted) and never serve the entry it cached before.
 */
describe('stream retention shorter than a node outage', () => {
  let cluster: Cluster;
  let n1: ClusterNode;
  let n2: ClusterNode;
  let n3: ClusterNode;

  before(async () => {
    cluster = await Cluster.start({ count: 3, proxied: [3], env: { FORGE_EVENTS_MAX_AGE_MS: String(MAX_AGE_MS) } });
    [n1, n2, n3] = cluster.nodes as [ClusterNode, ClusterNode, ClusterNode];
    assert.equal((await n1.api('POST', '/api/repos', { name: 'web' })).status, 201);
    assert.equal((await n1.api('POST', '/api/repos/alice/web/issues', { title: 'old title' })).status, 201);
    await cluster.settleAll();
  });

  after(async () => {
    await cluster?.dispose();
  });

  it('provisions FORGE_EVENTS with that max age (the duplicate window follows it down)', async () => {
    // NATS refuses a duplicate window longer than max_age: with the 2-minute default window a
    // node configured with a short FORGE_EVENTS_MAX_AGE_MS could not start at all.
    const { config } = await cluster.streamInfo();
    assert.equal(config.max_age, nanos(MAX_AGE_MS));
    assert.equal(config.duplicate_window, nanos(MAX_AGE_MS));
  });

  it('the node flushes instead of serving old entries, and serves the new value', async (t) => {
    const path = '/api/repos/alice/web/issues/1';
    for (const node of cluster.nodes) {
      assert.equal(await titleOn(node, path), 'old title');
      assert.equal(await titleOn(node, path), 'old title');
    }
    const before = await n3.stats();
    assert.equal(before.flushes, 0);
    assert.ok(before.entries > 0, 'node 3 holds the issue (and the repository) in its cache');

    n3.proxy!.cut();
    const cutAt = performance.now();
    await eventually(async () => (await n3.stats()).state === 'disconnected', 10_000, 'node 3 to notice the cut');

    // Events node 3 misses: three title changes through nodes 1 and 2.
    for (const [i, node] of [n1, n2, n1].entries()) {
      assert.equal((await node.api('PATCH', path, { title: `new title ${i + 1}` })).status, 200);
    }
    const lastMissed = await cluster.settleAll([n1, n2]);
    // Wait past the max age: the stream no longer holds any of them.
    await eventually(async () => (await cluster.streamState()).messages === 0, 15_000, 'the events to expire from the stream');
    const outageMs = performance.now() - cutAt;
    assert.ok(outageMs > MAX_AGE_MS);

    // While it is cut, node 3 reads the database.
    assert.equal(await titleOn(n3, path), 'new title 3');

    n3.proxy!.restore();
    const restoredAt = performance.now();
    // It never serves the old title, from the restore on, through the reconnect and after.
    let reads = 0;
    let liveReads = 0;
    while (liveReads < 200) {
      const live = (await n3.stats()).state === 'live';
      assert.equal(await titleOn(n3, path), 'new title 3', `read ${reads + 1} on node 3 (${live ? 'live' : 'not live yet'})`);
      reads++;
      if (live) liveReads++;
      else assert.ok(performance.now() - restoredAt < 20_000, 'node 3 is live again within 20 s of the restore');
    }
    for (const node of [n1, n2]) {
      for (let i = 0; i < 50; i++) assert.equal(await titleOn(node, path), 'new title 3');
    }

    const after = await n3.stats();
    t.diagnostic(
      `outage ${outageMs.toFixed(0)} ms (max_age ${MAX_AGE_MS} ms), missed sequences up to ${lastMissed}; ${reads} reads on node 3 after the restore; ` +
        `flushes ${after.flushes}, gapFlushes ${after.gapFlushes}`,
    );
    assert.equal(after.state, 'live');
    assert.ok(after.gapFlushes > 0, 'the flush is counted as a gap flush');
    assert.ok(after.flushes > 0);
    assert.ok(after.hits > before.hits, 'and node 3 caches again afterwards');
  });
});
