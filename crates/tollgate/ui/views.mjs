// The dashboard's views. Each `render(ctx)` reads the JSON APIs with the
// page's time range (`ctx.from`) and filters (`ctx.filters`), returns DOM, and
// queues its charts with `ctx.later` (they are drawn once the DOM is shown).

import * as api from './api.mjs';
import { filterLink, go, hrefFor, link, requestsLink } from './nav.mjs';
import { chart, color, tokenTick, usdTick } from './charts.mjs';
import { card, chartBox, h, note, table } from './dom.mjs';
import { avgNanos, fmtCount, fmtMs, fmtPct, fmtUsd, nanos, sumUsd, toFloat, usdString } from './money.mjs';

// ---------------------------------------------------------------- helpers

/** An amount: "$12.35" on screen, the exact API string in `title` and `data-usd`. */
export function money(v, attrs = {}) {
  const n = typeof v === 'bigint' ? v : nanos(v);
  return h('span', { class: 'money', title: `$${usdString(n)}`, 'data-usd': usdString(n), ...attrs }, fmtUsd(n));
}

export function kpi(label, value, { testid, sub, tone } = {}) {
  return h('div', { class: `kpi ${tone || ''}`, 'data-testid': testid }, h('div', { class: 'kpi-label' }, label),
    h('div', { class: 'kpi-value' }, value), sub ? h('div', { class: 'kpi-sub' }, sub) : null);
}

export function kpis(...items) {
  return h('div', { class: 'kpis' }, items);
}

export function grid(...items) {
  return h('div', { class: 'grid' }, items);
}

export function title(text, sub) {
  return h('div', { class: 'view-head' }, h('h2', {}, text), sub ? h('p', { class: 'lede' }, sub) : null);
}

function select(options, current, onchange, attrs = {}) {
  return h('select', { onchange: (e) => onchange(e.target.value), ...attrs },
    options.map(([v, label]) => h('option', { value: v, selected: v === current }, label)));
}

export function tabs(options, current, hrefFor, testid) {
  return h('div', { class: 'tabs', 'data-testid': testid }, options.map(([v, label]) =>
    h('a', { href: hrefFor(v), class: v === current ? 'active' : '', 'data-tab': v }, label)));
}

function status(code) {
  const cls = code >= 500 ? 'bad' : code >= 400 ? 'warn' : 'ok';
  return h('span', { class: `badge ${cls}` }, String(code));
}

function cost(row) {
  if (row.cost_usd === null || row.cost_usd === undefined) return h('span', { class: 'badge warn', title: 'no price known for this model' }, 'unpriced');
  return money(row.cost_usd);
}

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

function isoSecs(ms) {
  return new Date(ms).toISOString().replace('.000Z', 'Z');
}

/** Every bucket start from `from` to now, in the API's format. */
function buckets(from, bucket) {
  const step = bucket === 'hour' ? HOUR : DAY;
  const out = [];
  for (let t = Math.floor(Date.parse(from) / step) * step; t <= Date.now(); t += step) out.push(isoSecs(t));
  return out;
}

function bucketLabel(iso, bucket) {
  const d = new Date(iso);
  return bucket === 'hour'
    ? d.toLocaleString('en-GB', { weekday: 'short', hour: '2-digit', minute: '2-digit' })
    : d.toLocaleDateString('en-GB', { weekday: 'short', day: 'numeric', month: 'short' });
}

export function when(iso) {
  if (!iso) return '–';
  return new Date(iso).toLocaleString('en-GB', { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit' });
}

/** Rows of one spend query keyed by a dimension, totals as BigInt. */
function byDim(rows, dim) {
  const m = new Map();
  for (const r of rows) {
    const k = r[dim] ?? '(not set)';
    const e = m.get(k) || { key: k, raw: r[dim], cost: 0n, requests: 0, rows: [] };
    e.cost += nanos(r.cost_usd);
    e.requests += r.requests;
    e.rows.push(r);
    m.set(k, e);
  }
  return [...m.values()].sort((a, b) => (b.cost > a.cost ? 1 : b.cost < a.cost ? -1 : 0));
}

/** Datasets for a stacked chart of `metric` by `dim` over time (top `n`, then "other"). */
function stacked(rows, dim, labels, metric, n = 8) {
  const ranked = byDim(rows, dim);
  const top = new Set(ranked.slice(0, n).map((e) => e.key));
  const series = new Map();
  for (const r of rows) {
    const k0 = r[dim] ?? '(not set)';
    const k = top.has(k0) ? k0 : 'other';
    if (!series.has(k)) series.set(k, new Map());
    const s = series.get(k);
    s.set(r.bucket, (s.get(r.bucket) || 0n) + metric(r));
  }
  const order = [...ranked.slice(0, n).map((e) => e.key), ...(series.has('other') ? ['other'] : [])];
  return order.map((k, i) => ({
    label: k,
    data: labels.map((b) => toFloat(series.get(k)?.get(b) || 0n)),
    backgroundColor: color(i, k),
    borderWidth: 0,
  }));
}

function stackedBar(datasets, labels, yTick = usdTick, extra = {}) {
  return {
    type: 'bar',
    data: { labels, datasets },
    options: {
      scales: { x: { stacked: true, grid: { display: false } }, y: { stacked: true, ticks: { callback: yTick } } },
      plugins: {
        tooltip: {
          mode: 'index',
          callbacks: {
            label: (c) => `${c.dataset.label}: ${yTick === usdTick ? '$' + c.parsed.y.toFixed(4) : fmtCount(c.parsed.y)}`,
          },
        },
      },
      ...extra,
    },
  };
}

function hbar(labels, values, { tick = usdTick, colors } = {}) {
  return {
    type: 'bar',
    data: { labels, datasets: [{ data: values, backgroundColor: colors || labels.map((l, i) => color(i, l)), borderWidth: 0 }] },
    options: {
      indexAxis: 'y',
      plugins: { legend: { display: false }, tooltip: { callbacks: { label: (c) => (tick === usdTick ? '$' + c.parsed.x.toFixed(4) : fmtCount(c.parsed.x)) } } },
      scales: { x: { ticks: { callback: tick } }, y: { grid: { display: false } } },
    },
  };
}

const SPEND_DIMS = [
  ['team', 'Team'], ['feature', 'Feature'], ['user', 'User'], ['model', 'Model'], ['key', 'API key'],
  ['env', 'Environment'], ['agent', 'Agent'], ['prompt', 'Prompt'], ['provider', 'Provider'],
];

function filtersText(ctx) {
  return ctx.filters.length ? ` where ${ctx.filters.map(([k, v]) => `${k} = ${v}`).join(' and ')}` : '';
}

async function keyNames() {
  try {
    const r = await api.get('/admin/v1/keys');
    return new Map((r.keys || []).map((k) => [k.id, k.name]));
  } catch {
    return new Map();
  }
}

function spendTable(entries, dim, total, { testid, names } = {}) {
  return table([
    { label: SPEND_DIMS.find(([d]) => d === dim)?.[1] || dim, cell: (e) => filterLink(dim, e.raw, names?.get(e.raw) || e.key) },
    { label: 'Requests', num: true, cell: (e) => fmtCount(e.requests) },
    { label: 'Tokens in', num: true, cell: (e) => fmtCount(e.input) },
    { label: 'Tokens out', num: true, cell: (e) => fmtCount(e.output) },
    { label: 'Spend', num: true, cell: (e) => money(e.cost, { 'data-testid': 'row-cost', 'data-key': e.key }) },
    { label: 'Share', num: true, cell: (e) => fmtPct(e.cost, total) },
    { label: 'Per request', num: true, cell: (e) => money(avgNanos(e.cost, e.requests)) },
    { label: 'Cache savings', num: true, cell: (e) => money(e.savings) },
    // With [[rate_cards]], the API says what each row bills.
    ...(entries.some((e) => e.billed !== null)
      ? [{ label: 'Billed', num: true, cell: (e) => (e.billed === null ? '–' : money(e.billed, { 'data-testid': 'row-billed', 'data-key': e.key })) }]
      : []),
    { label: '', cell: (e) => (e.raw === null ? '' : requestsLink([[dim, e.raw]])) },
  ], entries, { testid });
}

function entriesOf(rows, dim) {
  return byDim(rows, dim).map((e) => ({
    ...e,
    input: e.rows.reduce((a, r) => a + r.input_tokens, 0),
    output: e.rows.reduce((a, r) => a + r.output_tokens, 0),
    savings: sumUsd(e.rows.map((r) => r.cache_savings_usd)),
    billed: e.rows.every((r) => r.billed_usd !== undefined) ? sumUsd(e.rows.map((r) => r.billed_usd)) : null,
  }));
}

// ---------------------------------------------------------------- overview

export async function overview(ctx) {
  const by = ctx.params.by || 'team';
  const bucket = ctx.params.bucket || (ctx.range === '24h' ? 'hour' : 'day');
  const [tot, series, teams, features, models] = await Promise.all([
    api.spend(ctx),
    api.spend(ctx, { groupBy: [by], bucket }),
    api.spend(ctx, { groupBy: ['team'] }),
    api.spend(ctx, { groupBy: ['feature'] }),
    api.spend(ctx, { groupBy: ['model'] }),
  ]);
  const t = tot.rows[0] || { requests: 0, cost_usd: '0', cache_savings_usd: '0', error_requests: 0, estimated_requests: 0, unpriced_requests: 0, input_tokens: 0, output_tokens: 0 };
  const total = nanos(tot.total_cost_usd);
  const labels = buckets(ctx.from, bucket);
  const box = chartBox(320);
  ctx.later(() => chart(box, stackedBar(stacked(series.rows, by, labels, (r) => nanos(r.cost_usd)), labels.map((b) => bucketLabel(b, bucket)))));
  const top = (rep, dim, name) => {
    const es = byDim(rep.rows, dim).slice(0, 6);
    return card(`Top ${name}`, table([
      { label: name, cell: (e) => filterLink(dim, e.raw, e.key) },
      { label: 'Spend', num: true, cell: (e) => money(e.cost) },
      { label: 'Share', num: true, cell: (e) => fmtPct(e.cost, total) },
    ], es, { testid: `top-${dim}` }), h('p', { class: 'more' }, link({ view: 'spenders', arg: dim }, `all ${name.toLowerCase()} →`)));
  };
  return [
    title('Where the money goes', `LLM spend${filtersText(ctx)}, from the gateway's ledger.`),
    kpis(
      kpi('Total spend', money(tot.total_cost_usd, { 'data-testid': 'total-spend' }), { testid: 'kpi-spend' }),
      kpi('Requests', h('span', { 'data-testid': 'total-requests' }, fmtCount(tot.total_requests)), { sub: `${fmtCount(t.input_tokens + t.output_tokens)} tokens` }),
      kpi('Average per request', money(avgNanos(total, tot.total_requests))),
      kpi('Saved by prompt caching', money(t.cache_savings_usd, { 'data-testid': 'total-savings' }), { tone: 'good' }),
      kpi('Failed requests', fmtCount(t.error_requests), { tone: t.error_requests ? 'warn' : '', sub: fmtPct(t.error_requests, t.requests) }),
      kpi('Unpriced / estimated', `${fmtCount(tot.unpriced_requests)} / ${fmtCount(t.estimated_requests)}`, {
        tone: tot.unpriced_requests || t.estimated_requests ? 'warn' : '',
        sub: link({ view: 'quality' }, 'see which →'),
      }),
    ),
    card(
      h('span', {}, 'Spend over time by ',
        select(SPEND_DIMS, by, (v) => go({ params: { ...ctx.params, by: v } }), { 'data-testid': 'stack-by', class: 'inline' }),
        ' per ',
        select([['hour', 'hour'], ['day', 'day']], bucket, (v) => go({ params: { ...ctx.params, bucket: v } }), { class: 'inline', 'data-testid': 'bucket' })),
      box,
    ),
    grid(top(teams, 'team', 'Teams'), top(features, 'feature', 'Features'), top(models, 'model', 'Models')),
  ];
}

// ---------------------------------------------------------------- top spenders

export async function spenders(ctx) {
  const dim = SPEND_DIMS.some(([d]) => d === ctx.arg) ? ctx.arg : 'team';
  const [rep, names] = await Promise.all([api.spend(ctx, { groupBy: [dim] }), dim === 'key' ? keyNames() : Promise.resolve(new Map())]);
  const total = nanos(rep.total_cost_usd);
  const entries = entriesOf(rep.rows, dim);
  const shown = entries.slice(0, 15);
  const box = chartBox(Math.max(160, shown.length * 28 + 40));
  ctx.later(() => chart(box, hbar(shown.map((e) => names.get(e.raw) || e.key), shown.map((e) => toFloat(e.cost)))));
  return [
    title('Top spenders', `Who and what spends the most${filtersText(ctx)}. Click a name to filter every view by it.`),
    tabs(SPEND_DIMS, dim, (d) => hrefFor({ view: 'spenders', arg: d }), 'spender-tabs'),
    kpis(kpi('Total spend', money(rep.total_cost_usd, { 'data-testid': 'total-spend' })), kpi('Requests', fmtCount(rep.total_requests)),
      kpi(`${SPEND_DIMS.find(([d]) => d === dim)[1]}s`, fmtCount(entries.length))),
    card(`Spend by ${dim}`, box),
    card(null, spendTable(entries, dim, total, { testid: 'spend-table', names })),
  ];
}

// ---------------------------------------------------------------- tokens

export async function tokens(ctx) {
  const bucket = ctx.params.bucket || (ctx.range === '24h' ? 'hour' : 'day');
  const [series, byModel] = await Promise.all([api.spend(ctx, { bucket }), api.spend(ctx, { groupBy: ['model'] })]);
  const labels = buckets(ctx.from, bucket);
  const at = new Map(series.rows.map((r) => [r.bucket, r]));
  const get = (b, f) => { const r = at.get(b); return r ? f(r) : 0; };
  const parts = [
    ['Input (full price)', (r) => r.input_tokens - r.cache_read_tokens - r.cache_write_tokens, '#4f6bed'],
    ['Cache reads (discounted)', (r) => r.cache_read_tokens, '#2fb380'],
    ['Cache writes', (r) => r.cache_write_tokens, '#e3c02b'],
    ['Output', (r) => r.output_tokens - r.reasoning_tokens, '#f08c2e'],
    ['Reasoning', (r) => r.reasoning_tokens, '#8c62d9'],
  ];
  const sum = (f) => series.rows.reduce((a, r) => a + f(r), 0);
  const savings = sumUsd(series.rows.map((r) => r.cache_savings_usd));
  const input = sum((r) => r.input_tokens);
  const box = chartBox(330);
  ctx.later(() => chart(box, {
    type: 'bar',
    data: {
      labels: labels.map((b) => bucketLabel(b, bucket)),
      datasets: [
        ...parts.map(([label, f, c]) => ({ label, data: labels.map((b) => get(b, f)), backgroundColor: c, stack: 't', yAxisID: 'y' })),
        { type: 'line', label: 'Saved by caching ($)', data: labels.map((b) => get(b, (r) => toFloat(r.cache_savings_usd))), borderColor: '#117a53', backgroundColor: '#117a53', yAxisID: 'y2', tension: 0.3, pointRadius: 2 },
      ],
    },
    options: {
      scales: {
        x: { stacked: true, grid: { display: false } },
        y: { stacked: true, ticks: { callback: tokenTick }, title: { display: true, text: 'tokens' } },
        y2: { position: 'right', grid: { display: false }, ticks: { callback: usdTick }, title: { display: true, text: 'saved' } },
      },
      plugins: { tooltip: { mode: 'index' } },
    },
  }));
  const models = entriesOf(byModel.rows, 'model');
  return [
    title('Tokens and caching', 'Every token the providers billed, by kind. Cache reads are billed at a discount: the green line is what that saved.'),
    kpis(
      kpi('Input tokens', fmtCount(input)),
      kpi('Read from cache', fmtPct(sum((r) => r.cache_read_tokens), input), { sub: `${fmtCount(sum((r) => r.cache_read_tokens))} tokens`, tone: 'good' }),
      kpi('Saved by caching', money(savings, { 'data-testid': 'total-savings' }), { tone: 'good' }),
      kpi('Output tokens', fmtCount(sum((r) => r.output_tokens)), { sub: `${fmtCount(sum((r) => r.reasoning_tokens))} reasoning` }),
    ),
    card(h('span', {}, 'Tokens per ', select([['hour', 'hour'], ['day', 'day']], bucket, (v) => go({ params: { bucket: v } }), { class: 'inline' })), box),
    card('By model', table([
      { label: 'Model', cell: (e) => filterLink('model', e.raw, e.key) },
      { label: 'Input', num: true, cell: (e) => fmtCount(e.input) },
      { label: 'Cache reads', num: true, cell: (e) => fmtCount(e.rows.reduce((a, r) => a + r.cache_read_tokens, 0)) },
      { label: 'Output', num: true, cell: (e) => fmtCount(e.output) },
      { label: 'Reasoning', num: true, cell: (e) => fmtCount(e.rows.reduce((a, r) => a + r.reasoning_tokens, 0)) },
      { label: 'Saved', num: true, cell: (e) => money(e.savings) },
    ], models)),
  ];
}

// ---------------------------------------------------------------- models

/** Frontier models cost the most per token; the rest are small/fast tiers. */
export function modelClass(model) {
  if (!model) return 'unknown';
  const m = model.toLowerCase();
  if (/(mini|nano|haiku|flash|lite|small)/.test(m)) return 'efficient';
  if (/^(gpt-4o|gpt-4\.1|gpt-4|gpt-5|o1|o3|claude|gemini-.*pro|mistral-large|deepseek-reasoner)/.test(m)) return 'frontier';
  return 'other';
}

export async function models(ctx) {
  const [rep, series] = await Promise.all([
    api.spend(ctx, { groupBy: ['model', 'provider'] }),
    api.spend(ctx, { groupBy: ['model'], bucket: ctx.range === '24h' ? 'hour' : 'day' }),
  ]);
  const total = nanos(rep.total_cost_usd);
  const entries = entriesOf(rep.rows, 'model');
  const classes = new Map();
  for (const e of entries) {
    const c = modelClass(e.raw);
    classes.set(c, (classes.get(c) || 0n) + e.cost);
  }
  const pie = chartBox(280);
  const top = entries.slice(0, 9);
  const rest = entries.slice(9).reduce((a, e) => a + e.cost, 0n);
  ctx.later(() => chart(pie, {
    type: 'doughnut',
    data: {
      labels: [...top.map((e) => e.key), ...(rest ? ['other'] : [])],
      datasets: [{ data: [...top.map((e) => toFloat(e.cost)), ...(rest ? [toFloat(rest)] : [])], backgroundColor: [...top.map((e, i) => color(i, e.key)), '#c4c9d2'] }],
    },
    options: { plugins: { legend: { position: 'right' }, tooltip: { callbacks: { label: (c) => `${c.label}: $${c.parsed.toFixed(2)}` } } } },
  }));
  const bucket = ctx.range === '24h' ? 'hour' : 'day';
  const labels = buckets(ctx.from, bucket);
  const share = chartBox(280);
  const cls = series.rows.map((r) => ({ ...r, cls: modelClass(r.model) }));
  ctx.later(() => chart(share, stackedBar(
    ['frontier', 'efficient', 'other'].map((c, i) => ({
      label: c,
      data: labels.map((b) => toFloat(cls.filter((r) => r.bucket === b && r.cls === c).reduce((a, r) => a + nanos(r.cost_usd), 0n))),
      backgroundColor: ['#d9487a', '#2fb380', '#c4c9d2'][i],
    })),
    labels.map((b) => bucketLabel(b, bucket)),
  )));
  const providerOf = new Map(rep.rows.map((r) => [r.model, r.provider]));
  return [
    title('Model mix', 'How much of the bill goes to frontier models versus cheaper, faster ones.'),
    kpis(
      kpi('On frontier models', fmtPct(classes.get('frontier') || 0n, total), { sub: money(classes.get('frontier') || 0n), tone: 'warn' }),
      kpi('On efficient models', fmtPct(classes.get('efficient') || 0n, total), { sub: money(classes.get('efficient') || 0n), tone: 'good' }),
      kpi('Models in use', fmtCount(entries.length)),
    ),
    grid(card('Share of spend by model', pie), card('Frontier vs efficient over time', share)),
    card('Models', table([
      { label: 'Model', cell: (e) => filterLink('model', e.raw, e.key) },
      { label: 'Provider', cell: (e) => providerOf.get(e.raw) || '–' },
      { label: 'Class', cell: (e) => h('span', { class: `badge ${modelClass(e.raw)}` }, modelClass(e.raw)) },
      { label: 'Requests', num: true, cell: (e) => fmtCount(e.requests) },
      { label: 'Spend', num: true, cell: (e) => money(e.cost) },
      { label: 'Share', num: true, cell: (e) => fmtPct(e.cost, total) },
      { label: 'Per request', num: true, cell: (e) => money(avgNanos(e.cost, e.requests)) },
      { label: 'Per 1M tokens', num: true, cell: (e) => (e.input + e.output ? money((e.cost * 1_000_000n) / BigInt(e.input + e.output)) : '–') },
      { label: '', cell: (e) => requestsLink([['model', e.raw]]) },
    ], entries, { testid: 'models-table' })),
  ];
}

// ---------------------------------------------------------------- cost per request

const COST_BINS = [0n, 100_000n, 300_000n, 1_000_000n, 3_000_000n, 10_000_000n, 30_000_000n, 100_000_000n, 300_000_000n, 1_000_000_000n];

export async function costs(ctx) {
  const [sample, byFeature] = await Promise.all([api.requestsUpTo(ctx, 2000), api.spend(ctx, { groupBy: ['feature'] })]);
  const priced = sample.rows.filter((r) => r.cost_usd !== null && r.status < 400).map((r) => nanos(r.cost_usd)).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const counts = COST_BINS.map(() => 0);
  for (const c of priced) {
    let i = COST_BINS.length - 1;
    while (i > 0 && c < COST_BINS[i]) i--;
    counts[i]++;
  }
  const binLabel = (i) => (i === COST_BINS.length - 1 ? `≥ ${fmtUsd(COST_BINS[i])}` : `${fmtUsd(COST_BINS[i])} – ${fmtUsd(COST_BINS[i + 1])}`);
  const q = (p) => (priced.length ? priced[Math.min(priced.length - 1, Math.floor(p * priced.length))] : 0n);
  const hist = chartBox(300);
  ctx.later(() => chart(hist, {
    type: 'bar',
    data: { labels: COST_BINS.map((_, i) => binLabel(i)), datasets: [{ label: 'requests', data: counts, backgroundColor: '#4f6bed' }] },
    options: { plugins: { legend: { display: false } }, scales: { x: { grid: { display: false }, title: { display: true, text: 'cost of one request' } }, y: { title: { display: true, text: 'requests' } } } },
  }));
  const feats = byDim(byFeature.rows, 'feature').map((e) => ({ ...e, avg: avgNanos(e.cost, e.requests) })).sort((a, b) => (b.avg > a.avg ? 1 : -1));
  const avgBox = chartBox(Math.max(160, feats.length * 28 + 40));
  ctx.later(() => chart(avgBox, hbar(feats.map((e) => e.key), feats.map((e) => toFloat(e.avg)))));
  return [
    title('Cost per request', 'How expensive single requests are: most should be cheap; the long tail is where to look.'),
    kpis(
      kpi('Median', money(q(0.5))), kpi('90th percentile', money(q(0.9))), kpi('99th percentile', money(q(0.99)), { tone: 'warn' }),
      kpi('Most expensive', money(priced.length ? priced[priced.length - 1] : 0n)),
    ),
    card('Distribution', hist, note(`From the ${fmtCount(sample.rows.length)} most recent requests${filtersText(ctx)}${sample.complete ? '' : ' (a sample)'}; unpriced and failed requests left out.`)),
    card('Average cost per request by feature', avgBox, note('Exact, over the whole time range.')),
  ];
}

// ---------------------------------------------------------------- request log

function requestColumns() {
  return [
    { label: 'Time', cell: (r) => h('a', { href: `#/request/${encodeURIComponent(r.request_id)}`, class: 'req-link', 'data-request-id': r.request_id }, when(r.time)) },
    { label: 'Team', cell: (r) => filterLink('team', r.tags?.team) },
    { label: 'Feature', cell: (r) => filterLink('feature', r.tags?.feature) },
    { label: 'Model', cell: (r) => (r.requested_model && r.model && r.requested_model !== r.model ? h('span', { title: 'fallback' }, `${r.requested_model} → ${r.model}`) : filterLink('model', r.model ?? r.requested_model)) },
    { label: 'Status', cell: (r) => status(r.status) },
    { label: 'In', num: true, cell: (r) => fmtCount(r.input_tokens) },
    { label: 'Out', num: true, cell: (r) => fmtCount(r.output_tokens) },
    { label: 'Cost', num: true, cell: (r) => h('span', {}, cost(r), r.usage_source === 'estimated' ? h('span', { class: 'badge warn', title: 'tokens counted locally' }, 'est.') : null) },
    { label: 'Latency', num: true, cell: (r) => fmtMs(r.latency_ms) },
    { label: 'Tries', num: true, cell: (r) => (r.attempts > 1 ? h('span', { class: 'badge warn' }, String(r.attempts)) : '1') },
    { label: 'Run', cell: (r) => (r.trace_id ? link({ view: 'run', arg: r.trace_id, filters: [] }, r.agent || 'trace', { class: 'dim-link' }) : '') },
  ];
}

export async function requests(ctx) {
  const page = await api.requests(ctx, { limit: 50 });
  const rows = [...page.rows];
  let cursor = page.next_cursor;
  const holder = h('div', {});
  const more = h('button', { class: 'button', 'data-testid': 'load-more' }, 'Load more');
  const draw = () => {
    holder.replaceChildren(table(requestColumns(), rows, { testid: 'request-log', onRow: (r) => go({ view: 'request', arg: r.request_id, params: {} }), empty: 'No requests match these filters.' }));
    more.hidden = !cursor;
  };
  more.addEventListener('click', async () => {
    more.disabled = true;
    const next = await api.requests(ctx, { limit: 100, cursor });
    rows.push(...next.rows);
    cursor = next.next_cursor;
    more.disabled = false;
    draw();
  });
  draw();
  return [
    title('Request log', `Every request the gateway served, newest first${filtersText(ctx)}. Add filters above (any tag works, e.g. usage_source = estimated or status = 429); click a row for its details.`),
    h('div', { class: 'quick' }, 'Quick filters: ',
      [['status', '429'], ['usage_source', 'estimated'], ['env', 'prod'], ['cache', 'hit']].map(([k, v]) => filterLink(k, v, `${k} = ${v}`))),
    card(null, holder, more),
  ];
}

// ---------------------------------------------------------------- request detail

const BUCKETS = [
  ['input', 'Input (uncached)'], ['input_audio', 'Input audio'], ['cache_read', 'Cache read'], ['cache_write_5m', 'Cache write (5 min)'],
  ['cache_write_1h', 'Cache write (1 h)'], ['output', 'Output text'], ['output_audio', 'Output audio'], ['output_image', 'Output image'],
  ['reasoning', 'Reasoning'],
];

export function dl(pairs) {
  return h('dl', { class: 'facts' }, pairs.filter(Boolean).map(([k, v]) => [h('dt', {}, k), h('dd', {}, v === null || v === undefined || v === '' ? '–' : v)]));
}

export async function request(ctx) {
  const d = await api.getOptional(`/ui/api/requests/${encodeURIComponent(ctx.arg)}`);
  if (!d) return [title('Request not found'), note(`No request with id ${ctx.arg} in the ledger.`)];
  const r = d.request;
  const parts = d.cost_parts || {};
  const usage = r.usage || {};
  const route = r.requested_model === r.model ? r.model : `${r.requested_model} → ${r.model} (fallback)`;
  const retries = r.attempts > 1 ? `${r.attempts} attempts (${r.attempts - 1} retr${r.attempts === 2 ? 'y' : 'ies'} or fallbacks)` : '1 attempt';
  return [
    title(`Request ${r.request_id}`, h('span', {}, when(r.time), ' · ', status(r.status), r.error_code ? ` ${r.error_code}` : '')),
    kpis(
      kpi('Cost', cost(r), { testid: 'detail-cost' }),
      kpi('Saved by caching', money(r.cache_savings_usd), { tone: 'good' }),
      kpi('Latency', fmtMs(r.latency_ms)),
      kpi('Time to first token', fmtMs(r.ttft_ms), { sub: r.streamed ? 'streamed' : 'not streamed' }),
      kpi('Attempts', String(r.attempts), { tone: r.attempts > 1 ? 'warn' : '' }),
    ),
    grid(
      card('Route', dl([
        ['Provider', r.provider], ['Model', route], ['Endpoint', r.endpoint], ['Retries / fallbacks', retries],
        ['Response cache', r.cache], ['Usage from', r.usage_source === 'estimated' ? 'estimated locally (provider sent none)' : 'the provider'],
        ['Client disconnected', r.client_disconnected ? 'yes' : 'no'], ['API key', r.key_id],
      ])),
      card('Attribution', dl([
        ...Object.entries(r.tags || {}).map(([k, v]) => [k, filterLink(k, v, v, 'requests')]),
        ['Agent', r.agent], ['Prompt', r.prompt ? filterLink('prompt', r.prompt, r.prompt, 'prompts') : null], ['Session', r.session],
        ['Trace', r.trace_id ? link({ view: 'run', arg: r.trace_id, filters: [] }, r.trace_id, { 'data-testid': 'trace-link' }) : null],
        ['Parent', r.parent_id ? (/^[0-9a-f-]{36}$/.test(r.parent_id) ? link({ view: 'request', arg: r.parent_id }, r.parent_id) : r.parent_id) : null],
      ])),
    ),
    card('Tokens and cost by bucket', table([
      { label: 'Bucket', cell: ([, label]) => label },
      { label: 'Tokens', num: true, cell: ([k]) => fmtCount(usage[k] || 0) },
      { label: 'Cost', num: true, cell: ([k]) => (parts[k] !== undefined ? money(parts[k]) : '–') },
    ], BUCKETS.filter(([k]) => usage[k] || (parts[k] && nanos(parts[k]) !== 0n)), { testid: 'bucket-table', empty: 'No tokens were billed (the request failed before the model answered).' }),
    d.cost_parts ? note(`Priced with ${d.price_source || 'the built-in catalog'}${parts.request_fee && nanos(parts.request_fee) ? `, plus a request fee of ${fmtUsd(parts.request_fee)}` : ''}.`) : note(r.priced ? '' : 'No price is known for this model, so the request is unpriced (never counted as $0).')),
  ];
}

// ---------------------------------------------------------------- agent runs

export async function agents(ctx) {
  const rep = await api.spend(ctx, { groupBy: ['agent', 'trace'] });
  const runs = rep.rows.filter((r) => r.trace !== null).map((r) => ({ ...r, cost: nanos(r.cost_usd) }));
  const byAgent = new Map();
  for (const r of runs) {
    const k = r.agent ?? '(no agent)';
    const a = byAgent.get(k) || { agent: k, raw: r.agent, runs: 0, steps: 0, cost: 0n, max: 0n };
    a.runs += 1;
    a.steps += r.requests;
    a.cost += r.cost;
    if (r.cost > a.max) a.max = r.cost;
    byAgent.set(k, a);
  }
  const agentsList = [...byAgent.values()].sort((a, b) => (b.cost > a.cost ? 1 : -1));
  runs.sort((a, b) => (b.cost > a.cost ? 1 : b.cost < a.cost ? -1 : 0));
  const median = (() => {
    const s = runs.map((r) => r.requests).sort((a, b) => a - b);
    return s.length ? s[Math.floor(s.length / 2)] : 0;
  })();
  const box = chartBox(260);
  ctx.later(() => chart(box, {
    type: 'bar',
    data: {
      labels: agentsList.map((a) => a.agent),
      datasets: [
        { label: 'runs', data: agentsList.map((a) => a.runs), backgroundColor: '#4f6bed', yAxisID: 'y' },
        { label: 'spend ($)', data: agentsList.map((a) => toFloat(a.cost)), backgroundColor: '#f08c2e', yAxisID: 'y2' },
      ],
    },
    options: { scales: { y: { title: { display: true, text: 'runs' } }, y2: { position: 'right', grid: { display: false }, ticks: { callback: usdTick } }, x: { grid: { display: false } } } },
  }));
  return [
    title('Agent runs', 'A run is every request that shares one trace id. Long or costly runs are where agents loop.'),
    kpis(kpi('Runs', fmtCount(runs.length)), kpi('Agents', fmtCount(agentsList.filter((a) => a.raw).length)),
      kpi('Spend in runs', money(runs.reduce((a, r) => a + r.cost, 0n))), kpi('Typical run', `${median} steps`)),
    grid(
      card('Runs and spend per agent', box),
      card('Agents', table([
        { label: 'Agent', cell: (a) => filterLink('agent', a.raw, a.agent) },
        { label: 'Runs', num: true, cell: (a) => fmtCount(a.runs) },
        { label: 'Steps', num: true, cell: (a) => fmtCount(a.steps) },
        { label: 'Spend', num: true, cell: (a) => money(a.cost) },
        { label: 'Per run', num: true, cell: (a) => money(avgNanos(a.cost, a.runs)) },
        { label: 'Costliest run', num: true, cell: (a) => money(a.max) },
      ], agentsList, { testid: 'agents-table' })),
    ),
    card('Costliest runs', table([
      { label: 'Run (trace id)', cell: (r) => link({ view: 'run', arg: r.trace, filters: [] }, r.trace, { class: 'run-link', 'data-trace': r.trace }) },
      { label: 'Agent', cell: (r) => r.agent ?? '–' },
      { label: 'Steps', num: true, cell: (r) => h('span', {}, fmtCount(r.requests), r.requests > Math.max(30, median * 5) ? h('span', { class: 'badge bad', title: 'far more steps than a typical run: a loop?' }, 'loop?') : null) },
      { label: 'Tokens', num: true, cell: (r) => fmtCount(r.input_tokens + r.output_tokens) },
      { label: 'Errors', num: true, cell: (r) => fmtCount(r.error_requests) },
      { label: 'Cost', num: true, cell: (r) => money(r.cost) },
    ], runs.slice(0, 25), { testid: 'runs-table', onRow: (r) => go({ view: 'run', arg: r.trace, filters: [], params: {} }) })),
  ];
}

export async function run(ctx) {
  const trace = ctx.arg;
  const { rows, complete } = await api.requestsUpTo({ ...ctx, filters: [] }, 3000, [['trace', trace]]);
  if (!rows.length) return [title('Run not found'), note(`No requests carry trace id ${trace}.`)];
  rows.sort((a, b) => (a.time < b.time ? -1 : a.time > b.time ? 1 : a.request_id < b.request_id ? -1 : 1));
  const t0 = Date.parse(rows[0].time);
  const index = new Map(rows.map((r, i) => [r.request_id, i]));
  const depth = (r) => {
    let d = 0;
    let p = r.parent_id;
    while (p && index.has(p) && d < 10) {
      d++;
      p = rows[index.get(p)].parent_id;
    }
    return d;
  };
  const total = sumUsd(rows.map((r) => r.cost_usd));
  const end = Math.max(...rows.map((r) => Date.parse(r.time) + (r.latency_ms || 0)));
  const stepName = (r, i) => `#${i + 1} ${r.tags?.step || ''} ${r.model || ''}`.replace(/\s+/g, ' ');
  const shown = rows.slice(0, 40);
  const timeline = chartBox(Math.max(200, shown.length * 16 + 50));
  ctx.later(() => chart(timeline, {
    type: 'bar',
    data: {
      labels: shown.map(stepName),
      datasets: [{
        label: 'running',
        data: shown.map((r) => { const s = (Date.parse(r.time) - t0) / 1000; return [s, s + (r.latency_ms || 0) / 1000]; }),
        backgroundColor: shown.map((r) => (r.status >= 400 ? '#d9487a' : r.tags?.step?.startsWith('tool') ? '#37a6c9' : '#4f6bed')),
        borderSkipped: false,
      }],
    },
    options: {
      indexAxis: 'y',
      plugins: { legend: { display: false }, tooltip: { callbacks: { label: (c) => { const r = shown[c.dataIndex]; return `${fmtMs(r.latency_ms)} · ${r.cost_usd ? fmtUsd(r.cost_usd) : 'unpriced'}`; } } } },
      scales: { x: { title: { display: true, text: 'seconds since the run started' } }, y: { ticks: { autoSkip: false, font: { size: 10 } } } },
    },
  }));
  const cum = chartBox(220);
  ctx.later(() => {
    let acc = 0n;
    chart(cum, {
      type: 'line',
      data: { labels: rows.map((_, i) => i + 1), datasets: [{ label: 'cost so far', data: rows.map((r) => { acc += nanos(r.cost_usd); return toFloat(acc); }), borderColor: '#f08c2e', pointRadius: 0, fill: true, backgroundColor: 'rgba(240,140,46,.15)' }] },
      options: { plugins: { legend: { display: false } }, scales: { x: { title: { display: true, text: 'step' } }, y: { ticks: { callback: usdTick } } } },
    });
  });
  const errors = rows.filter((r) => r.status >= 400).length;
  return [
    title(`Run ${trace}`, h('span', {}, rows[0].agent ? `Agent ${rows[0].agent} · ` : '', `${rows[0].tags?.team ? 'team ' + rows[0].tags.team + ' · ' : ''}started ${when(rows[0].time)}`)),
    kpis(
      kpi('Total cost', money(total, { 'data-testid': 'run-total' })),
      kpi('Steps', h('span', { 'data-testid': 'run-steps' }, fmtCount(rows.length)), { tone: rows.length > 50 ? 'warn' : '', sub: complete ? null : 'more not shown' }),
      kpi('Duration', fmtMs(end - t0)),
      kpi('Tokens', fmtCount(rows.reduce((a, r) => a + r.input_tokens + r.output_tokens, 0))),
      kpi('Failed steps', fmtCount(errors), { tone: errors ? 'warn' : '' }),
    ),
    grid(card(`Timeline${rows.length > shown.length ? ` (first ${shown.length} steps)` : ''}`, timeline), card('Cost as the run went on', cum)),
    card('Steps', table([
      { label: '#', num: true, cell: (r) => String(index.get(r.request_id) + 1) },
      { label: 'Step', cell: (r) => h('span', { style: `padding-left:${depth(r) * 18}px` }, depth(r) ? '└ ' : '', r.tags?.step || '–') },
      { label: 'At', num: true, cell: (r) => `+${((Date.parse(r.time) - t0) / 1000).toFixed(1)} s` },
      { label: 'Model', cell: (r) => r.model || r.requested_model },
      { label: 'Status', cell: (r) => status(r.status) },
      { label: 'In', num: true, cell: (r) => fmtCount(r.input_tokens) },
      { label: 'Out', num: true, cell: (r) => fmtCount(r.output_tokens) },
      { label: 'Latency', num: true, cell: (r) => fmtMs(r.latency_ms) },
      { label: 'Cost', num: true, cell: (r) => cost(r) },
    ], rows, { testid: 'steps-table', onRow: (r) => go({ view: 'request', arg: r.request_id, params: {} }) })),
  ];
}

// ---------------------------------------------------------------- prompts

function splitPrompt(p) {
  const i = p.lastIndexOf('@');
  return i > 0 ? [p.slice(0, i), p.slice(i + 1)] : [p, ''];
}

function versionOrder(a, b) {
  const na = Number(a.replace(/^v/, ''));
  const nb = Number(b.replace(/^v/, ''));
  return Number.isFinite(na) && Number.isFinite(nb) ? na - nb : a.localeCompare(b);
}

export async function prompts(ctx) {
  const [rep, series] = await Promise.all([api.spend(ctx, { groupBy: ['prompt'] }), api.spend(ctx, { groupBy: ['prompt'], bucket: 'hour' })]);
  const rows = rep.rows.filter((r) => r.prompt).map((r) => {
    const [name, version] = splitPrompt(r.prompt);
    return { ...r, name, version, cost: nanos(r.cost_usd), inPer: r.input_tokens / r.requests, outPer: r.output_tokens / r.requests };
  });
  const names = [...new Set(rows.map((r) => r.name))];
  const list = [];
  let biggest = null;
  for (const n of names) {
    const vs = rows.filter((r) => r.name === n).sort((a, b) => versionOrder(a.version, b.version));
    vs.forEach((v, i) => {
      v.change = i > 0 ? (v.inPer + v.outPer) / (vs[i - 1].inPer + vs[i - 1].outPer) - 1 : null;
      if (v.change !== null && (!biggest || v.change > biggest.change)) biggest = v;
      list.push(v);
    });
  }
  const focus = ctx.params.prompt && names.includes(ctx.params.prompt) ? ctx.params.prompt : biggest?.name || names[0];
  const trend = chartBox(280);
  if (focus) {
    const labels = buckets(ctx.from, 'hour');
    const mine = series.rows.filter((r) => r.prompt && splitPrompt(r.prompt)[0] === focus);
    const versions = [...new Set(mine.map((r) => r.prompt))].sort((a, b) => versionOrder(splitPrompt(a)[1], splitPrompt(b)[1]));
    ctx.later(() => chart(trend, {
      type: 'line',
      data: {
        labels: labels.map((b) => bucketLabel(b, 'hour')),
        datasets: versions.map((p, i) => {
          const at = new Map(mine.filter((r) => r.prompt === p).map((r) => [r.bucket, r]));
          return { label: p, data: labels.map((b) => (at.has(b) ? Math.round((at.get(b).input_tokens + at.get(b).output_tokens) / at.get(b).requests) : null)), borderColor: color(i), backgroundColor: color(i), pointRadius: 0, spanGaps: false };
        }),
      },
      options: { scales: { y: { beginAtZero: true, title: { display: true, text: 'tokens per request' } }, x: { ticks: { maxTicksLimit: 14 } } } },
    }));
  }
  const bars = chartBox(Math.max(200, list.length * 22 + 40));
  ctx.later(() => chart(bars, hbar(list.map((v) => v.prompt), list.map((v) => toFloat(avgNanos(v.cost, v.requests))))));
  return [
    title('Prompt versions', 'Cost and tokens per request for each prompt name@version, so a change that made a prompt bigger stands out.'),
    biggest && biggest.change > 0.2 ? h('div', { class: 'banner warn', 'data-testid': 'prompt-alert' }, h('b', {}, `${biggest.prompt}`),
      ` uses ${Math.round(biggest.change * 100)}% more tokens per request than the version before it.`) : null,
    card(h('span', {}, 'Tokens per request over time for ', select(names.map((n) => [n, n]), focus, (v) => go({ params: { prompt: v } }), { class: 'inline', 'data-testid': 'prompt-pick' })), trend),
    card('Prompt versions', table([
        { label: 'Prompt', cell: (v) => filterLink('prompt', v.prompt, v.name) },
        { label: 'Version', cell: (v) => v.version },
        { label: 'Requests', num: true, cell: (v) => fmtCount(v.requests) },
        { label: 'Tokens in / req', num: true, cell: (v) => fmtCount(v.inPer) },
        { label: 'Tokens out / req', num: true, cell: (v) => fmtCount(v.outPer) },
        { label: 'Cost / req', num: true, cell: (v) => money(avgNanos(v.cost, v.requests)) },
        { label: 'Total', num: true, cell: (v) => money(v.cost) },
        { label: 'vs previous', num: true, cell: (v) => (v.change === null ? '' : h('span', { class: v.change > 0.2 ? 'up' : v.change < -0.1 ? 'down' : '' }, `${v.change > 0 ? '+' : ''}${Math.round(v.change * 100)}%`)) },
      ], list, { testid: 'prompts-table' })),
    card('Cost per request by version', bars),
  ];
}

// ---------------------------------------------------------------- budgets

export function scopeText(scope) {
  if (!scope || !Object.keys(scope).length) return 'everything';
  return Object.entries(scope).map(([k, v]) => `${k} ${v}`).join(', ');
}

export function periodText(p) {
  const m = /^rolling:(\d+)([smhdw])$/.exec(p || '');
  if (!m) return `per ${p}`;
  const unit = { s: 'second', m: 'minute', h: 'hour', d: 'day', w: 'week' }[m[2]];
  return `rolling ${m[1]} ${unit}${m[1] === '1' ? '' : 's'}`;
}

// The budgets view (with its form, preview and alerts) is in manage.mjs.

// ---------------------------------------------------------------- anomalies

/** The request-log filters behind an anomaly or incident (`filter` is "dimension:value"). */
function anomalyFilters(a) {
  if (typeof a.filter === 'string' && a.filter.includes(':')) {
    const i = a.filter.indexOf(':');
    return [[a.filter.slice(0, i), a.filter.slice(i + 1)]];
  }
  if (a.dimension && a.value !== undefined && a.value !== null) return [[a.dimension, String(a.value)]];
  if (a.scope && typeof a.scope === 'object') return Object.entries(a.scope).map(([k, v]) => [k, String(v)]);
  return [];
}

const KIND_LABELS = {
  spend_spike: 'Spend spike',
  token_growth: 'Tokens growing turn over turn',
  repeated_prompt: 'Same prompt repeated',
  retry_spiral: 'Retry spiral',
  loop: 'Agent loop',
};

function kindLabel(k) {
  return KIND_LABELS[k] || (k || 'anomaly').replace(/_/g, ' ');
}

/** The API's incidents, or (from an older gateway) one per anomaly. */
function incidentsOf(d) {
  if (d && Array.isArray(d.incidents)) return d.incidents;
  const all = (d && (Array.isArray(d) ? d : d.anomalies)) || [];
  return all.map((a) => ({
    id: a.id, name: `${a.dimension} ${a.value}`, dimension: a.dimension, value: a.value, dimensions: [{ dimension: a.dimension, value: a.value }],
    kinds: [a.kind], excess_usd: a.excess_usd ?? null, message: a.message, filter: a.filter, requests: (a.request_ids || []).length,
    request_ids: a.request_ids || [], first_seen: a.detected_at, last_seen: a.detected_at,
  }));
}

export async function anomalies(ctx) {
  const [d, names] = await Promise.all([api.getOptional('/api/v1/anomalies'), keyNames()]);
  const all = incidentsOf(d);
  if (!all.length) {
    return [title('Anomalies'), h('div', { class: 'empty-state', 'data-testid': 'no-anomalies' }, h('b', {}, d ? 'No anomalies detected.' : 'Anomaly detection is not available on this gateway yet.'),
      h('p', {}, 'Spend spikes against each key\'s, team\'s, feature\'s and model\'s usual pattern, agent loops and retry spirals show up here as incidents, with links to the requests behind them.'))];
  }
  // Incidents per kind of finding (an incident with a spike and a loop counts under both).
  const counts = new Map();
  for (const i of all) for (const k of new Set(i.kinds)) counts.set(k, (counts.get(k) || 0) + 1);
  // Loops and retry spirals are rarer and more urgent than spikes: list their tabs first.
  const kinds = [...counts.keys()].sort((a, b) => (a === 'spend_spike') - (b === 'spend_spike') || counts.get(a) - counts.get(b));
  const kind = ctx.params.kind && counts.has(ctx.params.kind) ? ctx.params.kind : '';
  // The API ranks incidents by excess dollars; keep its order.
  const list = all.filter((i) => !kind || i.kinds.includes(kind));
  const show = (dim, v) => `${dim} ${dim === 'key' ? names.get(v) || v : v}`;
  const also = (i) => (i.dimensions || []).filter((x) => !(x.dimension === i.dimension && x.value === i.value)).map((x) => show(x.dimension, x.value)).join(', ') || '–';
  const go2 = (i) => {
    const f = anomalyFilters(i);
    if (f.length === 1 && (f[0][0] === 'trace' || f[0][0] === 'trace_id')) return link({ view: 'run', arg: f[0][1], filters: [] }, 'see the run →', { class: 'go' });
    if (f.length) return requestsLink(f);
    if (i.request_ids?.length) return link({ view: 'request', arg: i.request_ids[0] }, 'see a request →', { class: 'go' });
    return '';
  };
  const when2 = (i) => (i.first_seen === i.last_seen ? when(i.first_seen) : `${when(i.first_seen)} – ${when(i.last_seen)}`);
  return [
    title('Anomalies', 'Incidents, largest first: the findings one burst causes on its key, team, feature and model grouped into one, named after the most specific cause, with the dollars above the usual spend for that hour of the day.'),
    kpis(
      kpi('Incidents', fmtCount(all.length), { testid: 'incident-count' }),
      ...kinds.map((k) => kpi(kindLabel(k), fmtCount(counts.get(k)), { tone: k === 'spend_spike' ? '' : 'warn', testid: `kind-${k}` })),
    ),
    tabs([['', `All (${all.length})`], ...kinds.map((k) => [k, `${kindLabel(k)} (${counts.get(k)})`])], kind, (k) => hrefFor({ view: 'anomalies', params: k ? { kind: k } : {} }), 'anomaly-kinds'),
    card(null, table([
      { label: 'Incident', cell: (i) => h('b', { 'data-testid': 'incident-name', 'data-id': i.id }, show(i.dimension, i.value)) },
      { label: 'Kind', cell: (i) => i.kinds.map((k) => h('span', { class: `badge ${k === 'spend_spike' ? 'warn' : 'bad'}` }, kindLabel(k))) },
      { label: 'Also', cell: (i) => h('span', { class: 'wrap muted' }, also(i)) },
      { label: 'Above usual', num: true, title: 'the largest excess over the usual spend among its key, team, feature and model (they describe the same dollars)', cell: (i) => (i.excess_usd ? money(i.excess_usd, { 'data-testid': 'incident-excess', 'data-id': i.id }) : '–') },
      { label: 'Requests', num: true, cell: (i) => fmtCount(i.requests ?? (i.request_ids || []).length) },
      { label: 'When', cell: when2 },
      { label: 'What happened', cell: (i) => h('span', { class: 'wrap' }, i.message || '') },
      { label: '', cell: go2 },
    ], list.slice(0, 200), { testid: 'incidents-table' })),
    note('Requests: the requests behind the incident that the gateway kept (at most 50). Spend is compared with the same hour of the day over past days; a spike needs a few days of history and a minimum excess ([anomalies] in tollgate.toml).'),
  ];
}

// ---------------------------------------------------------------- audit log

/** A changed value, shortly: the fields that differ between before and after. */
function auditChange(e) {
  const b = e.before || {};
  const a = e.after || {};
  if (!e.before && e.after) return 'created';
  if (e.before && !e.after) return 'deleted';
  const keys = [...new Set([...Object.keys(b), ...Object.keys(a)])].filter((k) => JSON.stringify(b[k]) !== JSON.stringify(a[k]));
  const show = (v) => (v === undefined ? '–' : typeof v === 'string' ? v : JSON.stringify(v));
  return keys.slice(0, 4).map((k) => `${k}: ${show(b[k])} → ${show(a[k])}`).join('; ') || 'no field changed';
}

export async function audit() {
  const d = await api.getOptional('/api/v1/audit', [['limit', '200']]);
  const entries = (d && d.entries) || [];
  if (!entries.length) {
    return [title('Audit log'), h('div', { class: 'empty-state', 'data-testid': 'no-audit' }, h('b', {}, d ? 'No changes recorded yet.' : 'The audit log is not available to this token.'),
      h('p', {}, 'Every change to keys, budgets, prices and the configuration — who, what, when and from where — is listed here.'))];
  }
  return [
    title('Audit log', 'Every change to keys, budgets, prices and the configuration: who made it, from where, and what it changed (secrets never appear).'),
    card(null, table([
      { label: 'When', cell: (e) => when(new Date(e.time_ms).toISOString()) },
      { label: 'Who', cell: (e) => h('span', {}, e.actor, ' ', h('span', { class: 'muted' }, `(${e.actor_role})`)) },
      { label: 'Action', cell: (e) => h('span', { class: 'badge' }, e.action) },
      { label: 'Target', cell: (e) => h('span', { class: 'wrap' }, e.target || '–') },
      { label: 'From', cell: (e) => e.source || '–' },
      { label: 'Change', cell: (e) => h('span', { class: 'wrap' }, auditChange(e)) },
    ], entries, { testid: 'audit-table' })),
  ];
}

// ---------------------------------------------------------------- data quality

export async function quality(ctx) {
  const bucket = ctx.range === '30d' ? 'day' : 'hour';
  const [byModel, errs, errSeries] = await Promise.all([
    api.spend(ctx, { groupBy: ['model', 'provider'] }),
    api.spend(ctx, { groupBy: ['error_code', 'status'] }),
    api.spend(ctx, { groupBy: ['error_code'], bucket }),
  ]);
  const unpriced = byModel.rows.filter((r) => r.unpriced_requests > 0 && r.model !== null);
  const estimated = byModel.rows.filter((r) => r.estimated_requests > 0);
  const errors = errs.rows.filter((r) => r.error_code !== null);
  const errRows = errSeries.rows.filter((r) => r.error_code !== null);
  const labels = buckets(ctx.from, bucket);
  const box = chartBox(240);
  ctx.later(() => chart(box, stackedBar(stacked(errRows, 'error_code', labels, (r) => BigInt(r.requests) * 1_000_000_000n), labels.map((b) => bucketLabel(b, bucket)), (v) => String(v), {})));
  const sum = (rows, f) => rows.reduce((a, r) => a + f(r), 0);
  return [
    title('Errors and data quality', 'Requests the bill cannot fully vouch for: unpriced models, locally estimated tokens, and failures.'),
    kpis(
      kpi('Unpriced requests', h('span', { 'data-testid': 'unpriced-count' }, fmtCount(byModel.unpriced_requests)), { tone: byModel.unpriced_requests ? 'warn' : '', sub: 'model has no known price' }),
      kpi('Estimated requests', fmtCount(sum(estimated, (r) => r.estimated_requests)), { sub: 'tokens counted locally', tone: estimated.length ? 'warn' : '' }),
      kpi('Failed requests', fmtCount(sum(errors, (r) => r.requests)), { tone: errors.length ? 'warn' : '' }),
    ),
    grid(
      card('Unpriced traffic', table([
        { label: 'Model', cell: (r) => r.model },
        { label: 'Provider', cell: (r) => r.provider ?? '–' },
        { label: 'Unpriced requests', num: true, cell: (r) => fmtCount(r.unpriced_requests) },
        { label: 'Tokens', num: true, cell: (r) => fmtCount(r.input_tokens + r.output_tokens) },
        { label: '', cell: (r) => requestsLink([['model', r.model]]) },
      ], unpriced, { testid: 'unpriced-table', empty: 'Every request has a price.' }), note('Add a price for these models ([[prices]] in tollgate.toml) to count them in spend.')),
      card('Estimated usage', table([
        { label: 'Model', cell: (r) => r.model ?? '–' },
        { label: 'Estimated requests', num: true, cell: (r) => fmtCount(r.estimated_requests) },
        { label: 'Of all', num: true, cell: (r) => fmtPct(r.estimated_requests, r.requests) },
        { label: '', cell: (r) => requestsLink([['usage_source', 'estimated'], ...(r.model ? [['model', r.model]] : [])]) },
      ], estimated, { testid: 'estimated-table', empty: 'Every request carried the provider\'s own usage.' }), note('Streams cut short (client hung up) or providers that sent no usage: tokens were counted with the model\'s tokenizer.')),
    ),
    card('Failed requests over time by error', box),
    card('Failures', table([
      { label: 'Error', cell: (r) => filterLink('error_code', r.error_code, r.error_code, 'requests') },
      { label: 'Status', cell: (r) => status(Number(r.status)) },
      { label: 'Requests', num: true, cell: (r) => fmtCount(r.requests) },
      { label: '', cell: (r) => requestsLink([['error_code', r.error_code]]) },
    ], errors, { testid: 'errors-table', empty: 'No failed requests.' })),
  ];
}
