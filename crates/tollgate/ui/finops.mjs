// FinOps: reconciliation (the ledger beside the providers' own cost and usage
// reports, with spend outside the gateway) and the what-if replay (the
// history re-priced under a scenario). Both cover the whole organisation: a
// team admin gets a 403 and is told why. Only an admin (or a pasted admin
// token, whose role is unknown: then the API's 403 speaks) sees "Reconcile
// now", which POSTs like the keys and budgets views do (CSRF header for a
// signed-in session).

import * as api from './api.mjs';
import { hashFor, rerender } from './nav.mjs';
import { role } from './session.mjs';
import { card, h, note, table } from './dom.mjs';
import { fmtCount, fmtPct, fmtUsd, nanos } from './money.mjs';
import { errorBanner, field, formValue, okBanner } from './manage.mjs';
import { kpi, kpis, money, tabs, title, when } from './views.mjs';

// ---------------------------------------------------------------- helpers

const RANGE_TEXT = { '24h': 'the last 24 hours', '7d': 'the last 7 days', '30d': 'the last 30 days' };

function rangeText(range) {
  return RANGE_TEXT[range] || `the last ${range}`;
}

/** The empty state for a team admin (the API's 403), with the API's own words. */
function forbidden(head, what, why, e) {
  return [
    title(head),
    h('div', { class: 'empty-state', 'data-testid': 'finops-forbidden' }, h('b', {}, `${what} covers the whole organisation.`),
      h('p', {}, why, ' Ask an admin of the gateway.'),
      h('p', { class: 'muted' }, e.message)),
  ];
}

function isForbidden(e) {
  return e instanceof api.ApiError && e.status === 403;
}

/** The global filters do not narrow these views (their APIs take none). */
function filtersIgnored(ctx) {
  return ctx.filters.length
    ? h('div', { class: 'banner warn', 'data-testid': 'filters-ignored' }, 'The filters above do not apply here: this view covers every team, key and feature.')
    : null;
}

function code(text) {
  return h('code', {}, text);
}

/** "gateway / provider" counts, marked when they differ; `null`: the provider does not report it. */
function pair(gateway, provider) {
  if (provider === null) return h('span', { title: 'gateway / provider (the provider\'s report does not count it)' }, `${fmtCount(gateway)} / `, h('span', { class: 'muted' }, '–'));
  return h('span', { class: gateway === provider ? '' : 'differs', title: 'gateway / provider' }, `${fmtCount(gateway)} / ${fmtCount(provider)}`);
}

// ---------------------------------------------------------------- reconciliation

function drifts(l) {
  return nanos(l.drift_usd) !== 0n;
}

/** Drifting lines first, then the newest day. */
function lineOrder(a, b) {
  return (drifts(b) - drifts(a)) || b.day.localeCompare(a.day) || a.provider.localeCompare(b.provider) || a.model.localeCompare(b.model);
}

function lineId(l) {
  return [l.provider, l.day, l.model, l.account].filter(Boolean).join('/');
}

function providersOf(...reports) {
  const names = new Set();
  for (const d of reports) for (const l of [...((d && d.rows) || []), ...((d && d.outside) || [])]) names.add(l.provider);
  return [...names].sort();
}

function latest(lines) {
  return lines.map((l) => l.reconciled_at).filter(Boolean).sort().pop() || null;
}

function noLines(ctx, provider, canRun) {
  return h('div', { class: 'empty-state', 'data-testid': 'no-reconciliation' },
    h('b', {}, `No reconciliation lines for ${provider ? `provider ${provider} in ` : ''}${rangeText(ctx.range)}.`),
    h('p', {}, 'Reconciliation sets each provider\'s own cost and usage reports beside the gateway\'s ledger, per UTC day and model, and finds spend on accounts that are not the gateway\'s.'),
    h('p', {}, 'It needs an organization admin key on an OpenAI or Anthropic provider (', code('admin_key_env'), ' in its ', code('[[providers]]'),
      ' entry, with ', code('billing_accounts'), ' to tell outside spend), then a run: ', code('tollgate reconcile --provider NAME --since 30d'),
      canRun ? ', the Reconcile now button below,' : ',', ' or a ', code('[reconcile]'), ' section in tollgate.toml to run on a schedule. See docs/finops.md.'));
}

function matchedTable(rows) {
  return table([
    { label: 'Day', cell: (l) => l.day },
    { label: 'Provider', cell: (l) => l.provider },
    { label: 'Model', cell: (l) => l.model },
    { label: 'Gateway', num: true, title: 'the cost the gateway recorded', cell: (l) => money(l.gateway_cost_usd) },
    { label: 'Provider billed', num: true, cell: (l) => money(l.provider_cost_usd) },
    {
      label: 'Drift', num: true, title: 'gateway − provider',
      cell: (l) => money(l.drift_usd, { class: drifts(l) ? 'money up' : 'money muted', 'data-testid': 'line-drift', 'data-line': lineId(l) }),
    },
    { label: 'Drift %', num: true, title: 'the drift as a share of the provider\'s cost', cell: (l) => (l.drift_percent === null || l.drift_percent === undefined ? '–' : `${l.drift_percent}%`) },
    { label: 'Tokens in', num: true, title: 'gateway / provider', cell: (l) => pair(l.gateway_input_tokens, l.provider_input_tokens) },
    { label: 'Tokens out', num: true, title: 'gateway / provider', cell: (l) => pair(l.gateway_output_tokens, l.provider_output_tokens) },
    { label: 'Requests', num: true, title: 'gateway / provider', cell: (l) => pair(l.gateway_requests, providerRequests(l)) },
  ], [...rows].sort(lineOrder), {
    testid: 'recon-table',
    rowClass: (l) => (drifts(l) ? 'drifting' : ''),
    // The cause, when the lines tell it, under its line.
    detail: (l) => (l.cause || drifts(l)
      ? h('span', { class: 'cause' }, h('b', {}, 'Cause: '), l.cause
        ? h('span', { 'data-testid': 'line-cause', 'data-line': lineId(l) }, l.cause)
        : h('span', { class: 'muted' }, 'not found in the lines (see docs/finops.md)'))
      : null),
    empty: 'No matched lines.',
  });
}

/** Anthropic's usage report does not count requests: its lines carry 0 beside tokens. */
function providerRequests(l) {
  return l.provider_requests === 0 && l.provider_input_tokens + l.provider_output_tokens > 0 ? null : l.provider_requests;
}

function outsideTable(outside) {
  const rows = [...outside].sort((a, b) => b.day.localeCompare(a.day) || a.provider.localeCompare(b.provider) || a.model.localeCompare(b.model));
  return table([
    { label: 'Day', cell: (l) => l.day },
    { label: 'Provider', cell: (l) => l.provider },
    { label: 'Model', cell: (l) => l.model },
    { label: 'Account', cell: (l) => (l.account ? h('span', { class: 'mono' }, l.account) : h('span', { class: 'muted' }, '(none)')) },
    { label: 'Cost', num: true, cell: (l) => money(l.provider_cost_usd, { 'data-testid': 'outside-cost', 'data-line': lineId(l) }) },
    { label: 'Tokens in', num: true, cell: (l) => fmtCount(l.provider_input_tokens) },
    { label: 'Tokens out', num: true, cell: (l) => fmtCount(l.provider_output_tokens) },
    { label: 'Requests', num: true, cell: (l) => fmtCount(l.provider_requests) },
  ], rows, { testid: 'outside-table', empty: 'No spend outside the gateway on the accounts the providers report.' });
}

export async function reconciliation(ctx) {
  const provider = ctx.params.provider || '';
  const read = (p) => api.getOptional('/api/v1/reconciliation', [['since', ctx.from], ['provider', p]]);
  const canRun = role() === null || role() === 'admin';
  let d;
  let all;
  let spent;
  try {
    [d, all, spent] = await Promise.all([
      read(provider),
      provider ? read('') : null,
      // The providers the spend went to: suggestions for a first run.
      canRun ? api.spend({ ...ctx, filters: [] }, { groupBy: ['provider'] }).catch(() => null) : null,
    ]);
  } catch (e) {
    if (isForbidden(e)) {
      return forbidden('Reconciliation', 'Reconciliation', 'A provider\'s invoice spans every team, so a team admin cannot read it.', e);
    }
    throw e;
  }
  if (!d) {
    return [title('Reconciliation'), h('div', { class: 'empty-state', 'data-testid': 'no-reconciliation' }, h('b', {}, 'Reconciliation is not available on this gateway yet.'))];
  }
  const errors = errorBanner();
  const done = okBanner('reconcile-done');
  const body = h('div', {});

  const reload = async () => {
    const [d2, all2] = await Promise.all([read(provider), provider ? read('') : null]);
    draw(d2, all2);
  };

  const runNow = async (name, button) => {
    errors.clear();
    done.clear();
    const label = button.textContent;
    button.disabled = true;
    button.textContent = 'Reconciling…';
    try {
      const r = await api.post(api.url('/admin/v1/reconciliation/run', [['provider', name], ['since', ctx.range]]));
      const rows = (r && r.rows) || [];
      done.show(h('b', {}, `Reconciled ${name}. `),
        `${fmtCount(rows.length)} matched line${rows.length === 1 ? '' : 's'} over ${rangeText(ctx.range)}: drift ${fmtUsd(r.drift_usd)} on ${fmtCount(r.drifting_lines)} line${r.drifting_lines === 1 ? '' : 's'}, ${fmtUsd(r.outside_gateway_usd)} outside the gateway.`);
      await reload();
    } catch (e) {
      errors.show(e);
    } finally {
      button.disabled = false;
      button.textContent = label;
    }
  };

  const runCard = (known) => {
    const suggestions = ((spent && spent.rows) || []).map((r) => r.provider).filter((p) => p && !known.includes(p));
    const input = h('input', { name: 'provider', list: 'reconcile-providers', placeholder: 'provider name', 'aria-label': 'provider to reconcile', size: '16', autocomplete: 'off' });
    const submit = h('button', { type: 'submit', class: known.length ? 'button ghost' : 'button' }, 'Reconcile');
    const form = h('form', { id: 'reconcile-form', class: 'inline-form' },
      known.length ? h('span', { class: 'muted' }, 'another provider:') : null, input,
      h('datalist', { id: 'reconcile-providers' }, [...new Set([...known, ...suggestions])].map((p) => h('option', { value: p }))), submit);
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      const name = input.value.trim();
      if (!name) {
        errors.show(new Error('name the provider to reconcile (its name in tollgate.toml)'));
        return;
      }
      runNow(name, submit);
    });
    return card('Reconcile now',
      h('div', { class: 'card-actions', 'data-testid': 'reconcile-actions' },
        known.map((p) => {
          const b = h('button', { type: 'button', class: 'button', 'data-reconcile': p }, `Reconcile ${p} now`);
          b.addEventListener('click', () => runNow(p, b));
          return b;
        }),
        form),
      note(`Reads the provider's cost and usage reports for ${rangeText(ctx.range)} now and replaces its saved lines for those days (admins only; the provider needs admin_key_env).`));
  };

  const draw = (rep, every) => {
    const rows = rep.rows || [];
    const outside = rep.outside || [];
    const known = providersOf(every || rep);
    if (provider && !known.includes(provider)) known.push(provider);
    const parts = [];
    if (known.length > 1 || provider) {
      parts.push(tabs([['', 'All providers'], ...known.map((p) => [p, p])], provider, (p) => providerHref(ctx, p), 'recon-providers'));
    }
    if (!rows.length && !outside.length) {
      parts.push(noLines(ctx, provider, canRun));
    } else {
      const drifting = rep.drifting_lines || 0;
      const last = latest([...rows, ...outside]);
      parts.push(
        kpis(
          kpi('Gateway (matched lines)', money(rep.gateway_cost_usd, { 'data-testid': 'recon-gateway' }), { sub: 'what the ledger recorded', testid: 'kpi-recon-gateway' }),
          kpi('Provider billed (matched)', money(rep.provider_cost_usd, { 'data-testid': 'recon-provider' }), { sub: 'on the gateway\'s accounts', testid: 'kpi-recon-provider' }),
          kpi('Drift', money(rep.drift_usd, { 'data-testid': 'recon-drift' }), {
            tone: drifting ? 'warn' : 'good',
            sub: h('span', { 'data-testid': 'recon-drifting' }, `${fmtCount(drifting)} of ${fmtCount(rows.length)} line${rows.length === 1 ? '' : 's'} drifting`),
            testid: 'kpi-recon-drift',
          }),
          kpi('Outside the gateway', money(rep.outside_gateway_usd, { 'data-testid': 'recon-outside' }), {
            tone: nanos(rep.outside_gateway_usd) > 0n ? 'warn' : '',
            sub: `${fmtCount(outside.length)} line${outside.length === 1 ? '' : 's'} on other accounts`,
            testid: 'kpi-recon-outside',
          }),
        ),
        card(`Matched lines (${fmtCount(rows.length)})`, matchedTable(rows),
          note(`Drift = the gateway's cost − the provider's: negative when the provider billed more than the gateway recorded. Whole UTC days; the latest day fills in as the provider's report catches up.${last ? ` Last reconciled ${when(last)}.` : ''}`)),
        card(`Outside the gateway (${fmtCount(outside.length)})`, outsideTable(outside),
          note('Spend the provider billed on accounts (OpenAI projects, Anthropic workspaces) that are not in the provider\'s billing_accounts: calls that never went through the gateway.')),
      );
    }
    if (canRun) parts.push(runCard(known));
    body.replaceChildren(...parts);
  };

  draw(d, all);
  return [
    title('Reconciliation', `The providers' own cost and usage reports beside the gateway's ledger, per UTC day and model, over ${rangeText(ctx.range)}.`),
    filtersIgnored(ctx),
    errors.el,
    done.el,
    body,
  ];
}

/** The reconciliation view of one provider ('' for all), keeping the range. */
function providerHref(ctx, provider) {
  return hashFor({ view: 'reconciliation', arg: '', range: ctx.range, filters: ctx.filters, params: provider ? { provider } : {} });
}

// ---------------------------------------------------------------- what-if

const DEFAULT_BY = 'team, feature, model';

/** "a=b, c=d" → ["a=b", "c=d"]. */
function items(text) {
  return String(text || '').split(',').map((s) => s.trim()).filter(Boolean);
}

function byList(text) {
  return items(text || DEFAULT_BY).join(',');
}

function whatifForm(ctx, errors) {
  const p = ctx.params;
  const range = h('select', { name: 'range', 'aria-label': 'since' },
    [['24h', 'the last 24 hours'], ['7d', 'the last 7 days'], ['30d', 'the last 30 days']].map(([v, l]) => h('option', { value: v, selected: v === ctx.range }, l)));
  const submit = h('button', { type: 'submit', class: 'button', 'data-testid': 'whatif-run' }, 'Run what-if');
  const form = h('form', { id: 'whatif-form', class: 'form-grid', autocomplete: 'off' },
    field('Move models', h('input', { name: 'map', value: p.map || '', placeholder: 'gpt-4o=gpt-4o-mini' }), 'FROM=TO, comma separated: rows of FROM priced as TO, tokens kept'),
    field('Batch API for', h('input', { name: 'batch', value: p.batch || '', placeholder: 'team=growth' }), 'DIMENSION=VALUE, comma separated: those rows at batch prices'),
    field('Exact cache', h('input', { name: 'cache', value: p.cache || '', placeholder: 'none', list: 'whatif-ttls', size: '8' }), 'a TTL (30m, 1h, 7d): a repeated prompt within it costs $0'),
    h('datalist', { id: 'whatif-ttls' }, ['30m', '1h', '24h', '7d', 'none'].map((t) => h('option', { value: t }))),
    field('Since', range, 'the same as the time range above'),
    field('Group by', h('input', { name: 'by', value: p.by || DEFAULT_BY }), 'dimensions, comma separated'),
    h('div', { class: 'form-actions' }, submit,
      h('a', { href: hashFor({ view: 'whatif', arg: '', range: ctx.range, filters: ctx.filters, params: {} }), id: 'whatif-reset' }, 'start over')),
  );
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    errors.clear();
    const v = (n) => formValue(form, n);
    const params = { map: items(v('map')).join(', '), batch: items(v('batch')).join(', '), cache: v('cache') };
    if (!params.map && !params.batch && !params.cache) {
      errors.show(new Error('give at least one change: a model to move, a batch selector or a cache TTL'));
      return;
    }
    if (byList(v('by')) !== byList(DEFAULT_BY)) params.by = items(v('by')).join(', ');
    const next = hashFor({ view: 'whatif', arg: '', range: v('range') || ctx.range, filters: ctx.filters, params });
    if (next === location.hash) rerender();
    else location.hash = next;
  });
  return form;
}

function whatifResults(d) {
  const before = nanos(d.before_usd);
  const savings = nanos(d.savings_usd);
  const dims = d.group_by || [];
  const rows = [...(d.rows || [])].sort((a, b) => {
    const x = nanos(a.savings_usd);
    const y = nanos(b.savings_usd);
    return y > x ? 1 : y < x ? -1 : 0;
  });
  const shown = rows.slice(0, 500);
  const kept = (d.not_repriced || 0) + (d.undecided || 0);
  return [
    h('div', { class: 'scenario-line' }, h('span', { class: 'muted' }, 'Scenario:'),
      h('ul', { class: 'scenario', 'data-testid': 'whatif-scenario' }, (d.scenario || []).map((s) => h('li', { class: 'tag' }, s)))),
    kpis(
      kpi('Spend as recorded', money(d.before_usd, { 'data-testid': 'whatif-before' }), { sub: `${fmtCount(d.rows_seen)} requests replayed`, testid: 'kpi-whatif-before' }),
      kpi('Under the scenario', money(d.after_usd, { 'data-testid': 'whatif-after' }), { testid: 'kpi-whatif-after' }),
      kpi(savings < 0n ? 'Extra cost' : 'Savings', money(savings, { 'data-testid': 'whatif-savings' }), {
        tone: savings > 0n ? 'good' : savings < 0n ? 'warn' : '',
        sub: `${fmtPct(savings, before)} of the recorded spend`,
        testid: 'kpi-whatif-savings',
      }),
      kpi('Requests re-priced', h('span', { 'data-testid': 'whatif-repriced' }, fmtCount(d.repriced)), {
        tone: kept ? 'warn' : '',
        testid: 'kpi-whatif-repriced',
        sub: h('span', {},
          d.cache_hits ? `${fmtCount(d.cache_hits)} as cache hits · ` : '',
          h('span', { 'data-testid': 'whatif-not-repriced', title: 'the change applies but has no price (unpriced row, no price for the target model, no batch price): recorded cost kept' }, fmtCount(d.not_repriced)), ' not re-priced · ',
          h('span', { 'data-testid': 'whatif-undecided', title: 'a routing rule the ledger cannot decide: recorded cost kept' }, fmtCount(d.undecided)), ' undecided · ',
          h('span', { 'data-testid': 'whatif-unchanged', title: 'no change applies: recorded cost kept' }, fmtCount(d.unchanged)), ' unchanged'),
      }),
    ),
    card(`By ${dims.join(', ') || 'group'}, largest savings first`, table([
      ...dims.map((dim) => ({ label: dim, cell: (r) => (r[dim] === null || r[dim] === undefined ? h('span', { class: 'muted' }, '(not set)') : r[dim]) })),
      { label: 'Requests', num: true, cell: (r) => fmtCount(r.requests) },
      { label: 'Before', num: true, cell: (r) => money(r.before_usd) },
      { label: 'After', num: true, cell: (r) => money(r.after_usd) },
      {
        label: 'Savings', num: true,
        cell: (r) => {
          const s = nanos(r.savings_usd);
          return money(r.savings_usd, { class: s > 0n ? 'money down' : s < 0n ? 'money up' : 'money muted', 'data-testid': 'group-savings' });
        },
      },
      { label: 'Saved', num: true, cell: (r) => fmtPct(nanos(r.savings_usd), nanos(r.before_usd)) },
    ], shown, { testid: 'whatif-table', empty: 'No requests in this time range.' }),
    rows.length > shown.length ? note(`The ${fmtCount(shown.length)} groups with the largest savings of ${fmtCount(rows.length)}.`) : null),
    (d.notes || []).length
      ? card('What the figures assume', h('ul', { class: 'notes', 'data-testid': 'whatif-notes' }, d.notes.map((n) => h('li', {}, n))))
      : null,
  ];
}

export async function whatif(ctx) {
  const p = ctx.params;
  const maps = items(p.map);
  const batches = items(p.batch);
  const cache = (p.cache || '').trim();
  const errors = errorBanner();
  const head = [
    title('What-if', 'The requests of the time range re-priced under a change: another model, the batch API, an exact cache. Nothing is sent to a provider: the ledger\'s own token counts meet the price catalog.'),
    filtersIgnored(ctx),
    errors.el,
    card('Scenario', whatifForm(ctx, errors)),
  ];
  if (!maps.length && !batches.length && !cache) {
    return [...head, h('div', { class: 'empty-state', 'data-testid': 'whatif-idle' }, h('b', {}, 'Describe a change and run it.'),
      h('p', {}, 'For example: move gpt-4o to gpt-4o-mini, price team=research at batch API rates, or cache identical prompts for an hour. '
        + 'The same replay runs from the command line as tollgate whatif.'))];
  }
  const params = [['since', ctx.from], ...maps.map((m) => ['map', m]), ...batches.map((b) => ['batch', b]), ['cache', cache], ['by', byList(p.by)]];
  let d;
  try {
    d = await api.getOptional('/api/v1/whatif', params);
  } catch (e) {
    if (isForbidden(e)) return forbidden('What-if', 'The what-if replay', 'It re-prices every team\'s requests, so a team admin cannot run it.', e);
    if (e instanceof api.ApiError && e.status === 400) {
      return [...head, h('div', { class: 'banner error', 'data-testid': 'whatif-error', role: 'alert' }, h('b', {}, 'This scenario cannot run: '), e.message)];
    }
    throw e;
  }
  if (!d) return [...head, h('div', { class: 'empty-state', 'data-testid': 'whatif-idle' }, h('b', {}, 'The what-if replay is not available on this gateway yet.'))];
  return [...head, ...whatifResults(d)];
}
