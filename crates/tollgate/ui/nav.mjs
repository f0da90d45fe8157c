// Where the dashboard is: the view, its argument, the time range and the
// filters, all kept in the URL hash; links and moves between views. The shell
// (app.mjs) sets the state on every render and registers itself to be asked
// for a render again; views read from here, never from the shell, so no view
// module imports the module that imports it.

import { h } from './dom.mjs';

export const RANGES = { '24h': 24, '7d': 24 * 7, '30d': 24 * 30 };
export const DIMENSIONS = [
  'team', 'feature', 'env', 'user', 'model', 'requested_model', 'provider', 'key', 'agent', 'prompt', 'trace',
  'session', 'status', 'error_code', 'usage_source', 'cache', 'endpoint', 'org', 'step',
];

/**
 * `#/view/arg?range=7d&f=team:growth&by=team` → state; a view not in `known`
 * (when given) becomes the overview.
 */
export function parseHash(hash = location.hash, known = null) {
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
  return { view: !known || known[view] ? view : 'overview', arg: rest.length ? decodeURIComponent(rest.join('/')) : '', range, filters, params };
}

export function hashFor(s) {
  const q = new URLSearchParams();
  if (s.range && s.range !== '7d') q.set('range', s.range);
  for (const [k, v] of s.filters || []) q.append('f', `${k}:${v}`);
  for (const [k, v] of Object.entries(s.params || {})) if (v !== undefined && v !== null && v !== '') q.set(k, v);
  const qs = q.toString();
  return `#/${s.view}${s.arg ? '/' + encodeURIComponent(s.arg) : ''}${qs ? '?' + qs : ''}`;
}

/** The state the page shows (set by the shell at each render). */
export let state = parseHash();

export function setState(next) {
  state = next;
}

let renderer = () => {};

/** The shell's render, called by `rerender`. */
export function onRerender(f) {
  renderer = f;
}

/** Renders the current view again (after an action changed what it shows). */
export function rerender() {
  return renderer();
}

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
