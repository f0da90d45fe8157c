// The dashboard shell: renders the view the URL hash names (its state and
// links live in nav.mjs), the time range and filter bar shared by every view,
// sign-in (SSO or a pasted admin token), who is signed in (session.mjs), and
// error banners.

import * as api from './api.mjs';
import { destroyAll } from './charts.mjs';
import { h } from './dom.mjs';
import { VIEWS, NAV } from './routes.mjs';
import { DIMENSIONS, RANGES, go, hashFor, onRerender, parseHash, setState, state } from './nav.mjs';
import { auth, setAuth, user } from './session.mjs';



function needsSignIn() {
  return Boolean(auth && auth.oidc && !auth.signed_in && !api.token());
}

let expiryTimer;

async function refreshAuth() {
  setAuth(await api.authStatus());
  api.setCsrfToken(auth && auth.signed_in ? auth.csrf_token : '');
  updateWho();
  clearTimeout(expiryTimer);
  const ends = auth && auth.signed_in && auth.expires_at ? Date.parse(auth.expires_at) : NaN;
  if (Number.isFinite(ends)) {
    // When the session ends, the sign-in screen comes back by itself.
    expiryTimer = setTimeout(async () => {
      await refreshAuth();
      if (needsSignIn()) render();
    }, Math.min(2 ** 31 - 1, Math.max(0, ends - Date.now()) + 1000));
  }
}

function updateWho() {
  const who = document.getElementById('whoami');
  const out = document.getElementById('sign-out');
  const u = user();
  who.hidden = !u;
  out.hidden = !u;
  if (!u) {
    who.replaceChildren();
    return;
  }
  const roleText = u.role === 'team_admin' && u.team ? `team_admin · ${u.team}` : u.role;
  who.replaceChildren(h('span', { class: 'who-name' }, u.name || u.subject), ' ', h('span', { class: `badge role ${u.role}` }, roleText));
  who.dataset.role = u.role;
  who.dataset.team = u.team || '';
  const until = auth.expires_at ? `signed in until ${new Date(auth.expires_at).toLocaleString('en-GB')}` : 'signed in';
  who.title = [u.email, u.subject && `subject ${u.subject}`, until].filter(Boolean).join(' · ');
}

/** Where SSO sends the user back to: this page (never the sign-in screen itself). */
function returnTo() {
  const hash = location.hash && !/^#\/?signin/.test(location.hash) ? location.hash : '';
  return `/ui/${hash}`;
}

function renderSignIn({ error = '', notice = '' } = {}) {
  ++generation;
  destroyAll();
  document.body.classList.add('signed-out');
  document.title = 'Sign in · tollgate';
  const view = document.getElementById('view');
  view.dataset.view = 'signin';
  const input = h('input', { type: 'password', id: 'signin-token', name: 'token', placeholder: 'paste an admin token', 'aria-label': 'admin token', autocomplete: 'off' });
  const form = h('form', { id: 'signin-token-form', class: 'signin-token' }, input, h('button', { type: 'submit', class: 'button ghost' }, 'Use token'));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const t = input.value.trim();
    if (!t) return;
    api.setToken(t);
    updateTokenButton();
    render();
  });
  view.replaceChildren(h('div', { class: 'signin', 'data-testid': 'signin' },
    h('h2', {}, 'Sign in to tollgate'),
    h('p', { class: 'lede' }, 'This gateway shows its spend, keys and budgets to signed-in people only.'),
    error ? h('div', { class: 'banner error', id: 'signin-error', 'data-testid': 'signin-error' }, h('b', {}, 'Sign-in failed. '), error) : null,
    notice ? h('div', { class: 'banner warn', id: 'signin-notice' }, notice) : null,
    h('a', { id: 'sso-login', class: 'button sso', href: `/ui/auth/login?return_to=${encodeURIComponent(returnTo())}` }, 'Sign in with SSO'),
    h('p', { class: 'or muted' }, 'or paste an admin token'),
    form,
  ));
  view.dataset.loaded = 'true';
}

/** The `from` bound every query of one render uses: the range start, floored to the hour. */
function fromFor(range) {
  const hour = 3_600_000;
  const ms = Math.floor((Date.now() - RANGES[range] * hour) / hour) * hour;
  return new Date(ms).toISOString().replace('.000Z', 'Z');
}

function renderNav() {
  const nav = document.getElementById('nav-links');
  nav.replaceChildren(
    ...NAV.map(([group, items]) =>
      h('div', { class: 'nav-group' }, h('div', { class: 'nav-title' }, group), items.map(([id, label]) =>
        h('a', {
          href: hashFor({ ...state, view: id, arg: '', params: {} }),
          class: id === state.view || VIEWS[state.view].parent === id ? 'active' : '',
          'data-nav': id,
        }, label),
      )),
    ),
  );
}

function renderBar() {
  const range = document.getElementById('range');
  range.value = state.range;
  const chips = document.getElementById('chips');
  chips.replaceChildren(
    ...state.filters.map(([k, v]) =>
      h('span', { class: 'chip', 'data-filter': `${k}:${v}` }, h('b', {}, k), ' = ', v,
        h('button', {
          class: 'chip-x',
          title: 'remove this filter',
          'aria-label': `remove filter ${k}`,
          onclick: () => go({ filters: state.filters.filter(([a, b]) => !(a === k && b === v)) }),
        }, '×'),
      ),
    ),
    ...(state.filters.length ? [h('button', { class: 'link-button', onclick: () => go({ filters: [] }) }, 'clear all')] : []),
  );
}

async function suggestValues(dim) {
  const list = document.getElementById('filter-values');
  list.replaceChildren();
  if (!/^[A-Za-z0-9_.:-]+$/.test(dim)) return;
  try {
    const r = await api.spend({ ...state, from: fromFor(state.range), filters: state.filters.filter(([k]) => k !== dim) }, { groupBy: [dim] });
    list.replaceChildren(...r.rows.slice(0, 200).map((row) => row[dim]).filter((v) => v !== null && v !== undefined).map((v) => h('option', { value: v })));
  } catch {
    /* suggestions are a convenience */
  }
}

function setupBar() {
  document.getElementById('range').addEventListener('change', (e) => go({ range: e.target.value }));
  document.getElementById('refresh').addEventListener('click', () => render());
  const dims = document.getElementById('filter-dims');
  dims.replaceChildren(...DIMENSIONS.map((d) => h('option', { value: d })));
  const dimInput = document.getElementById('filter-dim');
  dimInput.addEventListener('change', () => suggestValues(dimInput.value.trim()));
  document.getElementById('filter-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const k = dimInput.value.trim();
    const valueInput = document.getElementById('filter-value');
    const v = valueInput.value.trim();
    if (!k || !v) return;
    valueInput.value = '';
    dimInput.value = '';
    go({ filters: [...state.filters.filter(([a]) => a !== k), [k, v]] });
  });
  const tokenForm = document.getElementById('token-form');
  document.getElementById('token-button').addEventListener('click', () => tokenForm.classList.toggle('open'));
  tokenForm.addEventListener('submit', (e) => {
    e.preventDefault();
    api.setToken(document.getElementById('token-input').value.trim());
    document.getElementById('token-input').value = '';
    tokenForm.classList.remove('open');
    updateTokenButton();
    render();
  });
  document.getElementById('token-clear').addEventListener('click', () => {
    api.setToken('');
    tokenForm.classList.remove('open');
    updateTokenButton();
    render();
  });
  updateTokenButton();
}

function updateTokenButton() {
  document.getElementById('token-button').textContent = api.token() ? 'Admin token ✓' : 'Admin token';
}

function setupSignOut() {
  const out = document.getElementById('sign-out');
  out.addEventListener('click', async () => {
    out.disabled = true;
    try {
      await api.logout();
    } catch (e) {
      console.error(e);
    }
    out.disabled = false;
    await refreshAuth();
    if (!needsSignIn()) history.replaceState(null, '', '#/overview');
    render();
  });
}

async function showError(e) {
  const view = document.getElementById('view');
  if (e instanceof api.ApiError && e.status === 401 && auth && auth.oidc && !api.token()) {
    // The SSO session ended (expired, or signed out elsewhere).
    const mine = generation;
    await refreshAuth();
    if (mine !== generation) return;
    if (needsSignIn()) {
      renderSignIn({ notice: 'Your session has ended: sign in again.' });
      return;
    }
  }
  if (e instanceof api.ApiError && e.status === 401) {
    document.getElementById('token-form').classList.add('open');
    view.replaceChildren(h('div', { class: 'banner warn' },
      h('b', {}, 'This gateway needs an admin token. '),
      'Paste it in the box at the top right (it is kept only for this browser tab).',
      h('div', { class: 'muted' }, e.message)));
    return;
  }
  view.replaceChildren(h('div', { class: 'banner error', 'data-testid': 'error' }, h('b', {}, 'Could not load this view. '), e.message));
}

let generation = 0;

export async function render() {
  const signin = /^#\/?signin/.test(location.hash);
  if (needsSignIn()) {
    const error = signin ? parseHash().params.error || '' : '';
    const notice = !error && auth.session_error ? `Your session is no longer valid (${auth.session_error}): sign in again.` : '';
    renderSignIn({ error, notice });
    return;
  }
  if (signin) history.replaceState(null, '', '#/overview');
  document.body.classList.remove('signed-out');
  setState(parseHash(location.hash, VIEWS));
  const mine = ++generation;
  destroyAll();
  renderNav();
  renderBar();
  const def = VIEWS[state.view];
  document.title = `${def.title} · tollgate`;
  const from = fromFor(state.range);
  const later = [];
  const ctx = { ...state, from, later: (f) => later.push(f) };
  const view = document.getElementById('view');
  view.dataset.view = state.view;
  view.dataset.from = from;
  view.dataset.loaded = 'false';
  view.replaceChildren(h('p', { class: 'loading' }, 'Loading…'));
  document.getElementById('as-of').textContent = `since ${new Date(from).toLocaleString('en-GB', { weekday: 'short', day: 'numeric', month: 'short', hour: '2-digit', minute: '2-digit' })}`;
  try {
    const content = await def.render(ctx);
    if (mine !== generation) return;
    // A view may leave out a part with null.
    view.replaceChildren(...[content].flat().filter((c) => c !== null && c !== undefined && c !== false));
    // Charts measure their container, so they are drawn once it is in the page.
    for (const f of later) f();
  } catch (e) {
    if (mine !== generation) return;
    console.error(e);
    await showError(e);
    if (mine !== generation || view.dataset.view === 'signin') return;
  }
  view.dataset.loaded = 'true';
}

async function start() {
  onRerender(render);
  setupBar();
  setupSignOut();
  await refreshAuth();
  window.addEventListener('hashchange', render);
  render();
}

start();
