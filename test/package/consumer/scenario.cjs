// What a forge written without NestJS does with forgebus, run from the installed tarball by
// esm-consumer.mjs (import) and cjs-consumer.cjs (require): one event published and received,
// a cached read invalidated by it, a repository write applied through the queue, and an SSE
// stream served over node:http that delivers the event with its stream sequence as id.
'use strict';
const http = require('node:http');

async function withDeadline(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Reads an SSE response until a frame with `id: <seq>` arrives; resolves with that frame. */
async function readFrameWithId(body, seq) {
  const decoder = new TextDecoder();
  let text = '';
  for await (const chunk of body) {
    text += decoder.decode(chunk, { stream: true });
    const frames = text.split('\n\n');
    const match = frames.find((frame) => frame.split('\n').includes(`id: ${seq}`));
    if (match) return match;
  }
  throw new Error(`stream ended before the frame with id ${seq}: ${text}`);
}

async function run(lib, { servers, nodeId }) {
  const { ForgeBus, silentLogger, ForgeBusError } = lib.core;
  const { ForgeCache, CacheTags } = lib.cache;
  const { SseHub } = lib.sse;
  const { RepoWriteQueue } = lib.repoWrites;
  const repo = { owner: 'acme', name: `web-${nodeId}` };
  const result = {};

  const bus = await ForgeBus.connect({ nodeId, connection: { servers }, logger: silentLogger });
  const cache = new ForgeCache(bus, { logger: silentLogger });
  const queue = new RepoWriteQueue(bus, { logger: silentLogger });
  const hub = new SseHub(bus, {
    canRead: async () => true,
    defaultRepos: async () => [repo],
    accessChange: () => undefined,
  }, { logger: silentLogger });
  const server = http.createServer((req, res) => hub.open(res, { user: 'alice', repos: [repo], defaultRepos: false }));
  try {
    await queue.init();
    queue.handle('touch', async (ctx) => ({ file: ctx.args.file, repo: `${ctx.repo.owner}/${ctx.repo.name}`, by: nodeId }));
    await queue.startWorkers();
    const received = new Promise((resolve) => bus.on('issue.deleted', resolve, { repo }));
    await bus.start();
    hub.start();
    await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));

    // A cached read: loaded once, served from the cache, loaded again after the event.
    let loads = 0;
    const read = () => cache.getOrLoad(`issue:${repo.name}#3`, [CacheTags.issue(repo, 3)], () => ++loads);
    read();
    read();
    result.loadsBeforeEvent = loads;

    const response = await fetch(`http://127.0.0.1:${server.address().port}/events`);
    result.sseStatus = response.status;
    result.sseContentType = response.headers.get('content-type');

    const published = await bus.publish({ type: 'issue.deleted', repo, actor: 'alice', payload: { number: 3 } });
    const event = await withDeadline(received, 10_000, 'the event through the feed');
    result.published = { seq: published.seq, id: published.envelope.id };
    result.received = { seq: event.seq, id: event.envelope.id, number: event.envelope.payload.number };

    const frame = await withDeadline(readFrameWithId(response.body, published.seq), 10_000, 'the SSE frame');
    result.sseFrame = frame;

    // The cache applied the same event before or after our handler: wait for it, then read.
    const deadline = Date.now() + 10_000;
    while (cache.stats.lastAppliedSeq < published.seq && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    read();
    result.loadsAfterEvent = loads;

    result.write = await queue.submit(repo, 'touch', { file: 'README.md' });

    try {
      await bus.publish({ type: 'issue.deleted', repo, actor: 'alice', payload: { number: 0 } });
      result.invalidPublish = 'accepted';
    } catch (err) {
      result.invalidPublish = { isForgeBusError: err instanceof ForgeBusError, code: err.code, name: err.name };
    }
  } finally {
    server.closeAllConnections?.();
    await new Promise((resolve) => server.close(resolve));
    await hub.close();
    await queue.stop();
    cache.close();
    await bus.close();
  }
  return result;
}

module.exports = { run };
