// The dashboard's only way to the gateway: the JSON APIs, with the admin
// token (if the user pasted one) from sessionStorage, or the SSO session's
// cookie (sent by the browser) and its CSRF token (kept in memory only).

const TOKEN_KEY = 'tollgate.adminToken';

export function token() {
  try {
    return sessionStorage.getItem(TOKEN_KEY) || '';
  } catch {
    return '';
  }
}

export function setToken(t) {
  try {
    if (t) sessionStorage.setItem(TOKEN_KEY, t);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    /* storage disabled: the token lives for this page only */
  }
}

/** The SSO session's CSRF token (from /ui/auth/status): every non-GET call carries it. */
let csrf = '';

export function csrfToken() {
  return csrf;
}

export function setCsrfToken(t) {
  csrf = t || '';
}

export class ApiError extends Error {
  constructor(status, message, code) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** Builds `path?…` from a list of [name, value] pairs (repeatable names). */
export function url(path, params = []) {
  const q = new URLSearchParams();
  for (const [k, v] of params) {
    if (v !== undefined && v !== null && v !== '') q.append(k, v);
  }
  const s = q.toString();
  return s ? `${path}?${s}` : path;
}

async function send(method, path, { params = [], body } = {}) {
  const headers = { accept: 'application/json' };
  const t = token();
  if (t) headers.authorization = `Bearer ${t}`;
  if (method !== 'GET' && method !== 'HEAD' && csrf) headers['x-csrf-token'] = csrf;
  const init = { method, headers, credentials: 'same-origin' };
  if (body !== undefined) {
    headers['content-type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let r;
  try {
    r = await fetch(url(path, params), init);
  } catch (e) {
    throw new ApiError(0, `cannot reach the gateway: ${e.message}`);
  }
  let data = null;
  try {
    data = await r.json();
  } catch {
    data = null;
  }
  if (!r.ok) {
    const err = data && data.error;
    throw new ApiError(r.status, (err && err.message) || `HTTP ${r.status}`, err && err.code);
  }
  return data;
}

/** A write: refreshes the CSRF token once if the gateway says it no longer matches. */
async function write(method, path, body) {
  try {
    return await send(method, path, { body });
  } catch (e) {
    if (!(e instanceof ApiError && e.status === 403 && e.code === 'csrf_failed' && csrf)) throw e;
    const st = await authStatus();
    if (!st || !st.csrf_token || st.csrf_token === csrf) throw e;
    setCsrfToken(st.csrf_token);
    return send(method, path, { body });
  }
}

/** GET a JSON API. Throws ApiError (status 0 when the gateway is unreachable). */
export function get(path, params = []) {
  return send('GET', path, { params });
}

/** POST a JSON body; same errors as `get`. */
export function post(path, body = {}) {
  return write('POST', path, body);
}

/** DELETE; same errors as `get`. */
export function del(path) {
  return write('DELETE', path, undefined);
}

/** Like `get`, but a missing endpoint (404) gives `null` instead of an error. */
export async function getOptional(path, params = []) {
  try {
    return await get(path, params);
  } catch (e) {
    // The gateway answers an unknown route with 400 "no such endpoint" in the OpenAI error shape.
    const missing = e instanceof ApiError && ([404, 405, 501].includes(e.status) || (e.status === 400 && /^no such endpoint/.test(e.message)));
    if (missing) return null;
    throw e;
  }
}

/**
 * `GET /ui/auth/status`: whether SSO is configured and who is signed in.
 * A gateway without it (or unreachable) gives null: the dashboard works as
 * before, with a pasted admin token or none.
 */
export async function authStatus() {
  try {
    const r = await fetch('/ui/auth/status', { headers: { accept: 'application/json' }, credentials: 'same-origin', cache: 'no-store' });
    if (!r.ok) return null;
    const d = await r.json();
    return d && typeof d === 'object' ? d : null;
  } catch {
    return null;
  }
}

/** Ends the SSO session (`POST /ui/auth/logout`). */
export async function logout() {
  const headers = {};
  if (csrf) headers['x-csrf-token'] = csrf;
  const r = await fetch('/ui/auth/logout', { method: 'POST', headers, credentials: 'same-origin' });
  setCsrfToken('');
  if (!r.ok && r.status !== 401) {
    let msg = `HTTP ${r.status}`;
    try {
      msg = (await r.json()).error.message || msg;
    } catch {
      /* keep the status */
    }
    throw new ApiError(r.status, msg);
  }
}

/** `/api/v1/spend` with the page's time range and filters. */
export function spend(ctx, { groupBy = [], bucket, extraFilters = [] } = {}) {
  const params = [];
  if (groupBy.length) params.push(['group_by', groupBy.join(',')]);
  params.push(['from', ctx.from || ctx.range]);
  if (bucket) params.push(['bucket', bucket]);
  for (const [k, v] of [...ctx.filters, ...extraFilters]) params.push(['filter', `${k}:${v}`]);
  return get('/api/v1/spend', params);
}

/** One page of the request log (newest first) with the page's filters. */
export function requests(ctx, { limit = 100, cursor, extraFilters = [] } = {}) {
  const params = [['limit', String(limit)]];
  if (cursor) params.push(['cursor', cursor]);
  for (const [k, v] of [...ctx.filters, ...extraFilters]) params.push(['filter', `${k}:${v}`]);
  return get('/api/v1/requests', params);
}

/** Up to `max` rows of the request log, following cursors. */
export async function requestsUpTo(ctx, max, extraFilters = []) {
  const rows = [];
  let cursor;
  while (rows.length < max) {
    const page = await requests(ctx, { limit: Math.min(1000, max - rows.length), cursor, extraFilters });
    rows.push(...page.rows);
    if (!page.next_cursor) return { rows, complete: true };
    cursor = page.next_cursor;
  }
  return { rows, complete: false };
}
