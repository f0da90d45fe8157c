// Browser test of the dashboard: starts `tollgate demo`, drives headless
// Debian chromium through every view with playwright-core, checks that the
// numbers on screen equal /api/v1/spend for the same range and filters, and
// saves screenshots to docs/screenshots/.
//
// TOLLGATE_BIN: the binary (default ~/.cache/tollgate-target/debug/tollgate).
// CHROMIUM: the browser (default /usr/bin/chromium).
// TOLLGATE_SCREENSHOTS: where to save screenshots (default docs/screenshots).

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

import { fmtCount, fmtUsd, nanos, sumUsd, usdString } from '../../crates/tollgate/ui/money.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const BIN = process.env.TOLLGATE_BIN || path.join(os.homedir(), '.cache/tollgate-target/debug/tollgate');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const SHOTS = process.env.TOLLGATE_SCREENSHOTS || path.resolve(here, '../../docs/screenshots');
/** The seeded team with no live traffic: its numbers hold still while the test reads them. */
const QUIET_TEAM = 'research';
const RUNAWAY = 'run-researcher-runaway-0001';

let demo;
let base;
let tmp;
let browser;
let page;
const pageErrors = [];

function startDemo() {
  return new Promise((resolve, reject) => {
    const db = path.join(tmp, 'demo.db');
    demo = spawn(BIN, ['demo', '--listen', '127.0.0.1:0', '--demo-db', db, '--duration-secs', '900'], {
      env: { ...process.env, TOLLGATE_LOG: 'warn' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    const timer = setTimeout(() => reject(new Error(`demo did not print its dashboard URL in 60 s:\n${out}\n${err}`)), 60_000);
    demo.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/dashboard: (http:\/\/[^\s]+)\/ui/);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    demo.stderr.on('data', (d) => (err += d));
    demo.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`demo exited with ${code}:\n${out}\n${err}`));
    });
    demo.on('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`cannot start ${BIN}: ${e.message}`));
    });
  });
}

async function api(pathAndQuery) {
  const r = await fetch(base + pathAndQuery);
  assert.equal(r.status, 200, `${pathAndQuery}: HTTP ${r.status}`);
  return r.json();
}

function spendQuery(from, { groupBy, bucket, filters = [] } = {}) {
  const q = new URLSearchParams();
  if (groupBy) q.set('group_by', groupBy);
  if (from) q.set('from', from);
  if (bucket) q.set('bucket', bucket);
  for (const f of filters) q.append('filter', f);
  return `/api/v1/spend?${q}`;
}

/** Navigates to a view and waits until it has rendered (or failed); the same view again is reloaded. */
async function open(hash) {
  const url = `${base}/ui#/${hash}`;
  if (page.url() === url) await page.reload();
  else await page.goto(url);
  return loaded();
}

async function loaded() {
  await page.waitForSelector('#view[data-loaded="true"]', { timeout: 20_000 });
  const error = await page.$('[data-testid="error"]');
  assert.equal(error, null, `view failed: ${error && (await error.textContent())}`);
  // Charts draw on the next frame.
  await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
  return page.$eval('#view', (v) => ({ view: v.dataset.view, from: v.dataset.from }));
}

async function shot(name) {
  fs.mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`) });
}

async function text(selector) {
  return (await page.textContent(selector)).trim();
}

async function usd(selector) {
  return page.getAttribute(selector, 'data-usd');
}

before(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tollgate-ui-'));
  base = await startDemo();
  browser = await chromium.launchPersistentContext(path.join(tmp, 'profile'), {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
    viewport: { width: 1360, height: 860 },
  });
  page = browser.pages()[0] || (await browser.newPage());
  page.on('pageerror', (e) => pageErrors.push(e.message));
});

after(async () => {
  await browser?.close();
  if (demo && demo.exitCode === null) demo.kill('SIGTERM');
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

test('overview: totals equal /api/v1/spend, with and without a filter', async () => {
  const { from } = await open('overview');
  assert.match(from, /^\d{4}-\d\d-\d\dT\d\d:00:00Z$/);
  await page.waitForSelector('.chart canvas');
  await shot('overview');

  // Apply a filter the way a user does: the filter bar.
  await page.fill('[data-testid="filter-dim"]', 'team');
  await page.fill('[data-testid="filter-value"]', QUIET_TEAM);
  await page.click('[data-testid="filter-add"]');
  await page.waitForFunction(() => location.hash.includes('f=team'));
  const v = await loaded();
  assert.ok(await page.$(`[data-filter="team:${QUIET_TEAM}"]`), 'the filter shows as a chip');

  const want = await api(spendQuery(v.from, { filters: [`team:${QUIET_TEAM}`] }));
  assert.ok(nanos(want.total_cost_usd) > 0n);
  assert.equal(await usd('[data-testid="total-spend"]'), want.total_cost_usd);
  assert.equal(await text('[data-testid="total-spend"]'), fmtUsd(want.total_cost_usd));
  assert.equal(await text('[data-testid="total-requests"]'), fmtCount(want.total_requests));
  assert.equal(await usd('[data-testid="total-savings"]'), want.rows[0].cache_savings_usd);
  // The top-features table under the filter adds up to the same total.
  const shown = await page.$$eval('[data-testid="top-feature"] .money', (els) => els.map((e) => e.dataset.usd));
  const byFeature = await api(spendQuery(v.from, { groupBy: 'feature', filters: [`team:${QUIET_TEAM}`] }));
  assert.deepEqual(shown, byFeature.rows.slice(0, 6).map((r) => r.cost_usd));
  await shot('overview-filtered');
});

test('top spenders: each team row equals the grouped spend', async () => {
  const v = await open('spenders/team');
  await page.waitForSelector('[data-testid="spend-table"]');
  const want = await api(spendQuery(v.from, { groupBy: 'team' }));
  const row = want.rows.find((r) => r.team === QUIET_TEAM);
  assert.equal(await usd(`[data-testid="row-cost"][data-key="${QUIET_TEAM}"]`), row.cost_usd);
  // The demo's rate card bills research its cost + 12.5 %: shown beside the spend, as the API says.
  assert.equal(await usd(`[data-testid="row-billed"][data-key="${QUIET_TEAM}"]`), row.billed_usd);
  assert.notEqual(row.billed_usd, row.cost_usd);
  // research crossed its budget: it is the top spender of the week.
  const first = await page.$eval('[data-testid="spend-table"] tbody tr td a', (a) => a.textContent);
  assert.equal(first, QUIET_TEAM);
  await shot('top-spenders');
  for (const dim of ['feature', 'user', 'model', 'key']) {
    await page.click(`[data-testid="spender-tabs"] a[data-tab="${dim}"]`);
    await page.waitForFunction((d) => location.hash.startsWith(`#/spenders/${d}`), dim);
    await loaded();
    assert.ok(await page.$('[data-testid="spend-table"] tbody tr'), `${dim} table has rows`);
  }
});

test('tokens, model mix and cost per request render with data', async () => {
  const v = await open(`tokens?f=team:${QUIET_TEAM}`);
  const want = await api(spendQuery(v.from, { filters: [`team:${QUIET_TEAM}`] }));
  assert.equal(await usd('[data-testid="total-savings"]'), want.rows[0].cache_savings_usd);
  await open('tokens');
  await shot('tokens');

  await open('models');
  const models = await page.$$eval('[data-testid="models-table"] tbody tr', (trs) => trs.length);
  assert.ok(models >= 6, `${models} models`);
  await shot('model-mix');

  await open('costs');
  assert.ok(await page.$('.chart canvas'));
  await shot('cost-per-request');
});

test('request log: filter, then a request detail that matches the log', async () => {
  await open(`requests?f=team:${QUIET_TEAM}`);
  const rows = await page.$$('[data-testid="request-log"] tbody tr');
  assert.ok(rows.length > 0);
  const teams = await page.$$eval('[data-testid="request-log"] tbody tr td:nth-child(2)', (tds) => [...new Set(tds.map((t) => t.textContent))]);
  assert.deepEqual(teams, [QUIET_TEAM]);
  await shot('request-log');

  const id = await page.getAttribute('[data-testid="request-log"] tbody tr a.req-link', 'data-request-id');
  await page.click('[data-testid="request-log"] tbody tr a.req-link');
  await page.waitForFunction((i) => location.hash.includes(i), id);
  await loaded();
  const log = await api(`/api/v1/requests?filter=team:${QUIET_TEAM}&limit=50`);
  const row = log.rows.find((r) => r.request_id === id);
  assert.ok(row);
  assert.equal(await usd('[data-testid="detail-cost"] .money'), row.cost_usd);
  // The per-bucket costs add up to the request's cost.
  const parts = await page.$$eval('[data-testid="bucket-table"] .money', (els) => els.map((e) => e.dataset.usd));
  assert.ok(parts.length >= 2);
  assert.equal(usdString(sumUsd(parts)), row.cost_usd);
  await shot('request-detail');
});

test('agent runs: the runaway loop and its timeline', async () => {
  await open('agents');
  assert.ok(await page.$(`[data-testid="runs-table"] a[data-trace="${RUNAWAY}"]`), 'the runaway run is listed');
  await shot('agent-runs');
  await page.click(`[data-testid="runs-table"] a[data-trace="${RUNAWAY}"]`);
  await page.waitForFunction(() => location.hash.startsWith('#/run/'));
  await loaded();
  const all = await api(spendQuery(null, { filters: [`trace:${RUNAWAY}`] }));
  assert.equal(await usd('[data-testid="run-total"]'), all.total_cost_usd);
  assert.equal(await text('[data-testid="run-steps"]'), fmtCount(all.total_requests));
  assert.ok(all.total_requests > 400);
  await shot('agent-run');

  // A normal multi-step run: steps hang under their plan step.
  const runs = await api(spendQuery(null, { groupBy: 'trace', filters: ['agent:support-agent'] }));
  const normal = runs.rows.find((r) => r.trace.startsWith('run-') && r.requests >= 4); // seeded, so complete
  await open(`run/${encodeURIComponent(normal.trace)}`);
  const steps = await page.$$eval('[data-testid="steps-table"] tbody tr', (trs) => trs.map((t) => t.children[1].textContent));
  assert.equal(steps.length, normal.requests);
  assert.ok(steps[0].includes('plan') && steps.slice(1).every((s) => s.startsWith('└')), steps.join(' | '));
});

test('prompt versions: the change that doubled tokens stands out', async () => {
  const v = await open('prompts');
  const alert = await text('[data-testid="prompt-alert"]');
  assert.match(alert, /summarize@v3/);
  const want = await api(spendQuery(v.from, { groupBy: 'prompt', filters: ['prompt:summarize@v3'] }));
  assert.ok(want.rows[0].requests > 0);
  await shot('prompts');
});

test('budgets, anomalies, errors and data quality', async () => {
  await open('budgets');
  const budgets = await page.$$('[data-testid="budget"]');
  const none = await page.$('[data-testid="no-budgets"]');
  assert.ok(budgets.length > 0 || none, 'budgets or an explicit "no budgets configured"');
  await shot('budgets');

  // The incidents on screen are the API's, in its order (largest excess
  // first). Live traffic may open one between the two reads: read again then.
  let incidents = null;
  const shownIds = () => page.$$eval('[data-testid="incident-name"]', (els) => els.map((e) => e.dataset.id));
  for (let attempt = 0; attempt < 3; attempt += 1) {
    await open('anomalies');
    const found = await fetch(`${base}/api/v1/anomalies`);
    if (!found.ok) break;
    incidents = (await found.json()).incidents;
    if ((await shownIds()).join() === incidents.slice(0, 200).map((i) => i.id).join()) break;
  }
  if (incidents && incidents.length) {
    assert.deepEqual(await shownIds(), incidents.slice(0, 200).map((i) => i.id));
    const excess = (i) => nanos(i.excess_usd || '0');
    for (let k = 1; k < incidents.length; k += 1) {
      assert.ok(excess(incidents[k - 1]) >= excess(incidents[k]), 'incidents are ranked by excess dollars');
    }
    // A few incidents worth reading, not one anomaly per dimension.
    assert.ok(incidents.length <= 10, `${incidents.length} incidents`);
    assert.equal(await text('[data-testid="incident-count"] .kpi-value'), fmtCount(incidents.length));
    // Each kind's count of incidents on screen is the API's.
    const counts = {};
    for (const i of incidents) for (const kind of new Set(i.kinds)) counts[kind] = (counts[kind] || 0) + 1;
    for (const [kind, n] of Object.entries(counts)) {
      assert.equal(await text(`[data-testid="kind-${kind}"] .kpi-value`), fmtCount(n), kind);
    }
    // An incident of a past hour no longer grows: its excess on screen is the API's, exactly.
    const closed = incidents.find((i) => i.excess_usd && i.to && Date.parse(i.to) < Date.now());
    if (closed) assert.equal(await usd(`[data-testid="incident-excess"][data-id="${closed.id}"]`), closed.excess_usd);
  } else {
    assert.ok(await page.$('[data-testid="no-anomalies"]'));
  }
  await shot('anomalies');

  const v = await open('quality');
  const want = await api(spendQuery(v.from, { groupBy: 'model' }));
  const unpriced = await page.$$eval('[data-testid="unpriced-table"] tbody tr td:first-child', (tds) => tds.map((t) => t.textContent));
  assert.ok(unpriced.includes('acme-internal-13b'), unpriced.join(','));
  assert.ok(want.rows.some((r) => r.model === 'acme-internal-13b' && r.unpriced_requests > 0));
  assert.ok(await page.$('[data-testid="errors-table"] tbody tr'), 'the retry storm shows as failures');
  await shot('data-quality');

  // The estimated-usage link leads to the request log filtered on it.
  await page.click('[data-testid="estimated-table"] a.go');
  await page.waitForFunction(() => location.hash.startsWith('#/requests'));
  await loaded();
  assert.ok(await page.$('[data-filter="usage_source:estimated"]'));
  const est = await page.$$('[data-testid="request-log"] tbody tr');
  assert.ok(est.length > 0);

  // A change through the admin API appears in the audit log view.
  const set = await fetch(`${base}/admin/v1/budgets`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ scope: { team: 'audit-check' }, limit_usd: '12.50', period: 'day' }),
  });
  assert.equal(set.status, 200, await set.text());
  await open('audit');
  const actions = await page.$$eval('[data-testid="audit-table"] tbody tr td:nth-child(3)', (tds) => tds.map((t) => t.textContent));
  assert.ok(actions.includes('budget.set'), actions.join(','));
  const targets = await page.$$eval('[data-testid="audit-table"] tbody tr td:nth-child(4)', (tds) => tds.map((t) => t.textContent));
  assert.ok(targets.some((t) => t.includes('audit-check')), targets.join(','));
  await shot('audit');
});

/** Waits until `#reconcile-done` says a run finished, or `action-error` says why not. */
async function reconcileOutcome() {
  await page.waitForSelector('#reconcile-done:not([hidden]), [data-testid="action-error"]:not([hidden])', { timeout: 30_000 });
  const failed = await page.$('[data-testid="action-error"]:not([hidden])');
  assert.equal(failed, null, `reconcile now failed: ${failed && (await failed.textContent())}`);
  await page.waitForSelector('[data-reconcile]:not([disabled])');
}

test('reconciliation: the lines on screen are the API\'s, the drifting day stands out, an admin reconciles now', async () => {
  // The demo reconciles at start and again on its schedule: read again if a run lands between the two reads.
  const reconciliation = (from, provider) => api(`/api/v1/reconciliation?since=${encodeURIComponent(from)}${provider ? `&provider=${provider}` : ''}`);
  const kpiValues = async () => Promise.all(['recon-gateway', 'recon-provider', 'recon-drift', 'recon-outside'].map((t) => usd(`[data-testid="${t}"]`)));
  const apiValues = (w) => [w.gateway_cost_usd, w.provider_cost_usd, w.drift_usd, w.outside_gateway_usd];
  let want;
  let v;
  for (let attempt = 0; attempt < 3; attempt += 1) {
    v = await open('reconciliation');
    want = await reconciliation(v.from);
    if ((await kpiValues()).join() === apiValues(want).join()) break;
  }
  assert.ok(want.rows.length > 0, 'the demo reconciles its providers at start');
  assert.deepEqual(await kpiValues(), apiValues(want));
  assert.match(await text('[data-testid="recon-drifting"]'), new RegExp(`^${fmtCount(want.drifting_lines)} of ${fmtCount(want.rows.length)} line`));
  assert.equal((await page.$$('[data-testid="recon-table"] tbody tr:not(.detail)')).length, want.rows.length);

  // The seeded day the provider billed gpt-4o above the catalog: drifting, with its cause, listed first.
  const priced = want.rows.find((l) => l.provider === 'openai' && l.model === 'gpt-4o' && l.cause && l.cause.startsWith('price'));
  assert.ok(priced, JSON.stringify(want.rows.filter((l) => l.cause)));
  assert.ok(nanos(priced.drift_usd) < 0n, 'the provider billed more than the gateway recorded');
  const id = `openai/${priced.day}/gpt-4o`;
  assert.equal(await usd(`[data-testid="line-drift"][data-line="${id}"]`), priced.drift_usd);
  assert.equal(await text(`[data-testid="line-cause"][data-line="${id}"]`), priced.cause);
  assert.ok(await page.$eval(`[data-testid="line-drift"][data-line="${id}"]`, (e) => e.closest('tr').classList.contains('drifting')));
  assert.ok(await page.$eval('[data-testid="recon-table"] tbody tr', (tr) => tr.classList.contains('drifting')), 'drifting lines come first');
  const clean = want.rows.filter((l) => nanos(l.drift_usd) === 0n).length;
  assert.equal(await page.$$eval('[data-testid="recon-table"] tbody tr:not(.drifting):not(.detail)', (trs) => trs.length), clean);

  // Outside the gateway: the notebook's OpenAI project and the sandbox workspace.
  assert.ok(nanos(want.outside_gateway_usd) > 0n);
  for (const l of want.outside) {
    assert.equal(await usd(`[data-testid="outside-cost"][data-line="${l.provider}/${l.day}/${l.model}/${l.account}"]`), l.provider_cost_usd);
  }
  const accounts = await page.$$eval('[data-testid="outside-table"] tbody tr td:nth-child(4)', (tds) => tds.map((t) => t.textContent));
  assert.deepEqual(accounts.sort(), want.outside.map((l) => l.account).sort());
  await shot('reconciliation');

  // One provider: its tab, its lines only, the API's totals for it.
  await page.click('[data-testid="recon-providers"] a[data-tab="anthropic"]');
  await page.waitForFunction(() => location.hash.includes('provider=anthropic'));
  v = await loaded();
  const providers = await page.$$eval('[data-testid="recon-table"] tbody tr:not(.detail) td:nth-child(2)', (tds) => [...new Set(tds.map((t) => t.textContent))]);
  assert.deepEqual(providers, ['anthropic']);

  // Reconcile now (the demo's admin API is open): the lines are read again and saved.
  const clicked = Math.floor(Date.now() / 1000) * 1000;
  await page.click('[data-reconcile="anthropic"]');
  await reconcileOutcome();
  assert.match(await text('#reconcile-done'), /^Reconciled anthropic\./);
  const after = await reconciliation(v.from, 'anthropic');
  assert.ok(after.rows.length > 0);
  for (const l of [...after.rows, ...after.outside]) assert.ok(Date.parse(l.reconciled_at) >= clicked, `${l.day} ${l.model} reconciled at ${l.reconciled_at}`);
  assert.deepEqual(await kpiValues(), apiValues(after));
  assert.equal((await page.$$('[data-testid="recon-table"] tbody tr:not(.detail)')).length, after.rows.length);

  // A provider without reports: the API's reason, the view kept.
  await page.fill('#reconcile-form input[name="provider"]', 'gemini');
  await page.click('#reconcile-form button[type="submit"]');
  const refused = await page.waitForSelector('[data-testid="action-error"]:not([hidden])');
  assert.match(await refused.textContent(), /gemini/);
  assert.ok(await page.$('[data-testid="recon-table"]'));

  // No lines yet: what reconciliation needs. A team admin (403): why it cannot see them.
  const route = (url) => url.pathname === '/api/v1/reconciliation';
  await page.route(route, (r) => r.fulfill({
    status: 200,
    contentType: 'application/json',
    body: JSON.stringify({ rows: [], outside: [], gateway_cost_usd: '0.000000000', provider_cost_usd: '0.000000000', drift_usd: '0.000000000', drifting_lines: 0, outside_gateway_usd: '0.000000000' }),
  }));
  await open('reconciliation');
  const empty = await text('[data-testid="no-reconciliation"]');
  for (const needed of ['admin_key_env', 'tollgate reconcile', '[reconcile]', 'docs/finops.md']) assert.ok(empty.includes(needed), `${needed} in: ${empty}`);
  assert.ok(await page.$('#reconcile-form'), 'an admin can run the first reconciliation from the view');
  await page.unroute(route);
  const message = "the provider's invoice covers the whole organisation; a team admin cannot read its reconciliation";
  await page.route(route, (r) => r.fulfill({ status: 403, contentType: 'application/json', body: JSON.stringify({ error: { message, type: 'permission_error', code: 'forbidden' } }) }));
  await open('reconciliation');
  const forbidden = await text('[data-testid="finops-forbidden"]');
  assert.ok(forbidden.includes('team admin') && forbidden.includes(message), forbidden);
  await page.unroute(route);
});

test('what-if: a scenario from the form, its savings equal /api/v1/whatif, groups by savings', async () => {
  await open('whatif');
  assert.ok(await page.$('[data-testid="whatif-idle"]'), 'no scenario: the form and a hint, no replay');
  // Research's labelling day at batch prices and its deep research on Sonnet
  // instead of Opus: only seeded history changes, so the savings hold still
  // under the live traffic.
  const map = 'claude-opus-4-1=claude-sonnet-4-5';
  const batch = 'feature=batch-labeling';
  await page.fill('#whatif-form input[name="map"]', map);
  await page.fill('#whatif-form input[name="batch"]', batch);
  await page.click('[data-testid="whatif-run"]');
  await page.waitForFunction(() => location.hash.startsWith('#/whatif?') && location.hash.includes('batch='));
  const v = await loaded();
  await page.waitForSelector('[data-testid="whatif-table"]');
  const q = new URLSearchParams([['since', v.from], ['map', map], ['batch', batch], ['by', 'team,feature,model']]);
  const want = await api(`/api/v1/whatif?${q}`);
  assert.ok(nanos(want.savings_usd) > 0n, want.savings_usd);
  assert.equal(await usd('[data-testid="whatif-savings"]'), want.savings_usd);
  assert.equal(await text('[data-testid="whatif-repriced"]'), fmtCount(want.repriced));
  assert.equal(await text('[data-testid="whatif-not-repriced"]'), fmtCount(want.not_repriced));
  assert.equal(await text('[data-testid="whatif-undecided"]'), fmtCount(want.undecided));
  const scenario = await page.$$eval('[data-testid="whatif-scenario"] li', (lis) => lis.map((l) => l.textContent));
  assert.deepEqual(scenario, want.scenario);
  assert.equal(scenario.length, 2);
  // The groups, largest savings first: the ones that save are the API's, in its order.
  const shown = await page.$$eval('[data-testid="group-savings"]', (els) => els.map((e) => e.dataset.usd));
  for (let k = 1; k < shown.length; k += 1) assert.ok(nanos(shown[k - 1]) >= nanos(shown[k]), 'sorted by savings');
  const saving = (list) => list.filter((s) => nanos(s) > 0n);
  assert.deepEqual(saving(shown), saving(want.rows.map((r) => r.savings_usd)));
  const labelling = want.rows.find((r) => r.team === 'research' && r.feature === 'batch-labeling' && r.model === 'gpt-4o');
  assert.ok(labelling && nanos(labelling.savings_usd) > 0n);
  await shot('whatif');

  // A scenario the API refuses: its reason, and the form to fix it.
  await open(`whatif?map=${encodeURIComponent('gpt-4o')}`);
  assert.match(await text('[data-testid="whatif-error"]'), /not FROM=TO/);
  assert.equal(await page.inputValue('#whatif-form input[name="map"]'), 'gpt-4o');
});

test('no script errors on any page', () => {
  assert.deepEqual(pageErrors, []);
});
