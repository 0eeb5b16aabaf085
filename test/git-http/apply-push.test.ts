import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { applyPush } from '../../src/forge-node/git-http/apply-push.js';
import { encodeReceiveCommands, FLUSH, type RefCommand } from '../../src/forge-node/git-http/pkt-line.js';
import { installPushHooks } from '../../src/forge-node/git-http/protected-branches.js';
import { PushSpool } from '../../src/forge-node/git-http/spool.js';

const run = promisify(execFile);
const ZERO = '0'.repeat(40);
const env = { ...process.env, LC_ALL: 'C', GIT_AUTHOR_NAME: 'T', GIT_AUTHOR_EMAIL: 't@example.com', GIT_COMMITTER_NAME: 'T', GIT_COMMITTER_EMAIL: 't@example.com' };
const git = async (cwd: string, args: string[]) => (await run('git', args, { cwd, env, encoding: 'buffer', maxBuffer: 64 << 20 })).stdout as unknown as Buffer;
const text = async (cwd: string, args: string[]) => (await git(cwd, args)).toString().trim();

// A push request as git sends it (ref commands, then the pack), applied by the worker's code
// twice, as a redelivery after the first worker died would: the second delivery must change
// nothing and still answer ok.
describe('applying a spooled push', () => {
  let root: string;
  let bare: string;
  let local: string;
  let spool: PushSpool;
  let hooksDir: string;

  before(async () => {
    root = mkdtempSync(join(tmpdir(), 'forgebus-apply-'));
    bare = join(root, 'repo.git');
    local = join(root, 'local');
    await run('git', ['init', '-q', '--bare', '-b', 'main', bare], { env });
    await run('git', ['init', '-q', '-b', 'main', local], { env });
    spool = new PushSpool(root);
    hooksDir = await installPushHooks(root);
    mkdirSync(spool.dir, { recursive: true });
  });

  after(() => {
    if (root) rmSync(root, { recursive: true, force: true });
  });

  /** Commits in the local repository and spools a push of `commands` with the objects they need. */
  async function spoolPush(id: string, commands: RefCommand[], capabilities = ['report-status', 'side-band-64k']): Promise<void> {
    const wanted = commands.filter((c) => c.new !== ZERO).map((c) => c.new);
    const have = commands.filter((c) => c.old !== ZERO).map((c) => `^${c.old}`);
    const pack = wanted.length === 0 ? Buffer.alloc(0) : await new Promise<Buffer>((resolve, reject) => {
      const child = execFile('git', ['pack-objects', '--revs', '--stdout', '-q'], { cwd: local, env, encoding: 'buffer', maxBuffer: 64 << 20 }, (err, stdout) => (err ? reject(err) : resolve(stdout as unknown as Buffer)));
      child.stdin!.end(`${[...wanted, ...have].join('\n')}\n`);
    });
    writeFileSync(spool.request(id), Buffer.concat([encodeReceiveCommands(commands, capabilities), pack]));
  }

  async function commit(message: string): Promise<string> {
    writeFileSync(join(local, `${message}.txt`), message);
    await git(local, ['add', '.']);
    await git(local, ['commit', '-q', '-m', message]);
    return text(local, ['rev-parse', 'HEAD']);
  }

  const options = () => ({ hooksDir, protectedBranches: [], timeoutMs: 30_000 });

  it('applies a push once, however often it is delivered', async () => {
    const first = await commit('one');
    await spoolPush('p1', [{ old: ZERO, new: first, ref: 'refs/heads/main' }]);
    const applied = await applyPush(bare, spool, 'p1', options());
    assert.deepEqual(applied.report, { unpack: 'ok', refs: [{ ref: 'refs/heads/main', ok: true }] });
    assert.equal(await text(bare, ['rev-parse', 'refs/heads/main']), first);
    // Delivered again (the worker died before recording the outcome): ok, nothing run twice.
    const again = await applyPush(bare, spool, 'p1', options());
    assert.deepEqual(again.report, applied.report);
    assert.equal(again.accepted.length, 1);
    assert.equal(await text(bare, ['rev-list', '--count', 'main']), '1');
  });

  it('runs receive-pack only on the refs an earlier delivery did not apply, and clears its quarantine leftovers', async () => {
    const base = await text(bare, ['rev-parse', 'refs/heads/main']);
    const next = await commit('two');
    // As if a delivery got this far before its worker died: objects in, one of two refs moved.
    await git(local, ['push', '-q', bare, `${next}:refs/heads/done`]);
    mkdirSync(join(bare, 'objects', 'tmp_objdir-incoming-XYZ'), { recursive: true });
    await spoolPush('p2', [
      { old: ZERO, new: next, ref: 'refs/heads/done' },
      { old: base, new: next, ref: 'refs/heads/main' },
    ]);
    const applied = await applyPush(bare, spool, 'p2', options());
    assert.deepEqual(applied.report.refs, [
      { ref: 'refs/heads/done', ok: true },
      { ref: 'refs/heads/main', ok: true },
    ]);
    assert.equal(await text(bare, ['rev-parse', 'refs/heads/main']), next);
    assert.ok(!readdirSync(join(bare, 'objects')).some((n) => n.startsWith('tmp_objdir-incoming-')), 'leftover quarantine removed');
    execFileSync('git', ['--git-dir', bare, 'fsck', '--strict', '--no-progress'], { env });
  });

  it('reports a ref whose old value no longer matches as refused, like git', async () => {
    const stale = await text(bare, ['rev-parse', 'refs/heads/main~1']);
    const other = await commit('three');
    await spoolPush('p3', [{ old: stale, new: other, ref: 'refs/heads/main' }]);
    const applied = await applyPush(bare, spool, 'p3', options());
    assert.equal(applied.report.refs[0]!.ok, false);
    assert.equal(applied.accepted.length, 0);
    assert.notEqual(await text(bare, ['rev-parse', 'refs/heads/main']), other);
  });

  it('refuses a malformed request for good', async () => {
    writeFileSync(spool.request('p4'), Buffer.concat([Buffer.from('0011not a command'), FLUSH]));
    await assert.rejects(applyPush(bare, spool, 'p4', options()), /BadPushError|malformed/);
    assert.ok(existsSync(spool.request('p4')));
  });
});
