import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, it } from 'node:test';
import { decodeJwt } from 'jose';
import { verifyUserToken } from '../../src/forge-node/auth/tokens.js';

const run = promisify(execFile);
const CLI = fileURLToPath(new URL('../../src/ops/token-cli.js', import.meta.url));
const SECRET = 'token-cli-test-secret-0123456789';

async function token(args: string[], env: Record<string, string | undefined>): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [CLI, ...args], { env: { PATH: process.env.PATH, ...env } as NodeJS.ProcessEnv });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

describe('npm run token', () => {
  it('prints a token for the user on the last line, signed with FORGE_SECRET, valid for --ttl', async () => {
    const { code, stdout } = await token(['alice', '--ttl', '1h'], { FORGE_SECRET: SECRET });
    assert.equal(code, 0);
    const last = stdout.trim().split('\n').at(-1)!;
    assert.equal(await verifyUserToken(SECRET, last), 'alice');
    const claims = decodeJwt(last);
    assert.equal(claims.exp! - claims.iat!, 3600);
  });

  it('next to npm start, uses the secret it keeps in the data directory', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'forgebus-token-'));
    try {
      writeFileSync(join(dir, 'dev-secret'), `${SECRET}\n`);
      const { code, stdout } = await token(['bob'], { FORGE_DATA_DIR: dir });
      assert.equal(code, 0);
      assert.equal(await verifyUserToken(SECRET, stdout.trim().split('\n').at(-1)!), 'bob');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses, with the reason and exit code 1: no secret, a bad user name, a bad duration', async () => {
    const empty = mkdtempSync(join(tmpdir(), 'forgebus-token-none-'));
    try {
      const none = await token(['alice'], { FORGE_DATA_DIR: empty });
      assert.equal(none.code, 1);
      assert.match(none.stderr, /FORGE_SECRET is not set/);
      assert.equal(none.stdout, '');
    } finally {
      rmSync(empty, { recursive: true, force: true });
    }
    const badUser = await token(['../etc'], { FORGE_SECRET: SECRET });
    assert.equal(badUser.code, 1);
    assert.match(badUser.stderr, /user name "..\/etc"/);
    const badTtl = await token(['alice', '--ttl', 'forever'], { FORGE_SECRET: SECRET });
    assert.equal(badTtl.code, 1);
    assert.match(badTtl.stderr, /a duration such as 90s, 15m, 1h/);
  });
});
