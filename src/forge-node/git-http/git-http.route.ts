import { spawn } from 'node:child_process';
import { createReadStream } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import type { LoggerService } from '@nestjs/common';
import pLimit from 'p-limit';
import { RepoWriteQueue, WriteFailedError, WriteQueueUnavailableError, WriteTimeoutError } from '../../repo-writes/index.js';
import { TokenError, verifyUserToken } from '../auth/tokens.js';
import type { ForgeNodeConfig } from '../config.js';
import { repoPath } from '../git/bare-repos.js';
import type { FrontRoute } from '../http/front-listener.js';
import type { ReposService } from '../repos/repos.service.js';
import { encodePushResponse, FLUSH, parseReceiveCommands, pktLine, PktLineError, type PushReport } from './pkt-line.js';
import type { PushArgs, PushResult } from './push.handler.js';
import { PushSpool } from './spool.js';

/**
 * git's smart HTTP protocol (gitprotocol-http) on every forge node, ahead of Express (bodies are
 * git's, not JSON, and stream both ways):
 *   GET  /:owner/:name.git/info/refs?service=git-upload-pack|git-receive-pack
 *   POST /:owner/:name.git/git-upload-pack    clone and fetch (protocol v0 and v2)
 *   POST /:owner/:name.git/git-receive-pack   push: spooled, then applied as a repository write
 * Authentication is HTTP Basic with the user name and a token as the password (what git's
 * credential helpers send). Private repositories are 404 to others; only the owner and
 * collaborators may push.
 */

const PATH = /^\/([A-Za-z0-9._-]{1,100})\/([A-Za-z0-9._-]{1,100})\.git\/(info\/refs|git-upload-pack|git-receive-pack)$/;
const SERVICES = new Set(['git-upload-pack', 'git-receive-pack']);
/** What a client may put in Git-Protocol (passed to git as GIT_PROTOCOL): `version=2` and the like. */
const GIT_PROTOCOL = /^[A-Za-z0-9=:.,_-]{1,100}$/;
const NO_CACHE = { 'Cache-Control': 'no-cache, max-age=0, must-revalidate', Pragma: 'no-cache', Expires: 'Fri, 01 Jan 1980 00:00:00 GMT' };

class GitHttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

export interface GitHttpOptions {
  config: ForgeNodeConfig;
  repos: ReposService;
  queue: RepoWriteQueue;
  logger: LoggerService;
}

export function gitHttpRoute(options: GitHttpOptions): FrontRoute {
  const { config, repos, queue, logger } = options;
  const spool = new PushSpool(config.dataDir);
  const uploads = pLimit(config.git.maxUploads);

  async function authenticate(req: IncomingMessage): Promise<string> {
    const header = req.headers.authorization ?? '';
    const challenge = { 'WWW-Authenticate': 'Basic realm="forgebus", charset="UTF-8"' };
    if (!/^Basic /i.test(header)) throw new GitHttpError(401, 'authentication required: your user name, and a token as the password', challenge);
    const decoded = Buffer.from(header.slice(6).trim(), 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    const [user, token] = colon < 0 ? [decoded, ''] : [decoded.slice(0, colon), decoded.slice(colon + 1)];
    let subject: string;
    try {
      subject = await verifyUserToken(config.secret, token);
    } catch (err) {
      if (err instanceof TokenError) throw new GitHttpError(401, `${err.message}: use a token as the password`, challenge);
      throw err;
    }
    if (subject !== user) throw new GitHttpError(401, `the token is ${subject}'s, not ${user}'s`, challenge);
    return user;
  }

  async function serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = req.url ?? '';
    const q = url.indexOf('?');
    const match = PATH.exec(q < 0 ? url : url.slice(0, q))!;
    const [, owner, name, action] = match as unknown as [string, string, string, string];
    const service = action === 'info/refs' ? new URLSearchParams(q < 0 ? '' : url.slice(q + 1)).get('service') : action;
    if (!service || !SERVICES.has(service)) throw new GitHttpError(400, "this server speaks git's smart HTTP protocol only: use git 1.6.6 or newer");
    if ((action === 'info/refs') !== (req.method === 'GET')) throw new GitHttpError(405, `${req.method} is not allowed here`, { Allow: action === 'info/refs' ? 'GET' : 'POST' });
    const user = await authenticate(req);
    const repo = await repos.findRepo(owner, name);
    if (!repos.canRead(repo, user)) throw new GitHttpError(404, `repository ${owner}/${name} not found`);
    const push = service === 'git-receive-pack';
    if (push && !repos.canWrite(repo, user)) throw new GitHttpError(403, `${user} may not push to ${owner}/${name}: only its owner and collaborators may`);
    const dir = repoPath(config.dataDir, repo.owner, repo.name);
    const protocol = String(req.headers['git-protocol'] ?? '');
    const env: Record<string, string> = GIT_PROTOCOL.test(protocol) ? { GIT_PROTOCOL: protocol } : {};
    if (action === 'info/refs') return advertise(res, service, dir, env);
    if (!push) return uploads(() => uploadPack(req, res, dir, env));
    return receivePack(req, res, { owner: repo.owner, name: repo.name }, user);
  }

  /** The ref advertisement; v2 clients get git's capability list without the service line. */
  async function advertise(res: ServerResponse, service: string, dir: string, env: Record<string, string>): Promise<void> {
    res.writeHead(200, { 'Content-Type': `application/x-${service}-advertisement`, ...NO_CACHE });
    if (!/version=2/.test(env.GIT_PROTOCOL ?? '') || service !== 'git-upload-pack') res.write(Buffer.concat([pktLine(`# service=${service}\n`), FLUSH]));
    await runGit(service.slice(4), ['--stateless-rpc', '--advertise-refs', dir], env, undefined, res);
  }

  async function uploadPack(req: IncomingMessage, res: ServerResponse, dir: string, env: Record<string, string>): Promise<void> {
    const socket = req.socket as Socket & { _handle?: { fd?: number } };
    // The pack goes from git straight into the connection (its socket handed to git as stdout):
    // a clone of any size costs this process no memory and no copying. Only for a plain TCP
    // socket (TLS has no descriptor to hand over), with the connection closed afterwards.
    if (typeof socket._handle?.fd === 'number' && socket._handle.fd >= 0 && !('encrypted' in socket)) {
      return uploadPackToSocket(req, res, socket, dir, env);
    }
    res.writeHead(200, { 'Content-Type': 'application/x-git-upload-pack-result', ...NO_CACHE });
    await runGit('upload-pack', ['--stateless-rpc', dir], env, requestBody(req), res);
  }

  async function receivePack(req: IncomingMessage, res: ServerResponse, repo: { owner: string; name: string }, user: string): Promise<void> {
    const id = spool.newId();
    try {
      const { tooLarge } = await spool.receive(id, req, config.git.pushMaxBytes);
      const answer = (report: PushReport, capabilities: string[], messages: string[]) => {
        res.writeHead(200, { 'Content-Type': 'application/x-git-receive-pack-result', ...NO_CACHE });
        res.end(encodePushResponse(report, capabilities, messages));
      };
      if (tooLarge) {
        const limit = `${Math.round(config.git.pushMaxBytes / 1024 / 1024)} MiB`;
        // The commands were dropped with the rest: the client learns it from the unpack status.
        return answer({ unpack: `push larger than this server accepts (${limit})`, refs: [] }, ['side-band-64k'], [`forgebus: the push is larger than ${limit}: push fewer commits at a time`]);
      }
      let parsed: ReturnType<typeof parseReceiveCommands>;
      try {
        parsed = parseReceiveCommands(await spool.head(id));
      } catch (err) {
        if (err instanceof PktLineError) throw new GitHttpError(400, err.message);
        throw err;
      }
      if (!parsed) throw new GitHttpError(400, 'the push request has no end to its ref update commands');
      // git probes a large push with a bare flush first (to meet authentication before it
      // streams the pack): receive-pack answers that with nothing, and so does this.
      if (parsed.commands.length === 0) {
        res.writeHead(200, { 'Content-Type': 'application/x-git-receive-pack-result', ...NO_CACHE });
        return void res.end();
      }
      const { commands, capabilities } = parsed;
      const refused = (reason: string) => answer({ unpack: 'ok', refs: commands.map((c) => ({ ref: c.ref, ok: false, reason })) }, capabilities, [`forgebus: ${reason}`]);
      let result: PushResult;
      try {
        result = await queue.submit<PushResult>(repo, 'push', { spool: id, user } satisfies PushArgs, { timeoutMs: config.git.pushTimeoutMs });
      } catch (err) {
        if (err instanceof WriteTimeoutError) return refused(`the push was not answered within ${config.git.pushTimeoutMs / 1000} s; it may still be applied: fetch to see`);
        if (err instanceof WriteFailedError) return refused(err.reason);
        if (err instanceof WriteQueueUnavailableError) throw new GitHttpError(503, 'the cluster cannot take pushes right now (its bus is unavailable): try again shortly', { 'Retry-After': '2' });
        throw err;
      }
      res.writeHead(200, { 'Content-Type': 'application/x-git-receive-pack-result', ...NO_CACHE });
      await pipeline(createReadStream(spool.response(result.response)), res);
    } finally {
      await spool.remove(id).catch(() => undefined);
    }
  }

  return {
    matches: (req) => {
      const url = req.url ?? '';
      if (!url.includes('.git/')) return false;
      const q = url.indexOf('?');
      return PATH.test(q < 0 ? url : url.slice(0, q));
    },
    handle: (req, res) => {
      serve(req, res).catch((err: unknown) => {
        if (!(err instanceof GitHttpError)) logger.error(`${req.method} ${req.url} failed: ${(err as Error)?.message ?? String(err)}`, (err as Error)?.stack);
        if (res.headersSent || res.destroyed) return void res.destroy();
        const status = err instanceof GitHttpError ? err.status : 500;
        const message = err instanceof GitHttpError ? err.message : 'internal error: see the server log';
        // git shows a plain-text body of a failed request to its user.
        res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8', ...(err instanceof GitHttpError ? err.headers : {}) });
        res.end(`${message}\n`);
        req.resume();
      });
    },
  };
}

/**
 * Answers with git writing the body into the client's connection itself: the response head is
 * written here (no length, `Connection: close`: the body ends when the connection does), then
 * the socket is git's stdout and this process only feeds the request in.
 */
function uploadPackToSocket(req: IncomingMessage, res: ServerResponse, socket: Socket, dir: string, env: Record<string, string>): Promise<void> {
  return new Promise((resolve) => {
    const head = Object.entries({ 'Content-Type': 'application/x-git-upload-pack-result', ...NO_CACHE, Connection: 'close' })
      .map(([k, v]) => `${k}: ${v}\r\n`)
      .join('');
    // The HTTP server must not write to this connection any more: the response is git's now.
    res.writeHead = (() => res) as typeof res.writeHead;
    socket.write(`HTTP/1.1 200 OK\r\n${head}\r\n`, () => {
      const child = spawn('git', ['upload-pack', '--stateless-rpc', dir], { env: { ...process.env, ...env, LC_ALL: 'C' }, stdio: ['pipe', socket, 'ignore'] });
      const stop = () => child.kill('SIGKILL');
      socket.once('close', stop);
      child.stdin!.on('error', () => undefined);
      const body = requestBody(req);
      (body as NodeJS.ReadableStream & { on(e: 'error', f: () => void): void }).on('error', stop);
      body.pipe(child.stdin!);
      const done = () => {
        socket.off('close', stop);
        socket.destroySoon();
        resolve();
      };
      child.once('close', done);
      child.once('error', done);
    });
  });
}

/** The request body as git sends it, gunzipped when it says so. */
function requestBody(req: IncomingMessage): NodeJS.ReadableStream {
  return /^\s*(x-)?gzip\s*$/i.test(String(req.headers['content-encoding'] ?? '')) ? req.pipe(createGunzip()) : req;
}

/**
 * Runs `git <command> …`, streaming `input` to it and its output to `res` (both with
 * back-pressure: nothing is held in memory); stops it when the client goes away.
 */
function runGit(command: string, args: string[], env: Record<string, string>, input: NodeJS.ReadableStream | undefined, res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const child = spawn('git', [command, ...args], { env: { ...process.env, ...env, LC_ALL: 'C' }, stdio: [input ? 'pipe' : 'ignore', 'pipe', 'ignore'] });
    const stop = () => child.kill('SIGKILL');
    res.once('close', stop);
    if (input) {
      child.stdin!.on('error', () => undefined);
      (input as NodeJS.ReadableStream & { on(e: 'error', f: () => void): void }).on('error', stop);
      input.pipe(child.stdin!);
    }
    child.stdout!.pipe(res);
    child.once('close', () => {
      res.off('close', stop);
      if (!res.writableEnded) res.end();
      resolve();
    });
    child.once('error', () => {
      if (!res.writableEnded) res.destroy();
      resolve();
    });
  });
}
