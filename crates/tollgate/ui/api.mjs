// The dashboard's only way to the gateway: the JSON APIs, with the admin
// token (if the user pasted one) from sessionStorage.

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

/** GET a JSON API. Throws ApiError (status 0 when the gateway is unreachable). */
export async function get(path, params = []) {
  const headers = { accept: 'application/json' };
  const t = token();
  if (t) headers.authorization = `Bearer ${t}`;
  let r;
  try {
    r = await fetch(url(path, params), { headers });
  } catch (e) {
    throw new ApiError(0, `cannot reach the gateway: ${e.message}`);
  }
  let body = null;
  try {
    body = await r.json();
  } catch {
    body = null;
  }
  if (!r.ok) {
    const err = body && body.error;
    throw new ApiError(r.status, (err && err.message) || `HTTP ${r.status}`, err && err.code);
  }
  return body;
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
