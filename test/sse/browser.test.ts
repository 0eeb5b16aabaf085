import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Browser } from 'playwright-core';
import { launchChromium, reportPageFailure, screenshot } from '../support/browser.js';
import { apiClient, startForgeNode, tokenFor, type TestForgeNode } from '../support/forge-node.js';
import { startTestNats, type TestNats } from '../support/nats.js';

/**
 * The web page of a forge node in a real headless Chromium (Debian's package, driven by
 * playwright-core): sign in on node 2, watch a repository, delete an issue through node 1's API,
 * and see the `issue.deleted` entry appear on the page.
 */


// `npm test` installs chromium first (src/ops/ensure-chromium.ts); without it this test fails.
describe('web page in headless chromium', () => {
  let nats: TestNats | undefined;
  let dataDir: string | undefined;
  let nodes: TestForgeNode[] = [];
  let browser: Browser | undefined;

  before(async () => {
    nats = await startTestNats();
    dataDir = mkdtempSync(join(tmpdir(), 'forgebus-browser-'));
    nodes = await Promise.all(['node-1', 'node-2'].map((id) => startForgeNode({ id, natsUrl: nats!.url, dataDir: dataDir! })));
    browser = await launchChromium();
  });

  after(async () => {
    await browser?.close().catch(() => {});
    await Promise.all(nodes.map((n) => n.stop()));
    await nats?.dispose();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  it('serves the page with a nonce CSP, nosniff and no token in it', async () => {
    const res = await fetch(`${nodes[1]!.url}/`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'text/html; charset=utf-8');
    assert.equal(res.headers.get('x-content-type-options'), 'nosniff');
    const csp = res.headers.get('content-security-policy') ?? '';
    const nonce = /script-src 'nonce-([^']+)'/.exec(csp)?.[1];
    assert.ok(nonce, `CSP with a script nonce: ${csp}`);
    assert.match(csp, /default-src 'none'/);
    const html = await res.text();
    assert.ok(html.includes(`<script nonce="${nonce}">`), 'the inline script carries the nonce');
    assert.ok(html.includes('"issue.deleted"') && html.includes('"access-revoked"'), 'event types embedded');
    const again = (await fetch(`${nodes[1]!.url}/`)).headers.get('content-security-policy');
    assert.notEqual(again, csp, 'a fresh nonce per response');
  });

  it('shows an issue deleted through node 1 live on node 2, then signs out', async (t) => {
    const [node1, node2] = nodes as [TestForgeNode, TestForgeNode];
    const token = await tokenFor('alice');
    const alice = apiClient(node1.url, token);
    const repo = `web-${Date.now().toString(36)}`;
    assert.equal((await alice('POST', '/api/repos', { name: repo, private: true })).status, 201);
    const created = await alice('POST', `/api/repos/alice/${repo}/issues`, { title: 'Delete me' });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const number = created.body.number as number;

    const context = await browser!.newContext({ viewport: { width: 1100, height: 640 } });
    const page = await context.newPage();
    const problems: string[] = [];
    page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
    page.on('console', (m) => {
      if (m.type() === 'error' || m.type() === 'warning') problems.push(`console ${m.type()}: ${m.text()}`);
    });
    try {
      await page.goto(`${node2.url}/`);
      await page.getByLabel('Token').fill(token);
      await page.getByRole('button', { name: 'Sign in' }).click();
      await page.locator('#user', { hasText: 'alice' }).waitFor({ timeout: 10_000 });

      const cookie = (await context.cookies(node2.url)).find((c) => c.name === 'forge_token');
      assert.ok(cookie, 'session cookie set');
      assert.equal(cookie.value, token);
      assert.equal(cookie.httpOnly, true);
      assert.equal(cookie.sameSite, 'Strict');

      await page.getByLabel('Repository').fill(`alice/${repo}`);
      await page.getByRole('button', { name: 'Watch' }).click();
      await page.locator('#connection.live').waitFor({ timeout: 10_000 });
      assert.equal(await page.locator('#connection').textContent(), 'live');

      // Event data is text, never markup: an issue title made of HTML shows as typed.
      const title = '<img src=x data-xss=1><b>bold</b>';
      const second = await alice('POST', `/api/repos/alice/${repo}/issues`, { title });
      assert.equal(second.status, 201, JSON.stringify(second.body));
      const createdEntry = page.locator('#events li[data-type="issue.created"]');
      await createdEntry.first().waitFor({ timeout: 10_000 });
      assert.ok(((await createdEntry.textContent()) ?? '').includes(`#${second.body.number} created "${title}"`));
      assert.equal(await page.locator('#events img, #events b').count(), 0, 'no element made from event data');

      const deletedAt = Date.now();
      assert.equal((await alice('DELETE', `/api/repos/alice/${repo}/issues/${number}`)).status, 204);
      const entry = page.locator('#events li[data-type="issue.deleted"]');
      await entry.first().waitFor({ timeout: 10_000 });
      t.diagnostic(`issue.deleted shown on node 2's page ${Date.now() - deletedAt} ms after node 1 answered the DELETE`);

      assert.equal(await entry.count(), 1, 'one issue.deleted entry');
      const text = (await entry.textContent()) ?? '';
      assert.ok(text.includes(`#${number} deleted`), `summary names the issue: ${text}`);
      assert.ok(text.includes(`alice/${repo}`), `entry names the repository: ${text}`);
      assert.ok(text.includes('alice'), `entry names the actor: ${text}`);
      assert.match((await entry.getAttribute('data-id')) ?? '', /^[1-9]\d*$/, 'data-id is the stream sequence');
      assert.equal(await page.locator('#connection').getAttribute('class'), 'live');

      await screenshot(page, 'sse-browser');

      await page.getByRole('button', { name: 'Sign out' }).click();
      await page.locator('#signin').waitFor({ state: 'visible', timeout: 10_000 });
      assert.equal(await page.locator('#connection').getAttribute('class'), 'closed');
      assert.equal((await context.cookies(node2.url)).find((c) => c.name === 'forge_token'), undefined, 'cookie cleared');
      assert.deepEqual(problems, [], 'no script errors, CSP violations or failed requests');
    } catch (err) {
      await reportPageFailure(t, page, 'sse-browser', '#connection, #signin-error, #watch-error, #events', problems);
      throw err;
    } finally {
      await context.close();
    }
  });
  it('the link npm start prints (#token=…) signs in at once and leaves no token in the address bar', async () => {
    const token = await tokenFor('bob');
    const context = await browser!.newContext();
    const page = await context.newPage();
    try {
      await page.goto(`${nodes[1]!.url}/#token=${token}`);
      await page.locator('#user', { hasText: 'bob' }).waitFor({ timeout: 10_000 });
      assert.equal(await page.locator('#signin').isHidden(), true, 'the sign-in form is gone: signed in');
      assert.equal(new URL(page.url()).hash, '', 'the token left the address bar');
      assert.equal((await context.cookies(nodes[1]!.url)).find((c) => c.name === 'forge_token')?.value, token);
    } finally {
      await context.close();
    }
  });
});
