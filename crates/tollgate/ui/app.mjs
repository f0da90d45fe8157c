// The dashboard shell: hash routing, the time range and filter bar shared by
// every view, the admin-token prompt, and error banners.

import * as api from './api.mjs';
import { destroyAll } from './charts.mjs';
import { h } from './dom.mjs';
import { VIEWS, NAV } from './views.mjs';

export const RANGES = { '24h': 24, '7d': 24 * 7, '30d': 24 * 30 };
export const DIMENSIONS = [
  'team', 'feature', 'env', 'user', 'model', 'requested_model', 'provider', 'key', 'agent', 'prompt', 'trace',
  'session', 'status', 'error_code', 'usage_source', 'cache', 'endpoint', 'org', 'step',
];

/** `#/view/arg?range=7d&f=team:growth&by=team` → state. */
export function parseHash(hash = location.hash) {
  const raw = hash.replace(/^#\/?/, '');
  const [path, query = ''] = raw.split('?');
  const [view, ...rest] = path.split('/');
  const q = new URLSearchParams(query);
  const filters = q.getAll('f').map((f) => {
    const i = f.indexOf(':');
    return [f.slice(0, i), f.slice(i + 1)];
  }).filter(([k, v]) => k && v);
  const params = {};
  for (const [k, v] of q) if (k !== 'f' && k !== 'range') params[k] = v;
  const range = RANGES[q.get('range')] ? q.get('range') : '7d';
  return { view: VIEWS[view] ? view : 'overview', arg: rest.length ? decodeURIComponent(rest.join('/')) : '', range, filters, params };
}

export function hashFor(s) {
  const q = new URLSearchParams();
  if (s.range && s.range !== '7d') q.set('range', s.range);
  for (const [k, v] of s.filters || []) q.append('f', `${k}:${v}`);
  for (const [k, v] of Object.entries(s.params || {})) if (v !== undefined && v !== null && v !== '') q.set(k, v);
  const qs = q.toString();
  return `#/${s.view}${s.arg ? '/' + encodeURIComponent(s.arg) : ''}${qs ? '?' + qs : ''}`;
}

let state = parseHash();

/** A link to another view (keeping the range and filters unless told otherwise). */
export function link(patch, text, attrs = {}) {
  const next = { ...state, params: {}, arg: '', ...patch };
  return h('a', { href: hashFor(next), ...attrs }, text);
}

export function hrefFor(patch) {
  return hashFor({ ...state, params: {}, arg: '', ...patch });
}

/** A link that adds `dim:value` to the filters, on the same view or another. */
export function filterLink(dim, value, text = value, view = state.view) {
  if (value === null || value === undefined || value === '') return h('span', { class: 'muted' }, '(not set)');
  const filters = [...state.filters.filter(([k]) => k !== dim), [dim, String(value)]];
  return link({ view, filters, params: view === state.view ? state.params : {} }, text, {
    title: `filter ${dim} = ${value}`,
    class: 'dim-link',
  });
}

export function requestsLink(filters, text = 'requests →') {
  return link({ view: 'requests', filters: [...state.filters.filter(([k]) => !filters.some(([f]) => f === k)), ...filters] }, text, {
    class: 'go',
  });
}

export function go(patch) {
  location.hash = hashFor({ ...state, ...patch });
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

function showError(e) {
  const view = document.getElementById('view');
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
  state = parseHash();
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
    view.replaceChildren(...[content].flat());
    // Charts measure their container, so they are drawn once it is in the page.
    for (const f of later) f();
  } catch (e) {
    if (mine !== generation) return;
    console.error(e);
    showError(e);
  }
  view.dataset.loaded = 'true';
}

window.addEventListener('hashchange', render);
setupBar();
render();
