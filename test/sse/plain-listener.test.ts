import assert from 'node:assert/strict';
import { connect as tcpConnect } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { SseCluster } from '../fixtures/sse-cluster.js';
import { rawHttpClient, type RawResponse } from '../support/raw-http.js';

/**
 * Issue 10: `GET /api/events` is served by a plain node:http listener in front of Nest and
 * Express (src/forge-node/http/event-stream.route.ts). Express still serves the variants it
 * matches (`/api/events/`) with the same service, which makes it the reference here: for the
 * same request, both answer alike. One forge node process on a real nats-server.
 */

interface PipelinedResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/**
 * Sends `requests` on one connection at once (HTTP/1.1 pipelining) and reads their answers in
 * order: what a keep-alive client sees after each one. Bodies are read by content-length (none
 * after a HEAD).
 */
async function pipelined(baseUrl: string, requests: { method: string; path: string; headers?: Record<string, string> }[], timeoutMs = 10_000): Promise<PipelinedResponse[]> {
  const { hostname, port } = new URL(baseUrl);
  const socket = tcpConnect({ host: hostname, port: Number(port) });
  socket.on('error', () => undefined);
  const text = requests
    .map(({ method, path, headers = {} }) => [`${method} ${path} HTTP/1.1`, `Host: ${hostname}:${port}`, ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`), '', ''].join('\r\n'))
    .join('');
  socket.write(text);
  let buffer = Buffer.alloc(0);
  const responses: PipelinedResponse[] = [];
  const parse = () => {
    while (responses.length < requests.length) {
      const end = buffer.indexOf('\r\n\r\n');
      if (end === -1) return;
      const [statusLine, ...lines] = buffer.subarray(0, end).toString('latin1').split('\r\n');
      const headers = Object.fromEntries(lines.map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]));
      const length = requests[responses.length]!.method === 'HEAD' ? 0 : Number(headers['content-length'] ?? 0);
      if (buffer.length < end + 4 + length) return;
      responses.push({ status: Number(statusLine!.split(' ')[1]), headers, body: buffer.subarray(end + 4, end + 4 + length).toString('utf8') });
      buffer = buffer.subarray(end + 4 + length);
    }
  };
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${responses.length} of ${requests.length} answers within ${timeoutMs} ms; unparsed: ${buffer.toString('latin1').slice(0, 300)}`)), timeoutMs);
      socket.on('data', (chunk: Buffer) => {
        buffer = Buffer.concat([buffer, chunk]);
        parse();
        if (responses.length === requests.length) {
          clearTimeout(timer);
          resolve();
        }
      });
      socket.once('close', () => {
        clearTimeout(timer);
        if (responses.length < requests.length) reject(new Error(`connection closed after ${responses.length} of ${requests.length} answers`));
      });
    });
    // Nothing may follow the answers on the connection. (Stream frames written after a HEAD
    // would come before the next answer and break its status line, or hold it back for good.)
    assert.equal(buffer.length, 0, `bytes after the last answer: ${buffer.toString('latin1').slice(0, 200)}`);
    return responses;
  } finally {
    socket.destroy();
  }
}

describe('GET /api/events ahead of Nest and Express', () => {
  let cluster: SseCluster;
  let raw: ReturnType<typeof rawHttpClient>;
  const auth = async (user = 'alice') => ({ authorization: `Bearer ${await cluster.token(user)}` });

  before(async () => {
    cluster = await SseCluster.start({ count: 1, prefix: 'sse-plain' });
    await cluster.call(1, 'alice', 'POST', '/api/repos', { name: 'web' });
    await cluster.call(1, 'alice', 'POST', '/api/repos', { name: 'secret', private: true });
    raw = rawHttpClient(cluster.url(1));
  });

  after(async () => {
    raw?.close();
    await cluster?.dispose();
  });

  const both = async (query: string, headers: Record<string, string>): Promise<[RawResponse, RawResponse]> =>
    Promise.all([raw.send({ method: 'GET', path: `/api/events${query}`, headers }), raw.send({ method: 'GET', path: `/api/events/${query}`, headers })]);

  it('serves the exact path itself (no Express header); Express serves /api/events/ with the same stream', async () => {
    const [plain, nest] = await both('', await auth());
    assert.deepEqual([plain.status, nest.status], [200, 200]);
    for (const res of [plain, nest]) assert.match(String(res.headers['content-type']), /^text\/event-stream/);
    assert.equal(plain.headers['x-powered-by'], undefined, 'the plain listener answered, not Express');
    assert.equal(nest.headers['x-powered-by'], 'Express');
  });

  it('answers every refusal with the status and JSON body the Nest route gives for the same request', async () => {
    const alice = await auth();
    const bob = await auth('bob');
    const cases: [string, string, Record<string, string>, number, RegExp][] = [
      ['no token', '', {}, 401, /no token/],
      ['bad token', '', { authorization: 'Bearer not-a-jwt' }, 401, /invalid token/],
      ['not a Bearer header', '', { authorization: 'Basic YWxpY2U6eA==' }, 401, /Bearer <token>/],
      ['access_token given twice (an array, as Express parses it)', `?access_token=${alice.authorization.slice(7)}&access_token=x`, {}, 401, /no token/],
      ['bad cookie', '', { cookie: 'forge_token=nope' }, 401, /invalid token/],
      ['repos not owner/name', '?repos=zz', alice, 400, /not owner\/name/],
      ['repos twice', '?repos=alice/web&repos=alice/web', alice, 400, /once/],
      ['repos empty', '?repos=%2C%20%2C', alice, 400, /owner\/name pairs/],
      ['bad lastEventId', '?lastEventId=12x', alice, 400, /Last-Event-ID/],
      ['lastEventId twice', '?lastEventId=1&lastEventId=2', alice, 400, /got "1,2"/],
      ['bad Last-Event-ID header (wins over a good query parameter)', '?lastEventId=1', { ...alice, 'last-event-id': 'abc' }, 400, /Last-Event-ID/],
      ['bad percent-escape', '?repos=alice%2', alice, 400, /not owner\/name/],
      ['private repository of another user', '?repos=alice/secret', bob, 403, /bob may not read repository alice\/secret/],
      ['no such repository', '?repos=alice/nothing', alice, 403, /may not read repository alice\/nothing/],
    ];
    for (const [what, query, headers, status, message] of cases) {
      const [plain, nest] = await both(query, headers);
      assert.equal(plain.status, status, `${what}: ${plain.text}`);
      assert.match(String(plain.headers['content-type']), /^application\/json; charset=utf-8$/, what);
      const body = JSON.parse(plain.text);
      assert.deepEqual(Object.keys(body).sort(), ['error', 'message', 'statusCode'], what);
      assert.match(body.message, message, what);
      assert.deepEqual([plain.status, body], [nest.status, JSON.parse(nest.text)], `${what}: the same as the Nest route`);
    }
    // The same parser as Express: percent-escapes and "+" decode, so these open streams on both.
    for (const query of ['?repos=alice%2Fweb', '?repos=+alice/web+,alice/web', `?access_token=${encodeURIComponent(alice.authorization.slice(7))}`]) {
      const [plain, nest] = await both(query, query.includes('access_token') ? {} : alice);
      assert.deepEqual([plain.status, nest.status], [200, 200], query);
    }
    assert.equal((await cluster.sseStats(1)).rejected, 0);
  });

  it('HEAD gets the head of a stream (or the refusal) and no body; the connection goes on with the next request', async () => {
    const headers = await auth();
    const opened = (await cluster.sseStats(1)).opened;
    const [head, refused, unauthenticated, health] = await pipelined(cluster.url(1), [
      { method: 'HEAD', path: '/api/events', headers },
      { method: 'HEAD', path: '/api/events?repos=zz', headers },
      { method: 'HEAD', path: '/api/events' },
      { method: 'GET', path: '/health' },
    ]);
    assert.equal(head!.status, 200);
    assert.match(head!.headers['content-type']!, /^text\/event-stream/);
    assert.equal(head!.headers['cache-control'], 'no-cache, no-transform');
    assert.deepEqual([refused!.status, unauthenticated!.status], [400, 401]);
    assert.match(refused!.headers['content-type']!, /application\/json/);
    assert.equal(health!.status, 200, 'the request after the HEADs was answered on the same connection');
    assert.equal(JSON.parse(health!.body).status, 'ok');
    assert.equal((await cluster.sseStats(1)).opened, opened, 'a HEAD opens no stream');
  });

  it('a refusal keeps the connection usable, as Express does', async () => {
    const [bad, health] = await pipelined(cluster.url(1), [{ method: 'GET', path: '/api/events?repos=zz', headers: await auth() }, { method: 'GET', path: '/health' }]);
    assert.deepEqual([bad!.status, health!.status], [400, 200]);
  });

  it('other methods on /api/events still reach Express, which answers 404 as before', async () => {
    const headers = await auth();
    for (const method of ['POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']) {
      const res = await raw.send({ method, path: '/api/events', headers });
      assert.equal(res.status, 404, `${method}: ${res.text}`);
      assert.deepEqual(JSON.parse(res.text), { message: `Cannot ${method} /api/events`, error: 'Not Found', statusCode: 404 }, method);
    }
  });

  it('an error inside the listener is a 500 without details, and the node keeps serving', async () => {
    const headers = await auth();
    // The default stream lists the user's repositories from the database: take the table away.
    const db = new Database(join(cluster.dataDir, 'forge.db'), { fileMustExist: true });
    db.pragma('busy_timeout = 10000');
    let restored = false;
    try {
      db.exec('ALTER TABLE repos RENAME TO repos_hidden_by_test');
      const [plain, nest] = await both('', headers);
      assert.equal(plain.status, 500, plain.text);
      assert.deepEqual(JSON.parse(plain.text), { statusCode: 500, message: 'Internal server error' });
      assert.deepEqual([nest.status, JSON.parse(nest.text)], [plain.status, JSON.parse(plain.text)], 'the same as the Nest route');
      db.exec('ALTER TABLE repos_hidden_by_test RENAME TO repos');
      restored = true;
    } finally {
      if (!restored) db.exec('ALTER TABLE repos_hidden_by_test RENAME TO repos');
      db.close();
    }
    assert.equal(cluster.node(1).child.exitCode, null, 'the node is still running');
    const again = await raw.send({ method: 'GET', path: '/api/events', headers });
    assert.equal(again.status, 200);
    assert.ok(
      cluster.node(1).output.some((l) => l.includes('GET /api/events failed') && l.includes('no such table')),
      'the cause is in the log, not in the answer',
    );
  });
});
