import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TestContext } from 'node:test';
import { chromium, type Browser, type Page } from 'playwright-core';
import { chromiumPath, findChromium } from '../../src/ops/ensure-chromium.js';

/** Where browser tests leave their screenshots (git-ignored). */
export const ARTIFACTS = fileURLToPath(new URL('../../../test-artifacts/', import.meta.url));

// Without the background-networking flags Chromium's own connections are refused by the build
// machines' closed network, many at a time.
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** Debian's headless chromium through playwright-core (`npm test` installs it first). */
export async function launchChromium(): Promise<Browser> {
  if (!findChromium()) throw new Error(`${chromiumPath()} not found: run "npm test" (installs Debian's chromium as root) or set CHROMIUM_BIN`);
  return chromium.launch({ executablePath: chromiumPath(), args: CHROMIUM_ARGS, timeout: 30_000 });
}

/** Saves a page's screenshot as test-artifacts/<name>.png; returns its path. */
export async function screenshot(page: Page, name: string): Promise<string> {
  mkdirSync(ARTIFACTS, { recursive: true });
  const path = join(ARTIFACTS, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  return path;
}

/** After a failure: what the page showed in `selectors`, its console problems, and a screenshot. */
export async function reportPageFailure(t: TestContext, page: Page, name: string, selectors: string, problems: string[]): Promise<void> {
  await screenshot(page, `${name}-failure`).catch(() => undefined);
  const shown = await page.locator(selectors).allTextContents().catch(() => []);
  t.diagnostic(`page: ${JSON.stringify(shown)}; ${problems.join(' | ') || 'no console errors'}; screenshot test-artifacts/${name}-failure.png`);
}
