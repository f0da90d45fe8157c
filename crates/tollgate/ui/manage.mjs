// Self-service: API keys (create, rotate, revoke), budgets (create, edit,
// delete, with a preview of what a scope covers) and the alerts budgets have
// fired. Controls the signed-in role may not use are not shown (a viewer sees
// none; a team admin's new keys and budgets are its team's). With a pasted
// admin token the role is unknown: every control shows and the API's 403
// speaks.

import * as api from './api.mjs';
import { link } from './nav.mjs';
import { canWrite, myTeam } from './session.mjs';
import { card, h, note, table } from './dom.mjs';
import { fmtCount, fmtPct, fmtUsd, nanos } from './money.mjs';
import { dl, kpi, kpis, money, periodText, scopeText, title, when } from './views.mjs';

// ---------------------------------------------------------------- helpers

/** An error banner for actions on the page (the view itself stays). */
export function errorBanner() {
  const el = h('div', { class: 'banner error', 'data-testid': 'action-error', role: 'alert', hidden: true });
  return {
    el,
    show(e) {
      const status = e instanceof api.ApiError && e.status ? ` (HTTP ${e.status})` : '';
      const lead = e instanceof api.ApiError && e.status === 403 ? 'Not allowed: ' : 'That did not work: ';
      el.replaceChildren(h('b', {}, lead), (e && e.message) || String(e), h('span', { class: 'muted' }, status));
      el.hidden = false;
      el.scrollIntoView({ block: 'nearest' });
    },
    clear() {
      el.hidden = true;
      el.replaceChildren();
    },
  };
}

/** A success note that replaces the last one. */
export function okBanner(id) {
  const el = h('div', { class: 'banner ok', id, role: 'status', hidden: true });
  return {
    el,
    show(...text) {
      el.replaceChildren(...text);
      el.hidden = false;
    },
    clear() {
      el.hidden = true;
      el.replaceChildren();
    },
  };
}

export function field(label, control, hint) {
  return h('label', { class: 'field' }, h('span', { class: 'field-label' }, label), control, hint ? h('span', { class: 'field-hint' }, hint) : null);
}

export function formValue(form, name) {
  const el = form.elements.namedItem(name);
  return el ? String(el.value ?? '').trim() : '';
}

function setFormValue(form, name, value) {
  const el = form.elements.namedItem(name);
  if (el) el.value = value;
}

/** `k=v, k=v` → {k: v}. Throws on a part that is not `k=v`. */
export function parsePairs(text, what) {
  const out = {};
  for (const part of String(text || '').split(',').map((p) => p.trim()).filter(Boolean)) {
    const i = part.indexOf('=');
    const k = i > 0 ? part.slice(0, i).trim() : '';
    const v = i > 0 ? part.slice(i + 1).trim() : '';
    if (!k || !v) throw new Error(`${what}: "${part}" is not name=value`);
    out[k] = v;
  }
  return out;
}

function pairsText(obj) {
  return Object.entries(obj || {}).map(([k, v]) => `${k}=${v}`).join(', ');
}

/** "100.000000000" → "100", "12.500" → "12.5". */
function trimDecimal(s) {
  const t = String(s ?? '');
  return t.includes('.') ? t.replace(/0+$/, '').replace(/\.$/, '') : t;
}

/** RFC 3339 in UTC, to the second, from a `datetime-local` value (the browser's time zone). */
export function localToRfc3339(v) {
  const d = new Date(v);
  if (Number.isNaN(d.getTime())) throw new Error(`expiry: "${v}" is not a date and time`);
  return d.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

function chips(obj) {
  const e = Object.entries(obj || {});
  if (!e.length) return h('span', { class: 'muted' }, 'none');
  return h('span', { class: 'tag-list' }, e.map(([k, v]) => h('span', { class: 'tag' }, h('b', {}, k), '=', v)));
}

// ---------------------------------------------------------------- keys

/** The team a key belongs to (its enforced tag, else its default tag). */
export function keyTeam(k) {
  return (k.enforced_tags && k.enforced_tags.team) || (k.tags && k.tags.team) || null;
}

/** active, rotating (its previous secret still works), revoked or expired. */
export function keyStatus(k, now = Date.now()) {
  if (k.revoked_at) return 'revoked';
  if (k.expires_at && Date.parse(k.expires_at) <= now) return 'expired';
  if (k.previous_prefix && k.previous_valid_until && Date.parse(k.previous_valid_until) > now) return 'rotating';
  return 'active';
}

function prefixText(p) {
  return p ? `${p}…` : '–';
}

function statusCell(k) {
  const s = keyStatus(k);
  const cls = { active: 'ok', rotating: 'warn', revoked: 'bad', expired: 'bad' }[s];
  return h('span', { class: 'key-status', 'data-status': s },
    h('span', { class: `badge ${cls}` }, s),
    s === 'rotating' ? h('span', { class: 'muted' }, ` ${prefixText(k.previous_prefix)} until ${when(k.previous_valid_until)}`) : null);
}

function keyLink(k) {
  return link({ view: 'keys', arg: k.id, filters: [] }, k.id, { class: 'key-link mono', 'data-key-id': k.id });
}

function byNewest(list) {
  return [...list].sort((a, b) => (b.created_at || '').localeCompare(a.created_at || ''));
}

/** The secret of a new or rotated key, shown once, with a Copy button. */
function secretBox(secret, keyId, ...what) {
  const input = h('input', {
    id: 'new-secret-value', type: 'text', readonly: true, value: secret, class: 'secret mono', spellcheck: 'false',
    autocomplete: 'off', size: String(Math.min(80, Math.max(24, secret.length + 2))), 'aria-label': 'the new secret',
  });
  const said = h('span', { class: 'muted', 'aria-live': 'polite', id: 'copy-result' });
  const copy = h('button', { id: 'copy-secret', type: 'button', class: 'button' }, 'Copy');
  copy.addEventListener('click', async () => {
    input.focus();
    input.select();
    let ok = false;
    try {
      if (navigator.clipboard && navigator.clipboard.writeText) {
        await navigator.clipboard.writeText(secret);
        ok = true;
      }
    } catch {
      ok = false;
    }
    if (!ok) {
      try {
        ok = document.execCommand('copy');
      } catch {
        ok = false;
      }
    }
    said.textContent = ok ? 'Copied.' : 'Selected: press Ctrl+C (⌘C on a Mac) to copy it.';
  });
  input.addEventListener('focus', () => input.select());
  return h('div', { id: 'new-secret', class: 'banner secret-box', 'data-key-id': keyId },
    h('div', {}, ...what),
    h('div', { class: 'secret-row' }, input, copy, said),
    h('p', { class: 'note' }, 'This secret is shown only this once: copy it now. The gateway keeps only its hash, and leaving this page discards it.'));
}

/** The create form's values as the API's body (only the fields it knows). */
export function keyBody(form) {
  const v = (n) => formValue(form, n);
  const body = { name: v('name') };
  if (!body.name) throw new Error('a key needs a name');
  if (v('team')) body.team = v('team');
  if (v('user')) body.user = v('user');
  const tags = parsePairs(v('tags'), 'tags');
  if (Object.keys(tags).length) body.tags = tags;
  const models = v('models').split(',').map((m) => m.trim()).filter(Boolean);
  if (models.length) body.models = models;
  if (v('budget_usd')) {
    if (!/^\d+(\.\d{1,9})?$/.test(v('budget_usd'))) throw new Error(`budget: "${v('budget_usd')}" is not an amount in USD`);
    body.budget = `${v('budget_usd')}/${v('budget_period') || 'month'}`;
  }
  for (const n of ['rpm', 'tpm']) {
    if (!v(n)) continue;
    const x = Number(v(n));
    if (!Number.isInteger(x) || x <= 0) throw new Error(`${n}: "${v(n)}" is not a whole number above 0`);
    body[n] = x;
  }
  if (v('expires_at')) body.expires_at = localToRfc3339(v('expires_at'));
  return body;
}

function keyForm(onSubmit) {
  const team = myTeam();
  const submit = h('button', { type: 'submit', class: 'button' }, 'Create key');
  const form = h('form', { id: 'key-create', class: 'form-grid', autocomplete: 'off' },
    field('Name', h('input', { name: 'name', required: true, placeholder: 'checkout-service' })),
    field('Team', h('input', { name: 'team', value: team || '', readonly: team ? true : undefined, placeholder: 'growth' }),
      team ? 'your team: a team admin creates keys for it only' : 'enforced: requests cannot claim another team'),
    field('User', h('input', { name: 'user', placeholder: 'optional' })),
    field('Tags', h('input', { name: 'tags', placeholder: 'feature=search, env=prod' }), 'defaults a request may override'),
    field('Models', h('input', { name: 'models', placeholder: 'gpt-4o-mini, claude-*' }), 'comma separated; empty: every model'),
    field('Budget (USD)', h('span', { class: 'pair' },
      h('input', { name: 'budget_usd', type: 'text', inputmode: 'decimal', placeholder: 'none', size: '8' }),
      h('select', { name: 'budget_period', 'aria-label': 'budget period' }, ['month', 'week', 'day'].map((p) => h('option', { value: p }, `per ${p}`)))),
      'blocks the key once spent'),
    field('Requests / minute', h('input', { name: 'rpm', type: 'number', min: '1', step: '1', placeholder: 'no limit' })),
    field('Tokens / minute', h('input', { name: 'tpm', type: 'number', min: '1', step: '1', placeholder: 'no limit' })),
    field('Expires', h('input', { name: 'expires_at', type: 'datetime-local' }), 'your local time; empty: never'),
    h('div', { class: 'form-actions' }, submit),
  );
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    submit.disabled = true;
    try {
      await onSubmit(form);
    } finally {
      submit.disabled = false;
    }
  });
  return form;
}

function keysTable(list) {
  return table([
    { label: 'ID', cell: keyLink },
    { label: 'Name', cell: (k) => k.name },
    { label: 'Team', cell: (k) => keyTeam(k) ?? h('span', { class: 'muted' }, '–') },
    { label: 'Prefix', cell: (k) => h('span', { class: 'mono' }, prefixText(k.prefix)) },
    { label: 'Created', cell: (k) => when(k.created_at) },
    { label: 'Expires', cell: (k) => (k.expires_at ? when(k.expires_at) : h('span', { class: 'muted' }, 'never')) },
    { label: 'Status', cell: statusCell },
  ], list, { testid: 'keys-table', empty: 'No keys yet.' });
}

async function keyList() {
  const d = await api.get('/admin/v1/keys');
  const errors = errorBanner();
  const secret = h('div', {});
  const holder = h('div', {});
  const count = h('span', {});
  const draw = (list) => {
    count.textContent = `Keys (${list.length})`;
    holder.replaceChildren(keysTable(byNewest(list)));
  };
  draw(d.keys || []);
  const team = myTeam();
  const parts = [
    title(team ? `API keys of team ${team}` : 'API keys', 'Virtual keys callers send instead of a provider key: each carries its team and tags into every request it makes. Click a key to rotate or revoke it.'),
    errors.el,
    secret,
  ];
  if (canWrite()) {
    parts.push(card('New key', keyForm(async (form) => {
      errors.clear();
      try {
        const created = await api.post('/admin/v1/keys', keyBody(form));
        secret.replaceChildren(secretBox(created.key, created.id, h('b', {}, `Key ${created.name} created`), ` (${created.id}). Its secret:`));
        form.reset();
        draw((await api.get('/admin/v1/keys')).keys || []);
        secret.scrollIntoView({ block: 'nearest' });
      } catch (e) {
        errors.show(e);
      }
    })));
  }
  parts.push(card(count, holder));
  return parts;
}

async function keyPage(ctx) {
  const id = ctx.arg;
  const find = async () => ((await api.get('/admin/v1/keys')).keys || []).find((k) => k.id === id) || null;
  const [first, usage] = await Promise.all([
    find(),
    api.spend({ ...ctx, filters: [] }, { extraFilters: [['key', id]] }).catch(() => null),
  ]);
  const back = h('p', { class: 'more' }, link({ view: 'keys', filters: [] }, '← all keys'));
  if (!first) return [title('Key not found'), note(`No key with id ${id} (or it belongs to another team).`), back];
  let k = first;
  const errors = errorBanner();
  const secret = h('div', {});
  const details = h('div', {});
  const controls = h('div', {});
  const head = h('div', {});

  const draw = () => {
    const s = keyStatus(k);
    head.replaceChildren(title(`Key ${k.name}`, h('span', {}, h('span', { class: 'mono' }, k.id), ' · ', statusCell(k))));
    details.replaceChildren(card('Key', dl([
      ['ID', h('span', { class: 'mono' }, k.id)],
      ['Name', k.name],
      ['Team', keyTeam(k)],
      ['Status', statusCell(k)],
      ['Current prefix', h('span', { class: 'mono', id: 'key-prefix' }, prefixText(k.prefix))],
      k.previous_prefix ? ['Previous prefix', h('span', { id: 'key-previous-prefix', 'data-status': s },
        h('span', { class: 'mono' }, prefixText(k.previous_prefix)),
        s === 'rotating' ? ` valid until ${when(k.previous_valid_until)}` : ` stopped working ${when(k.previous_valid_until)}`)] : null,
      ['Created', when(k.created_at)],
      ['Expires', k.expires_at ? when(k.expires_at) : 'never'],
      ['Revoked', k.revoked_at ? h('span', { class: 'up' }, when(k.revoked_at)) : 'no'],
      ['Models', k.models && k.models.length ? k.models.join(', ') : 'every model'],
      ['Tags (defaults)', chips(k.tags)],
      ['Enforced tags', chips(k.enforced_tags)],
    ])));
    controls.replaceChildren(...(canWrite() && !k.revoked_at ? [rotateCard(), revokeCard()] : []));
  };

  const reload = async () => {
    const next = await find();
    if (next) k = next;
    draw();
  };

  const rotateCard = () => {
    const grace = h('input', {
      type: 'number', name: 'grace_seconds', value: '300', min: '0', max: '2592000', step: '1', required: true,
      list: 'grace-options', class: 'num-input', 'aria-label': 'grace period in seconds',
    });
    const presets = [[0, 'none'], [300, '5 min'], [3600, '1 hour'], [86400, '1 day']];
    const submit = h('button', { type: 'submit', class: 'button' }, 'Rotate');
    const form = h('form', { id: 'key-rotate', class: 'inline-form', autocomplete: 'off' },
      h('label', {}, 'The old secret keeps working for ', grace, ' seconds'),
      h('datalist', { id: 'grace-options' }, presets.map(([v, l]) => h('option', { value: String(v), label: l }))),
      h('span', { class: 'presets' }, presets.map(([v, l]) =>
        h('button', { type: 'button', class: 'link-button', 'data-grace': String(v), onclick: () => { grace.value = String(v); } }, l))),
      submit);
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      errors.clear();
      const n = Number(grace.value);
      if (!Number.isInteger(n) || n < 0 || n > 2592000) {
        errors.show(new Error('the grace period is a whole number of seconds from 0 to 2592000 (30 days)'));
        return;
      }
      submit.disabled = true;
      try {
        const r = await api.post(`/admin/v1/keys/${encodeURIComponent(k.id)}/rotate`, { grace_seconds: n });
        const old = r.previous_prefix ? prefixText(r.previous_prefix) : 'the old secret';
        secret.replaceChildren(secretBox(r.key, k.id, h('b', {}, `Key ${k.name} rotated. `),
          n > 0 && r.previous_valid_until ? `${old} keeps working until ${when(r.previous_valid_until)}. The new secret:` : `${old} no longer works. The new secret:`));
        await reload();
        secret.scrollIntoView({ block: 'nearest' });
      } catch (err) {
        errors.show(err);
      } finally {
        submit.disabled = false;
      }
    });
    return card('Rotate the secret', form, note('A new secret is made at once; give callers the grace period to switch over.'));
  };

  const revokeCard = () => {
    const confirm = h('button', { id: 'key-revoke-confirm', type: 'button', class: 'button danger' }, `Yes, revoke ${k.name}`);
    const cancel = h('button', { id: 'key-revoke-cancel', type: 'button', class: 'link-button' }, 'cancel');
    const ask = h('div', { class: 'confirm', hidden: true, 'data-testid': 'revoke-confirm' },
      'Requests with this key (and a previous secret in its grace period) are refused within seconds. This cannot be undone. ', confirm, cancel);
    const start = h('button', { id: 'key-revoke', type: 'button', class: 'button danger' }, 'Revoke…');
    start.addEventListener('click', () => {
      ask.hidden = false;
      start.hidden = true;
    });
    cancel.addEventListener('click', () => {
      ask.hidden = true;
      start.hidden = false;
    });
    confirm.addEventListener('click', async () => {
      errors.clear();
      confirm.disabled = true;
      try {
        await api.post(`/admin/v1/keys/${encodeURIComponent(k.id)}/revoke`, {});
        secret.replaceChildren();
        await reload();
      } catch (err) {
        errors.show(err);
        confirm.disabled = false;
      }
    });
    return card('Revoke', start, ask);
  };

  draw();
  const range = ctx.range === '24h' ? 'the last 24 hours' : ctx.range === '30d' ? 'the last 30 days' : 'the last 7 days';
  return [
    head,
    back,
    errors.el,
    secret,
    usage ? kpis(
      kpi(`Spend in ${range}`, money(usage.total_cost_usd, { 'data-testid': 'key-spend' })),
      kpi('Requests', fmtCount(usage.total_requests)),
    ) : null,
    h('p', { class: 'quick' },
      link({ view: 'requests', filters: [['key', id]] }, 'requests with this key →', { id: 'key-requests', class: 'go' }),
      link({ view: 'overview', filters: [['key', id]] }, 'spend of this key →', { id: 'key-spend-link', class: 'go' })),
    details,
    controls,
  ];
}

/** `#/keys` (the list) and `#/keys/<id>` (one key). */
export async function keys(ctx) {
  return ctx.arg ? keyPage(ctx) : keyList(ctx);
}

// ---------------------------------------------------------------- budgets

/** A period as days (month ≈ 30), for comparing a budget with 30 days of spend. */
export function periodDays(p) {
  const s = String(p || '').trim();
  const fixed = { day: 1, week: 7, month: 30 }[s];
  if (fixed) return fixed;
  const m = /^(?:rolling:)?(\d+)([mhdw])$/.exec(s);
  if (!m) return null;
  return Number(m[1]) * { m: 1 / 1440, h: 1 / 24, d: 1, w: 7 }[m[2]];
}

/** "per month", "in any 7 days". */
function perText(p) {
  const t = periodText(p);
  return t.startsWith('rolling ') ? `in any ${t.slice('rolling '.length)}` : t;
}

/** The form's values as the API's body. */
export function budgetBody(form) {
  const v = (n) => formValue(form, n);
  const body = { scope: v('scope'), limit_usd: v('limit_usd'), period: v('period') };
  parsePairs(body.scope, 'scope');
  if (!body.scope) throw new Error('a budget needs a scope, e.g. team=growth');
  if (!/^\d+(\.\d{1,9})?$/.test(body.limit_usd)) throw new Error(`limit: "${body.limit_usd}" is not an amount in USD`);
  if (!body.period) throw new Error('a budget needs a period: day, week, month or rolling:7d');
  if (v('id')) body.id = v('id');
  if (v('action')) body.action = v('action');
  if (v('alert_at')) {
    const at = v('alert_at').split(',').map((a) => a.trim()).filter(Boolean);
    for (const a of at) if (!/^\d+(\.\d+)?$/.test(a)) throw new Error(`alert at: "${a}" is not a fraction like 0.8`);
    body.alert_at = at;
  }
  const unpriced = form.elements.namedItem('block_unpriced');
  if (unpriced) body.block_unpriced = Boolean(unpriced.checked);
  return body;
}

function budgetCard(b, { onEdit, onDelete }) {
  const limit = nanos(b.limit_usd);
  const spent = nanos(b.spent_usd);
  const reserved = nanos(b.reserved_usd);
  const pct = (n) => (limit > 0n ? Math.min(100, (Number(n) / Number(limit)) * 100) : 0);
  const over = spent >= limit;
  let actions = null;
  if (canWrite() && b.id) {
    const confirm = h('button', { type: 'button', class: 'button danger', 'data-budget-delete-confirm': b.id }, `Yes, delete ${b.id}`);
    const cancel = h('button', { type: 'button', class: 'link-button' }, 'cancel');
    const ask = h('span', { class: 'confirm', hidden: true }, 'Delete this budget? ', confirm, cancel);
    const del = h('button', { type: 'button', class: 'button ghost', 'data-budget-delete': b.id }, 'Delete…');
    del.addEventListener('click', () => {
      ask.hidden = false;
      del.hidden = true;
    });
    cancel.addEventListener('click', () => {
      ask.hidden = true;
      del.hidden = false;
    });
    confirm.addEventListener('click', async () => {
      confirm.disabled = true;
      await onDelete(b);
      confirm.disabled = false;
    });
    actions = h('div', { class: 'card-actions' },
      h('button', { type: 'button', class: 'button ghost', 'data-budget-edit': b.id, onclick: () => onEdit(b) }, 'Edit'), del, ask);
  }
  return h('section', { class: 'card', 'data-budget-id': b.id },
    h('h3', {}, h('span', {}, scopeText(b.scope), h('span', { class: 'muted' }, ` · ${periodText(b.period)} · when reached: ${b.action || 'alert'}`)),
      b.id ? h('span', { class: 'muted budget-id' }, ` · ${b.id}`) : null),
    h('div', { class: 'budget-bar', 'data-testid': 'budget' },
      h('div', { class: `spent ${over ? 'over' : ''}`, style: `width:${pct(spent)}%` }),
      h('div', { class: 'reserved', style: `width:${Math.max(0, Math.min(100 - pct(spent), pct(reserved)))}%` }),
      (b.alert_at || []).map((a) => h('div', { class: 'mark', style: `left:${Math.min(100, Number(a) * 100)}%`, title: `alert at ${Math.round(Number(a) * 100)}%` }))),
    dl([
      ['Spent', h('span', {}, money(b.spent_usd), ' of ', money(b.limit_usd), ` (${fmtPct(spent, limit)})`)],
      ['Reserved', money(b.reserved_usd)],
      ['Remaining', money(b.remaining_usd)],
      ['Period', `${when(b.period_start)} → ${when(b.period_end)}`],
      over
        ? ['Over budget by', h('span', { class: 'up' }, money(spent - limit))]
        : ['Runs out', b.forecast_exhaustion ? h('span', { class: 'up' }, when(b.forecast_exhaustion)) : 'not before the period ends'],
    ]),
    actions);
}

function alertsSection(d) {
  const body = d === null
    ? note('This gateway does not report fired alerts.')
    : table([
      { label: 'Fired', cell: (a) => when(a.fired_at) },
      { label: 'Budget', cell: (a) => a.budget_id },
      { label: 'Scope', cell: (a) => (a.scope ? scopeText(a.scope) : '–') },
      { label: 'Threshold', num: true, cell: (a) => `${Math.round(Number(a.threshold) * 100)}%` },
      { label: 'Period from', cell: (a) => when(a.period_start) },
    ], ((d && d.alerts) || []).slice(0, 100), { testid: 'alerts-table', empty: 'No budget alert has fired.' });
  return card('Alerts fired', body, note('Each budget alerts once per period at each threshold, newest first.'));
}

function listOf(d) {
  return (d && (Array.isArray(d) ? d : d.budgets)) || [];
}

/** What a scope covers over the last 30 days, and how a limit compares. */
function previewer(form, preview) {
  let timer;
  let seq = 0;
  let keysOnce;
  const allKeys = () => {
    keysOnce = keysOnce || api.get('/admin/v1/keys').then((d) => d.keys || [], () => null);
    return keysOnce;
  };
  const say = (state, ...content) => {
    preview.dataset.state = state;
    preview.replaceChildren(...content);
  };
  const run = async () => {
    const mine = ++seq;
    const text = formValue(form, 'scope');
    if (!text) {
      say('idle', 'Type a scope (e.g. team=growth) to see what it covers.');
      return;
    }
    let scope;
    try {
      scope = parsePairs(text, 'scope');
    } catch (e) {
      say('invalid', e.message);
      return;
    }
    say('loading', 'Looking at the last 30 days…');
    try {
      const params = [['from', '30d'], ...Object.entries(scope).map(([k, v]) => ['filter', `${k}:${v}`])];
      const [sp, keyList] = await Promise.all([api.get('/api/v1/spend', params), scope.team || scope.key ? allKeys() : null]);
      if (mine !== seq) return;
      const spent = nanos(sp.total_cost_usd);
      const lines = [h('div', { 'data-testid': 'preview-covers' }, h('b', {}, scopeText(scope)), ` covers ${fmtCount(sp.total_requests)} requests, ${fmtUsd(spent)} in the last 30 days.`)];
      if (keyList) {
        const live = keyList.filter((k) => !k.revoked_at);
        if (scope.key) {
          const k = keyList.find((x) => x.id === scope.key);
          lines.push(h('div', {}, k ? `It is the key ${k.name}${k.revoked_at ? ' (revoked)' : ''}.` : `No key ${scope.key} is visible to you.`));
        } else if (scope.team) {
          const n = live.filter((k) => keyTeam(k) === scope.team).length;
          lines.push(h('div', { 'data-testid': 'preview-keys' }, `${n} active key${n === 1 ? '' : 's'} belong${n === 1 ? 's' : ''} to team ${scope.team}.`));
        }
      }
      const days = periodDays(formValue(form, 'period'));
      const limitText = formValue(form, 'limit_usd');
      if (days && /^\d+(\.\d{1,9})?$/.test(limitText)) {
        const limit = nanos(limitText);
        const per = (spent * BigInt(Math.round(days * 1_000_000))) / 30_000_000n;
        const tone = per >= limit ? 'up' : '';
        lines.push(h('div', { class: tone, 'data-testid': 'preview-compare' },
          `At that rate it spends about ${fmtUsd(per)} ${perText(formValue(form, 'period'))}: `,
          limit > 0n ? `${fmtPct(per, limit)} of the ${fmtUsd(limit)} limit.` : 'the limit is $0.',
          per >= limit && limit > 0n ? ' It would be reached before the period ends.' : ''));
      } else if (!days && formValue(form, 'period')) {
        lines.push(h('div', { class: 'muted' }, 'Period: day, week, month or rolling:DURATION (e.g. rolling:7d).'));
      }
      say('ready', ...lines);
    } catch (e) {
      if (mine !== seq) return;
      say('error', `Cannot preview this scope: ${e.message}`);
    }
  };
  const soon = () => {
    clearTimeout(timer);
    timer = setTimeout(run, 300);
  };
  for (const n of ['scope', 'period', 'limit_usd']) {
    const el = form.elements.namedItem(n);
    el.addEventListener('input', soon);
    el.addEventListener('change', soon);
  }
  return { soon, now: run };
}

export async function budgets() {
  const [d, fired] = await Promise.all([
    api.getOptional('/api/v1/budgets'),
    api.getOptional('/api/v1/alerts').catch(() => null),
  ]);
  const errors = errorBanner();
  const saved = okBanner('budget-saved');
  const listHolder = h('div', { class: 'budgets' });
  const alertsHolder = h('section', { id: 'alerts' });
  const team = myTeam();
  const writable = canWrite();

  let form = null;
  let preview = null;
  let previewing = null;
  let editing = null;
  const formTitle = h('span', {}, 'New budget');
  const submit = h('button', { type: 'submit', class: 'button' }, 'Save budget');

  const draw = (list) => {
    if (!list.length) {
      listHolder.replaceChildren(h('div', { class: 'empty-state', 'data-testid': 'no-budgets' }, h('b', {}, 'No budgets configured.'),
        h('p', {}, 'Budgets cap what a team, key, feature or user may spend per day, week or month, alert at 50 / 80 / 100 % and can block requests. ',
          writable ? 'Set one with the form below, or with [[budgets]] in tollgate.toml.' : 'They are set with [[budgets]] in tollgate.toml or by an admin.')));
      return;
    }
    listHolder.replaceChildren(...list.map((b) => budgetCard(b, { onEdit: edit, onDelete: remove })));
  };

  const reload = async () => {
    const [d2, f2] = await Promise.all([api.getOptional('/api/v1/budgets'), api.getOptional('/api/v1/alerts').catch(() => null)]);
    draw(listOf(d2));
    alertsHolder.replaceChildren(alertsSection(f2));
  };

  const fresh = () => {
    editing = null;
    form.reset();
    setFormValue(form, 'scope', team ? `team=${team}` : '');
    formTitle.textContent = 'New budget';
    submit.textContent = 'Save budget';
    form.elements.namedItem('id').readOnly = false;
    previewing.now();
  };

  function edit(b) {
    editing = b.id;
    errors.clear();
    saved.clear();
    setFormValue(form, 'id', b.id);
    form.elements.namedItem('id').readOnly = true;
    setFormValue(form, 'scope', pairsText(b.scope));
    setFormValue(form, 'limit_usd', trimDecimal(b.limit_usd));
    setFormValue(form, 'period', b.period || '');
    setFormValue(form, 'action', b.action || '');
    setFormValue(form, 'alert_at', (b.alert_at || []).map(trimDecimal).join(', '));
    form.elements.namedItem('block_unpriced').checked = Boolean(b.block_unpriced);
    formTitle.textContent = `Edit budget ${b.id}`;
    submit.textContent = 'Save changes';
    form.scrollIntoView({ block: 'center' });
    previewing.now();
  }

  async function remove(b) {
    errors.clear();
    saved.clear();
    try {
      await api.del(`/admin/v1/budgets/${encodeURIComponent(b.id)}`);
      if (editing === b.id) fresh();
      saved.show(h('b', {}, `Budget ${b.id} deleted.`));
      await reload();
    } catch (e) {
      errors.show(e);
    }
  }

  if (writable) {
    preview = h('div', { id: 'budget-preview', class: 'preview', 'data-state': 'idle', 'aria-live': 'polite' });
    form = h('form', { id: 'budget-form', class: 'form-grid', autocomplete: 'off' },
      field('Scope', h('input', { name: 'scope', required: true, placeholder: 'team=growth, env=prod', value: team ? `team=${team}` : '' }),
        team ? `a team admin sets budgets on team=${team} only` : 'key=<key id>, team, user, org, model, provider or any tag'),
      field('Limit (USD)', h('input', { name: 'limit_usd', required: true, type: 'text', inputmode: 'decimal', placeholder: '500' })),
      field('Period', h('input', { name: 'period', required: true, value: 'month', list: 'budget-periods' }), 'day, week, month or rolling:7d'),
      h('datalist', { id: 'budget-periods' }, ['day', 'week', 'month', 'rolling:24h', 'rolling:7d', 'rolling:30d'].map((p) => h('option', { value: p }))),
      field('When reached', h('input', { name: 'action', value: 'block', list: 'budget-actions' }), 'block, alert, clamp or downgrade:MODEL'),
      h('datalist', { id: 'budget-actions' }, ['block', 'alert', 'clamp'].map((a) => h('option', { value: a }))),
      field('Alert at', h('input', { name: 'alert_at', placeholder: '0.5, 0.8, 1.0' }), 'fractions of the limit; empty: 0.5, 0.8, 1.0'),
      field('Id', h('input', { name: 'id', placeholder: 'automatic: scope/period' }), 'the same id replaces that budget'),
      h('label', { class: 'field check' }, h('input', { type: 'checkbox', name: 'block_unpriced' }), ' refuse models without a known price'),
      h('div', { class: 'form-actions' }, submit, h('button', { type: 'button', class: 'link-button', id: 'budget-form-reset', onclick: () => fresh() }, 'start over')),
    );
    previewing = previewer(form, preview);
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      errors.clear();
      saved.clear();
      let body;
      try {
        body = budgetBody(form);
      } catch (err) {
        errors.show(err);
        return;
      }
      submit.disabled = true;
      try {
        const r = await api.post('/admin/v1/budgets', body);
        const id = (r && r.id) || body.id || body.scope;
        fresh();
        saved.show(h('b', {}, `Budget ${id} saved.`));
        await reload();
      } catch (err) {
        errors.show(err);
      } finally {
        submit.disabled = false;
      }
    });
    previewing.now();
  }

  draw(listOf(d));
  alertsHolder.replaceChildren(alertsSection(fired));
  return [
    title('Budgets', 'Spent (solid), reserved by requests in flight (striped) and what is left, with alert marks.'),
    errors.el,
    saved.el,
    listHolder,
    writable ? h('section', { class: 'card budget-editor' }, h('h3', {}, formTitle), form,
      h('div', { class: 'preview-box' }, h('div', { class: 'field-label' }, 'What this scope covers'), preview)) : null,
    alertsHolder,
  ];
}
