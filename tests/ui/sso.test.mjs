// Browser test of dashboard sign-in through an identity provider and the
// self-service it opens: a mock OpenID Connect provider (oidc-provider,
// in-process, dev login form), `tollgate mock-provider` upstream and
// `tollgate serve` with an [oidc] section; headless Debian chromium drives
// two users through playwright-core in separate browser contexts:
//
// - alice (group platform-admins → admin) signs in, creates keys for team
//   platform, rotates one with a 3 s grace, revokes another, sets a budget;
// - bob (group growth-leads → team_admin of growth) sees only his team's keys
//   and cannot revoke alice's, even straight through the API with his cookie;
// - carol (no mapped group) is turned away with the reason on the sign-in screen;
// - the audit log names the signed-in users, one entry per action;
// - CSRF: no token, a foreign Origin, and a real cross-origin form post are
//   refused; a tampered session cookie is refused; signing out ends the session.
//
// Saves the sign-in screen, the keys list with a new secret, a key's page
// while rotating and the budget form with its preview to docs/screenshots/.
//
// TOLLGATE_BIN: the binary (default ~/.cache/tollgate-target/debug/tollgate).
// CHROMIUM: the browser (default /usr/bin/chromium).
// TOLLGATE_SCREENSHOTS: where to save screenshots (default docs/screenshots).

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import Provider from 'oidc-provider';

import { nanos } from '../../crates/tollgate/ui/money.mjs';

const BIN = process.env.TOLLGATE_BIN || path.join(os.homedir(), '.cache/tollgate-target/debug/tollgate');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const SHOTS = process.env.TOLLGATE_SCREENSHOTS || path.resolve(path.dirname(new URL(import.meta.url).pathname), '../../docs/screenshots');
const SKIP = fs.existsSync(CHROMIUM) ? false : `no browser at ${CHROMIUM} (apt-get install chromium, or set CHROMIUM): the SSO browser test did NOT run`;
if (SKIP) console.error(`\n*** sso.test.mjs SKIPPED: ${SKIP} ***\n`);

const ADMIN_TOKEN = `admin-${crypto.randomBytes(12).toString('hex')}`;
const CLIENT_SECRET = `test-secret-${crypto.randomBytes(12).toString('hex')}`;
const MODEL = 'gpt-4o-mini';
const ACCOUNTS = {
  alice: { name: 'Alice Admin', email: 'alice@example.test', groups: ['platform-admins'] },
  bob: { name: 'Bob Growth', email: 'bob@example.test', groups: ['growth-leads'] },
  carol: { name: 'Carol Nogroup', email: 'carol@example.test', groups: ['interns'] },
};

let tmp;
let mock;
let gateway;
let gw; // http://127.0.0.1:<port>
let idpServer;
let issuer;
let evilServer;
let browser;
const contexts = {};
const pages = {};
const pageErrors = [];
/** What the steps made, for the later steps. */
const made = {};

// ---------------------------------------------------------------- processes

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function listen(server, port = 0) {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve(server.address().port));
  });
}

/** Starts `tollgate ARGS` and resolves with the URL it prints on stderr. */
function start(args, env = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(BIN, args, { env: { ...process.env, TOLLGATE_LOG: 'warn', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    const timer = setTimeout(() => reject(new Error(`tollgate ${args[0]} did not start in 30 s:\n${err}`)), 30_000);
    child.stdout.on('data', () => {});
    child.stderr.on('data', (d) => {
      err += d;
      const m = err.match(/listening on (http:\/\/\S+)/);
      if (m) {
        clearTimeout(timer);
        resolve({ child, url: m[1] });
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`tollgate ${args.join(' ')} exited with ${code}:\n${err}`));
    });
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`cannot start ${BIN}: ${e.message}`));
    });
  });
}

async function startIdp(gwPort) {
  idpServer = http.createServer();
  const port = await listen(idpServer);
  issuer = `http://127.0.0.1:${port}`;
  const provider = new Provider(issuer, {
    clients: [{
      client_id: 'tollgate',
      client_secret: CLIENT_SECRET,
      redirect_uris: [`http://127.0.0.1:${gwPort}/ui/auth/callback`],
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    }],
    claims: { openid: ['sub'], profile: ['name'], email: ['email'], groups: ['groups'] },
    scopes: ['openid', 'profile', 'email', 'groups'],
    // The ID token carries the scopes' claims too (the gateway also accepts them from userinfo).
    conformIdTokenClaims: false,
    async findAccount(ctx, id) {
      const a = ACCOUNTS[id];
      if (!a) return undefined;
      return { accountId: id, claims: async () => ({ sub: id, ...a }) };
    },
    // The built-in login form takes any login name and password, then asks for consent.
    features: { devInteractions: { enabled: true } },
    ttl: { Interaction: 600, Session: 3600, Grant: 3600, AccessToken: 600, IdToken: 600 },
    // PKCE stays required (the default): the gateway sends S256.
    // Plain http on loopback: SameSite=None cookies would need Secure.
    cookies: { keys: [crypto.randomBytes(16).toString('hex')], long: { sameSite: 'lax' }, short: { sameSite: 'lax' } },
  });
  provider.on('server_error', (ctx, e) => console.error('oidc-provider:', e));
  idpServer.on('request', provider.callback());
}

before(async () => {
  if (SKIP) return;
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tollgate-sso-'));
  const gwPort = await freePort();
  await startIdp(gwPort);
  mock = await start(['mock-provider', '--listen', '127.0.0.1:0']);
  const cfg = path.join(tmp, 'tollgate.toml');
  fs.writeFileSync(cfg, `
[server]
admin_token_env = "TOLLGATE_ADMIN_TOKEN"

[[providers]]
name = "openai"
kind = "openai"
base_url = "${mock.url}/v1"

[oidc]
issuer = "${issuer}"
client_id = "tollgate"
client_secret_env = "TOLLGATE_OIDC_CLIENT_SECRET"
redirect_url = "http://127.0.0.1:${gwPort}/ui/auth/callback"
scopes = ["openid", "profile", "email", "groups"]
groups_claim = "groups"
session_ttl = "1h"

[[oidc.roles]]
group = "platform-admins"
role = "admin"

[[oidc.roles]]
group = "growth-leads"
role = "team_admin"
team = "growth"
`);
  gateway = await start(['--config', cfg, '--db', `sqlite://${path.join(tmp, 'sso.db')}`, 'serve', '--listen', `127.0.0.1:${gwPort}`], {
    TOLLGATE_ADMIN_TOKEN: ADMIN_TOKEN,
    TOLLGATE_OIDC_CLIENT_SECRET: CLIENT_SECRET,
  });
  gw = gateway.url.replace(/\/$/, '');
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
  for (const who of ['alice', 'bob', 'carol']) {
    contexts[who] = await browser.newContext({ viewport: { width: 1360, height: 900 } });
    pages[who] = await contexts[who].newPage();
    pages[who].on('pageerror', (e) => pageErrors.push(`${who}: ${e.message}`));
  }
});

after(async () => {
  await browser?.close();
  for (const p of [gateway, mock]) if (p && p.child.exitCode === null) p.child.kill('SIGTERM');
  idpServer?.closeAllConnections?.();
  idpServer?.close();
  evilServer?.closeAllConnections?.();
  evilServer?.close();
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

// ---------------------------------------------------------------- helpers

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** One HTTP call with full control of the headers (Cookie, Origin). */
function call(method, pathAndQuery, { headers = {}, body } = {}) {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
    const h = { ...headers };
    if (data !== undefined) {
      h['content-type'] = h['content-type'] || 'application/json';
      h['content-length'] = Buffer.byteLength(data);
    }
    const req = http.request(`${gw}${pathAndQuery}`, { method, headers: h }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (text += c));
      res.on('end', () => {
        let json = null;
        try {
          json = JSON.parse(text);
        } catch {
          json = null;
        }
        resolve({ status: res.statusCode, text, json });
      });
    });
    req.on('error', reject);
    if (data !== undefined) req.write(data);
    req.end();
  });
}

const admin = { authorization: `Bearer ${ADMIN_TOKEN}` };

async function adminGet(p) {
  const r = await call('GET', p, { headers: admin });
  assert.equal(r.status, 200, `${p}: HTTP ${r.status} ${r.text}`);
  return r.json;
}

async function allKeys() {
  return (await adminGet('/admin/v1/keys')).keys;
}

async function keyById(id) {
  return (await allKeys()).find((k) => k.id === id);
}

/** A chat completion with a virtual key: the HTTP status. */
async function chat(secret) {
  const r = await call('POST', '/v1/chat/completions', {
    headers: { authorization: `Bearer ${secret}` },
    body: { model: MODEL, messages: [{ role: 'user', content: 'hello' }] },
  });
  return r.status;
}

/** Polls `f` until it gives `want` or the deadline passes; the last value. */
async function until(f, want, deadlineMs, every = 250) {
  let v = await f();
  while (v !== want && Date.now() < deadlineMs) {
    await sleep(every);
    v = await f();
  }
  return v;
}

async function sessionCookie(who) {
  const c = (await contexts[who].cookies(gw)).find((x) => x.name === 'tollgate_session');
  assert.ok(c, `${who} has a tollgate_session cookie`);
  return c;
}

async function csrfFor(cookieValue) {
  const r = await call('GET', '/ui/auth/status', { headers: { cookie: `tollgate_session=${cookieValue}` } });
  assert.equal(r.status, 200);
  assert.equal(r.json.signed_in, true, r.text);
  return r.json;
}

/** Waits until the dashboard has rendered its view (or failed). */
async function loaded(page) {
  await page.waitForSelector('#view[data-loaded="true"]', { timeout: 20_000 });
  const error = await page.$('[data-testid="error"]');
  assert.equal(error, null, `view failed: ${error && (await error.textContent())}`);
}

async function open(page, hash) {
  const url = `${gw}/ui/#/${hash}`;
  if (page.url() === url) {
    await page.reload();
  } else {
    // A change of the hash alone re-renders in place: mark the old view so it is not taken for the new one.
    await page.evaluate(() => {
      const v = document.getElementById('view');
      if (v) v.dataset.loaded = 'stale';
    }).catch(() => {});
    await page.goto(url);
  }
  await loaded(page);
}

/** From the keys list to one key's page, as a user clicks. */
async function openKey(page, id) {
  await page.click(`[data-testid="keys-table"] a[data-key-id="${id}"]`);
  await page.waitForFunction((i) => location.hash.startsWith(`#/keys/${i}`), id);
  await page.waitForSelector('#view[data-loaded="true"] #key-prefix', { timeout: 20_000 });
  await loaded(page);
}

/** Through the identity provider's dev login and consent screens, back to the dashboard. */
async function shot(page, name) {
  fs.mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`) });
}

async function signIn(who, { expectError = false } = {}) {
  const page = pages[who];
  await page.goto(`${gw}/ui/`);
  await page.waitForSelector('#sso-login', { timeout: 20_000 });
  assert.match(await page.getAttribute('#sso-login', 'href'), /^\/ui\/auth\/login\?return_to=/);
  assert.equal(await page.isVisible('#whoami'), false, 'nobody is shown as signed in yet');
  if (who === 'alice') await shot(page, 'sign-in');
  await page.click('#sso-login');
  await page.waitForURL((u) => u.href.startsWith(`${issuer}/`), { timeout: 20_000 });
  await page.fill('input[name="login"]', who);
  await page.fill('input[name="password"]', 'any password');
  await page.click('button[type="submit"]');
  // The consent screen (a new grant), then the gateway's callback and the dashboard.
  await page.waitForSelector('input[name="prompt"][value="consent"], #view', { state: 'attached', timeout: 20_000 });
  if (await page.$('input[name="prompt"][value="consent"]')) await page.click('button[type="submit"]');
  await page.waitForURL((u) => u.href.startsWith(`${gw}/ui`), { timeout: 20_000 });
  if (expectError) {
    await page.waitForSelector('#signin-error', { timeout: 20_000 });
    return page;
  }
  await page.waitForSelector('#whoami:not([hidden])', { timeout: 20_000 });
  await loaded(page);
  return page;
}

/** Creates a key through the Keys form; its id and secret (from the box shown once). */
async function createKeyInUi(page, fields) {
  await open(page, 'keys');
  await page.waitForSelector('#key-create');
  for (const [name, value] of Object.entries(fields)) await page.fill(`#key-create [name="${name}"]`, value);
  await page.click('#key-create button[type="submit"]');
  await page.waitForSelector('#new-secret-value', { timeout: 10_000 });
  const secret = await page.inputValue('#new-secret-value');
  const id = await page.getAttribute('#new-secret', 'data-key-id');
  assert.match(secret, /^tg_/);
  assert.ok(id);
  assert.ok(await page.isVisible('#copy-secret'), 'a Copy button beside the secret');
  await page.waitForSelector(`[data-testid="keys-table"] a[data-key-id="${id}"]`);
  return { id, secret };
}

// ---------------------------------------------------------------- the steps

test('a. alice: sign-in screen, SSO login and consent, back as admin', { skip: SKIP, timeout: 60_000 }, async () => {
  const st = await call('GET', '/ui/auth/status');
  assert.equal(st.status, 200);
  assert.equal(st.json.oidc, true);
  assert.equal(st.json.signed_in, false);
  // Without a session the API answers 401, not data.
  assert.equal((await call('GET', '/admin/v1/keys')).status, 401);
  const page = await signIn('alice');
  assert.ok(await page.isVisible('#token-button'), 'pasting an admin token is still offered');
  const who = (await page.textContent('#whoami')).trim();
  assert.match(who, /Alice/);
  assert.match(who, /admin/);
  assert.ok(await page.isVisible('#sign-out'));
  const cookie = await sessionCookie('alice');
  assert.equal(cookie.httpOnly, true);
  assert.equal(cookie.sameSite, 'Strict');
});

test('a2. a user in no mapped group is turned away with the reason', { skip: SKIP, timeout: 60_000 }, async () => {
  const page = await signIn('carol', { expectError: true });
  const msg = await page.textContent('#signin-error');
  assert.match(msg, /Sign-in failed/);
  assert.ok(msg.length > 'Sign-in failed. '.length + 5, msg);
  assert.ok(await page.isVisible('#sso-login'), 'the sign-in button is offered again');
  assert.equal(await page.isVisible('#whoami'), false);
  assert.equal((await contexts.carol.cookies(gw)).some((c) => c.name === 'tollgate_session'), false);
});

test('b. alice creates a key for team platform; its secret works', { skip: SKIP, timeout: 60_000 }, async () => {
  const page = pages.alice;
  made.a = await createKeyInUi(page, { name: 'platform-a', team: 'platform', tags: 'env=test' });
  await shot(page, 'keys');
  const k = await keyById(made.a.id);
  assert.equal(k.enforced_tags.team, 'platform');
  assert.equal(k.name, 'platform-a');
  assert.ok(made.a.secret.startsWith(k.prefix));
  assert.equal(await chat(made.a.secret), 200);
  // Navigating away discards the secret.
  await open(page, 'overview');
  await open(page, 'keys');
  assert.equal(await page.$('#new-secret-value'), null);
});

test('c. alice rotates it with a 3 s grace: both secrets work, then only the new one', { skip: SKIP, timeout: 60_000 }, async () => {
  const page = pages.alice;
  await open(page, 'keys');
  await openKey(page, made.a.id);
  assert.ok(await page.$('#key-requests'), 'a link to the key\'s requests');
  assert.match(await page.getAttribute('#key-requests', 'href'), new RegExp(`f=key%3A${made.a.id}|f=key:${made.a.id}`));
  await page.fill('#key-rotate [name="grace_seconds"]', '3');
  await page.click('#key-rotate button[type="submit"]');
  await page.waitForSelector('#key-previous-prefix[data-status="rotating"]', { timeout: 10_000 });
  const fresh = await page.inputValue('#new-secret-value');
  assert.match(fresh, /^tg_/);
  assert.notEqual(fresh, made.a.secret);
  assert.equal(await chat(fresh), 200, 'the new secret works');
  assert.equal(await chat(made.a.secret), 200, 'the old secret still works during the grace period');
  const k = await keyById(made.a.id);
  assert.ok(k.previous_valid_until, JSON.stringify(k));
  assert.ok(fresh.startsWith(k.prefix) && made.a.secret.startsWith(k.previous_prefix));
  // The key page shows both prefixes while rotating.
  assert.ok((await page.textContent('#key-prefix')).includes(k.prefix));
  const prev = await page.textContent('#key-previous-prefix');
  assert.ok(prev.includes(k.previous_prefix), prev);
  assert.match(prev, /valid until/);
  await shot(page, 'key-page');
  // Past the grace period (plus the gateway's key cache of up to 4 s), the old one is refused.
  const wait = Date.parse(k.previous_valid_until) + 5_000 - Date.now();
  await sleep(Math.max(0, wait));
  assert.equal(await chat(made.a.secret), 401, 'the old secret stops working once the grace has passed');
  assert.equal(await chat(fresh), 200);
  made.a.secret = fresh;
});

test('d. alice revokes another key from its page: it is refused within 5 s', { skip: SKIP, timeout: 60_000 }, async () => {
  const page = pages.alice;
  made.b = await createKeyInUi(page, { name: 'platform-b', team: 'platform', rpm: '600', budget_usd: '25' });
  assert.equal(await chat(made.b.secret), 200, 'the key works (and is now in the gateway\'s cache)');
  await openKey(page, made.b.id);
  await page.waitForSelector('#key-revoke');
  assert.equal(await page.isVisible('#key-revoke-confirm'), false, 'revoking asks first');
  await page.click('#key-revoke');
  await page.click('#key-revoke-confirm');
  const done = Date.now();
  await page.waitForSelector('.key-status[data-status="revoked"]', { timeout: 10_000 });
  assert.equal(await page.$('#key-rotate'), null, 'a revoked key offers no rotation');
  assert.equal(await until(() => chat(made.b.secret), 401, done + 5_000), 401);
  assert.ok((await keyById(made.b.id)).revoked_at);
  assert.equal(await chat(made.a.secret), 200, 'the other key is untouched');
});

test('e. alice sets a budget through the form, with a preview of what it covers', { skip: SKIP, timeout: 60_000 }, async () => {
  const page = pages.alice;
  await open(page, 'budgets');
  await page.waitForSelector('#budget-form');
  assert.ok(await page.$('#alerts'), 'the alerts section is there');
  await page.fill('#budget-form [name="scope"]', 'team=platform');
  await page.fill('#budget-form [name="limit_usd"]', '100');
  await page.fill('#budget-form [name="period"]', 'month');
  await page.waitForSelector('#budget-preview[data-state="ready"]', { timeout: 10_000 });
  const preview = await page.textContent('#budget-preview');
  assert.match(preview, /covers [\d,.k]+ requests, \$[\d,.]+ in the last 30 days/, preview);
  assert.match(preview, /active keys? belongs? to team platform/, preview);
  assert.match(preview, /of the \$100\.00 limit/, preview);
  await shot(page, 'budget-form');
  await page.click('#budget-form button[type="submit"]');
  await page.waitForSelector('#budget-saved:not([hidden])', { timeout: 10_000 });
  assert.equal(await page.$('[data-testid="action-error"]:not([hidden])'), null);
  const list = (await adminGet('/api/v1/budgets')).budgets;
  const b = list.find((x) => x.scope && x.scope.team === 'platform' && Object.keys(x.scope).length === 1);
  assert.ok(b, JSON.stringify(list));
  assert.equal(nanos(b.limit_usd), nanos('100'));
  assert.equal(b.period, 'month');
  made.budget = b.id;
  await page.waitForSelector(`[data-budget-id="${b.id}"]`);
  assert.ok(await page.$(`[data-budget-edit="${b.id}"]`), 'an Edit button');
  assert.ok(await page.$(`[data-budget-delete="${b.id}"]`), 'a Delete button');
});

test('f. bob (team admin of growth) sees and changes only his team', { skip: SKIP, timeout: 60_000 }, async () => {
  const page = await signIn('bob');
  const who = (await page.textContent('#whoami')).trim();
  assert.match(who, /Bob/);
  assert.match(who, /team_admin/);
  assert.match(who, /growth/);
  await open(page, 'keys');
  assert.equal(await page.inputValue('#key-create [name="team"]'), 'growth');
  assert.equal(await page.getAttribute('#key-create [name="team"]', 'readonly'), '');
  made.c = await createKeyInUi(page, { name: 'growth-bot' });
  assert.equal((await keyById(made.c.id)).enforced_tags.team, 'growth');
  assert.equal(await chat(made.c.secret), 200);
  const shown = await page.$$eval('[data-testid="keys-table"] a[data-key-id]', (as) => as.map((a) => a.dataset.keyId));
  assert.ok(shown.includes(made.c.id));
  assert.ok(!shown.includes(made.a.id) && !shown.includes(made.b.id), `bob sees platform keys: ${shown}`);

  // Straight at the API with bob's session cookie.
  const cookie = await sessionCookie('bob');
  const st = await csrfFor(cookie.value);
  assert.equal(st.user.role, 'team_admin');
  assert.equal(st.user.team, 'growth');
  assert.ok(st.csrf_token);
  const headers = { cookie: `tollgate_session=${cookie.value}` };
  const keys = await call('GET', '/admin/v1/keys', { headers });
  assert.equal(keys.status, 200, keys.text);
  const ids = keys.json.keys.map((k) => k.id);
  assert.ok(ids.includes(made.c.id));
  assert.ok(keys.json.keys.every((k) => k.enforced_tags.team !== 'platform' && k.tags.team !== 'platform'), keys.text);
  const revoke = await call('POST', `/admin/v1/keys/${made.a.id}/revoke`, { headers: { ...headers, 'x-csrf-token': st.csrf_token }, body: {} });
  assert.equal(revoke.status, 403, revoke.text);
  assert.equal((await keyById(made.a.id)).revoked_at, null);
  assert.equal(await chat(made.a.secret), 200);
});

test('h. CSRF: no token, a foreign Origin and a cross-origin form post are refused', { skip: SKIP, timeout: 60_000 }, async () => {
  const cookie = await sessionCookie('alice');
  const st = await csrfFor(cookie.value);
  const before = (await allKeys()).length;
  const headers = { cookie: `tollgate_session=${cookie.value}` };
  const noToken = await call('POST', '/admin/v1/keys', { headers, body: { name: 'csrf-no-token', team: 'platform' } });
  assert.equal(noToken.status, 403, noToken.text);
  assert.equal(noToken.json.error.code, 'csrf_failed');
  const foreign = await call('POST', '/admin/v1/keys', {
    headers: { ...headers, 'x-csrf-token': st.csrf_token, origin: 'http://evil.example' },
    body: { name: 'csrf-origin', team: 'platform' },
  });
  assert.equal(foreign.status, 403, foreign.text);
  const wrong = await call('POST', '/admin/v1/keys', {
    headers: { ...headers, 'x-csrf-token': `${st.csrf_token.slice(0, -2)}xx` },
    body: { name: 'csrf-wrong-token', team: 'platform' },
  });
  assert.equal(wrong.status, 403, wrong.text);

  // A page on another origin posts a form at the gateway in alice's browser.
  const field = '{"name":"csrf-form","team":"platform","user":"';
  evilServer = http.createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(`<!doctype html><title>win a prize</title>
<form method="POST" action="${gw}/admin/v1/keys" enctype="text/plain">
<input type="hidden" name='${field}' value='x"}'>
</form>
<script>document.forms[0].submit();</script>`);
  });
  const evilPort = await listen(evilServer);
  const page = await contexts.alice.newPage();
  try {
    const posted = page.waitForResponse((r) => r.url() === `${gw}/admin/v1/keys` && r.request().method() === 'POST', { timeout: 15_000 });
    await page.goto(`http://127.0.0.1:${evilPort}/`);
    const r = await posted;
    assert.ok([401, 403].includes(r.status()), `the cross-origin form post got HTTP ${r.status()}`);
  } finally {
    await page.close();
  }
  const keys = await allKeys();
  assert.equal(keys.length, before, 'no key was created by any refused call');
  assert.ok(!keys.some((k) => k.name.startsWith('csrf-')));
  // The session itself still works for a proper call.
  const ok = await call('GET', '/admin/v1/keys', { headers });
  assert.equal(ok.status, 200);
});

test('i. a tampered session cookie is refused', { skip: SKIP, timeout: 30_000 }, async () => {
  const { value } = await sessionCookie('alice');
  // A character in the middle (the last one of a base64 text may carry only padding bits).
  let i = Math.floor(value.length / 2);
  while (!/[A-Za-z0-9]/.test(value[i])) i++;
  const swapped = value[i] === 'A' ? 'B' : 'A';
  const tampered = value.slice(0, i) + swapped + value.slice(i + 1);
  assert.notEqual(tampered, value);
  const r = await call('GET', '/admin/v1/keys', { headers: { cookie: `tollgate_session=${tampered}` } });
  assert.equal(r.status, 401, r.text);
  const st = await call('GET', '/ui/auth/status', { headers: { cookie: `tollgate_session=${tampered}` } });
  assert.equal(st.json.signed_in, false);
  assert.equal((await call('GET', '/admin/v1/keys', { headers: { cookie: `tollgate_session=${value}` } })).status, 200);
});

test('g. the audit log has one entry per action, naming the signed-in user', { skip: SKIP, timeout: 30_000 }, async () => {
  const { entries } = await adminGet('/api/v1/audit?limit=1000');
  const mine = entries.filter((e) => ['key.create', 'key.rotate', 'key.revoke', 'budget.set'].includes(e.action));
  const count = (action, who) => mine.filter((e) => e.action === action && (!who || e.actor.includes(who))).length;
  assert.equal(count('key.create'), 3, JSON.stringify(mine, null, 1));
  assert.equal(count('key.create', 'alice'), 2);
  assert.equal(count('key.create', 'bob'), 1);
  assert.equal(count('key.rotate', 'alice'), 1);
  assert.equal(count('key.rotate'), 1);
  assert.equal(count('key.revoke', 'alice'), 1);
  assert.equal(count('key.revoke'), 1);
  assert.equal(count('budget.set', 'alice'), 1);
  assert.equal(count('budget.set'), 1);
  for (const e of mine) assert.ok(!e.actor.startsWith('admin-token'), `${e.action} by ${e.actor}`);
  assert.ok(mine.some((e) => e.action === 'key.rotate' && e.target === made.a.id));
  assert.ok(mine.some((e) => e.action === 'key.revoke' && e.target === made.b.id));
});

test('j. signing out ends the session', { skip: SKIP, timeout: 30_000 }, async () => {
  const page = pages.alice;
  const { value } = await sessionCookie('alice');
  await open(page, 'overview');
  await page.click('#sign-out');
  await page.waitForSelector('#sso-login', { timeout: 10_000 });
  assert.equal(await page.isVisible('#whoami'), false);
  assert.equal((await call('GET', '/admin/v1/keys', { headers: { cookie: `tollgate_session=${value}` } })).status, 401);
  // bob's session is his own.
  const bob = await sessionCookie('bob');
  assert.equal((await call('GET', '/admin/v1/keys', { headers: { cookie: `tollgate_session=${bob.value}` } })).status, 200);
});

test('no script errors on any page', { skip: SKIP }, () => {
  assert.deepEqual(pageErrors, []);
});
