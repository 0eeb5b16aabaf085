import { spawn } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import {
  encodeReceiveCommands,
  isZeroId,
  parseReceiveCommands,
  parseReportStatus,
  PktLineError,
  withoutSideband,
  type PushReport,
  type RefCommand,
  type RefStatus,
} from './pkt-line.js';
import type { PushSpool } from './spool.js';

const run = promisify(execFile);

/** A push that can never be applied as sent (a malformed request): reported, not retried. */
export class BadPushError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BadPushError';
  }
}

/** git receive-pack itself failed (not a ref it refused): the write is retried. */
export class ReceivePackError extends Error {
  constructor(
    readonly exitCode: number | null,
    readonly detail: string,
  ) {
    super(`git receive-pack failed${exitCode === null ? '' : ` (exit code ${exitCode})`}`);
    this.name = 'ReceivePackError';
  }
}

export interface AppliedPush {
  /** The client's capabilities (how to frame the answer). */
  capabilities: string[];
  commands: RefCommand[];
  report: PushReport;
  /** Lines receive-pack and its hooks wrote for the user (git prints them as `remote: …`). */
  messages: string[];
  /** The commands whose ref now has the pushed value (accepted now or by an earlier delivery). */
  accepted: RefCommand[];
}

export interface ApplyPushOptions {
  /** Directory of the `update` hook that guards protected branches (see protected-branches.ts). */
  hooksDir: string;
  /** Branch names that may be neither deleted nor force-pushed. */
  protectedBranches: string[];
  timeoutMs: number;
}

/** Every ref of the repository with its object id. */
async function refValues(dir: string): Promise<Map<string, string>> {
  const { stdout } = await run('git', ['--git-dir', dir, 'for-each-ref', '--format=%(objectname) %(refname)'], { env: { ...process.env, LC_ALL: 'C' }, maxBuffer: 64 << 20 });
  const refs = new Map<string, string>();
  for (const line of stdout.split('\n')) {
    const space = line.indexOf(' ');
    if (space > 0) refs.set(line.slice(space + 1), line.slice(0, space));
  }
  return refs;
}

/**
 * A receive-pack killed mid-push (its node died) leaves its quarantined objects behind. Only
 * one write of a repository runs anywhere (the queue's partition), so any that exist now are
 * such leftovers.
 */
async function removeStaleQuarantines(dir: string): Promise<void> {
  const objects = join(dir, 'objects');
  for (const name of await readdir(objects).catch(() => [] as string[])) {
    if (name.startsWith('tmp_objdir-incoming-') || name.startsWith('incoming-')) await rm(join(objects, name), { recursive: true, force: true });
  }
}

async function readCommands(spool: PushSpool, id: string): Promise<{ commands: RefCommand[]; capabilities: string[]; end: number }> {
  for (const bytes of [64 * 1024, 4 * 1024 * 1024]) {
    let parsed: ReturnType<typeof parseReceiveCommands>;
    try {
      parsed = parseReceiveCommands(await spool.head(id, bytes));
    } catch (err) {
      if (err instanceof PktLineError) throw new BadPushError(err.message);
      throw err;
    }
    if (parsed) return parsed;
  }
  throw new BadPushError('the push request has no end to its ref update commands (over 4 MiB of them?)');
}

/**
 * Applies a spooled push with git receive-pack, once in effect however often it is delivered:
 * refs that already hold their pushed value (an earlier delivery applied them before its worker
 * died) are reported ok without running anything; receive-pack gets only the others (and the
 * pack), with side-band switched off so that its report can be read and merged; the answer is
 * framed for the client afterwards.
 */
export async function applyPush(dir: string, spool: PushSpool, id: string, options: ApplyPushOptions): Promise<AppliedPush> {
  const { commands, capabilities, end } = await readCommands(spool, id);
  if (commands.length === 0) throw new BadPushError('the push request updates no ref');
  const before = await refValues(dir);
  const atTarget = (c: RefCommand) => (isZeroId(c.new) ? !before.has(c.ref) : before.get(c.ref) === c.new);
  const done = commands.filter(atTarget);
  const pending = commands.filter((c) => !atTarget(c));
  let report: PushReport = { unpack: 'ok', refs: [] };
  let messages: string[] = [];
  if (pending.length > 0) {
    await removeStaleQuarantines(dir);
    const { size } = await stat(spool.request(id));
    const body = Readable.from(
      (async function* () {
        yield encodeReceiveCommands(pending, withoutSideband(capabilities));
        if (size > end) yield* createReadStream(spool.request(id), { start: end });
      })(),
    );
    ({ report, messages } = await receivePack(dir, body, options));
  }
  const statusOf = new Map<string, RefStatus>(report.refs.map((r) => [r.ref, r]));
  const refs: RefStatus[] = commands.map((c) => (done.includes(c) ? { ref: c.ref, ok: true } : statusOf.get(c.ref) ?? { ref: c.ref, ok: false, reason: report.unpack === 'ok' ? 'not updated' : 'unpacker error' }));
  const accepted = commands.filter((c, i) => refs[i]!.ok);
  return { capabilities, commands, report: { unpack: report.unpack, refs }, messages, accepted };
}

function receivePack(dir: string, body: Readable, options: ApplyPushOptions): Promise<{ report: PushReport; messages: string[] }> {
  return new Promise((resolve, reject) => {
    const child = spawn('git', ['-c', `core.hooksPath=${options.hooksDir}`, 'receive-pack', '--stateless-rpc', dir], {
      env: { ...process.env, LC_ALL: 'C', LANGUAGE: 'C', FORGE_PROTECTED_BRANCHES: options.protectedBranches.join(' ') },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    let err = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs);
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    body.on('error', () => child.kill('SIGKILL'));
    child.stdin.on('error', () => undefined); // receive-pack may stop reading (a refused pack): its report says why
    body.pipe(child.stdin);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(new ReceivePackError(null, e.message));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const output = Buffer.concat(out);
      const report = parseReportStatus(output);
      // A report means receive-pack got as far as judging the refs: that is its answer, even
      // with a non-zero exit (a refused ref). No report: it failed, and the write is retried.
      if (report.unpack === 'no report') return reject(new ReceivePackError(code, signal ? `killed by ${signal} (timeout?)` : err.trim()));
      resolve({ report, messages: err.split('\n').map((l) => l.trimEnd()).filter(Boolean) });
    });
  });
}

/** Number of commits a branch update added (`old..new`), for repo.pushed. */
export async function commitsBetween(dir: string, oldId: string, newId: string): Promise<number> {
  const range = isZeroId(oldId) ? [newId] : [`${oldId}..${newId}`];
  try {
    const { stdout } = await run('git', ['--git-dir', dir, 'rev-list', '--count', ...range], { env: { ...process.env, LC_ALL: 'C' } });
    return Number(stdout.trim()) || 0;
  } catch {
    return 0; // a forced update whose old commit is gone: the event still goes out
  }
}
