import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  CONNECTION_OPTION_RULES,
  FEED_OPTION_RULES,
  FORGE_BUS_OPTION_RULES,
  PUBLISHER_OPTION_RULES,
  STREAM_OPTION_RULES,
  ForgeBus,
  ForgeBusError,
  InvalidOptionError,
  OUTBOX_RELAY_OPTION_RULES,
  OutboxRelay,
  silentLogger,
  type OptionRules,
} from '../../src/bus/index.js';
import { FORGE_CACHE_OPTION_RULES } from '../../src/cache/forge-cache.js';
import { ForgeCache, TaggedCache } from '../../src/cache/index.js';
import { TAGGED_CACHE_OPTION_RULES } from '../../src/cache/tagged-cache.js';
import { SSE_HUB_OPTION_RULES } from '../../src/sse/hub.js';
import { SseHub, type SseAccessPolicy } from '../../src/sse/index.js';
import { RepoWriteQueue } from '../../src/repo-writes/index.js';
import { REPO_WRITE_QUEUE_OPTION_RULES, SUBMIT_OPTION_RULES } from '../../src/repo-writes/write-queue.js';
import { startTestNats, type TestNats } from '../support/nats.js';

const policy: SseAccessPolicy = { canRead: async () => true, defaultRepos: async () => [], accessChange: () => undefined };
const repo = { owner: 'acme', name: 'web' };

function without<T extends object>(rules: OptionRules<T>, ...keys: string[]): OptionRules<object> {
  return Object.fromEntries(Object.entries(rules).filter(([key]) => !keys.includes(key)));
}

/** Runs `make` and returns the InvalidOptionError it throws (fails the test if it throws nothing else). */
async function optionError(make: () => unknown): Promise<InvalidOptionError> {
  try {
    await make();
  } catch (err) {
    assert.ok(err instanceof InvalidOptionError, `expected an InvalidOptionError, got ${String(err)}`);
    assert.ok(err instanceof ForgeBusError);
    return err;
  }
  assert.fail('the options were accepted');
}

const { replicas: _replicas, ...withoutReplicas } = STREAM_OPTION_RULES;

describe('options of every public constructor are checked', () => {
  let nats: TestNats;
  let bus: ForgeBus;
  before(async () => {
    nats = await startTestNats();
    bus = await ForgeBus.connect({ nodeId: 'options', connection: { servers: nats.url }, logger: silentLogger });
  });
  after(async () => {
    await bus?.close();
    await nats?.dispose();
  });

  // Every option of every public options object: a value no rule accepts is refused, naming it.
  const constructors: { owner: string; rules: OptionRules<object>; make: (options: object) => unknown; prefix?: string }[] = [
    { owner: 'ForgeBus.connect', rules: FORGE_BUS_OPTION_RULES, make: (o) => ForgeBus.connect({ nodeId: 'x', ...o }) },
    { owner: 'ForgeBus.connect', prefix: 'connection.', rules: CONNECTION_OPTION_RULES, make: (o) => ForgeBus.connect({ nodeId: 'x', connection: o }) },
    // Replicas are the bus's (`replicas`, for every stream and bucket), not the event stream's own.
    { owner: 'ForgeBus.connect', prefix: 'stream.', rules: withoutReplicas, make: (o) => ForgeBus.connect({ nodeId: 'x', stream: o }) },
    { owner: 'ForgeBus.connect', prefix: 'publisher.', rules: PUBLISHER_OPTION_RULES, make: (o) => ForgeBus.connect({ nodeId: 'x', publisher: o }) },
    { owner: 'ForgeBus.connect', prefix: 'feed.', rules: without(FEED_OPTION_RULES, 'stream', 'logger'), make: (o) => ForgeBus.connect({ nodeId: 'x', feed: o }) },
    { owner: 'TaggedCache', rules: TAGGED_CACHE_OPTION_RULES, make: (o) => new TaggedCache(o) },
    { owner: 'ForgeCache', rules: FORGE_CACHE_OPTION_RULES, make: (o) => new ForgeCache(bus, o) },
    { owner: 'SseHub', rules: SSE_HUB_OPTION_RULES, make: (o) => new SseHub(bus, policy, o) },
    { owner: 'RepoWriteQueue', rules: REPO_WRITE_QUEUE_OPTION_RULES, make: (o) => new RepoWriteQueue(bus, o) },
    { owner: 'RepoWriteQueue.submit', rules: SUBMIT_OPTION_RULES, make: (o) => new RepoWriteQueue(bus).submit(repo, 'op', {}, o) },
    { owner: 'OutboxRelay', rules: OUTBOX_RELAY_OPTION_RULES, make: (o) => new OutboxRelay({ append: () => undefined, pending: () => [], remove: () => undefined }, bus.publisher, bus.events, o) },
  ];
  for (const { owner, rules, make, prefix = '' } of constructors) {
    it(`${owner}${prefix ? ` (${prefix.slice(0, -1)})` : ''}: each of ${Object.keys(rules).length} options refuses a value of the wrong kind, naming the option`, async () => {
      for (const option of Object.keys(rules)) {
        const bad = Symbol('not an option value');
        const err = await optionError(() => make({ [option]: bad }));
        assert.equal(err.code, 'INVALID_OPTION');
        assert.equal(err.owner, owner);
        assert.equal(err.option, prefix + option);
        assert.equal(err.value, bad);
        assert.match(err.message, new RegExp(`^${owner.replace('.', '\\.')}: option "${prefix}${option}" is symbol; it must be .+`));
      }
    });
    it(`${owner}${prefix ? ` (${prefix.slice(0, -1)})` : ''}: an unknown (misspelt) option is refused with the known ones listed`, async () => {
      const err = await optionError(() => make({ maxInflight: 10 }));
      assert.equal(err.code, 'UNKNOWN_OPTION');
      assert.equal(err.option, `${prefix}maxInflight`);
      for (const known of Object.keys(rules)) assert.ok(err.message.includes(known), `lists ${known}`);
    });
  }

  it('ranges: the message says the value and the allowed range', async () => {
    const cases: [string, () => unknown, string, RegExp][] = [
      ['ForgeBus.connect', () => ForgeBus.connect({ nodeId: 'x', publisher: { maxInFlight: 0 } }), 'publisher.maxInFlight', /is 0; it must be an integer from 1 to 1,000,000/],
      ['ForgeBus.connect', () => ForgeBus.connect({ nodeId: 'x', publisher: { ackTimeoutMs: 1.5 } }), 'publisher.ackTimeoutMs', /is 1\.5; it must be an integer from 1 to/],
      ['ForgeBus.connect', () => ForgeBus.connect({ nodeId: 'x', stream: { storage: 'disk' as 'file' } }), 'stream.storage', /is "disk"; it must be one of "file", "memory"/],
      ['ForgeBus.connect', () => ForgeBus.connect({ nodeId: 'x', replicas: 7 }), 'replicas', /"auto", or an integer from 1 to 5/],
      ['ForgeBus.connect', () => ForgeBus.connect({ nodeId: 'x', connection: { servers: [''] } }), 'connection.servers', /a non-empty string, or an array of server URLs/],
      ['ForgeBus.connect', () => ForgeBus.connect({ nodeId: 'x', feed: { bufferMessages: 0 } }), 'feed.bufferMessages', /from 1 to/],
      ['ForgeBus.connect', () => ForgeBus.connect({ nodeId: 'bad id' }), 'nodeId', /is "bad id"; it must be 1-64 characters of \[A-Za-z0-9_-\]/],
      ['ForgeBus.connect', () => ForgeBus.connect({} as { nodeId: string }), 'nodeId', /must be given/],
      ['RepoWriteQueue', () => new RepoWriteQueue(bus, { partitions: 1025 }), 'partitions', /is 1025; it must be an integer from 1 to 1,024/],
      ['RepoWriteQueue', () => new RepoWriteQueue(bus, { maxDeliver: 0 }), 'maxDeliver', /from 1 to 1,000/],
      ['SseHub', () => new SseHub(bus, policy, { heartbeatMs: 0 }), 'heartbeatMs', /from 10 to/],
      ['SseHub', () => new SseHub(bus, policy, { maxConcurrentReplays: 0 }), 'maxConcurrentReplays', /from 1 to 10,000/],
      ['SseHub', () => new SseHub(bus, policy, { heartbeatMs: 3_000_000_000 }), 'heartbeatMs', /to 2,147,483,647/],
      ['ForgeCache', () => new ForgeCache(bus, { disconnectedReads: 'stale' as 'bypass' }), 'disconnectedReads', /one of "bypass", "serve-stale"/],
      ['ForgeCache', () => new ForgeCache(bus, { maxEntries: 0 }), 'maxEntries', /from 1 to/],
      ['ForgeCache', () => new ForgeCache(bus, { rules: { 'wiki.edited': 'tags' as never } }), 'rules', /an object of invalidation rules by event type/],
      ['ForgeCache', () => new ForgeCache(bus, { logger: console.log as never }), 'logger', /an object with log, warn and error methods/],
    ];
    for (const [owner, make, option, message] of cases) {
      const err = await optionError(make);
      assert.equal(err.owner, owner);
      assert.equal(err.option, option);
      assert.match(err.message, message);
    }
  });

  it('accepts every documented default and typical values', async () => {
    const hub = new SseHub(bus, policy, { heartbeatMs: 15_000, retryMs: 0, maxClients: 1, logger: silentLogger });
    await hub.close();
    new ForgeCache(bus, { maxEntries: 1, maxBytes: 1, enabled: false, disconnectedReads: 'serve-stale', rules: { 'wiki.edited': () => [] }, logger: silentLogger }).close();
    new RepoWriteQueue(bus, { partitions: 1024, ackWaitMs: 30_000, maxDeliver: 5, retryDelayMs: 0, timeoutMs: 60_000, resultTtlMs: 900_000, logger: silentLogger });
    new TaggedCache({ maxEntries: 10, maxBytes: 1024, sizeOf: () => 1, maxTagHistory: 10 });
    // undefined means "the default", as when options are spread from an optional config
    new TaggedCache({ maxEntries: undefined });
    const other = await ForgeBus.connect({
      nodeId: 'options-2',
      connection: { servers: [nats.url], reconnectDelayMs: 100, maxReconnectDelayMs: 1_000, waitOnFirstConnect: false, onStatus: () => undefined },
      stream: { maxAgeMs: 0, maxBytes: -1, duplicateWindowMs: 120_000, storage: 'file' },
      replicas: 'auto',
      provisionStream: false,
      publisher: { maxInFlight: 1, ackTimeoutMs: 2_000, maxAttempts: 1 },
      feed: { bufferMessages: 1 },
      logger: silentLogger,
    });
    await other.close();
  });
});
