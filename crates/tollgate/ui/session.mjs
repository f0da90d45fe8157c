// Who is looking: the dashboard session as `GET /ui/auth/status` last told
// it, and what that lets the page show (the API checks every call anyway).

import * as api from './api.mjs';

/** `GET /ui/auth/status` as last read (null: a gateway without SSO support). */
export let auth = null;

/** The SSO user signed in, or null. */
export function user() {
  return auth && auth.signed_in && auth.user ? auth.user : null;
}

/**
 * The caller's role: `admin`, `team_admin` or `viewer` for an SSO session;
 * null when unknown (a pasted admin token, or an open gateway): then every
 * control shows and the API's 403 speaks.
 */
export function role() {
  if (api.token()) return null;
  const u = user();
  return u ? u.role : null;
}

/** Whether create/rotate/revoke/edit/delete controls are shown. */
export function canWrite() {
  return role() !== 'viewer';
}

/** A team admin's team (its keys and budgets are its team's only), else null. */
export function myTeam() {
  const u = user();
  return role() === 'team_admin' && u.team ? u.team : null;
}

export function setAuth(next) {
  auth = next;
}
