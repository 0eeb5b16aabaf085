import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { commitMessageProblem, filePathProblem, isReservedGitName } from '../../src/forge-node/git/commit-rules.js';
import { jsonDepth } from '../../src/forge-node/http/json-depth.js';

/**
 * Which of `components` git itself refuses as a path component, asked of git in one
 * `update-index --index-info` run with core.protectHFS and core.protectNTFS on (it skips refused
 * entries with "Ignoring path" and adds the others).
 */
function refusedByGit(components: string[]): Set<string> {
  const dir = mkdtempSync(join(tmpdir(), 'forgebus-verify-path-'));
  try {
    const env = { ...process.env, GIT_INDEX_FILE: join(dir, 'index'), LC_ALL: 'C' };
    const git = (args: string[], input?: string) =>
      execFileSync('git', ['--git-dir', join(dir, 'repo.git'), '-c', 'core.protectHFS=true', '-c', 'core.protectNTFS=true', ...args], { env, input, stdio: ['pipe', 'pipe', 'ignore'] }).toString();
    execFileSync('git', ['init', '--bare', '--quiet', join(dir, 'repo.git')]);
    const blob = git(['hash-object', '-w', '--stdin'], 'x').trim();
    // Each component under its own folder: no two entries can clash as file and folder.
    git(['update-index', '--index-info'], components.map((c, i) => `100644 ${blob}\tp${i}/${c}\n`).join(''));
    const added = new Set(git(['ls-files', '-z']).split('\0').filter(Boolean).map((p) => Number(p.slice(1, p.indexOf('/')))));
    return new Set(components.filter((_, i) => !added.has(i)));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('commit rules: what git accepts as a commit', () => {
  it('refuses the .git variants git refuses on HFS+ and NTFS, and keeps ordinary dot-names', () => {
    const reserved = ['.git', '.GIT', '.Git', '.git.', '.git ', '.git. .', 'git~1', 'GIT~1', 'Git~1 .', '.g\u200cit', '.gi\ufefft', '\u206a.git', '.git::$INDEX_ALLOCATION', '.git:x'];
    for (const name of reserved) {
      assert.ok(isReservedGitName(name), JSON.stringify(name));
      assert.match(filePathProblem(`docs/${name}/x`) ?? '', /git reserves/, JSON.stringify(name));
    }
    const ordinary = ['.github', '.gitignore', '.gitmodules', 'a.git', '.git-x', 'git~2', 'git~10', '..git', '. git', 'x.git.', 'git'];
    for (const name of ordinary) assert.equal(filePathProblem(`docs/${name}`), undefined, JSON.stringify(name));
    assert.deepEqual(
      [...refusedByGit([...reserved.filter((n) => !n.includes(':x')), ...ordinary])].sort(),
      reserved.filter((n) => !n.includes(':x')).sort(),
      'git agrees on both lists (".git:x" is refused here only: stricter than git)',
    );
  });

  it('refuses at least every component git refuses (1,000 generated names, fixed seed)', () => {
    // Characters that make up git's special names, and the ones file systems ignore or fold.
    const alphabet = ['.', '.', 'g', 'G', 'i', 'I', 't', 'T', '~', '1', '2', ' ', ':', '$', 'a', '\u200c', '\u200f', '\ufeff', '\u202a', '-'];
    const names = fc.sample(
      fc.oneof(
        fc.array(fc.constantFrom(...alphabet), { minLength: 1, maxLength: 8 }).map((cs) => cs.join('')),
        fc.tuple(fc.constantFrom('.git', 'git~1', '.GIT', 'GiT~1'), fc.array(fc.constantFrom(' ', '.', ':', '\u200c', 'x'), { maxLength: 4 })).map(([s, cs]) => s + cs.join('')),
      ),
      { numRuns: 1_000, seed: 20_260_110 },
    );
    const refused = refusedByGit(names);
    assert.ok(refused.size > 50, `the generator reaches git's refusals (${refused.size})`);
    const missed = [...refused].filter((name) => filePathProblem(`p/${name}`) === undefined);
    assert.deepEqual(missed, [], 'components git refuses but the API would queue');
  });

  it('refuses malformed paths and NUL bytes in messages', () => {
    for (const path of ['', '/a', 'a/', 'a//b', './a', 'a/../b', 'a\\b', 'a\u0000b', 'a\nb', '\ud800', 'x'.repeat(1025), 42, null]) {
      assert.notEqual(filePathProblem(path), undefined, JSON.stringify(path));
    }
    assert.equal(filePathProblem('src/café/ünïcode file (1).txt'), undefined);
    assert.match(commitMessageProblem('a\u0000b') ?? '', /NUL/);
    assert.equal(commitMessageProblem('multi\nline\tmessage ✓'), undefined);
  });
});

describe('jsonDepth', () => {
  it('counts nesting without recursion, also far beyond the stack', () => {
    assert.equal(jsonDepth(1), 0);
    assert.equal(jsonDepth({}), 1);
    assert.equal(jsonDepth({ a: [1, { b: null }], c: 'x' }), 3);
    const deep = JSON.parse(`${'['.repeat(200_000)}${']'.repeat(200_000)}`);
    assert.equal(jsonDepth(deep), 200_000);
    assert.equal(jsonDepth(deep, 32), 33, 'stops once past the limit');
  });
});
