/**
 * The operations view of the forge node's web page: the cluster as `GET /api/ops` describes it
 * (`ClusterStatus`, src/ops/status/cluster-status.ts) — forge nodes, NATS servers, FORGE_EVENTS
 * and each node's feed position, write partitions, the user's tasks (with a Cancel button that
 * calls `DELETE /api/tasks/:id`), cron jobs and the problems met collecting it.
 *
 * It polls every 2 s while the view is shown and the page visible (paused otherwise), shows how
 * old the data is and marks it stale when a poll fails. Rows are updated in place (keyed), so a
 * focused Cancel button keeps its focus across polls. Every value is written with `textContent`.
 *
 * Cancelling is a write, and the session cookie never authorizes one (docs/sse.md): the page
 * keeps the token it signed in with in memory (never in storage) and sends it as a Bearer header.
 * A page that only has the cookie (reloaded) asks for the token once, on the first Cancel.
 */

/** The operations panel's markup (inside the page's <main>); static, no data. */
export const OPS_MARKUP = `
  <div id="panel-ops" role="tabpanel" aria-labelledby="tab-ops" tabindex="-1" hidden>
    <div class="bar ops-head">
      <span id="ops-state" class="badge idle" role="status" aria-live="polite">not loaded</span>
      <span id="ops-age" class="muted"></span>
      <span id="ops-failed-writes" class="badge idle" hidden></span>
      <button type="button" id="ops-refresh">Refresh now</button>
    </div>
    <p id="ops-error" class="error" role="alert"></p>
    <ul id="ops-problems" class="problems" aria-label="Problems collecting the status" hidden></ul>

    <div id="ops-data" hidden>
    <section>
      <h3 id="ops-nodes-title">Forge nodes <span id="ops-nodes-count" class="count"></span></h3>
      <div class="scroll" role="region" aria-labelledby="ops-nodes-title" tabindex="0">
      <table id="ops-nodes" aria-labelledby="ops-nodes-title">
        <thead><tr>
          <th scope="col">Node</th><th scope="col">Address</th><th scope="col">Roles</th><th scope="col">Version</th>
          <th scope="col" class="num">Uptime</th><th scope="col">NATS server</th><th scope="col" class="num">SSE streams</th>
          <th scope="col" class="num">Cache hits</th><th scope="col" class="num">Feed position</th><th scope="col" class="num">Lag</th>
          <th scope="col" class="num">Writes applied</th><th scope="col" class="num">Running tasks</th>
        </tr></thead>
        <tbody></tbody>
      </table>
      </div>
    </section>

    <section>
      <h3 id="ops-nats-title">NATS servers <span id="ops-nats-count" class="count"></span></h3>
      <div class="scroll" role="region" aria-labelledby="ops-nats-title" tabindex="0">
      <table id="ops-nats" aria-labelledby="ops-nats-title">
        <thead><tr>
          <th scope="col">Server</th><th scope="col">Health</th><th scope="col">Role</th><th scope="col">Version</th>
          <th scope="col" class="num">Uptime</th><th scope="col" class="num">Connections</th><th scope="col">Routes</th>
          <th scope="col">JetStream</th><th scope="col">Monitoring</th>
        </tr></thead>
        <tbody></tbody>
      </table>
      </div>
    </section>

    <section>
      <h3 id="ops-stream-title">Event stream</h3>
      <div class="scroll" role="region" aria-labelledby="ops-stream-title" tabindex="0">
      <table id="ops-stream" aria-labelledby="ops-stream-title">
        <thead><tr>
          <th scope="col">Stream</th><th scope="col" class="num">Messages</th><th scope="col" class="num">Bytes</th>
          <th scope="col" class="num">First seq</th><th scope="col" class="num">Last seq</th><th scope="col" class="num">Replicas</th>
          <th scope="col">Leader</th>
        </tr></thead>
        <tbody></tbody>
      </table>
      </div>
      <table id="ops-feeds" class="narrow" aria-label="Feed position of each node">
        <thead><tr><th scope="col">Node feed</th><th scope="col" class="num">Position</th><th scope="col" class="num">Lag</th></tr></thead>
        <tbody></tbody>
      </table>
    </section>

    <section>
      <h3 id="ops-tasks-title">Tasks <span id="ops-tasks-count" class="count"></span></h3>
      <p id="ops-task-outcome" class="outcome" role="status" aria-live="polite"></p>
      <form id="ops-auth" class="bar" hidden aria-describedby="ops-auth-help">
        <p id="ops-auth-help">Cancelling is a write, which the session cookie does not authorize: paste your JWT once for this page.</p>
        <label for="ops-auth-jwt">Your JWT
          <input id="ops-auth-jwt" type="password" autocomplete="off" spellcheck="false" required>
        </label>
        <button type="submit" id="ops-auth-submit">Cancel the task</button>
        <button type="button" id="ops-auth-dismiss">Keep it running</button>
      </form>
      <div class="scroll" role="region" aria-labelledby="ops-tasks-title" tabindex="0">
      <table id="ops-tasks" aria-labelledby="ops-tasks-title">
        <thead><tr>
          <th scope="col">Task</th><th scope="col">Kind</th><th scope="col">Repository</th><th scope="col">Node</th>
          <th scope="col">Started by</th><th scope="col">State</th><th scope="col">Progress</th><th scope="col" class="num">Running for</th>
          <th scope="col"><span class="sr-only">Actions</span></th>
        </tr></thead>
        <tbody></tbody>
      </table>
      </div>
    </section>

    <div class="ops-grid">
      <section aria-labelledby="ops-partitions-title">
        <h3 id="ops-partitions-title">Write partitions <span id="ops-partitions-count" class="count"></span></h3>
        <label class="check"><input type="checkbox" id="ops-show-idle"> Show idle partitions</label>
        <table id="ops-partitions" aria-labelledby="ops-partitions-title">
          <thead><tr>
            <th scope="col" class="num">Partition</th><th scope="col" class="num">Pending</th><th scope="col" class="num">In flight</th>
            <th scope="col" class="num">Redelivered</th><th scope="col" class="num">Oldest waiting</th>
          </tr></thead>
          <tbody></tbody>
        </table>
      </section>

      <section aria-labelledby="ops-cron-title">
        <h3 id="ops-cron-title">Cron jobs <span id="ops-cron-count" class="count"></span></h3>
        <table id="ops-cron" aria-labelledby="ops-cron-title">
          <thead><tr>
            <th scope="col">Job</th><th scope="col">Last run</th><th scope="col">Node</th><th scope="col">Outcome</th><th scope="col" class="num">Took</th>
          </tr></thead>
          <tbody></tbody>
        </table>
      </section>
    </div>
    </div>
  </div>
`;

export const OPS_STYLE = `
  [role="tablist"] { display: flex; gap: .25rem; border-bottom: 1px solid #c5cbd1; margin: 0 0 1rem; }
  [role="tab"] { border: 1px solid transparent; border-bottom: none; border-radius: 6px 6px 0 0; background: none; padding: .45rem 1rem; font-weight: 600; color: #4a5560; margin-bottom: -1px; }
  [role="tab"][aria-selected="true"] { border-color: #c5cbd1; background: #fff; color: #1d2125; }
  [role="tab"]:focus-visible, [role="tabpanel"]:focus-visible, .scroll:focus-visible, input[type="checkbox"]:focus-visible { outline: 2px solid #1a66d2; outline-offset: 1px; }
  .muted { color: #5b636b; }
  .sr-only { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; }
  .badge { display: inline-block; padding: .1rem .6rem; border-radius: 1rem; font-size: .85rem; font-weight: 600; border: 1px solid; }
  .badge.live, .badge.ok { color: #0d6b2b; background: #e3f6e8; }
  .badge.loading, .badge.warn { color: #7a5400; background: #fff6dc; }
  .badge.stale, .badge.bad { color: #b01d1d; background: #fdeaea; }
  .badge.idle, .badge.paused { color: #5b636b; background: #eef0f2; }
  .ops-head { align-items: center; }
  #panel-ops h3 { font-size: 1.05rem; margin: 1.1rem 0 .4rem; }
  #panel-ops .count { font-weight: 400; color: #5b636b; font-size: .9rem; }
  .ops-grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(26rem, 1fr)); gap: 0 1.5rem; }
  .scroll { overflow-x: auto; }
  #panel-ops.stale table { opacity: .6; }
  #panel-ops table { border-collapse: collapse; width: 100%; font-size: 13px; }
  #panel-ops table.narrow { width: auto; min-width: 22rem; margin-top: .5rem; }
  #panel-ops th, #panel-ops td { text-align: left; padding: .22rem .5rem; border-bottom: 1px solid #e3e6e9; white-space: nowrap; vertical-align: middle; }
  #panel-ops thead th { font-size: 12px; color: #4a5560; border-bottom: 2px solid #c5cbd1; }
  #panel-ops tbody th { font-weight: 600; }
  #panel-ops .num { text-align: right; font-variant-numeric: tabular-nums; }
  #panel-ops td.mono, #panel-ops th.mono { font-family: ui-monospace, monospace; }
  #panel-ops td.empty { color: #5b636b; font-style: italic; text-align: left; }
  #panel-ops td.ok { color: #0d6b2b; font-weight: 600; }
  #panel-ops td.warn { color: #7a5400; font-weight: 600; }
  #panel-ops td.bad { color: #b01d1d; font-weight: 600; }
  #panel-ops .clip { max-width: 11rem; overflow: hidden; text-overflow: ellipsis; }
  #panel-ops td.wrap { white-space: normal; overflow-wrap: anywhere; min-width: 8rem; }
  #panel-ops .tag { display: inline-block; margin-left: .4rem; padding: 0 .4rem; border-radius: .6rem; font-size: 11px; font-weight: 600; background: #e6effb; color: #174a91; }
  #panel-ops progress { width: 5rem; vertical-align: middle; margin-right: .3rem; }
  #panel-ops td button { padding: .15rem .6rem; font-size: 12px; }
  #panel-ops button:disabled { cursor: default; opacity: .6; }
  #panel-ops .check { flex-direction: row; align-items: center; font-weight: 400; font-size: .9rem; margin-bottom: .3rem; }
  #panel-ops .check input { width: auto; min-width: 0; }
  .problems { list-style: none; padding: 0; margin: 0 0 .8rem; }
  .problems li { background: #fff6dc; border: 1px solid #e5c46b; color: #5c4100; border-radius: 4px; padding: .3rem .6rem; margin-bottom: .3rem; font-size: 13px; }
  .problems li::before { content: "\\26A0  "; }
  .outcome { margin: 0 0 .4rem; font-size: 13px; }
  .outcome:empty { display: none; }
  .outcome.ok { color: #0d6b2b; }
  .outcome.bad { color: #b01d1d; }
  #ops-auth p { margin: 0; flex-basis: 100%; font-size: 13px; }
  #ops-auth input { min-width: 16rem; }
`;

/**
 * Defines `opsView(deps)` in the page's script: `deps` = `{ $, errorMessage }`; it returns
 * `{ signedIn(user, token?), signedOut(), show(), hide() }` for the page's session and tab logic.
 */
export const OPS_SCRIPT = `
function opsView(deps) {
  const $ = deps.$, errorMessage = deps.errorMessage;
  const POLL_MS = 2000, TIMEOUT_MS = 8000;
  const state = $('ops-state'), age = $('ops-age'), opsError = $('ops-error'), problems = $('ops-problems');
  const failedWrites = $('ops-failed-writes'), refresh = $('ops-refresh'), showIdle = $('ops-show-idle');
  const outcome = $('ops-task-outcome'), authForm = $('ops-auth'), authInput = $('ops-auth-jwt');
  const body = (id) => $(id).tBodies[0];
  const pageNode = JSON.parse($('page-info').textContent).nodeId;
  let user = null, writeToken = null, shown = false, timer = null, ticker = null, inflight = null;
  let last = null, receivedAt = 0, cancelWaiting = null;
  const cancelling = new Set();

  // --- formatting ---
  const dash = '\\u2014';
  const has = (v) => v !== undefined && v !== null;
  const int = (n) => has(n) ? Number(n).toLocaleString('en-US') : dash;
  function bytes(n) {
    if (!has(n)) return dash;
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let v = Number(n), i = 0;
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return (i === 0 ? String(v) : v.toFixed(v < 10 ? 1 : 0)) + ' ' + units[i];
  }
  function duration(ms) {
    if (!has(ms) || !isFinite(ms)) return dash;
    if (ms < 1000) return Math.max(0, Math.round(ms)) + ' ms';
    let s = Math.floor(ms / 1000);
    if (s < 60) return s + ' s';
    const d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
    s = s % 60;
    if (d) return d + 'd ' + h + 'h';
    if (h) return h + 'h ' + m + 'm';
    return m + 'm ' + s + 's';
  }
  // Server time now: the snapshot's collectedAt moved on by the time since it arrived (no clock skew).
  const serverNow = () => last ? Date.parse(last.collectedAt) + (Date.now() - receivedAt) : Date.now();
  const since = (iso) => iso ? duration(serverNow() - Date.parse(iso)) : dash;
  const percent = (r) => has(r) ? (r * 100).toFixed(r >= 0.995 || r === 0 ? 0 : 1) + ' %' : dash;

  // --- rows updated in place ---
  // A cell: a string, { text, cls, title, tag, clip } or a function(td) that fills it itself.
  function fillCell(td, value) {
    if (typeof value === 'function') { value(td); return; }
    const v = value !== null && typeof value === 'object' ? value : { text: value };
    const cls = ((v.cls || '') + (v.clip ? ' clip' : '')).trim();
    if (td.className !== cls) td.className = cls;
    const text = has(v.text) ? String(v.text) : dash;
    const tag = v.tag || '';
    const current = td.dataset.text === text && (td.dataset.tag || '') === tag;
    if (!current) {
      td.textContent = text;
      if (tag) { const t = document.createElement('span'); t.className = 'tag'; t.textContent = tag; td.append(t); }
      td.dataset.text = text;
      td.dataset.tag = tag;
    }
    // Clipped cells (a server's 56-character id as its name) keep the whole text, and show it on hover.
    const title = v.title || (v.clip && text.length > 16 ? text : '');
    if (title) td.title = title; else td.removeAttribute('title');
  }
  function fillRow(tr, cells) {
    while (tr.children.length < cells.length) {
      tr.append(document.createElement(tr.children.length === 0 ? 'th' : 'td'));
      if (tr.children.length === 1) tr.firstElementChild.scope = 'row';
    }
    cells.forEach((value, i) => fillCell(tr.children[i], value));
  }
  /** Makes tbody's rows the items' (keyed), moving only what changed place. */
  function syncRows(tbody, items, keyOf, cellsOf, emptyText, columns) {
    const old = new Map();
    for (const tr of tbody.children) if (tr.dataset.key) old.set(tr.dataset.key, tr);
    const rows = items.map((item) => {
      const key = 'k' + keyOf(item);
      let tr = old.get(key);
      if (!tr) { tr = document.createElement('tr'); tr.dataset.key = key; }
      old.delete(key);
      fillRow(tr, cellsOf(item, tr));
      return tr;
    });
    if (rows.length === 0) {
      const tr = document.createElement('tr'), td = document.createElement('td');
      td.colSpan = columns;
      td.className = 'empty';
      td.textContent = emptyText;
      tr.append(td);
      rows.push(tr);
    }
    let cursor = tbody.firstElementChild;
    for (const tr of rows) {
      if (tr === cursor) cursor = cursor.nextElementSibling;
      else tbody.insertBefore(tr, cursor);
    }
    while (cursor) { const next = cursor.nextElementSibling; cursor.remove(); cursor = next; }
  }
  const count = (id, text) => { $(id).textContent = text ? '(' + text + ')' : ''; };
  const byText = (f) => (a, b) => String(f(a)).localeCompare(String(f(b)));

  // --- the sections ---
  function renderNodes(data) {
    const nodes = (data.nodes || []).slice().sort(byText((n) => n.id));
    count('ops-nodes-count', nodes.length);
    syncRows(body('ops-nodes'), nodes, (n) => n.id, (n) => [
      { text: n.id, tag: n.id === pageNode ? 'this page' : '' },
      { text: n.address, cls: 'mono' },
      (n.roles || []).join(', ') || dash,
      n.version,
      { text: duration(n.uptimeMs), cls: 'num' },
      { text: n.natsServer, clip: true },
      { text: int(n.sseStreams), cls: 'num' },
      { text: percent(n.cacheHitRate), cls: 'num' },
      { text: int(n.feedPosition), cls: 'num' },
      { text: int(n.feedLag), cls: 'num' + (n.feedLag > 0 ? ' warn' : '') },
      { text: int(n.writesApplied), cls: 'num' },
      { text: int(n.runningTasks), cls: 'num' },
    ], 'No forge node is registered.', 12);
  }

  function renderNats(data) {
    const nats = data.nats || { servers: [] };
    const servers = (nats.servers || []).slice().sort(byText((s) => s.name));
    const unhealthy = servers.filter((s) => s.healthy === false).length;
    count('ops-nats-count', servers.length + (unhealthy ? ', ' + unhealthy + ' unhealthy' : ''));
    syncRows(body('ops-nats'), servers, (s) => s.name, (s) => [
      { text: s.name, clip: true },
      s.healthy === true ? { text: 'healthy', cls: 'ok' }
        : s.healthy === false ? { text: 'unhealthy' + (s.error ? ': ' + s.error : ''), cls: 'bad wrap' }
        : { text: 'unknown' + (s.error ? ': ' + s.error : ''), cls: 'muted wrap' },
      nats.metaLeader && s.name === nats.metaLeader ? { text: 'meta leader', cls: 'ok' } : nats.metaLeader ? 'follower' : dash,
      s.version,
      { text: s.uptime, cls: 'num' },
      { text: int(s.connections), cls: 'num' },
      { text: (s.routes || []).join(', ') || dash, cls: 'wrap' },
      s.jetstream === true ? 'enabled' : s.jetstream === false ? { text: 'disabled', cls: 'warn' } : dash,
      { text: s.monitorUrl, cls: 'mono' },
    ], 'No NATS server known.', 9);
  }

  function renderStream(data) {
    const ev = data.events;
    syncRows(body('ops-stream'), ev ? [ev] : [], (e) => e.name, (e) => [
      e.name,
      { text: int(e.messages), cls: 'num' },
      { text: bytes(e.bytes), cls: 'num', title: int(e.bytes) + ' bytes' },
      { text: int(e.firstSeq), cls: 'num' },
      { text: int(e.lastSeq), cls: 'num' },
      { text: int(e.replicas), cls: 'num' },
      { text: e.leader, clip: true },
    ], 'FORGE_EVENTS does not exist (yet).', 7);
    const feeds = ev ? (ev.feeds || []).slice().sort(byText((f) => f.node)) : [];
    syncRows(body('ops-feeds'), feeds, (f) => f.node, (f) => [
      { text: f.node, tag: f.node === pageNode ? 'this page' : '' },
      { text: int(f.position), cls: 'num' },
      { text: int(f.lag), cls: 'num' + (f.lag > 0 ? ' warn' : ' ok') },
    ], 'No node reports a feed position.', 3);
  }

  const busy = (p) => p.pending > 0 || p.inFlight > 0 || p.redelivered > 0 || has(p.oldestWaitingMs);
  function renderPartitions(data) {
    const all = (data.partitions || []).slice().sort((a, b) => (busy(b) - busy(a)) || a.partition - b.partition);
    const active = all.filter(busy);
    const idle = all.length - active.length;
    count('ops-partitions-count', all.length + ' partitions, ' + active.length + ' busy');
    showIdle.parentElement.hidden = idle === 0;
    showIdle.nextSibling.textContent = ' Show the ' + idle + ' idle partitions';
    const rows = showIdle.checked ? all : active;
    syncRows(body('ops-partitions'), rows, (p) => p.partition, (p) => [
      { text: p.partition, cls: 'num', title: p.consumer },
      { text: int(p.pending), cls: 'num' + (p.pending > 0 ? ' warn' : '') },
      { text: int(p.inFlight), cls: 'num' },
      { text: int(p.redelivered), cls: 'num' + (p.redelivered > 0 ? ' warn' : '') },
      { text: has(p.oldestWaitingMs) ? duration(p.oldestWaitingMs) : dash, cls: 'num' },
    ], all.length ? 'All ' + all.length + ' partitions are idle: nothing waits, nothing in flight.' : 'No write partition found.', 5);
  }

  function renderCron(data) {
    const jobs = (data.cron || []).slice().sort(byText((j) => j.job));
    count('ops-cron-count', jobs.length);
    syncRows(body('ops-cron'), jobs, (j) => j.job, (j) => {
      const r = j.lastRun;
      if (!r) return [j.job, { text: 'never ran', cls: 'muted' }, dash, dash, { text: dash, cls: 'num' }];
      const took = r.finishedAt ? duration(Date.parse(r.finishedAt) - Date.parse(r.startedAt)) : 'running';
      return [
        j.job,
        { text: since(r.startedAt) + ' ago', title: 'tick ' + r.tick + ', started ' + r.startedAt },
        r.node,
        { text: r.outcome + (r.error ? ': ' + r.error : ''), cls: 'wrap ' + (r.outcome === 'succeeded' ? 'ok' : r.outcome === 'failed' ? 'bad' : r.outcome === 'running' ? 'warn' : 'muted') },
        { text: took, cls: 'num' },
      ];
    }, 'No cron job known yet (none has run).', 5);
  }

  function taskLabel(t) { return t.kind + (t.repo ? ' of ' + t.repo : '') + ' (' + t.id + ')'; }
  function cancelCell(t) {
    return (td) => {
      let button = td.firstElementChild;
      if (!button) {
        button = document.createElement('button');
        button.type = 'button';
        button.className = 'cancel';
        button.addEventListener('click', () => requestCancel(button.dataset.task));
        td.append(button);
      }
      const finished = t.state !== 'queued' && t.state !== 'running';
      const pending = cancelling.has(t.id);
      button.dataset.task = t.id;
      button.textContent = pending ? 'Cancelling\\u2026' : 'Cancel';
      button.setAttribute('aria-label', (pending ? 'Cancelling task ' : 'Cancel task ') + taskLabel(t));
      button.disabled = pending || finished;
    };
  }
  function progressCell(t) {
    return (td) => {
      let bar = td.querySelector('progress'), text = td.querySelector('span');
      if (!bar) {
        bar = document.createElement('progress');
        bar.max = 100;
        text = document.createElement('span');
        td.append(bar, text);
      }
      const p = Math.max(0, Math.min(100, Number(t.progress) || 0));
      bar.value = p;
      bar.setAttribute('aria-label', 'Progress of task ' + t.id);
      text.textContent = p + ' %';
    };
  }
  let tasksShown = [];
  function renderTasks(data) {
    tasksShown = (data.tasks || []).slice().sort(byText((t) => t.createdAt + t.id));
    count('ops-tasks-count', tasksShown.length ? tasksShown.length + ' not finished' : '');
    syncRows(body('ops-tasks'), tasksShown, (t) => t.id, (t) => [
      { text: t.id.length > 13 ? t.id.slice(0, 8) + '\\u2026' : t.id, title: t.id, cls: 'mono' },
      t.kind,
      t.repo,
      t.node,
      t.user,
      { text: t.state, cls: t.state === 'running' ? 'ok' : t.state === 'queued' ? 'warn' : t.state === 'failed' ? 'bad' : '' },
      progressCell(t),
      { text: t.startedAt ? since(t.startedAt) : 'not started', cls: 'num' },
      cancelCell(t),
    ], 'No queued or running task you may see.', 9);
  }

  function renderProblems(data) {
    const lines = data.problems || [];
    problems.hidden = lines.length === 0;
    problems.replaceChildren(...lines.map((line) => { const li = document.createElement('li'); li.textContent = String(line); return li; }));
  }

  const dataShown = $('ops-data');
  function render(data) {
    dataShown.hidden = false;
    failedWrites.hidden = false;
    const fw = Number(data.failedWrites) || 0;
    failedWrites.className = 'badge ' + (fw > 0 ? 'warn' : 'idle');
    failedWrites.textContent = fw === 1 ? '1 failed write kept' : int(fw) + ' failed writes kept';
    renderProblems(data);
    renderNodes(data);
    renderNats(data);
    renderStream(data);
    renderTasks(data);
    renderPartitions(data);
    renderCron(data);
  }

  // --- freshness ---
  const panel = $('panel-ops');
  function setState(cls, text) {
    state.className = 'badge ' + cls;
    state.textContent = text;
    panel.classList.toggle('stale', cls === 'stale');
  }
  function tick() {
    if (!last) { age.textContent = ''; return; }
    const secs = Math.max(0, Math.round((Date.now() - receivedAt) / 1000));
    age.textContent = 'updated ' + secs + ' s ago (collected ' + new Date(last.collectedAt).toLocaleTimeString('en-GB') + ')';
    // Times shown as "ago" move on between polls too.
    if (!inflight) { renderTasks(last); renderCron(last); }
  }

  // --- polling ---
  const active = () => shown && user !== null && document.visibilityState === 'visible';
  function schedule(delay) {
    clearTimeout(timer);
    timer = active() ? setTimeout(poll, delay) : null;
  }
  async function poll() {
    timer = null;
    if (!active() || inflight) return;
    const abort = new AbortController();
    inflight = abort;
    const deadline = setTimeout(() => abort.abort(), TIMEOUT_MS);
    if (!last) setState('loading', 'loading');
    let stop = false;
    try {
      // The session cookie authenticates; the token this page signed in with, when it has it, too.
      const headers = { accept: 'application/json' };
      if (writeToken) headers.authorization = 'Bearer ' + writeToken;
      const res = await fetch('/api/ops', { headers, cache: 'no-store', signal: abort.signal });
      if (!res.ok) {
        // 401: the session is gone (signed out elsewhere, expired); polling again will not help.
        stop = res.status === 401;
        throw new Error(res.status + ': ' + await errorMessage(res) + (stop ? ' (sign in again; polling stopped)' : ''));
      }
      const data = await res.json();
      if (inflight !== abort) return;
      last = data;
      receivedAt = Date.now();
      opsError.textContent = '';
      render(data);
      setState('live', 'live');
    } catch (err) {
      if (inflight !== abort) return;
      const why = abort.signal.aborted ? 'no answer in ' + TIMEOUT_MS / 1000 + ' s' : err.message;
      setState('stale', last ? 'stale' : 'unavailable');
      opsError.textContent = 'Could not refresh the operations view: ' + why + (last ? '. The tables show the last answer.' : '');
    } finally {
      clearTimeout(deadline);
      if (inflight === abort) {
        inflight = null;
        tick();
        if (!stop) schedule(POLL_MS);
      }
    }
  }
  function start() {
    if (!active()) return;
    if (!ticker) ticker = setInterval(tick, 1000);
    if (!inflight) schedule(0);
  }
  function pause(text) {
    clearTimeout(timer);
    timer = null;
    clearInterval(ticker);
    ticker = null;
    if (inflight) { const a = inflight; inflight = null; a.abort(); }
    if (last || text) setState('paused', text || 'paused');
  }
  document.addEventListener('visibilitychange', () => {
    if (!shown || user === null) return;
    if (document.visibilityState === 'visible') start(); else pause('paused (page hidden)');
  });
  refresh.addEventListener('click', () => { if (!active()) return; if (inflight) return; schedule(0); });
  showIdle.addEventListener('change', () => { if (last) renderPartitions(last); });

  // --- cancel ---
  function setOutcome(cls, text) { outcome.className = 'outcome ' + cls; outcome.textContent = text; }
  function requestCancel(id) {
    const t = tasksShown.find((x) => x.id === id);
    if (!t || cancelling.has(id)) return;
    if (!writeToken) {
      cancelWaiting = t;
      authForm.hidden = false;
      $('ops-auth-submit').textContent = 'Cancel task ' + (t.repo || t.kind);
      authInput.focus();
      return;
    }
    cancel(t);
  }
  authForm.addEventListener('submit', (e) => {
    e.preventDefault();
    const jwt = authInput.value.trim();
    if (!jwt || !cancelWaiting) return;
    writeToken = jwt;
    authInput.value = '';
    authForm.hidden = true;
    const t = cancelWaiting;
    cancelWaiting = null;
    cancel(t);
  });
  $('ops-auth-dismiss').addEventListener('click', () => { authForm.hidden = true; authInput.value = ''; cancelWaiting = null; });

  async function cancel(t) {
    const label = taskLabel(t);
    cancelling.add(t.id);
    if (last) renderTasks(last);
    setOutcome('', 'Cancelling task ' + label + '\\u2026');
    try {
      const res = await fetch('/api/tasks/' + encodeURIComponent(t.id), { method: 'DELETE', headers: { authorization: 'Bearer ' + writeToken, accept: 'application/json' } });
      if (res.ok) {
        const task = (await res.json()).task || {};
        setOutcome('ok', 'Task ' + label + ' ' + (task.state || 'cancelled') + '.');
        // Its row goes with the next poll: a focused Cancel button hands the focus to the table.
        if (document.activeElement && document.activeElement.dataset && document.activeElement.dataset.task === t.id) {
          $('ops-tasks').parentElement.focus();
        }
        // Shown as the answer says until the next poll drops it (the view lists unfinished tasks).
        if (last) {
          last.tasks = (last.tasks || []).map((x) => (x.id === t.id ? Object.assign({}, x, { state: task.state || 'cancelled' }) : x));
        }
      } else {
        if (res.status === 401) writeToken = null;
        setOutcome('bad', 'Could not cancel task ' + label + ': ' + res.status + ' ' + await errorMessage(res));
      }
    } catch (err) {
      setOutcome('bad', 'Could not cancel task ' + label + ': ' + err.message);
    } finally {
      cancelling.delete(t.id);
      if (last) renderTasks(last);
      if (active() && !inflight) schedule(0);
    }
  }

  // Nothing of a previous user's view stays on the page.
  function forget() {
    last = null;
    tasksShown = [];
    cancelWaiting = null;
    authForm.hidden = true;
    authInput.value = '';
    dataShown.hidden = true;
    failedWrites.hidden = true;
    problems.hidden = true;
    problems.replaceChildren();
    for (const id of ['ops-nodes', 'ops-nats', 'ops-stream', 'ops-feeds', 'ops-tasks', 'ops-partitions', 'ops-cron']) body(id).replaceChildren();
    setState('idle', 'not loaded');
    age.textContent = '';
    opsError.textContent = '';
    setOutcome('', '');
  }

  return {
    signedIn(name, token) {
      if (user !== name) forget();
      user = name;
      writeToken = token || null;
      start();
    },
    signedOut() {
      pause();
      user = null;
      writeToken = null;
      forget();
    },
    show() { shown = true; start(); },
    hide() { shown = false; pause(); },
  };
}
`;
