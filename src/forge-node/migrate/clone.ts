import { spawn } from 'node:child_process';
import { ForgeBusError } from '../../bus/index.js';

/** git failed to clone; the message is for users (no paths, no raw stderr), `detail` for the log. */
export class CloneFailedError extends ForgeBusError {
  constructor(
    message: string,
    readonly detail: string,
  ) {
    super('CLONE_FAILED', message);
  }
}

// Only these transports, also for redirects and submodules: `ext::` and friends never run.
const PROTOCOLS = ['-c', 'protocol.allow=never', ...['http', 'https', 'file', 'git'].flatMap((p) => ['-c', `protocol.${p}.allow=always`])];

/** What went wrong, in words that do not repeat git's output (which names server paths). */
function reason(stderr: string): string {
  if (/could not resolve host|couldn't resolve|connection refused|failed to connect|timed out/i.test(stderr)) return 'the source is unreachable';
  if (/authentication|could not read username|terminal prompts disabled|401|403/i.test(stderr)) return 'the source needs credentials';
  if (/not found|does not exist|does not appear to be a git repository|not a git repository|404/i.test(stderr)) return 'the source is not a git repository (or does not exist)';
  return 'git could not read the source';
}

/**
 * `git clone --mirror -- <from> <dest>`, killed with its whole process group (git starts helpers
 * such as git-remote-http and index-pack) when `signal` fires. Reports git's percentages.
 */
export function cloneMirror(from: string, dest: string, signal: AbortSignal, onProgress: (percent: number) => void): Promise<void> {
  signal.throwIfAborted();
  return new Promise((resolve, reject) => {
    const child = spawn('git', [...PROTOCOLS, 'clone', '--mirror', '--progress', '--', from, dest], {
      // Its own process group, so an abort reaches the helpers too.
      detached: true,
      stdio: ['ignore', 'ignore', 'pipe'],
      // Never wait on a credentials prompt.
      env: { ...process.env, GIT_TERMINAL_PROMPT: '0', GIT_ASKPASS: 'false', SSH_ASKPASS: 'false' },
    });
    let stderr = '';
    child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
      stderr = (stderr + chunk).slice(-8_192);
      const received = /Receiving objects:\s+(\d+)%/g;
      let last: RegExpExecArray | null = null;
      for (let m = received.exec(chunk); m; m = received.exec(chunk)) last = m;
      if (last) onProgress(5 + Math.round(Number(last[1]) * 0.85));
    });
    const kill = () => {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // Already gone.
      }
    };
    signal.addEventListener('abort', kill, { once: true });
    child.once('error', (err) => {
      signal.removeEventListener('abort', kill);
      reject(new CloneFailedError('git could not be started on this node', err.message));
    });
    child.once('close', (code, sig) => {
      signal.removeEventListener('abort', kill);
      if (signal.aborted) return reject(signal.reason);
      if (code === 0) return resolve();
      reject(new CloneFailedError(`cannot clone the source: ${reason(stderr)} (git exit ${code ?? sig})`, stderr.trim()));
    });
  });
}
