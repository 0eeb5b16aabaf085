import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { readStream } from '../bus/helpers.js';
import { apiClient, startForgeNode, tokenFor, type TestForgeNode } from '../support/forge-node.js';
import { eventually, startTestNats, type TestNats } from '../support/nats.js';
import { RoundRobinBalancer } from '../support/round-robin-balancer.js';

const run = promisify(execFile);
const CLIENTS = 12;
const COMMITS = 10;
/** Pushes of one commit before a client gives up (bounded; the backoff makes the race fair enough). */
const MAX_ATTEMPTS = 200;
const NODE_ENV = { FORGE_WRITE_ACK_WAIT_MS: '3000', FORGE_WRITE_PARTITIONS: '8' };

async function git(cwd: string, args: string[]): Promise<string> {
  const { stdout } = await run('git', ['-c', 'credential.helper=', ...args], {
    cwd,
    env: { ...process.env, GIT_TERMINAL_PROMPT: '0', LC_ALL: 'C', GIT_AUTHOR_NAME: 'T', GIT_AUTHOR_EMAIL: 't@example.com', GIT_COMMITTER_NAME: 'T', GIT_COMMITTER_EMAIL: 't@example.com' },
    timeout: 60_000,
  });
  return stdout.trim();
}

/** git clients that each commit and push to main, rebasing and retrying when refused. */
class Pushes {
  readonly accepted: { client: number; head: string }[] = [];
  attempts = 0;
  rejections = 0;

  constructor(
    private readonly work: string,
    private readonly remote: string,
  ) {}

  async client(c: number, commits: number, afterEach: () => Promise<void> = async () => undefined, prefix = 'client'): Promise<void> {
    const dir = join(this.work, `${prefix}${c}`);
    await git(this.work, ['clone', '-q', this.remote, dir]);
    for (let i = 1; i <= commits; i++) {
      writeFileSync(join(dir, `${prefix}${c}-${i}.txt`), `${c} ${i}\n`);
      await git(dir, ['add', '.']);
      await git(dir, ['commit', '-q', '-m', `${prefix} ${c} commit ${i}`]);
      for (let attempt = 1; ; attempt++) {
        this.attempts++;
        try {
          await git(dir, ['push', '-q', 'origin', 'HEAD:main']);
          this.accepted.push({ client: c, head: await git(dir, ['rev-parse', 'HEAD']) });
          break;
        } catch (err) {
          this.rejections++;
          if (attempt >= MAX_ATTEMPTS) throw new Error(`${prefix} ${c} commit ${i}: still refused after ${attempt} pushes: ${(err as Error).message}`);
          // Clients racing for one branch: back off a random while, as CI bots do.
          await new Promise((r) => setTimeout(r, Math.random() * 150 * Math.min(attempt, 8)));
          // Someone else pushed first (or the node went away): take theirs, replay ours, retry.
          for (let pull = 1; ; pull++) {
            try {
              await git(dir, ['pull', '-q', '--rebase', 'origin', 'main']);
              break;
            } catch (pullErr) {
              if (pull >= 10) throw pullErr;
              await new Promise((r) => setTimeout(r, 100 * pull));
            }
          }
        }
      }
      await afterEach();
    }
  }
}

// Issue 13's proof: twelve git clients push ten commits each to main of one repository, each
// push through whichever of three nodes the balancer picks, rebasing when someone else got there
// first; one node is SIGKILLed on the way. Pushes are writes of the queue, so they are applied
// one at a time, cluster-wide, whatever node took them.
describe('git push from 12 clients through 3 nodes, one of them killed', () => {
  let nats: TestNats;
  let nc: NatsConnection;
  const nodes: TestForgeNode[] = [];
  let balancer: RoundRobinBalancer;
  let dataDir: string;
  let work: string;

  before(async () => {
    nats = await startTestNats();
    nc = await connect({ servers: nats.url });
    dataDir = mkdtempSync(join(tmpdir(), 'forgebus-pushes-'));
    work = mkdtempSync(join(tmpdir(), 'forgebus-pushes-work-'));
    nodes.push(await startForgeNode({ id: 'push-1', natsUrl: nats.url, dataDir, env: NODE_ENV }));
    nodes.push(...(await Promise.all([2, 3].map((i) => startForgeNode({ id: `push-${i}`, natsUrl: nats.url, dataDir, env: NODE_ENV })))));
    balancer = await RoundRobinBalancer.start(nodes.map((n) => n.url));
  });

  after(async () => {
    await balancer?.close();
    for (const node of nodes) await node.kill('SIGKILL');
    await nc?.close();
    await nats?.dispose();
    for (const d of [dataDir, work]) if (d) rmSync(d, { recursive: true, force: true });
  });

  it('lands exactly the 120 commits, in a linear history, each accepted push once', async () => {
    const token = await tokenFor('alice');
    const api = apiClient(nodes[0]!.url, token);
    assert.equal((await api('POST', '/api/repos', { name: 'hot' })).status, 201);
    assert.equal((await api('POST', '/api/repos/alice/hot/commits', { branch: 'main', path: 'README', content: 'hot\n', message: 'initial' })).status, 201);
    const remote = `${balancer.url.replace('http://', `http://alice:${token}@`)}/alice/hot.git`;

    const pushes = new Pushes(work, remote);
    let killed = false;
    const started = performance.now();
    await Promise.all(
      Array.from({ length: CLIENTS }, (_, c) =>
        pushes.client(c, COMMITS, async () => {
          // A third of the way in, one node dies with whatever it was doing.
          if (!killed && pushes.accepted.length >= 40) {
            killed = true;
            await nodes[1]!.kill('SIGKILL');
          }
        }),
      ),
    );
    const { accepted, attempts, rejections } = pushes;
    const seconds = (performance.now() - started) / 1000;
    assert.ok(killed, 'a node was killed during the run');

    // The server's repository: linear, exactly the 120 commits once each, fsck clean.
    const bare = join(dataDir, 'repos', 'alice', 'hot.git');
    const subjects = (await git(work, ['--git-dir', bare, 'log', '--format=%s', 'main'])).split('\n');
    const expected = Array.from({ length: CLIENTS }, (_, c) => Array.from({ length: COMMITS }, (_, i) => `client ${c} commit ${i + 1}`)).flat();
    assert.deepEqual([...subjects].filter((s) => s !== 'initial').sort(), [...expected].sort(), 'each commit exactly once');
    assert.equal(subjects.at(-1), 'initial');
    assert.equal(await git(work, ['--git-dir', bare, 'rev-list', '--merges', 'main']), '', 'no merge commits: a linear history');
    await git(work, ['--git-dir', bare, 'fsck', '--strict', '--no-progress']);
    const history = new Set((await git(work, ['--git-dir', bare, 'rev-list', 'main'])).split('\n'));
    for (const { client: c, head } of accepted) assert.ok(history.has(head), `client ${c}'s accepted push ${head} is in the history`);

    // Each accepted push produced one repo.pushed (after = what the client pushed), never two.
    const pushedAfter = await eventually(async () => {
      const afters = (await readStream(nc))
        .filter((m) => m.envelope.type === 'repo.pushed' && m.envelope.repo?.name === 'hot' && (m.envelope.payload as { ref: string }).ref === 'refs/heads/main')
        .map((m) => (m.envelope.payload as { after: string }).after);
      return accepted.every((a) => afters.includes(a.head)) ? afters : undefined;
    }, 30_000, 'a repo.pushed for every accepted push');
    assert.deepEqual(pushedAfter.filter((a, i) => pushedAfter.indexOf(a) !== i), [], 'no push published twice');
    for (const { head } of accepted) assert.equal(pushedAfter.filter((a) => a === head).length, 1);
    console.log(
      `# ${CLIENTS} clients x ${COMMITS} commits: ${accepted.length} pushes accepted, ${rejections} refused or failed (rebased and retried) of ${attempts}, in ${seconds.toFixed(1)} s; node 2 killed after 40; balancer ${JSON.stringify(balancer.stats.perBackend)}`,
    );
  });
  it('pushes and API commits to one repository interleave with no lost update', async () => {
    const token = await tokenFor('alice');
    const apis = nodes.filter((n) => n.child.exitCode === null && n.child.signalCode === null).map((n) => apiClient(n.url, token));
    assert.equal((await apis[0]!('POST', '/api/repos', { name: 'mixed' })).status, 201);
    assert.equal((await apis[0]!('POST', '/api/repos/alice/mixed/commits', { branch: 'main', path: 'README', content: 'mixed\n', message: 'initial' })).status, 201);
    const remote = `${balancer.url.replace('http://', `http://alice:${token}@`)}/alice/mixed.git`;
    const pushes = new Pushes(work, remote);
    const apiShas: string[] = [];
    let pushing = true;
    // The web UI's commits, a few per second, land between the pushes (and move main under them).
    const apiLoop = (async () => {
      for (let n = 0; pushing || n < 10; n++) {
        const res = await apis[n % apis.length]!('POST', '/api/repos/alice/mixed/commits', { branch: 'main', path: `api-${n}.txt`, content: `${n}`, message: `api commit ${n}` });
        assert.equal(res.status, 201, JSON.stringify(res.body));
        apiShas.push(res.body.sha);
        await new Promise((r) => setTimeout(r, 250));
      }
    })();
    try {
      await Promise.all(Array.from({ length: 3 }, (_, c) => pushes.client(c, 5, undefined, 'mixer')));
    } finally {
      pushing = false;
      await apiLoop;
    }
    const bare = join(dataDir, 'repos', 'alice', 'mixed.git');
    const subjects = (await git(work, ['--git-dir', bare, 'log', '--format=%s', 'main'])).split('\n');
    const history = new Set((await git(work, ['--git-dir', bare, 'rev-list', 'main'])).split('\n'));
    for (const sha of apiShas) assert.ok(history.has(sha), `API commit ${sha} is in the history`);
    for (const { head } of pushes.accepted) assert.ok(history.has(head), `pushed ${head} is in the history`);
    const pushed = Array.from({ length: 3 }, (_, c) => Array.from({ length: 5 }, (_, i) => `mixer ${c} commit ${i + 1}`)).flat();
    assert.deepEqual(subjects.filter((s) => s.startsWith('mixer')).sort(), pushed.sort(), 'every pushed commit once');
    assert.equal(subjects.filter((s) => s.startsWith('api commit')).length, apiShas.length, 'every API commit once');
    assert.equal(await git(work, ['--git-dir', bare, 'rev-list', '--merges', 'main']), '');
    console.log(`# interleaved: ${apiShas.length} API commits and ${pushes.accepted.length} pushes (${pushes.rejections} refused and retried) on one branch`);
  });
});
