import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { eventually } from '../support/nats.js';
import { TEST_DATABASES } from '../support/database.js';
import { Cluster, titleOn, type ClusterNode } from './cluster.js';

/**
 * Issue 3, "Done when" 1 and 2: three real forge node processes on one real nats-server and one
 * shared database. Node 3 reaches NATS through a proxy, so it can be cut off alone.
 */
for (const kind of TEST_DATABASES) describe(`cache invalidation across 3 node processes (${kind})`, () => {
  let cluster: Cluster;
  let n1: ClusterNode;
  let n2: ClusterNode;
  let n3: ClusterNode;

  before(async () => {
    cluster = await Cluster.start({ count: 3, proxied: [3], database: kind });
    [n1, n2, n3] = cluster.nodes as [ClusterNode, ClusterNode, ClusterNode];
    assert.equal((await n1.api('POST', '/api/repos', { name: 'web' })).status, 201);
    for (let i = 1; i <= 4; i++) {
      const created = await n1.api('POST', '/api/repos/alice/web/issues', { title: `issue ${i}` });
      assert.equal(created.status, 201);
      assert.equal(created.body.number, i);
    }
    // Every node has seen every event so far: nothing in flight invalidates what the tests cache.
    await cluster.settleAll();
  });

  after(async () => {
    await cluster?.dispose();
  });

  it('deleting issue 3 on node 1 makes nodes 2 and 3 answer 404 within a deadline', async (t) => {
    const path = '/api/repos/alice/web/issues/3';
    for (const node of cluster.nodes) assert.equal(await titleOn(node, path), 'issue 3');
    // A second GET is served from each node's cache.
    for (const node of cluster.nodes) {
      const before = await node.stats();
      assert.equal(await titleOn(node, path), 'issue 3');
      const after = await node.stats();
      assert.equal(after.state, 'live');
      assert.ok(after.hits > before.hits, `node ${node.index}: hits grow on a second GET (${before.hits} -> ${after.hits})`);
      assert.equal(after.misses, before.misses, `node ${node.index}: the second GET is no miss`);
    }

    const deleted = await n1.api('DELETE', path);
    const returnedAt = performance.now();
    assert.equal(deleted.status, 204);

    const deadlineMs = 5_000;
    const [ownWrite, ...delays] = await Promise.all([
      titleOn(n1, path),
      ...[n2, n3].map(async (node) => {
        let reads = 0;
        for (;;) {
          reads++;
          if ((await titleOn(node, path)) === 404) return { node: node.index, ms: performance.now() - returnedAt, reads };
          assert.ok(performance.now() - returnedAt < deadlineMs, `node ${node.index} still answers the deleted issue after ${deadlineMs} ms`);
        }
      }),
    ]);
    assert.equal(ownWrite, 404, 'node 1 reads its own write at once');
    for (const d of delays) {
      t.diagnostic(`node ${d.node}: 404 ${d.ms.toFixed(1)} ms after the DELETE returned (${d.reads} GETs)`);
      console.log(`[cache convergence] node ${d.node}: 404 ${d.ms.toFixed(1)} ms after the DELETE returned on node 1 (${d.reads} GETs)`);
    }
    // And it stays gone (the 404 is not a passing fluke of a refilling cache).
    for (const node of cluster.nodes) {
      for (let i = 0; i < 20; i++) assert.equal(await titleOn(node, path), 404);
    }
  });

  it('a node cut from NATS bypasses its cache; after the reconnect no node returns the old value', async (t) => {
    const path = '/api/repos/alice/web/issues/2';
    for (const node of cluster.nodes) {
      assert.equal(await titleOn(node, path), 'issue 2');
      assert.equal(await titleOn(node, path), 'issue 2');
    }
    const cachedOn3 = await n3.stats();

    n3.proxy!.cut();
    const cutAt = performance.now();
    const whileCut = await eventually(async () => {
      const s = await n3.stats();
      return s.state !== 'live' ? s : undefined;
    }, 10_000, 'node 3 to notice it is cut from NATS');
    assert.equal(whileCut.state, 'disconnected');

    // Behind node 3's back: the issue changes through node 1 (shared database, event node 3 misses).
    const changed = await n1.api('PATCH', path, { title: 'changed while node 3 was cut' });
    assert.equal(changed.status, 200);
    await eventually(async () => (await titleOn(n2, path)) === 'changed while node 3 was cut', 5_000, 'node 2 to see the change');

    // While cut, node 3 reads the database, not its cache (default mode: bypass).
    for (let i = 0; i < 10; i++) assert.equal(await titleOn(n3, path), 'changed while node 3 was cut');
    const bypassing = await n3.stats();
    assert.notEqual(bypassing.state, 'live');
    assert.ok(bypassing.bypassedReads - cachedOn3.bypassedReads >= 10, `10 GETs counted as bypassed reads (${bypassing.bypassedReads - cachedOn3.bypassedReads})`);
    assert.equal(bypassing.hits, whileCut.hits, 'no cache hit while cut');
    assert.equal(bypassing.staleReads, 0);

    n3.proxy!.restore();
    const restoredAt = performance.now();
    // From the restore on, every node is read continuously; each reader goes on until it has done
    // 200 reads after node 3 was seen live again. Not one of them may be the old title.
    let liveAt: number | undefined;
    const watcher = (async () => {
      await eventually(async () => (await n3.stats()).state === 'live', 20_000, 'node 3 to be live again');
      liveAt = performance.now();
    })();
    const readers = cluster.nodes.map(async (node) => {
      let afterLive = 0;
      let total = 0;
      while (afterLive < 200) {
        const live = liveAt !== undefined;
        const title = await titleOn(node, path);
        total++;
        assert.equal(title, 'changed while node 3 was cut', `node ${node.index}, read ${total} (${live ? 'after' : 'before'} node 3 was live again)`);
        if (live) afterLive++;
        if (!live && performance.now() - restoredAt > 25_000) throw new Error('node 3 did not come back');
      }
      return { node: node.index, total };
    });
    await watcher;
    const counts = await Promise.all(readers);
    const reconnected = await n3.stats();
    t.diagnostic(
      `cut ${(restoredAt - cutAt).toFixed(0)} ms; node 3 live again ${(liveAt! - restoredAt).toFixed(0)} ms after the restore; reads per node: ${counts.map((c) => `${c.node}=${c.total}`).join(', ')}`,
    );
    assert.equal(reconnected.state, 'live');
    assert.ok(reconnected.lastAppliedSeq >= (await cluster.streamState()).last_seq, 'node 3 replayed the event it missed');
    assert.equal(reconnected.gapFlushes, 0, 'the stream still held what it missed: replayed, no flush');
    assert.ok(reconnected.hits > bypassing.hits, 'node 3 serves from its cache again');
  });
});
