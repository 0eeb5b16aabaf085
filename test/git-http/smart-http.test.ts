import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { readStream } from '../bus/helpers.js';
import { apiClient, startForgeNode, tokenFor, type TestForgeNode } from '../support/forge-node.js';
import { eventually, startTestNats, type TestNats } from '../support/nats.js';

const run = promisify(execFile);

/** git, with no credential helper or prompt of the machine's getting in the way. */
async function git(cwd: string, args: string[]): Promise<{ stdout: string; stderr: string }> {
  return run('git', ['-c', 'credential.helper=', '-c', 'protocol.version=2', ...args], {
    cwd,
    env: { ...process.env, GIT_TERMINAL_PROMPT: '0', GIT_ASKPASS: '', LC_ALL: 'C', GIT_AUTHOR_NAME: 'T', GIT_AUTHOR_EMAIL: 't@example.com', GIT_COMMITTER_NAME: 'T', GIT_COMMITTER_EMAIL: 't@example.com' },
  });
}

const failure = async (p: Promise<unknown>): Promise<string> => {
  try {
    await p;
  } catch (err) {
    return `${(err as { stderr?: string }).stderr ?? ''}${(err as Error).message}`;
  }
  throw new Error('expected the git command to fail');
};

describe('git over HTTP: clone, fetch and push through a forge node', () => {
  let nats: TestNats;
  let nc: NatsConnection;
  let node: TestForgeNode;
  let dataDir: string;
  let work: string;
  let alice: string;
  let bob: string;
  const url = (user: string, token: string, repo: string) => `${node.url.replace('http://', `http://${user}:${token}@`)}/alice/${repo}.git`;

  before(async () => {
    nats = await startTestNats();
    nc = await connect({ servers: nats.url });
    dataDir = mkdtempSync(join(tmpdir(), 'forgebus-githttp-'));
    work = mkdtempSync(join(tmpdir(), 'forgebus-githttp-work-'));
    node = await startForgeNode({ id: 'gh-1', natsUrl: nats.url, dataDir, env: { FORGE_PROTECTED_BRANCHES: 'main,release', FORGE_PUSH_MAX_BYTES: String(1024 * 1024) } });
    alice = await tokenFor('alice');
    bob = await tokenFor('bob');
    const api = apiClient(node.url, alice);
    assert.equal((await api('POST', '/api/repos', { name: 'web' })).status, 201);
    assert.equal((await api('POST', '/api/repos', { name: 'secret', private: true })).status, 201);
    assert.equal((await api('POST', '/api/repos/alice/web/commits', { branch: 'main', path: 'README', content: 'hello', message: 'first' })).status, 201);
  });

  after(async () => {
    await node?.kill('SIGKILL');
    await nc?.close();
    await nats?.dispose();
    for (const d of [dataDir, work]) if (d) rmSync(d, { recursive: true, force: true });
  });

  it('clones, pushes commits and a branch, and each push is a write with its events', async () => {
    await git(work, ['clone', url('alice', alice, 'web'), 'web']);
    const clone = join(work, 'web');
    assert.equal((await git(clone, ['log', '--format=%s'])).stdout.trim(), 'first');
    for (let i = 1; i <= 3; i++) {
      writeFileSync(join(clone, `f${i}.txt`), `${i}\n`);
      await git(clone, ['add', '.']);
      await git(clone, ['commit', '-m', `push commit ${i}`]);
    }
    const pushed = await git(clone, ['push', 'origin', 'main']);
    assert.match(pushed.stderr, /main -> main/);
    await git(clone, ['push', 'origin', 'main:feature']);
    const history = (await apiClient(node.url, alice)('GET', '/api/repos/alice/web/commits?branch=main')).body as { message: string }[];
    assert.deepEqual(history.map((c) => c.message.trim()), ['push commit 3', 'push commit 2', 'push commit 1', 'first']);
    const head = (await git(clone, ['rev-parse', 'HEAD'])).stdout.trim();
    const events = await eventually(async () => {
      const all = (await readStream(nc)).filter((m) => m.envelope.repo?.name === 'web' && m.envelope.origin === 'gh-1' && m.envelope.actor === 'alice');
      const pushes = all.filter((m) => m.envelope.type === 'repo.pushed' && (m.envelope.payload as { commitCount: number }).commitCount === 3);
      return pushes.length === 1 && all.some((m) => m.envelope.type === 'ref.created') ? all : undefined;
    }, 15_000, 'the push events');
    const push = events.find((m) => m.envelope.type === 'repo.pushed' && (m.envelope.payload as { commitCount: number }).commitCount === 3)!;
    assert.equal((push.envelope.payload as { ref: string }).ref, 'refs/heads/main');
    assert.equal((push.envelope.payload as { after: string }).after, head);
    // (The API's first commit created main; the push created feature, once.)
    const created = events.filter((m) => m.envelope.type === 'ref.created').map((m) => m.envelope.payload as { ref: string; sha: string });
    assert.deepEqual(created.filter((c) => c.ref !== 'refs/heads/main'), [{ ref: 'refs/heads/feature', sha: head }]);
    // And a fetch (protocol v2) of what another clone pushed.
    await git(work, ['clone', url('alice', alice, 'web'), 'web2']);
    assert.equal((await git(join(work, 'web2'), ['rev-parse', 'origin/feature'])).stdout.trim(), head);
  });

  it('refuses what it must, with messages git prints', async () => {
    // No credentials: 401 with a Basic challenge (git then says authentication failed).
    const res = await fetch(`${node.url}/alice/web.git/info/refs?service=git-upload-pack`);
    assert.equal(res.status, 401);
    assert.match(res.headers.get('www-authenticate') ?? '', /^Basic realm="forgebus"/);
    // Someone else's token as the password of alice.
    assert.match(await failure(git(work, ['clone', url('alice', bob, 'web'), 'nope'])), /Authentication failed|401/);
    // A private repository is not found for others, and bob may not push to alice's.
    assert.match(await failure(git(work, ['clone', url('bob', bob, 'secret'), 'nope2'])), /not found|404/);
    await git(work, ['clone', url('bob', bob, 'web'), 'bobs']);
    const bobs = join(work, 'bobs');
    writeFileSync(join(bobs, 'b.txt'), 'b\n');
    await git(bobs, ['add', '.']);
    await git(bobs, ['commit', '-m', 'from bob']);
    assert.match(await failure(git(bobs, ['push', 'origin', 'main'])), /may not push|403/);
    // main is protected: no force-push, no deletion; the hook's reason reaches the user.
    const clone = join(work, 'web');
    await git(clone, ['reset', '--hard', 'HEAD~1']);
    const forced = await failure(git(clone, ['push', '--force', 'origin', 'main']));
    assert.match(forced, /remote: forgebus: branch main is protected: it cannot be force-pushed/);
    assert.match(forced, /\[remote rejected\] main -> main \(hook declined\)/);
    await git(clone, ['push', 'origin', 'HEAD:release']);
    assert.match(await failure(git(clone, ['push', 'origin', ':release'])), /remote: forgebus: branch release is protected: it cannot be deleted/);
    // An unprotected branch can be deleted, and that is a ref.deleted event.
    await git(clone, ['push', 'origin', ':feature']);
    await eventually(async () => (await readStream(nc)).some((m) => m.envelope.type === 'ref.deleted' && (m.envelope.payload as { ref: string }).ref === 'refs/heads/feature'), 15_000, 'ref.deleted');
  });
  it('refuses a push over FORGE_PUSH_MAX_BYTES with a message git shows, and keeps nothing of it', async () => {
    const clone = join(work, 'web');
    await git(clone, ['checkout', '-q', '-b', 'big']);
    writeFileSync(join(clone, 'big.bin'), randomBytes(2 * 1024 * 1024)); // incompressible: the pack stays over 1 MiB
    await git(clone, ['add', '.']);
    await git(clone, ['commit', '-q', '-m', 'too big']);
    const refused = await failure(git(clone, ['push', 'origin', 'big']));
    assert.match(refused, /remote: forgebus: the push is larger than 1 MiB: push fewer commits at a time/);
    assert.match(refused, /unpack failed|push larger than this server accepts/);
    assert.equal((await git(clone, ['ls-remote', 'origin', 'refs/heads/big'])).stdout.trim(), '', 'the branch was not created');
    assert.deepEqual(readdirSync(join(dataDir, 'spool')), [], 'nothing left on the spool');
  });

  it('serves an upload-pack request sent gzip-compressed (protocol v0)', async () => {
    const auth = `Basic ${Buffer.from(`alice:${alice}`).toString('base64')}`;
    const adv = Buffer.from(await (await fetch(`${node.url}/alice/web.git/info/refs?service=git-upload-pack`, { headers: { authorization: auth } })).arrayBuffer()).toString('latin1');
    const main = /([0-9a-f]{40}) refs\/heads\/main/.exec(adv)![1]!;
    const pkt = (line: string) => `${(line.length + 4).toString(16).padStart(4, '0')}${line}`;
    const body = gzipSync(Buffer.from(`${pkt(`want ${main} no-progress\n`)}0000${pkt('done\n')}`));
    const res = await fetch(`${node.url}/alice/web.git/git-upload-pack`, {
      method: 'POST',
      headers: { authorization: auth, 'content-type': 'application/x-git-upload-pack-request', 'content-encoding': 'gzip' },
      body,
    });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'application/x-git-upload-pack-result');
    const out = Buffer.from(await res.arrayBuffer());
    assert.equal(out.subarray(0, 8).toString(), '0008NAK\n');
    assert.equal(out.subarray(8, 12).toString(), 'PACK', 'a pack follows');
  });
  it('streams a 50 MB clone through the node without holding it: its RSS grows by less than 30 MB', async () => {
    assert.equal((await apiClient(node.url, alice)('POST', '/api/repos', { name: 'big' })).status, 201);
    // 50 MB of incompressible content, put straight into the shared repository (setup only).
    const seed = join(work, 'big-seed');
    await git(work, ['init', '-q', '-b', 'main', seed]);
    for (let i = 0; i < 10; i++) writeFileSync(join(seed, `blob-${i}.bin`), randomBytes(5 * 1024 * 1024));
    await git(seed, ['add', '.']);
    await git(seed, ['commit', '-q', '-m', '50 MB']);
    await git(seed, ['push', '-q', join(dataDir, 'repos', 'alice', 'big.git'), 'main']);
    const rss = () => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${node.child.pid}/status`, 'utf8'))![1]) * 1024;
    await git(work, ['clone', '-q', url('alice', alice, 'web'), 'warm-up']); // the code paths are loaded
    const baseline = rss();
    let peak = baseline;
    const sampler = setInterval(() => (peak = Math.max(peak, rss())), 20);
    try {
      await git(work, ['clone', '-q', url('alice', alice, 'big'), 'big']);
    } finally {
      clearInterval(sampler);
    }
    peak = Math.max(peak, rss());
    const packBytes = Number((await git(join(work, 'big'), ['count-objects', '-v'])).stdout.match(/size-pack: (\d+)/)![1]) * 1024;
    assert.ok(packBytes > 50 * 1000 * 1000, `the clone received the 50 MB (${packBytes} bytes of pack)`);
    const grew = peak - baseline;
    console.log(`# clone of ${(packBytes / 1e6).toFixed(1)} MB: node RSS ${(baseline / 1e6).toFixed(0)} MB, peak +${(grew / 1e6).toFixed(1)} MB`);
    assert.ok(grew < 30 * 1024 * 1024, `node RSS grew by ${(grew / 1024 / 1024).toFixed(1)} MiB`);
  });
});
