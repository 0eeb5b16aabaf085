import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { signUserToken } from '../src/forge-node/auth/tokens.js';
import type { BenchContext, Row } from './cases.js';
import { log } from './common.js';
import { startForgeNodeProcess } from './forge-node-process.js';

const run = promisify(execFile);
const SECRET = 'forgebus-bench-git-secret-0123456789';
const GIT_ENV = { ...process.env, GIT_TERMINAL_PROMPT: '0', LC_ALL: 'C', GIT_AUTHOR_NAME: 'B', GIT_AUTHOR_EMAIL: 'b@example.com', GIT_COMMITTER_NAME: 'B', GIT_COMMITTER_EMAIL: 'b@example.com' };
const git = (cwd: string, args: string[]) => run('git', ['-c', 'credential.helper=', ...args], { cwd, env: GIT_ENV, maxBuffer: 64 << 20 });

/**
 * The baseline: the same bare repositories served by `git http-backend` as a CGI behind a plain
 * node:http server, as a single-server forge would (no queue, no spool: receive-pack runs in the
 * request, pushes to one repository at once race on git's own ref locks).
 */
function httpBackend(reposDir: string): Promise<Server & { url: string }> {
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const child = spawn('git', ['http-backend'], {
      env: {
        ...process.env,
        GIT_PROJECT_ROOT: reposDir,
        GIT_HTTP_EXPORT_ALL: '1',
        PATH_INFO: url.pathname,
        QUERY_STRING: url.search.slice(1),
        REQUEST_METHOD: req.method ?? 'GET',
        CONTENT_TYPE: String(req.headers['content-type'] ?? ''),
        ...(req.headers['content-length'] ? { CONTENT_LENGTH: String(req.headers['content-length']) } : {}),
        HTTP_CONTENT_ENCODING: String(req.headers['content-encoding'] ?? ''),
        GIT_PROTOCOL: String(req.headers['git-protocol'] ?? ''),
        REMOTE_USER: 'alice',
        REMOTE_ADDR: '127.0.0.1',
        GIT_CONFIG_COUNT: '1',
        GIT_CONFIG_KEY_0: 'http.receivepack',
        GIT_CONFIG_VALUE_0: 'true',
      },
      stdio: ['pipe', 'pipe', 'ignore'],
    });
    req.pipe(child.stdin);
    child.stdin.on('error', () => undefined);
    // CGI: header lines up to a blank line, then the body.
    let head = Buffer.alloc(0);
    let headerDone = false;
    child.stdout.on('data', (chunk: Buffer) => {
      if (headerDone) return void res.write(chunk);
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) return;
      headerDone = true;
      let status = 200;
      for (const line of head.subarray(0, end).toString('latin1').split('\r\n')) {
        const colon = line.indexOf(':');
        const [name, value] = [line.slice(0, colon).trim(), line.slice(colon + 1).trim()];
        if (/^status$/i.test(name)) status = Number.parseInt(value, 10);
        else res.setHeader(name, value);
      }
      res.writeHead(status);
      res.write(head.subarray(end + 4));
    });
    child.on('close', () => res.end());
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(Object.assign(server, { url: `http://127.0.0.1:${(server.address() as { port: number }).port}` }))));
}

/** `clients` clones, each pushing `pushes` commits to its own branch; pushes per second overall. */
async function pushRate(work: string, remotes: string[], clients: number, pushes: number, tag: string): Promise<number> {
  const dirs = await Promise.all(
    Array.from({ length: clients }, async (_, c) => {
      const dir = join(work, `p${c}-${randomBytes(3).toString('hex')}`);
      await git(work, ['clone', '-q', remotes[c % remotes.length]!, dir]);
      return dir;
    }),
  );
  const started = performance.now();
  await Promise.all(
    dirs.map(async (dir, c) => {
      for (let i = 0; i < pushes; i++) {
        writeFileSync(join(dir, `f${i}.txt`), `${c} ${i}\n`);
        await git(dir, ['add', '.']);
        await git(dir, ['commit', '-q', '-m', `bench ${c} ${i}`]);
        await git(dir, ['push', '-q', 'origin', `HEAD:refs/heads/bench-${tag}-${c}`]);
      }
    }),
  );
  return (clients * pushes) / ((performance.now() - started) / 1000);
}

/** MB/s of `times` clones of `remote` one after the other. */
async function cloneRate(work: string, remote: string, times: number, bytes: number): Promise<number> {
  const started = performance.now();
  for (let i = 0; i < times; i++) {
    const dir = join(work, `clone-${randomBytes(3).toString('hex')}`);
    await git(work, ['clone', '-q', remote, dir]);
    rmSync(dir, { recursive: true, force: true });
  }
  return (times * bytes) / 1e6 / ((performance.now() - started) / 1000);
}

/**
 * `git`: pushes and clones through a forge node (push = a queued repository write, applied by
 * receive-pack on a worker; clone = upload-pack into the socket) against `git http-backend` on the
 * same repositories: what the cluster-wide serialization costs.
 */
export async function caseGit(ctx: BenchContext): Promise<Row[]> {
  const dataDir = mkdtempSync(join(tmpdir(), 'forgebus-bench-git-'));
  const work = mkdtempSync(join(tmpdir(), 'forgebus-bench-git-work-'));
  const node = await startForgeNodeProcess({ id: 'bench-git', natsUrl: ctx.url, dataDir, secret: SECRET });
  const backend = await httpBackend(join(dataDir, 'repos'));
  try {
    const token = await signUserToken(SECRET, 'alice');
    const api = async (path: string, body: unknown) => {
      const res = await fetch(`${node.url}${path}`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
      if (res.status !== 201) throw new Error(`${path}: ${res.status} ${await res.text()}`);
    };
    const names = Array.from({ length: 20 }, (_, i) => `g${i}`);
    for (const name of [...names, 'big']) {
      await api('/api/repos', { name });
      await api(`/api/repos/alice/${name}/commits`, { branch: 'main', path: 'README', content: name, message: 'initial' });
    }
    // 20 MB of incompressible content for the clones.
    const seed = join(work, 'seed');
    await git(work, ['clone', '-q', `${node.url.replace('http://', `http://alice:${token}@`)}/alice/big.git`, seed]);
    for (let i = 0; i < 4; i++) writeFileSync(join(seed, `blob-${i}.bin`), randomBytes(5 * 1024 * 1024));
    await git(seed, ['add', '.']);
    await git(seed, ['commit', '-q', '-m', '20 MB']);
    await git(seed, ['push', '-q', 'origin', 'main']);
    const bigBytes = 20 * 1024 * 1024;

    const forge = (name: string) => `${node.url.replace('http://', `http://alice:${token}@`)}/alice/${name}.git`;
    const plain = (name: string) => `${backend.url}/alice/${name}.git`;
    const rows: string[][] = [];
    const data: Record<string, number> = {};
    for (const [label, remote, tag] of [['forgebus node (queue)', forge, 'f'], ['git http-backend (no queue)', plain, 'b']] as const) {
      const one = await pushRate(work, [remote('g0')], 4, 10, `${tag}1`);
      const twenty = await pushRate(work, names.map(remote), 20, 5, `${tag}20`);
      const clone = await cloneRate(work, remote('big'), 5, bigBytes);
      log(`git ${label}: ${one.toFixed(1)} pushes/s to 1 repository, ${twenty.toFixed(1)} to 20, clone ${clone.toFixed(0)} MB/s`);
      data[`${label}.one`] = one;
      data[`${label}.twenty`] = twenty;
      data[`${label}.clone`] = clone;
      rows.push([label, one.toFixed(1), twenty.toFixed(1), (twenty / one).toFixed(2), clone.toFixed(0)]);
    }
    const f = (k: string) => data[`forgebus node (queue).${k}`]!;
    const b = (k: string) => data[`git http-backend (no queue).${k}`]!;
    ctx.reports.push({
      id: 'git',
      title: 'git: pushes and clones through a forge node vs git http-backend (same machine, same repositories)',
      header: ['server', 'pushes/s, 1 repository (4 clients)', 'pushes/s, 20 repositories (20 clients)', '20 / 1', 'clone MB/s (20 MB, 5 in a row)'],
      rows,
      numeric: [1, 2, 3, 4],
      notes: [`  forgebus / http-backend: pushes to 1 repository ${(f('one') / b('one')).toFixed(2)}x, to 20 ${(f('twenty') / b('twenty')).toFixed(2)}x, clones ${(f('clone') / b('clone')).toFixed(2)}x`],
      incomplete: [],
      data,
    });
    return [];
  } finally {
    backend.close();
    await node.stop();
    rmSync(dataDir, { recursive: true, force: true });
    rmSync(work, { recursive: true, force: true });
  }
}
