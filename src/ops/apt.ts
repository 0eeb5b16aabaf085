import { spawnSync } from 'node:child_process';

/**
 * Installing Debian packages with apt-get on fresh machines (CI runs as root on Debian): used for
 * nats-server and for the chromium of the browser test. Never used when the program is present.
 */

/** Why we cannot install with apt-get here, or undefined when we can (root and apt-get exists). */
export function aptUnavailableReason(): string | undefined {
  if (process.getuid?.() !== 0) return 'not root';
  if (spawnSync('apt-get', ['--version'], { stdio: 'ignore' }).status !== 0) return 'no apt-get';
  return undefined;
}

let updated = false;

/**
 * `apt-get update` (once per process) then `apt-get install -y <packages>`, non-interactive, apt's
 * errors on our stderr. Throws an Error naming the failed command.
 */
export function aptInstall(packages: string[], options: { noRecommends?: boolean } = {}): void {
  const steps: string[][] = [];
  if (!updated) steps.push(['update', '-qq']);
  steps.push(['install', '-y', '-qq', ...(options.noRecommends ? ['--no-install-recommends'] : []), ...packages]);
  for (const args of steps) {
    const r = spawnSync('apt-get', args, {
      stdio: ['ignore', 'ignore', 'inherit'],
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
    });
    if (r.status !== 0) throw new Error(`apt-get ${args.join(' ')} failed with exit code ${r.status ?? r.signal}`);
    if (args[0] === 'update') updated = true;
  }
}
