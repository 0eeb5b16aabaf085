import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { apiClient, startForgeNode, tokenFor, type TestForgeNode } from '../support/forge-node.js';
import { eventually, startTestNats, type TestNats } from '../support/nats.js';

/** One sample of the Prometheus text format: `name{labels} value`, labels as written. */
function sample(text: string, name: string, labels = ''): number | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const space = line.lastIndexOf(' ');
    const key = line.slice(0, space);
    const [metric, rest] = key.includes('{') ? [key.slice(0, key.indexOf('{')), key.slice(key.indexOf('{'))] : [key, ''];
    if (metric === name && labels.split(',').filter(Boolean).every((l) => rest.includes(l))) return Number(line.slice(space + 1));
  }
  return undefined;
}

describe('GET /metrics', () => {
  let nats: TestNats;
  let node: TestForgeNode;
  let dataDir: string;
  before(async () => {
    nats = await startTestNats();
    dataDir = mkdtempSync(join(tmpdir(), 'forgebus-metrics-'));
    node = await startForgeNode({ id: 'met-1', natsUrl: nats.url, dataDir });
  });
  after(async () => {
    await node?.kill('SIGKILL');
    await nats?.dispose();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  const scrape = async () => {
    const res = await fetch(`${node.url}/metrics`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
    return res.text();
  };

  it('answers without a token, in Prometheus text format, and its counters move with traffic', async () => {
    const before = await scrape();
    for (const name of ['process_cpu_user_seconds_total', 'nodejs_heap_size_used_bytes', 'forgebus_nats_connected', 'forgebus_feed_lag_events', 'forgebus_sse_streams', 'forgebus_cache_entries']) {
      assert.notEqual(sample(before, name), undefined, `${name} is exported`);
    }
    assert.equal(sample(before, 'forgebus_nats_connected'), 1);
    assert.match(before, /node="met-1"/, 'samples carry the node id');

    const alice = apiClient(node.url, await tokenFor('alice'));
    assert.equal((await alice('POST', '/api/repos', { name: 'm' })).status, 201);
    for (let i = 0; i < 3; i++) assert.equal((await alice('POST', '/api/repos/alice/m/issues', { title: `t${i}` })).status, 201);
    for (let i = 0; i < 2; i++) assert.equal((await alice('GET', '/api/repos/alice/m/issues/1')).status, 200);
    assert.equal((await alice('POST', '/api/repos/alice/m/commits', { branch: 'main', path: 'a.txt', content: 'a', message: 'm' })).status, 201);

    const after = await eventually(async () => {
      const text = await scrape();
      return (sample(text, 'forgebus_events_consumed_total', 'type="issue.created"') ?? 0) >= 3 ? text : undefined;
    }, 10_000, 'the feed to count the issues');
    assert.ok((sample(after, 'forgebus_events_published_total', 'type="issue.created"') ?? 0) >= 3, 'published, by type');
    assert.ok((sample(after, 'forgebus_publish_duration_seconds_count') ?? 0) >= 5, 'publish latency observed');
    assert.equal(sample(after, 'forgebus_writes_total', 'operation="commit",outcome="applied"'), 1, 'the commit, applied by this node\'s worker');
    assert.equal(sample(after, 'forgebus_write_duration_seconds_count', 'operation="commit"'), 1);
    assert.ok((sample(after, 'forgebus_writes_submitted_total') ?? 0) >= 1);
    assert.ok((sample(after, 'forgebus_cache_hits_total') ?? 0) > (sample(before, 'forgebus_cache_hits_total') ?? 0), 'the second read was a cache hit');
    assert.ok((sample(after, 'forgebus_feed_position') ?? 0) > (sample(before, 'forgebus_feed_position') ?? 0));
  });
});
