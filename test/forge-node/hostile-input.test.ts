import assert from 'node:assert/strict';
import { createSecretKey } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect as tcpConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { SignJWT, type JWTPayload } from 'jose';
import { apiClient, startForgeNode, TEST_SECRET, tokenFor, type TestForgeNode } from '../support/forge-node.js';
import { startTestNats, type TestNats } from '../support/nats.js';
import { rawHttpClient } from '../support/raw-http.js';

/** A token signed with the node's own secret, with whatever claims a hostile client chose. */
const signedToken = (claims: Record<string, unknown>) =>
  new SignJWT(claims as JWTPayload).setProtectedHeader({ alg: 'HS256' }).setIssuedAt().sign(createSecretKey(Buffer.from(TEST_SECRET)));

/** What no answer may contain: server paths, git's own output, stack traces. */
function assertClean(text: string, dataDir: string, what: string): void {
  assert.ok(!text.includes(dataDir), `${what}: leaks the data directory: ${text}`);
  assert.doesNotMatch(text, /fatal:|error:|Command failed|\bat .+\.js:\d+/, `${what}: leaks tool output or a stack: ${text}`);
}

/** POST that declares `length` body bytes and sends none: the status and body of the answer. */
function declaredBodyOnly(baseUrl: string, path: string, length: number, token: string): Promise<{ status: number; text: string }> {
  const { hostname, port } = new URL(baseUrl);
  return new Promise((resolve, reject) => {
    const socket = tcpConnect(Number(port), hostname);
    let received = '';
    socket.setTimeout(15_000, () => socket.destroy(new Error('no answer within 15 s')));
    socket.on('data', (d: Buffer) => (received += d.toString('utf8')));
    socket.on('error', reject);
    socket.on('close', () => {
      const [head = '', body = ''] = received.split('\r\n\r\n');
      resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0), text: body });
    });
    socket.write(
      `POST ${path} HTTP/1.1\r\nHost: ${hostname}\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/json\r\n` +
        `Content-Length: ${length}\r\nConnection: close\r\n\r\n`,
    );
  });
}

describe('forge node under hostile input (issue 10): 4xx with a reason, never a 500 or a leak', () => {
  let nats: TestNats;
  let dataDir: string;
  let node: TestForgeNode;
  let raw: ReturnType<typeof rawHttpClient>;
  let alice: ReturnType<typeof apiClient>;
  let bob: ReturnType<typeof apiClient>;
  let aliceToken: string;

  before(async () => {
    nats = await startTestNats();
    dataDir = mkdtempSync(join(tmpdir(), 'forgebus-hostile-'));
    node = await startForgeNode({ id: 'hostile', natsUrl: nats.url, dataDir });
    raw = rawHttpClient(node.url);
    aliceToken = await tokenFor('alice');
    alice = apiClient(node.url, aliceToken);
    bob = apiClient(node.url, await tokenFor('bob'));
    assert.equal((await alice('POST', '/api/repos', { name: 'web' })).status, 201);
  });

  after(async () => {
    raw?.close();
    await node?.stop();
    await nats?.dispose();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('answers 401 saying what is wrong for a well-signed token whose "sub" is not a user name', async () => {
    const cases: [unknown, RegExp][] = [
      [123, /"sub".*must be a string \(got a number\)/],
      [true, /"sub".*must be a string \(got a boolean\)/],
      [['alice'], /"sub".*must be a string \(got an array\)/],
      [{ name: 'alice' }, /"sub".*must be a string \(got an object\)/],
      [null, /"sub".*must be a string \(got null\)/],
      ['bad name', /"sub".*may only contain/],
      ['', /"sub".*must not be empty/],
    ];
    for (const [sub, reason] of cases) {
      const token = await signedToken({ sub });
      const what = `sub ${JSON.stringify(sub)}`;
      const attempts: { method?: string; path: string; headers: Record<string, string> }[] = [
        { path: '/api/repos/alice/web', headers: { authorization: `Bearer ${token}` } },
        { method: 'POST', path: '/api/session', headers: { authorization: `Bearer ${token}` } },
        { path: `/api/events?access_token=${encodeURIComponent(token)}`, headers: {} },
        { path: '/api/events', headers: { cookie: `forge_token=${token}` } },
      ];
      for (const { method = 'GET', path, headers } of attempts) {
        const res = await raw.send({ method, path, headers });
        assert.equal(res.status, 401, `${what} on ${method} ${path.slice(0, 20)}: ${res.text}`);
        assert.match(JSON.parse(res.text).message, reason, `${what} on ${method} ${path.slice(0, 20)}`);
      }
      // Who the cookie belongs to: nobody, rather than an error.
      const whoami = await raw.send({ method: 'GET', path: '/api/session', headers: { cookie: `forge_token=${token}` } });
      assert.equal(whoami.status, 200, `${what}: ${whoami.text}`);
      assert.deepEqual(JSON.parse(whoami.text), { user: null });
    }
    const wrongExp = await raw.send({ method: 'GET', path: '/api/repos/alice/web', headers: { authorization: `Bearer ${await signedToken({ sub: 'alice', exp: 'soon' })}` } });
    assert.equal(wrongExp.status, 401, wrongExp.text);
    assert.match(JSON.parse(wrongExp.text).message, /exp/);
  });

  it('refuses JSON nested deeper than the limit, bodies over the size limit and bodies that are not application/json', async () => {
    const post = (body: string | Buffer, headers: Record<string, string> = { 'content-type': 'application/json' }) =>
      raw.send({ method: 'POST', path: '/api/repos', headers: { authorization: `Bearer ${aliceToken}`, ...headers }, body });
    for (const depth of [1_500, 5_000, 15_000]) {
      for (const body of [`{"name":"x","private":${'['.repeat(depth)}${']'.repeat(depth)}}`, `{"name":${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}}`]) {
        const res = await post(body);
        assert.equal(res.status, 400, `depth ${depth}: ${res.text.slice(0, 300)}`);
        assert.match(JSON.parse(res.text).message, /deeper than the limit of 32 levels/);
      }
    }
    const big = await post(JSON.stringify({ name: 'big', pad: 'x'.repeat(200_000) }));
    assert.equal(big.status, 413, big.text);
    assert.match(JSON.parse(big.text).message, /limit of 102400 bytes/);
    const chunked = await post(JSON.stringify({ name: 'big', pad: 'x'.repeat(200_000) }), { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
    assert.equal(chunked.status, 413, chunked.text);
    assert.match(JSON.parse(chunked.text).message, /limit of 102400 bytes/);
    // A commit may carry a file of up to 1 MiB characters: its route takes bodies that large.
    assert.equal((await post(JSON.stringify({ name: 'bigfiles' }))).status, 201);
    const commit = (content: string) =>
      raw.send({
        method: 'POST',
        path: '/api/repos/alice/bigfiles/commits',
        headers: { authorization: `Bearer ${aliceToken}`, 'content-type': 'application/json' },
        body: JSON.stringify({ branch: 'main', path: 'big.txt', content, message: 'a big file' }),
      });
    const bigFile = await commit('y\n'.repeat(200_000));
    assert.equal(bigFile.status, 201, bigFile.text.slice(0, 300));
    // Within the character limit, but escaped beyond what one NATS message carries: a 413, not a 503.
    const escaped = await commit('\u0001'.repeat(400_000));
    assert.equal(escaped.status, 413, escaped.text.slice(0, 300));
    assert.match(JSON.parse(escaped.text).message, /more than the \d+ bytes a NATS message may carry/);
    assert.equal((await commit('y'.repeat(512 * 1024 + 1))).status, 400, 'over the character limit');
    // Declared larger than the commit limit: refused before the body is read (bare TCP: a client
    // library would fail writing the body the server no longer reads).
    const tooBig = await declaredBodyOnly(node.url, '/api/repos/alice/bigfiles/commits', 9 * 1024 * 1024, aliceToken);
    assert.equal(tooBig.status, 413, tooBig.text);
    assert.match(JSON.parse(tooBig.text).message, /limit of 8388608 bytes/);

    for (const headers of [{ 'content-type': 'application/x-www-form-urlencoded' }, { 'content-type': 'text/plain' }, {} as Record<string, string>]) {
      const res = await post('{"name":"web3"}', headers);
      assert.equal(res.status, 415, `${JSON.stringify(headers)}: ${res.text}`);
      assert.match(JSON.parse(res.text).message, /content-type: application\/json/);
    }
    assert.equal((await post('name=web3', { 'content-type': 'application/x-www-form-urlencoded' })).status, 415);
    for (const [body, reason] of [['[{"name":"a"}]', /must be a JSON object \(got an array\)/], ['{"name":', /not valid JSON/], [Buffer.from([0x7b, 0xff, 0x7d]), /UTF-8/]] as const) {
      const res = await post(body);
      assert.equal(res.status, 400, res.text);
      assert.match(JSON.parse(res.text).message, reason);
    }
    // Still fine: a flat object with a charset, and a body-less PUT.
    assert.equal((await post('{"name":"web3"}', { 'content-type': 'application/json; charset=utf-8' })).status, 201);
    assert.equal((await alice('PUT', '/api/repos/alice/web3/collaborators/bob')).status, 200);
    // A PATCH without a body (found by the fuzz test: a 500) changes nothing.
    assert.equal((await alice('POST', '/api/repos/alice/web3/issues', { title: 'kept' })).status, 201);
    const emptyPatch = await raw.send({ method: 'PATCH', path: '/api/repos/alice/web3/issues/1', headers: { authorization: `Bearer ${aliceToken}` } });
    assert.equal(emptyPatch.status, 200, emptyPatch.text);
    assert.equal(JSON.parse(emptyPatch.text).title, 'kept');
    // Optional fields may be left out, not null (found by the fuzz test: a null issue body was a 500).
    for (const field of ['title', 'body', 'state']) {
      const res = await alice('PATCH', '/api/repos/alice/web3/issues/1', { [field]: null });
      assert.equal(res.status, 400, `${field}: null → ${JSON.stringify(res.body)}`);
      assert.match(res.body.message.join(' '), new RegExp(`^${field} must`));
    }
    assert.equal((await alice('GET', '/health')).status, 200);
  });

  it('refuses commits git would refuse at once (one delivery), with a 4xx and a clean reason', async () => {
    assert.equal((await alice('POST', '/api/repos/alice/web/commits', { branch: 'main', path: 'a', content: 'file', message: 'a file' })).status, 201);
    assert.equal((await alice('POST', '/api/repos/alice/web/commits', { branch: 'main', path: 'd/e', content: 'nested', message: 'a folder' })).status, 201);
    const statsBefore = (await alice('GET', '/api/writes/stats')).body;

    const badPaths = ['.git./a', 'GIT~1/a', '.git/x', '.GIT/x', 'x/.Git', '.git /x', 'git~1. ./x', '.g\u200cit/x', '.\ufeffgit/x', '.git::$INDEX_ALLOCATION/x', '\ud800x'];
    for (const path of badPaths) {
      const res = await alice('POST', '/api/repos/alice/web/commits', { branch: 'main', path, content: 'x', message: 'm' });
      assert.equal(res.status, 400, `${JSON.stringify(path)}: ${JSON.stringify(res.body)}`);
      assert.match(res.body.message, /invalid path/);
      assertClean(JSON.stringify(res.body), dataDir, JSON.stringify(path));
    }
    const nul = await alice('POST', '/api/repos/alice/web/commits', { branch: 'main', path: 'n', content: 'x', message: 'one\u0000two' });
    assert.equal(nul.status, 400, JSON.stringify(nul.body));
    assert.match(nul.body.message, /NUL/);

    const conflicts: [string, RegExp][] = [
      ['a/b', /a file exists at 'a' where the commit needs a folder/],
      ['a/b/c', /a file exists at 'a' where the commit needs a folder/],
      ['d', /a folder exists at 'd' where the commit needs a file/],
    ];
    for (const [path, reason] of conflicts) {
      const res = await alice('POST', '/api/repos/alice/web/commits', { branch: 'main', path, content: 'x', message: 'm' });
      assert.equal(res.status, 409, `${path}: ${JSON.stringify(res.body)}`);
      assert.match(res.body.message, reason);
      assertClean(JSON.stringify(res.body), dataDir, path);
    }
    // Siblings in a folder are no conflict (a folder's entries must not be mistaken for the path).
    for (const path of ['d/f', 'd/e', 'd/g/h']) {
      const res = await alice('POST', '/api/repos/alice/web/commits', { branch: 'main', path, content: path, message: path });
      assert.equal(res.status, 201, `${path}: ${JSON.stringify(res.body)}`);
    }
    const fromOption = await alice('POST', '/api/repos/alice/web/branches/b2', { from: '--help' });
    assert.equal(fromOption.status, 400, JSON.stringify(fromOption.body));

    const statsAfter = (await alice('GET', '/api/writes/stats')).body;
    // One delivery each: a write retried as if transient would be redelivered (four times).
    assert.equal(statsAfter.redelivered, statsBefore.redelivered, 'no write was delivered twice');
    assert.equal(statsAfter.failed - statsBefore.failed, conflicts.length, 'only the conflicts reached the queue');
    assert.deepEqual((await alice('GET', '/api/writes/failures')).body, [], 'permanent failures are the submitter\'s, not recorded');
  });

  it('shows a failed write, with its arguments, only to users who may read its repository', async () => {
    const marker = `vault-marker-${process.pid}-${Date.now()}`;
    assert.equal((await alice('POST', '/api/repos', { name: 'vault', private: true })).status, 201);
    assert.equal((await alice('POST', '/api/repos/alice/vault/commits', { branch: 'main', path: 'README', content: 'x', message: 'first' })).status, 201);
    // A stale lock makes every attempt fail the way a real transient failure does: retried, then recorded.
    const lock = join(dataDir, 'repos', 'alice', 'vault.git', 'refs', 'heads', 'main.lock');
    writeFileSync(lock, '');
    let failed;
    try {
      failed = await alice('POST', '/api/repos/alice/vault/commits', { branch: 'main', path: 'secret.txt', content: `content ${marker}`, message: `message ${marker}` });
    } finally {
      rmSync(lock, { force: true });
    }
    assert.equal(failed.status, 500, JSON.stringify(failed.body));
    assert.match(failed.body.message, /after 5 attempt\(s\).*GET \/api\/writes\/failures/);
    assertClean(JSON.stringify(failed.body), dataDir, 'the failed write');

    const mine = await alice('GET', '/api/writes/failures');
    assert.equal(mine.status, 200);
    const record = mine.body.find((f: { repo: { name: string } }) => f.repo.name === 'vault');
    assert.ok(record, `alice sees her failure: ${JSON.stringify(mine.body)}`);
    assert.equal(record.args.content, `content ${marker}`);
    assert.equal(record.deliveries, 5);
    assertClean(JSON.stringify(record), dataDir, 'the failure record');

    for (const route of ['/api/writes/failures', '/api/writes/stats']) {
      const theirs = await bob('GET', route);
      assert.equal(theirs.status, 200);
      const text = JSON.stringify(theirs.body);
      assert.ok(!text.includes(marker) && !text.includes('vault'), `bob must not see alice's private write on ${route}: ${text}`);
    }
    // The same rule as reading the repository: a collaborator sees it.
    assert.equal((await alice('PUT', '/api/repos/alice/vault/collaborators/bob')).status, 200);
    const shared = await bob('GET', '/api/writes/failures');
    assert.ok(shared.body.some((f: { args: { content: string } }) => f.args.content === `content ${marker}`), JSON.stringify(shared.body));
  });
});
