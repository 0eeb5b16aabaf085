import assert from 'node:assert/strict';
import { createSecretKey } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { SignJWT, type JWTPayload } from 'jose';
import { apiClient, startForgeNode, TEST_SECRET, tokenFor, type TestForgeNode } from '../support/forge-node.js';
import { startTestNats, type TestNats } from '../support/nats.js';
import { rawHttpClient, type RawRequest, type RawResponse } from '../support/raw-http.js';

/**
 * A seeded hostile-input run against one real forge node: every route with wrong types for
 * every field, malformed and oversized bodies, odd content types, hostile tokens, path parameters
 * with "..", NUL, bad escapes, unicode and very long names, wrong methods. Every answer must be
 * below 500 and free of server paths, git output and stack traces, and a second user must never
 * receive a byte of the first user's private repository. A failure prints the offending
 * requests, which the seed reproduces; FORGE_FUZZ_SEED and FORGE_FUZZ_REQUESTS explore further.
 */
const SEED = Number(process.env.FORGE_FUZZ_SEED ?? 10_2026);
const REQUESTS = Number(process.env.FORGE_FUZZ_REQUESTS ?? 4_000);
const CONCURRENCY = 6;

const MARKER = 'PRIVATE-MARKER-7f3a9c';
const PROJECT_ROOT = fileURLToPath(new URL('../../..', import.meta.url)).replace(/\/$/, '');

type Actor = 'bob' | 'anonymous' | 'hostile';
interface FuzzRequest extends RawRequest {
  /** Which route the request was made for (for the coverage summary). */
  route: string;
  actor: Actor;
}

const sign = (claims: Record<string, unknown>, secret = TEST_SECRET) =>
  new SignJWT(claims as JWTPayload).setProtectedHeader({ alg: 'HS256' }).sign(createSecretKey(Buffer.from(secret)));

/** Tokens a hostile client can make: well signed with odd claims, forged, broken. */
async function hostileTokens(): Promise<string[]> {
  const now = Math.floor(Date.now() / 1000);
  return [
    await sign({ sub: 123 }),
    await sign({ sub: true }),
    await sign({ sub: ['bob'] }),
    await sign({ sub: { name: 'bob' } }),
    await sign({ sub: null }),
    await sign({ sub: '' }),
    await sign({ sub: '../alice' }),
    await sign({ sub: 'a'.repeat(1_000) }),
    await sign({ sub: 'bob', exp: 'tomorrow' }),
    await sign({ sub: 'bob', exp: now - 10 }),
    await sign({ sub: 'bob', exp: 1e300 }),
    await sign({ sub: 'bob', nbf: now + 3_600 }),
    await sign({ sub: 'alice' }, 'not-the-secret-0123456789'),
    `${Buffer.from('{"alg":"none"}').toString('base64url')}.${Buffer.from('{"sub":"alice"}').toString('base64url')}.`,
    'not-a-jwt',
    'a.b.c',
    '',
  ];
}

const deep = (depth: number) => `{"name":${'['.repeat(depth)}${']'.repeat(depth)}}`;
const encode = (s: string) => {
  try {
    return encodeURIComponent(s);
  } catch {
    return '%ED%A0%80'; // a lone surrogate, as its (invalid) UTF-8 bytes
  }
};

/** The request batch: the same for a given seed, so a failure is reproducible. */
function requests(tokens: string[]): FuzzRequest[] {
  // Path parameters: names that exist, hostile ones, and random unicode (percent-encoded).
  const knownName = fc.constantFrom('alice', 'bob', 'carol', 'vault', 'pub', 'site', 'fresh', 'tmp', 'main', 'dev', 'v1');
  const hostileSegment = fc.constantFrom(
    '..', '.', '%2e%2e', '%2E', '%00', 'a%00b', '%2F', 'a%2Fb', '%', '%zz', '%E0%A4%A', '%ff%fe', '%C0%AE', 'x.git', '.git', 'GIT~1',
    '-rf', '--help', 'a'.repeat(101), 'a'.repeat(3_000), 'CON', '%20', '%0A', '%0D%0A', '~', '*', 'caf%C3%A9', '%F0%9F%92%A9',
    '%ED%A0%80', '__proto__', 'constructor', 'prototype', '1e999', '-1', '0', '00', '4294967296', '99999999999999999999', '1.5', 'NaN',
  );
  const segment = fc.oneof(
    { weight: 4, arbitrary: knownName },
    { weight: 3, arbitrary: hostileSegment },
    { weight: 2, arbitrary: fc.string({ unit: 'binary', maxLength: 30 }).map(encode) },
  );
  const issueNumber = fc.oneof(
    { weight: 3, arbitrary: fc.constantFrom('1', '2', '3') },
    { weight: 2, arbitrary: fc.oneof(fc.constantFrom('0', '-1', '1.5', '1e3', 'abc', '99999999999', '9'.repeat(40), '%00', '0x1'), fc.nat().map(String)) },
  );
  // Mostly repositories that exist (so requests get past the permission checks), often not.
  // bob/site, where most writes go, is never deleted; bob/fresh and bob/tmp come and go.
  const fuzzedRepo = fc.tuple(segment, segment).map(([o, n]) => `/api/repos/${o}/${n}`);
  const repo = fc.oneof(
    { weight: 5, arbitrary: fc.constantFrom('/api/repos/bob/site', '/api/repos/bob/site', '/api/repos/alice/pub', '/api/repos/alice/vault', '/api/repos/bob/fresh') },
    { weight: 3, arbitrary: fuzzedRepo },
  );
  const deletableRepo = fc.oneof(
    { weight: 5, arbitrary: fc.constantFrom('/api/repos/bob/fresh', '/api/repos/bob/tmp', '/api/repos/alice/pub', '/api/repos/alice/vault', '/api/repos/carol/x') },
    { weight: 3, arbitrary: fuzzedRepo.filter((r) => r !== '/api/repos/bob/site') },
  );
  const query = fc.oneof(
    segment.map((b) => `?branch=${b}`),
    fc.tuple(segment, segment).map(([a, b]) => `?branch=${a}&branch=${b}`),
    fc.array(fc.tuple(segment, segment).map(([o, n]) => `${o}/${n}`), { maxLength: 4 }).map((r) => `?repos=${r.join(',')}`),
    fc.constantFrom('?repos=', '?repos=a', '?repos=a/b/c', `?repos=${'a/b,'.repeat(150)}`, '?repos=alice/vault', '?repos=alice/vault,bob/site', '?lastEventId=-1', '?lastEventId=1e999', '?lastEventId=abc', '?lastEventId=1&lastEventId=2'),
    fc.constantFrom(...tokens).map((t) => `?access_token=${encode(t)}`),
  );
  const withQuery = (path: fc.Arbitrary<string>) => fc.tuple(path, fc.option(query, { freq: 3 })).map(([p, q]) => `${p}${q ?? ''}`);

  // Field values: right and wrong types, edge numbers, strings git and the validators dislike.
  const gitPath = fc.oneof(
    fc.constantFrom('README.md', 'a', 'a/b', 'a/b/c', 'd', 'd/e', 'docs/x.txt', '.git./a', 'GIT~1/a', '.git/x', '.g\u200cit/x', 'git~1 ./x', '.git::$DATA', 'a//b', '/abs', 'a/../b', 'a\\b', 'x\u0000y', '\ud800', ' ', '*', ':', 'a'.repeat(1_100)),
    fc.array(fc.constantFrom('a', 'b', 'd', 'e', 'x y', '.git', '..', ' ', '\u200c', '.', '~1', 'GIT', 'ü'), { minLength: 1, maxLength: 4 }).map((s) => s.join('/')),
    fc.array(fc.stringMatching(/^[\w .ü-]{1,12}$/), { minLength: 1, maxLength: 3 }).map((s) => s.join('/')),
  );
  const text = fc.oneof(fc.string({ maxLength: 40 }), fc.string({ unit: 'binary', maxLength: 40 }), fc.constantFrom('', ' ', 'a\u0000b', '\ud800', 'x'.repeat(300), 'open', 'closed', 'main', 'HEAD', '--help', 'main~1', 'deadbeef', '0'.repeat(40)));
  const wrongType = fc.oneof(fc.integer(), fc.double(), fc.boolean(), fc.constant(null), fc.array(fc.string({ maxLength: 5 }), { maxLength: 3 }), fc.dictionary(fc.string({ maxLength: 5 }), fc.string({ maxLength: 5 }), { maxKeys: 3 }));
  const maybeWrong = <T>(right: fc.Arbitrary<T>) => fc.oneof({ weight: 9, arbitrary: right }, { weight: 1, arbitrary: wrongType });
  const refName = fc.oneof(
    { weight: 4, arbitrary: fc.constantFrom('main', 'dev', 'main', 'v1', 'feature-1') },
    { weight: 1, arbitrary: fc.oneof(fc.constantFrom('-x', 'a..b', 'x.lock', '.hidden', 'HEAD', 'a/b'), text) },
  );
  const revision = fc.oneof(fc.constantFrom('main', 'dev', 'v1', 'feature-1', 'deadbeef', '0'.repeat(40), 'main~1', '--help', 'HEAD@{1}', '-'), text);

  /** Each route: the methods it serves, its path, the body it takes, and how often to pick it. */
  const json = (o: fc.Arbitrary<object>) => o.map((v) => JSON.stringify(v));
  const noBody = fc.constant(undefined);
  const routes: { name: string; methods: string[]; path: fc.Arbitrary<string>; body: fc.Arbitrary<string | undefined>; weight: number }[] = [
    { name: 'create repo', methods: ['POST'], path: fc.constant('/api/repos'), weight: 3, body: json(fc.record({ name: maybeWrong(fc.oneof(knownName, fc.stringMatching(/^[a-z][a-z0-9._-]{0,12}$/), text)), private: maybeWrong(fc.boolean()) }, { requiredKeys: [] })) },
    { name: 'repo', methods: ['GET', 'DELETE'], path: deletableRepo, weight: 2, body: noBody },
    { name: 'collaborator', methods: ['PUT', 'DELETE'], path: fc.tuple(repo, fc.oneof(knownName, segment)).map(([r, u]) => `${r}/collaborators/${u}`), weight: 1, body: noBody },
    { name: 'issues', methods: ['GET', 'POST'], path: repo.map((r) => `${r}/issues`), weight: 3, body: json(fc.record({ title: maybeWrong(text), body: maybeWrong(text) }, { requiredKeys: ['title'] })) },
    { name: 'issue', methods: ['GET', 'PATCH', 'DELETE'], path: fc.tuple(repo, issueNumber).map(([r, n]) => `${r}/issues/${n}`), weight: 3, body: json(fc.record({ title: maybeWrong(text), body: maybeWrong(text), state: maybeWrong(fc.constantFrom('open', 'closed', 'OPEN', 'x')) }, { requiredKeys: [] })) },
    { name: 'commit log', methods: ['GET'], path: fc.tuple(repo, fc.oneof(refName.map(encode), segment), fc.option(query, { freq: 4 })).map(([r, b, q]) => `${r}/commits?branch=${b}${q ? `&${q.slice(1)}` : ''}`), weight: 1, body: noBody },
    { name: 'commit', methods: ['POST'], path: repo.map((r) => `${r}/commits`), weight: 5, body: json(fc.record({ branch: maybeWrong(refName), path: maybeWrong(gitPath), content: maybeWrong(text), message: maybeWrong(text) }, { requiredKeys: ['branch', 'path', 'content', 'message'] })) },
    { name: 'branch', methods: ['GET', 'POST', 'DELETE'], path: fc.tuple(repo, fc.oneof(refName.map(encode), segment)).map(([r, b]) => `${r}/branches/${b}`), weight: 2, body: json(fc.record({ from: maybeWrong(revision) }, { requiredKeys: [] })) },
    { name: 'tags', methods: ['POST'], path: repo.map((r) => `${r}/tags`), weight: 2, body: json(fc.record({ name: maybeWrong(refName), target: maybeWrong(revision), message: maybeWrong(text) }, { requiredKeys: ['name', 'target'] })) },
    { name: 'read-only', methods: ['GET'], path: withQuery(fc.constantFrom('/api/events', '/api/events', '/api/writes/stats', '/api/writes/failures', '/api/sse/stats', '/api/cache/stats', '/api/bus/stats', '/health', '/')), weight: 3, body: noBody },
    { name: 'session', methods: ['GET', 'POST', 'DELETE'], path: withQuery(fc.constant('/api/session')), weight: 1, body: noBody },
    {
      name: 'no such route',
      methods: ['GET', 'POST'],
      path: fc.oneof(
        fc.constantFrom('/api', '/api/repos/', '//api//repos', '/api/repos/alice/vault/../../..', '/%2e%2e/%2e%2e/etc/passwd', '/api/repos/alice/vault/issues/1/../../issues'),
        fc.array(segment, { minLength: 1, maxLength: 6 }).map((s) => `/${s.join('/')}`),
      ),
      weight: 1,
      body: noBody,
    },
  ];
  const anyMethod = fc.constantFrom('GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS', 'TRACE');

  // Bodies that fit no route: unknown and wrongly typed fields, broken JSON, over the limits, bytes.
  const field = fc.constantFrom('name', 'private', 'title', 'body', 'state', 'branch', 'path', 'content', 'message', 'from', 'target', '__proto__', 'constructor', 'extra');
  const strayBody = json(fc.dictionary(field, fc.oneof(text, wrongType, gitPath), { maxKeys: 5 }));
  const rawBody = fc.constantFrom(
    '{', '{"name":', 'null', '"x"', '[]', '[{"name":"a"}]', '1e999', '{"private":1e999}', '{"title":-0}', '{"name":"a","name":"b"}', '{"title":"x","__proto__":{"state":"closed"}}',
    '{"name":"x"}{"name":"y"}', '\ufeff{"name":"bom"}', '{"a":"\\ud800"}', '\u0000', 'name=x&private=true', 'a[b][c][d][e][f]=1', '   ',
    deep(33), deep(1_600), deep(40_000), `{"pad":"${'x'.repeat(150_000)}"}`, `{"content":"${'y'.repeat(99_000)}","branch":"main","path":"big","message":"m"}`,
  );
  const contentType = fc.oneof(
    { weight: 10, arbitrary: fc.constant('application/json') },
    {
      weight: 2,
      arbitrary: fc.constantFrom(
        'application/json; charset=utf-8', 'APPLICATION/JSON', 'application/json; charset=latin1', 'application/json; charset=utf-16', 'text/plain',
        'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/merge-patch+json', '*/*', undefined,
      ),
    },
  );
  const extraHeaders = fc.oneof(
    { weight: 8, arbitrary: fc.constant({}) },
    {
      weight: 1,
      arbitrary: fc.record(
        {
          'content-encoding': fc.constantFrom('gzip', 'br', 'identity', 'x'),
          'transfer-encoding': fc.constant('chunked'),
          'last-event-id': fc.constantFrom('1', '-1', 'abc', '1e999', '99999999999999999999', ' '),
          cookie: fc.constantFrom(...tokens).map((t) => `forge_token=${t}`),
        },
        { requiredKeys: [] },
      ),
    },
  );
  const actor = fc.constantFrom<Actor>('bob', 'bob', 'bob', 'bob', 'bob', 'anonymous', 'hostile', 'hostile');
  const hostileAuth = fc.oneof(fc.constantFrom(...tokens).map((t) => `Bearer ${t}`), fc.constantFrom('Bearer', 'Basic YWxpY2U6eA==', 'bearer  x y', 'Bearer \u00ff'));

  const request = fc.oneof(
    ...routes.map((route) => ({
      weight: route.weight,
      arbitrary: fc.record({
        route: fc.constant(route.name),
        method: fc.oneof({ weight: 8, arbitrary: fc.constantFrom(...route.methods) }, { weight: 1, arbitrary: anyMethod }),
        path: route.path,
        body: fc.oneof(
          { weight: 6, arbitrary: route.body },
          { weight: 1, arbitrary: strayBody },
          { weight: 2, arbitrary: rawBody },
          { weight: 1, arbitrary: fc.uint8Array({ maxLength: 64 }).map((b): string | Buffer => Buffer.from(b)) },
          { weight: 1, arbitrary: noBody },
        ),
        actor,
        contentType,
        extraHeaders,
        hostileAuth,
      }),
    })),
  );
  return fc.sample(
    request.map((r): FuzzRequest => {
      const headers: Record<string, string> = { ...r.extraHeaders };
      if (r.contentType !== undefined) headers['content-type'] = r.contentType;
      if (r.actor === 'hostile') headers.authorization = r.hostileAuth;
      return { route: r.route, actor: r.actor, method: r.method, path: r.path, headers, body: r.body };
    }),
    { numRuns: REQUESTS, seed: SEED },
  );
}

describe(`seeded HTTP fuzz of one forge node (seed ${SEED}, ${REQUESTS} requests)`, () => {
  let nats: TestNats;
  let dataDir: string;
  let node: TestForgeNode;
  let raw: ReturnType<typeof rawHttpClient>;
  let bobToken: string;
  let alice: ReturnType<typeof apiClient>;

  before(async () => {
    nats = await startTestNats();
    dataDir = mkdtempSync(join(tmpdir(), 'forgebus-fuzz-'));
    node = await startForgeNode({ id: 'fuzzed', natsUrl: nats.url, dataDir });
    raw = rawHttpClient(node.url);
    bobToken = await tokenFor('bob');
    alice = apiClient(node.url, await tokenFor('alice'));
    const bob = apiClient(node.url, bobToken);

    // Alice's private repository holds the marker in an issue, a commit and a failed write.
    const ok = (res: { status: number; body: unknown }, what: string) => assert.ok(res.status < 300, `${what}: ${res.status} ${JSON.stringify(res.body)}`);
    ok(await alice('POST', '/api/repos', { name: 'vault', private: true }), 'vault');
    ok(await alice('POST', '/api/repos/alice/vault/issues', { title: `issue ${MARKER}`, body: `body ${MARKER}` }), 'issue');
    ok(await alice('POST', '/api/repos/alice/vault/commits', { branch: 'main', path: 'secret.txt', content: `content ${MARKER}`, message: `message ${MARKER}` }), 'commit');
    ok(await alice('POST', '/api/repos/alice/vault/branches/dev', { from: 'main' }), 'branch');
    const lock = join(dataDir, 'repos', 'alice', 'vault.git', 'refs', 'heads', 'main.lock');
    writeFileSync(lock, '');
    try {
      assert.equal((await alice('POST', '/api/repos/alice/vault/commits', { branch: 'main', path: 'more.txt', content: `failed ${MARKER}`, message: `failed ${MARKER}` })).status, 500);
    } finally {
      rmSync(lock, { force: true });
    }
    // Bob's own and a public repository give the fuzzed writes somewhere to succeed or conflict.
    ok(await alice('POST', '/api/repos', { name: 'pub' }), 'pub');
    ok(await bob('POST', '/api/repos', { name: 'site' }), 'site');
    ok(await bob('POST', '/api/repos/bob/site/commits', { branch: 'main', path: 'a', content: 'file', message: 'a file' }), 'bob commit');
    ok(await bob('POST', '/api/repos/bob/site/commits', { branch: 'main', path: 'd/e', content: 'nested', message: 'a folder' }), 'bob commit 2');
    ok(await bob('POST', '/api/repos/bob/site/issues', { title: 'one' }), 'bob issue');
  });

  after(async () => {
    raw?.close();
    await node?.stop();
    await nats?.dispose();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('answers every request below 500, without leaks, and stays healthy', async (t) => {
    const started = performance.now();
    const logLinesBefore = node.output.length;
    const batch = requests(await hostileTokens());
    const problems: string[] = [];
    const statuses = new Map<number, number>();
    const byRoute = new Map<string, Map<number, number>>();
    const count = (req: FuzzRequest, status: number) => {
      statuses.set(status, (statuses.get(status) ?? 0) + 1);
      const route = byRoute.get(req.route) ?? new Map<number, number>();
      byRoute.set(req.route, route.set(status, (route.get(status) ?? 0) + 1));
    };

    const check = (req: FuzzRequest, res: RawResponse) => {
      count(req, res.status);
      const found: string[] = [];
      if (res.status >= 500) found.push(`status ${res.status}`);
      if (res.text.includes(dataDir)) found.push('the data directory');
      if (res.text.includes(PROJECT_ROOT) || res.text.includes('node_modules')) found.push('a source path');
      // git's messages start a line ("fatal: …", raw or JSON-escaped) or follow a colon; stack frames are "at f (file:line:col)".
      if (/(^|\n|\\n|"|: )(fatal|error): |Command failed|\bat [^\n]*:\d+:\d+\)?(\n|\\n)/.test(res.text)) found.push('tool output or a stack trace');
      if (res.text.includes(MARKER)) found.push(`alice's private data (seen by ${req.actor})`);
      if (found.length > 0) {
        const body = req.body === undefined ? '' : ` body ${JSON.stringify(String(req.body).slice(0, 200))}`;
        problems.push(`${found.join(', ')}: ${req.method} ${req.path.slice(0, 200)} ${JSON.stringify(req.headers)}${body} → ${res.status} ${res.text.slice(0, 300)}`);
      }
    };

    let next = 0;
    const worker = async () => {
      while (next < batch.length) {
        const req = batch[next++]!;
        const headers = req.actor === 'bob' ? { authorization: `Bearer ${bobToken}`, ...req.headers } : req.headers;
        try {
          check(req, await raw.send({ ...req, headers }));
        } catch (err) {
          // The node closed the connection (it refuses some malformed requests that way); it must still answer the next one.
          count(req, 0);
          if (!/socket hang up|ECONNRESET|EPIPE/.test((err as Error).message)) problems.push(`${req.method} ${req.path.slice(0, 200)}: ${(err as Error).message}`);
        }
      }
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));

    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    const histogram = (m: Map<number, number>) => JSON.stringify(Object.fromEntries([...m].sort(([a], [b]) => a - b)));
    t.diagnostic(`${batch.length} requests in ${seconds} s; statuses ${histogram(statuses)} (0 = connection closed by the node)`);
    for (const [route, m] of [...byRoute].sort()) t.diagnostic(`  ${route}: ${histogram(m)}`);
    assert.deepEqual(problems.slice(0, 20), [], `${problems.length} bad answers (first 20 shown)`);

    assert.equal((await raw.send({ method: 'GET', path: '/health' })).status, 200, 'the node is still healthy');
    assert.equal(node.child.exitCode, null, 'the node is still running');
    assert.deepEqual(node.output.slice(logLinesBefore).filter((line) => /ExceptionsHandler/.test(line)).slice(0, 10), [], 'no unhandled exception logged');
    // The marker was there to leak: alice still reads it through the same routes.
    const issue = await alice('GET', '/api/repos/alice/vault/issues/1');
    assert.match(JSON.stringify(issue.body), new RegExp(MARKER));
    assert.match(JSON.stringify((await alice('GET', '/api/repos/alice/vault/commits?branch=main')).body), new RegExp(MARKER));
    assert.match(JSON.stringify((await alice('GET', '/api/writes/failures')).body), new RegExp(MARKER));
  });
});
