import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { removeRepo } from '../../src/forge-node/git/bare-repos.js';
import { commitFile, GitCommandError } from '../../src/forge-node/git/git-writes.js';

describe('removing a repository', () => {
  it('succeeds while something keeps writing into it (a write racing the delete), and frees the name', async () => {
    const root = mkdtempSync(join(tmpdir(), 'forgebus-rmrepo-'));
    try {
      for (let round = 0; round < 20; round++) {
        const repo = join(root, `r${round}.git`);
        mkdirSync(join(repo, 'objects', 'pack'), { recursive: true });
        for (let i = 0; i < 200; i++) writeFileSync(join(repo, 'objects', `o${i}`), 'x');
        // A writer adding objects as fast as it can, as git does while a commit is applied.
        let writing = true;
        const writer = (async () => {
          for (let n = 0; writing; n++) await writeFile(join(repo, 'objects', `new-${n}`), 'y').catch(() => undefined);
        })();
        try {
          await removeRepo(repo);
        } finally {
          writing = false;
          await writer;
        }
        assert.equal(existsSync(repo), false, `round ${round}: the repository's path is free`);
      }
      assert.deepEqual(readdirSync(root).filter((n) => !n.includes('.deleted-')), [], 'nothing left under the repositories names');
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
  it('a commit to a repository deleted under it fails as a write, without ending the process (git exits before reading its input)', async () => {
    const gone = join(tmpdir(), `forgebus-gone-${process.pid}.git`);
    await assert.rejects(
      commitFile(gone, { writeId: 'w1', branch: 'main', path: 'big.bin', content: 'x'.repeat(4 * 1024 * 1024), message: 'big', author: 'alice', date: new Date().toISOString() }),
      (err: unknown) => err instanceof GitCommandError,
    );
  });
});
