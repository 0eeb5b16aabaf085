import { accessSync, constants, realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { aptInstall, aptUnavailableReason } from './apt.js';

/**
 * The chromium of the headless-browser test (test/sse/browser.test.ts, driven by playwright-core,
 * which never downloads a browser of its own). `npm test` runs this file first: on a fresh Debian
 * machine as root (CI) it installs Debian's `chromium` package; elsewhere it says what to do and
 * stops the run, as a missing nats-server does.
 */

export const DEFAULT_CHROMIUM = '/usr/bin/chromium';

/** `CHROMIUM_BIN` if set, else Debian's /usr/bin/chromium. */
export function chromiumPath(): string {
  return process.env.CHROMIUM_BIN || DEFAULT_CHROMIUM;
}

export function findChromium(): string | undefined {
  const path = chromiumPath();
  try {
    accessSync(path, constants.X_OK);
    return path;
  } catch {
    return undefined;
  }
}

export type ChromiumStatus =
  | { ok: true; path: string; installed: boolean }
  /** `installFailed`: we were able to install and apt-get (or the result) failed. */
  | { ok: false; reason: string; installFailed: boolean };

/** Finds chromium, installing Debian's package (apt-get, no recommends) when missing and root. */
export function ensureChromium(log: (m: string) => void = (m) => console.error(m)): ChromiumStatus {
  const found = findChromium();
  if (found) return { ok: true, path: found, installed: false };
  const path = chromiumPath();
  if (path !== DEFAULT_CHROMIUM) return { ok: false, reason: `CHROMIUM_BIN=${path} is not an executable file.`, installFailed: false };
  const cannot = aptUnavailableReason();
  if (cannot) {
    return {
      ok: false,
      reason:
        `${path} is missing and cannot be installed here (${cannot}). Install it with ` +
        `"apt-get install --no-install-recommends chromium" (Debian) or set CHROMIUM_BIN to a Chromium/Chrome binary.`,
      installFailed: false,
    };
  }
  log(`chromium not found: installing Debian package chromium (apt-get, no recommends) for the browser test ...`);
  const started = Date.now();
  try {
    aptInstall(['chromium'], { noRecommends: true });
  } catch (err) {
    return { ok: false, reason: `installing chromium failed: ${(err as Error).message}.`, installFailed: true };
  }
  if (!findChromium()) return { ok: false, reason: `apt-get reported success but ${path} does not exist.`, installFailed: true };
  log(`chromium installed in ${((Date.now() - started) / 1000).toFixed(0)} s`);
  return { ok: true, path, installed: true };
}

// `node dist/src/ops/ensure-chromium.js` (part of `npm test`): no browser, no test run.
const invokedDirectly = process.argv[1] !== undefined && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url);
if (invokedDirectly) {
  const status = ensureChromium();
  if (status.ok) {
    console.log(`chromium: ${status.path}`);
  } else {
    console.error(`chromium: ${status.reason} The browser test (test/sse/browser.test.ts) needs it.`);
    process.exit(1);
  }
}
