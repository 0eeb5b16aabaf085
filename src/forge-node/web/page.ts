import { OPS_MARKUP, OPS_SCRIPT, OPS_STYLE } from './ops-view.js';

/**
 * The forge node's web page (`GET /`): sign in with a token (stored as an HttpOnly cookie by
 * `POST /api/session`), then two views in tabs: live events of a repository over `GET /api/events`
 * (SSE, the cookie authenticates) and the operations view of the cluster (`GET /api/ops`, polled;
 * ops-view.ts); sign out. Plain HTML, one inline script and one inline style, both carrying the
 * CSP nonce of the response; no external resource, no build step. Data is only ever written with
 * `textContent`.
 */

export interface PageOptions {
  /** CSP nonce of this response (base64). */
  nonce: string;
  /** Named SSE events to listen to: the catalog's types plus `reset` and `access-revoked`. */
  eventTypes: readonly string[];
  /** The node serving the page (marked in the operations view). */
  nodeId: string;
}

/** JSON that can sit inside a <script> element. */
const scriptJson = (value: unknown) => JSON.stringify(value).replace(/</g, '\\u003c');

const STYLE = `
  body { font: 15px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 76rem; padding: 1rem 1.5rem; color: #1d2125; }
  h1 { font-size: 1.4rem; margin: 0 0 1rem; }
  h1 small { font-size: .9rem; font-weight: 400; color: #5b636b; margin-left: .5rem; }
  form, .bar { display: flex; flex-wrap: wrap; gap: .5rem; align-items: end; margin-bottom: 1rem; }
  label { display: flex; flex-direction: column; gap: .2rem; font-weight: 600; }
  textarea, input { font: 13px ui-monospace, monospace; padding: .35rem; border: 1px solid #8a939c; border-radius: 4px; }
  textarea { width: 36rem; max-width: 90vw; height: 4.5rem; }
  input { width: 100%; min-width: 20rem; box-sizing: border-box; }
  button { padding: .4rem .9rem; border-radius: 4px; border: 1px solid #4a5560; background: #f3f5f7; cursor: pointer; }
  button:focus-visible, input:focus-visible, textarea:focus-visible { outline: 2px solid #1a66d2; outline-offset: 1px; }
  [hidden] { display: none !important; }
  .error { color: #b01d1d; margin: 0 0 1rem; }
  .error:empty { margin: 0; }
  #connection { display: inline-block; padding: .1rem .6rem; border-radius: 1rem; font-size: .85rem; font-weight: 600; border: 1px solid; }
  #connection.connecting, #connection.reconnecting { color: #7a5400; background: #fff6dc; }
  #connection.live { color: #0d6b2b; background: #e3f6e8; }
  #connection.closed { color: #5b636b; background: #eef0f2; }
  #events { list-style: none; padding: 0; margin: 0; font: 13px ui-monospace, monospace; }
  #events li { display: grid; grid-template-columns: 4rem 14rem 10rem 6rem 1fr; gap: .5rem; padding: .3rem .4rem; border-bottom: 1px solid #e3e6e9; }
  #events li.control { background: #fff6dc; }
  #events .seq { color: #5b636b; }
  #events .summary { min-width: 0; overflow-wrap: anywhere; }
  #events .type { font-weight: 700; }
${OPS_STYLE}`;

/* The page's script, plain ES2020 for any current browser. */
const SCRIPT = `
${OPS_SCRIPT}
(() => {
  'use strict';
  const MAX_ENTRIES = 500;
  const eventTypes = JSON.parse(document.getElementById('event-types').textContent);
  const $ = (id) => document.getElementById(id);
  const signinForm = $('signin'), tokenInput = $('token'), signinError = $('signin-error');
  const session = $('session'), userName = $('user'), signoutButton = $('signout');
  const watchForm = $('watch'), repoInput = $('repo'), watchError = $('watch-error');
  const connection = $('connection'), watching = $('watching'), list = $('events');
  const tabs = [$('tab-events'), $('tab-ops')], views = $('views');
  let source = null;

  // A token handed over in the URL fragment (#token=...) fills the form (and signs in, below), then leaves the address bar.
  const fragment = new URLSearchParams(location.hash.slice(1));
  if (fragment.get('token')) {
    tokenInput.value = fragment.get('token');
    history.replaceState(null, '', location.pathname + location.search);
  }

  function setConnection(state, text) {
    connection.className = state;
    connection.textContent = text;
  }

  async function errorMessage(res) {
    try {
      const body = await res.json();
      return Array.isArray(body.message) ? body.message.join('; ') : String(body.message || res.statusText);
    } catch {
      return res.status + ' ' + res.statusText;
    }
  }

  const ops = opsView({ $, errorMessage });

  // Tabs (WAI-ARIA tabs pattern): click or arrow keys; the operations view polls only while shown.
  function select(tab, focus) {
    for (const t of tabs) {
      const on = t === tab;
      t.setAttribute('aria-selected', String(on));
      t.tabIndex = on ? 0 : -1;
      $(t.getAttribute('aria-controls')).hidden = !on;
    }
    if (focus) tab.focus();
    if (tab.id === 'tab-ops') ops.show(); else ops.hide();
  }
  tabs.forEach((tab, i) => {
    tab.addEventListener('click', () => select(tab, false));
    tab.addEventListener('keydown', (e) => {
      const next = e.key === 'ArrowRight' ? i + 1 : e.key === 'ArrowLeft' ? i - 1 : e.key === 'Home' ? 0 : e.key === 'End' ? tabs.length - 1 : null;
      if (next === null) return;
      e.preventDefault();
      select(tabs[(next + tabs.length) % tabs.length], true);
    });
  });

  // token: the one just signed in with (kept in memory for writes such as cancelling a task;
  // the HttpOnly cookie authorizes reads only), or none when the session comes from the cookie.
  function showSignedIn(user, token) {
    userName.textContent = user;
    signinForm.hidden = true;
    session.hidden = false;
    watchForm.hidden = false;
    views.hidden = false;
    tokenInput.value = '';
    signinError.textContent = '';
    ops.signedIn(user, token);
    if ($('tab-events').getAttribute('aria-selected') === 'true') repoInput.focus();
  }

  function showSignedOut() {
    stopWatching('not watching');
    ops.signedOut();
    select(tabs[0], false);
    views.hidden = true;
    session.hidden = true;
    watchForm.hidden = true;
    signinForm.hidden = false;
    userName.textContent = '';
  }

  signinForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    const token = tokenInput.value.trim();
    if (!token) { signinError.textContent = 'Paste a token first.'; return; }
    signinError.textContent = 'Signing in...';
    try {
      const res = await fetch('/api/session', { method: 'POST', headers: { authorization: 'Bearer ' + token } });
      if (!res.ok) { signinError.textContent = 'Sign-in failed: ' + await errorMessage(res); return; }
      showSignedIn((await res.json()).user, token);
    } catch (err) {
      signinError.textContent = 'Sign-in failed: ' + err.message;
    }
  });

  signoutButton.addEventListener('click', async () => {
    stopWatching('not watching');
    try { await fetch('/api/session', { method: 'DELETE' }); } catch { /* the cookie may stay; the page forgets anyway */ }
    showSignedOut();
  });

  function stopWatching(text) {
    if (source) { source.close(); source = null; }
    setConnection('closed', text);
  }

  function summary(type, payload) {
    if (!payload || typeof payload !== 'object') return '';
    const action = type.slice(type.lastIndexOf('.') + 1);
    if (type === 'reset') return 'reload state: ' + (payload.reason || 'no reason given');
    if (type === 'access-revoked') return payload.repo ? 'no longer readable: ' + payload.repo.owner + '/' + payload.repo.name : 'access revoked';
    if (typeof payload.number === 'number') {
      return '#' + payload.number + ' ' + (payload.state || action) + (payload.title ? ' "' + payload.title + '"' : '');
    }
    if (typeof payload.issueNumber === 'number') return '#' + payload.issueNumber + ' comment ' + payload.commentId + ' ' + action;
    if (typeof payload.user === 'string' && payload.change) return payload.user + ' ' + payload.change;
    const text = Object.entries(payload)
      .map(([key, value]) => key + '=' + (typeof value === 'object' ? JSON.stringify(value) : String(value)))
      .join(' ');
    return !text ? action : text.length > 160 ? text.slice(0, 159) + '\\u2026' : text;
  }

  function cell(className, text) {
    const span = document.createElement('span');
    span.className = className;
    span.textContent = text;
    return span;
  }

  function show(e) {
    let data = null;
    try { data = JSON.parse(e.data); } catch { /* shown raw below */ }
    const envelope = data && typeof data === 'object' ? data : {};
    const control = e.type === 'reset' || e.type === 'access-revoked';
    const payload = control ? envelope : envelope.payload;
    const repo = envelope.repo ? envelope.repo.owner + '/' + envelope.repo.name : envelope.user ? '@' + envelope.user : '';
    const li = document.createElement('li');
    // Control events (reset, access-revoked) are not stream events: lastEventId would be the previous one's.
    const seq = control ? '' : e.lastEventId || '';
    li.dataset.id = seq;
    li.dataset.type = e.type;
    if (control) li.className = 'control';
    li.append(
      cell('seq', seq ? '#' + seq : ''),
      cell('type', e.type),
      cell('repo', repo),
      cell('actor', envelope.actor || ''),
      cell('summary', data === null ? String(e.data).slice(0, 120) : summary(e.type, payload)),
    );
    list.prepend(li);
    while (list.children.length > MAX_ENTRIES) list.lastElementChild.remove();
  }

  // A failed connection (401, 403) closes the EventSource without a reason: ask the server once.
  async function explainClosed(url) {
    const abort = new AbortController();
    try {
      const res = await fetch(url, { headers: { accept: 'text/event-stream' }, signal: abort.signal });
      if (!res.ok) watchError.textContent = 'Stream refused: ' + await errorMessage(res);
    } catch { /* network error: the indicator says closed */ }
    abort.abort();
  }

  watchForm.addEventListener('submit', (e) => {
    e.preventDefault();
    const repo = repoInput.value.trim();
    const url = '/api/events' + (repo ? '?repos=' + encodeURIComponent(repo) : '');
    stopWatching('connecting');
    watchError.textContent = '';
    list.replaceChildren();
    watching.textContent = repo || 'my repositories';
    setConnection('connecting', 'connecting');
    const es = new EventSource(url);
    source = es;
    es.onopen = () => { if (source === es) setConnection('live', 'live'); };
    es.onerror = () => {
      if (source !== es) return;
      if (es.readyState === EventSource.CLOSED) {
        setConnection('closed', 'closed');
        source = null;
        explainClosed(url);
      } else {
        setConnection('reconnecting', 'reconnecting');
      }
    };
    for (const type of eventTypes) es.addEventListener(type, show);
    es.addEventListener('message', show);
  });

  // A token from the link npm start prints signs in at once, as the link promises; otherwise
  // ask the server who we are (the session cookie is HttpOnly).
  if (tokenInput.value) signinForm.requestSubmit();
  else fetch('/api/session').then((res) => res.json()).then((body) => { if (body.user) showSignedIn(body.user); }).catch(() => {});
})();
`;

const escapeHtml = (text: string) =>
  text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

export function renderPage({ nonce, eventTypes, nodeId }: PageOptions): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>forgebus: live events and operations</title>
<link rel="icon" href="data:,">
<style nonce="${nonce}">${STYLE}</style>
</head>
<body>
<header>
  <h1>forgebus: live events and operations<small>node ${escapeHtml(nodeId)}</small></h1>
</header>
<main>
  <form id="signin" aria-describedby="signin-error">
    <label for="token">Token (JWT)
      <textarea id="token" name="token" autocomplete="off" spellcheck="false" required></textarea>
    </label>
    <button type="submit">Sign in</button>
  </form>
  <p id="signin-error" class="error" role="alert"></p>

  <div id="session" class="bar" hidden>
    <span>Signed in as <strong id="user"></strong></span>
    <button type="button" id="signout">Sign out</button>
  </div>

  <div id="views" role="tablist" aria-label="Views" hidden>
    <button type="button" role="tab" id="tab-events" aria-selected="true" aria-controls="panel-events">Live events</button>
    <button type="button" role="tab" id="tab-ops" aria-selected="false" aria-controls="panel-ops" tabindex="-1">Operations</button>
  </div>

  <div id="panel-events" role="tabpanel" aria-labelledby="tab-events">
  <form id="watch" hidden aria-describedby="watch-error">
    <label for="repo">Repository (owner/name, empty = my repositories)
      <input id="repo" name="repo" placeholder="alice/web" autocomplete="off" spellcheck="false">
    </label>
    <button type="submit">Watch</button>
  </form>
  <p id="watch-error" class="error" role="alert"></p>

  <section aria-labelledby="events-title">
    <h2 id="events-title" class="bar">Events of <span id="watching">nothing yet</span>
      <span id="connection" class="closed" role="status" aria-live="polite">not watching</span></h2>
    <ul id="events" aria-label="Received events, newest first"></ul>
  </section>
  </div>
${OPS_MARKUP}
</main>
<script type="application/json" id="event-types">${scriptJson(eventTypes)}</script>
<script type="application/json" id="page-info">${scriptJson({ nodeId })}</script>
<script nonce="${nonce}">${SCRIPT}</script>
</body>
</html>
`;
}
