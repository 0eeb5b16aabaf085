import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { buildGitSource, serveSlowly, type SlowGitServer } from '../fixtures/slow-git-http.js';
import { launchChromium, reportPageFailure, screenshot } from '../support/browser.js';
import { apiClient, startForgeNode, tokenFor, type TestForgeNode } from '../support/forge-node.js';
import { eventually, startTestNats, type TestNats } from '../support/nats.js';

/**
 * The operations view of the web page in a real headless Chromium: two forge nodes on one
 * nats-server; alice signs in on node-2's page and opens the view, which shows both nodes, the
 * NATS server, FORGE_EVENTS with each node's feed position, the write partitions and her running
 * migration (a slow clone, test/fixtures/slow-git-http.ts), which she cancels with its button.
 * Bob's migration into his private repository runs meanwhile and never reaches alice's page.
 */

const WAIT = { timeout: 15_000 };

describe('operations view of the web page in headless chromium', () => {
  let nats: TestNats | undefined;
  let dataDir: string | undefined;
  let sourceDir: string | undefined;
  let slow: SlowGitServer | undefined;
  let nodes: TestForgeNode[] = [];
  let browser: Browser | undefined;

  before(async () => {
    nats = await startTestNats();
    dataDir = mkdtempSync(join(tmpdir(), 'forgebus-ops-view-'));
    sourceDir = mkdtempSync(join(tmpdir(), 'forgebus-ops-view-src-'));
    // 600 kB trickled at 20 kB/s: a clone runs ~30 s unless cancelled (it is, or the nodes stop).
    slow = await serveSlowly(buildGitSource(sourceDir, 600).bareDir, { chunkBytes: 2_048, everyMs: 100 });
    nodes = await Promise.all(['node-1', 'node-2'].map((id) => startForgeNode({ id, natsUrl: nats!.url, dataDir: dataDir! })));
    const api = apiClient(nodes[0]!.url, await tokenFor('alice'));
    await eventually(async () => ((await api('GET', '/api/nodes')).body?.nodes ?? []).length === 2, 10_000, 'both nodes to be members');
    browser = await launchChromium();
  });

  after(async () => {
    await browser?.close().catch(() => {});
    await Promise.all(nodes.map((n) => n.stop()));
    await slow?.close();
    await nats?.dispose();
    for (const dir of [dataDir, sourceDir]) if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('shows nodes, NATS, FORGE_EVENTS, partitions and tasks live; cancels a task; never shows another user\'s private task', async (t) => {
    const [node1, node2] = nodes as [TestForgeNode, TestForgeNode];
    const aliceToken = await tokenFor('alice');
    const alice = apiClient(node1.url, aliceToken);
    const bob = apiClient(node1.url, await tokenFor('bob'));
    const suffix = Date.now().toString(36);
    const hidden = `hidden-${suffix}`;
    const mine = `mirror-${suffix}`;

    // Bob's migration into a private repository of his, running on node-1 like alice's.
    const bobStart = await bob('POST', `/api/repos/bob/${hidden}/migrate`, { from: slow!.url, private: true });
    assert.equal(bobStart.status, 202, JSON.stringify(bobStart.body));
    const bobTask = bobStart.body.task.id as string;
    const aliceStart = await alice('POST', `/api/repos/alice/${mine}/migrate`, { from: slow!.url, private: true });
    assert.equal(aliceStart.status, 202, JSON.stringify(aliceStart.body));
    const aliceTask = aliceStart.body.task.id as string;
    assert.equal(aliceStart.body.task.state, 'running');

    const context = await browser!.newContext({ viewport: { width: 1280, height: 800 } });
    // Alarm if anything of bob's task ever reaches the page, text or attribute (installed before
    // the page's own script; init scripts are not subject to the page's CSP).
    // (A string: the tests compile without the DOM's types.)
    await context.addInitScript({
      content: `(() => {
        const needles = ${JSON.stringify([bobTask, bobTask.slice(0, 8), hidden])};
        window.__leaks = [];
        new MutationObserver(() => {
          const html = document.documentElement.innerHTML;
          for (const needle of needles) if (html.includes(needle) && !window.__leaks.includes(needle)) window.__leaks.push(needle);
        }).observe(document, { subtree: true, childList: true, characterData: true, attributes: true });
      })();`,
    });
    const page = await context.newPage();
    const problems: string[] = [];
    let opsFailing = false;
    page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
    page.on('console', (m) => {
      // While the test makes /api/ops fail on purpose, the browser logs each failed request.
      if (opsFailing && /Failed to load resource.*503/.test(m.text())) return;
      if (m.type() === 'error' || m.type() === 'warning') problems.push(`console ${m.type()}: ${m.text()}`);
    });
    // Every answer of /api/ops the page got: none may name bob's task either.
    const answers: string[] = [];
    page.on('response', (res) => {
      if (new URL(res.url()).pathname === '/api/ops' && res.status() === 200) res.text().then((body) => answers.push(body), () => {});
    });
    const opsAnswer = () => page.waitForResponse((res) => new URL(res.url()).pathname === '/api/ops' && res.status() === 200, WAIT);
    const leaks = () => page.evaluate<string[]>('window.__leaks');

    try {
      await page.goto(`${node2.url}/`);
      assert.equal(await page.getByRole('tab', { name: 'Operations' }).isVisible(), false, 'no operations tab before signing in');
      await page.getByLabel('Token').fill(aliceToken);
      await page.getByRole('button', { name: 'Sign in' }).click();
      await page.locator('#user', { hasText: 'alice' }).waitFor(WAIT);
      await page.getByRole('tab', { name: 'Operations' }).click();
      assert.equal(await page.getByRole('tab', { name: 'Operations' }).getAttribute('aria-selected'), 'true');
      assert.equal(await page.locator('#panel-events').isHidden(), true, 'the events view is behind its tab');

      // Both nodes (node-2 serves the page), the NATS server, the stream and each node's feed.
      const nodeRow = (id: string) => page.locator('#ops-nodes tbody tr').filter({ has: page.locator('th', { hasText: new RegExp(`^${id}`) }) });
      await nodeRow('node-1').waitFor(WAIT);
      await nodeRow('node-2').waitFor(WAIT);
      assert.match((await nodeRow('node-2').textContent()) ?? '', /this page/);
      assert.doesNotMatch((await nodeRow('node-1').textContent()) ?? '', /this page/);
      const natsRow = page.locator('#ops-nats tbody tr[data-key]');
      await natsRow.first().waitFor(WAIT);
      const natsName = (await natsRow.first().locator('th').textContent()) ?? '';
      assert.ok(natsName.length > 0, 'the NATS server has a name');
      const streamRow = page.locator('#ops-stream tbody tr', { hasText: 'FORGE_EVENTS' });
      await streamRow.waitFor(WAIT);
      for (const id of ['node-1', 'node-2']) await page.locator('#ops-feeds tbody tr', { hasText: id }).waitFor(WAIT);
      assert.match((await page.locator('#ops-state').textContent()) ?? '', /^live$/);
      assert.match((await page.locator('#ops-age').textContent()) ?? '', /^updated \d+ s ago/);

      // Partitions: the busy ones, all of them with the checkbox.
      const partitionsCount = (await page.locator('#ops-partitions-count').textContent()) ?? '';
      const partitions = Number(/(\d+) partitions/.exec(partitionsCount)?.[1]);
      assert.equal(partitions, 32, `the default 32 partitions: ${partitionsCount}`);
      await page.getByLabel(/Show the \d+ idle partitions/).check();
      await eventually(async () => (await page.locator('#ops-partitions tbody tr[data-key]').count()) === partitions, 5_000, 'every partition listed');
      await page.getByLabel(/Show the \d+ idle partitions/).uncheck();

      // Alice's running migration, with its Cancel button; bob's is his alone.
      const taskRow = page.locator(`#ops-tasks tbody tr[data-key="k${aliceTask}"]`);
      await taskRow.waitFor(WAIT);
      const rowText = (await taskRow.textContent()) ?? '';
      assert.ok(rowText.includes(`alice/${mine}`) && rowText.includes('migrate') && rowText.includes('running'), rowText);
      assert.equal((await bob('GET', `/api/tasks/${bobTask}`)).body?.task?.state, 'running', "bob's migration runs meanwhile");
      await opsAnswer();

      await screenshot(page, 'ops-view');

      const cancelledAt = Date.now();
      const cancel = page.getByRole('button', { name: `Cancel task migrate of alice/${mine} (${aliceTask})` });
      await cancel.click();
      await page.locator('#ops-task-outcome', { hasText: `(${aliceTask}) cancelled.` }).waitFor(WAIT);
      // The view lists unfinished tasks: the row goes with the next poll.
      await taskRow.waitFor({ state: 'detached', timeout: 15_000 });
      t.diagnostic(`task cancelled from the page and gone from the view ${Date.now() - cancelledAt} ms after the click`);
      assert.equal((await alice('GET', `/api/tasks/${aliceTask}`)).body.task.state, 'cancelled');
      assert.equal(await page.locator('#ops-task-outcome').getAttribute('class'), 'outcome ok');

      // A failing poll marks the view stale (keeping the last answer); the next good one clears it.
      opsFailing = true;
      await page.route('**/api/ops', (route) => route.fulfill({ status: 503, contentType: 'application/json', body: '{"message":"bus unavailable"}' }));
      await page.locator('#ops-state', { hasText: 'stale' }).waitFor(WAIT);
      assert.match((await page.locator('#ops-error').textContent()) ?? '', /503: bus unavailable/);
      assert.equal(await nodeRow('node-1').isVisible(), true, 'the last answer stays shown');
      await page.unroute('**/api/ops');
      await page.locator('#ops-state', { hasText: 'live' }).waitFor(WAIT);
      opsFailing = false;
      assert.equal(await page.locator('#ops-error').textContent(), '');

      // Hidden behind the other tab (reached with the keyboard), it stops polling; shown again, it polls at once.
      await page.getByRole('tab', { name: 'Operations' }).focus();
      await page.keyboard.press('ArrowLeft');
      assert.equal(await page.getByRole('tab', { name: 'Live events' }).getAttribute('aria-selected'), 'true');
      assert.equal(await page.evaluate<string>('document.activeElement.id'), 'tab-events', 'the focus follows the selected tab');
      await page.locator('#ops-state', { hasText: 'paused' }).waitFor({ ...WAIT, state: 'attached' });
      assert.equal(await page.locator('#panel-ops').isHidden(), true);
      const polled = opsAnswer();
      await page.getByRole('tab', { name: 'Operations' }).click();
      await polled;

      // Nothing of bob's task, ever: in the DOM (watched throughout) nor in any answer.
      assert.equal((await bob('GET', `/api/tasks/${bobTask}`)).body?.task?.state, 'running', "bob's migration still ran at the end");
      assert.deepEqual(await leaks(), [], "bob's private task never reached alice's page");
      assert.ok(answers.length >= 3, `several answers seen (${answers.length})`);
      for (const body of answers) assert.ok(!body.includes(bobTask) && !body.includes(hidden), "bob's task is in no answer to alice");
      assert.deepEqual(problems, [], 'no script errors, CSP violations or failed requests');
    } catch (err) {
      await reportPageFailure(t, page, 'ops-view', '#signin-error, #ops-state, #ops-error, #ops-problems, #ops-task-outcome, #ops-tasks', problems);
      throw err;
    } finally {
      await context.close();
      await bob('DELETE', `/api/tasks/${bobTask}`).catch(() => {});
    }
  });

  it('a page signed in by its cookie only asks for the JWT before cancelling (the cookie authorizes no write)', async () => {
    // The view's contract: GET /api/ops, a read, takes the session cookie like GET /api/events.
    const res = await fetch(`${nodes[0]!.url}/api/ops`, { headers: { cookie: `forge_token=${await tokenFor('carol')}` } });
    assert.equal(res.status, 200, 'GET /api/ops takes the session cookie (@AcceptBrowserTokens)');
    await askForJwtBeforeCancel(browser!, nodes[0]!, slow!);
  });
});

/**
 * A reloaded page knows its user from the cookie but holds no token: Cancel asks for the JWT
 * once, then cancels with it.
 */
async function askForJwtBeforeCancel(browser: Browser, node: TestForgeNode, slow: SlowGitServer): Promise<void> {
  const token = await tokenFor('carol');
  const carol = apiClient(node.url, token);
  const repo = `again-${Date.now().toString(36)}`;
  const started = await carol('POST', `/api/repos/carol/${repo}/migrate`, { from: slow.url });
  assert.equal(started.status, 202, JSON.stringify(started.body));
  const id = started.body.task.id as string;
  const context = await browser.newContext();
  const page: Page = await context.newPage();
  try {
    await page.goto(`${node.url}/#token=${token}`);
    await page.locator('#user', { hasText: 'carol' }).waitFor(WAIT);
    await page.reload();
    await page.locator('#user', { hasText: 'carol' }).waitFor(WAIT);
    await page.getByRole('tab', { name: 'Operations' }).click();
    // GET /api/ops takes the session cookie (a read); the page holds no token now.
    await page.locator('#ops-state', { hasText: /^live$/ }).waitFor(WAIT).catch(async (err: Error) => {
      throw new Error(`the view did not load with the session cookie alone: ${await page.locator('#ops-error').textContent()} (${err.message.split('\n')[0]})`);
    });
    await page.getByRole('button', { name: `Cancel task migrate of carol/${repo} (${id})` }).click(WAIT);
    const jwt = page.getByLabel('Your JWT');
    await jwt.waitFor(WAIT);
    assert.equal(await page.evaluate<string>('document.activeElement.id'), 'ops-auth-jwt', 'the field has the focus');
    await jwt.fill(token);
    await page.getByRole('button', { name: `Cancel task carol/${repo}` }).click();
    await page.locator('#ops-task-outcome', { hasText: `(${id}) cancelled.` }).waitFor(WAIT);
    assert.equal(await page.locator('#ops-auth').isHidden(), true);
    assert.equal((await carol('GET', `/api/tasks/${id}`)).body.task.state, 'cancelled');
  } finally {
    await context.close();
    await carol('DELETE', `/api/tasks/${id}`).catch(() => {});
  }
}
