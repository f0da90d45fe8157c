//! Dashboard sign-in through the company's identity provider (`[oidc]`) and
//! the sessions it opens:
//!
//! - `GET /ui/auth/status` — whether sign-in is configured, who is signed
//!   in, and the session's CSRF token (public: the dashboard asks first);
//! - `GET /ui/auth/login` — starts a sign-in (state, nonce and PKCE verifier
//!   in a signed 10-minute cookie) and sends the browser to the provider;
//! - `GET /ui/auth/callback` — the provider's answer: the code is exchanged,
//!   the ID token verified, the groups mapped to a role, a session stored and
//!   its cookie set;
//! - `POST /ui/auth/logout` — revokes the caller's session;
//! - `GET /admin/v1/sessions`, `POST /admin/v1/sessions/{handle}/revoke` —
//!   admins list and revoke sessions.
//!
//! [`from_cookie`] is how `admin_gate` admits a signed-in browser: a valid,
//! unexpired, unrevoked session whose groups map to a role with the
//! configuration in force, and on every state-changing call, the session's
//! CSRF token and no cross-site origin ([`check_csrf`]).

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{internal, ms3339, Actor, Caller};
use crate::audit::{SESSION_REVOKE, SESSION_START};
use crate::config::{OidcConfig, Role};
use crate::error::ApiError;
use crate::oidc::clip;
use crate::session::{self, LoginState, Session};
use crate::state::AppState;
use crate::time::now_ms;

/// The sign-in routes (public: they carry their own checks).
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/ui/auth/status", get(status))
        .route("/ui/auth/login", get(login))
        .route("/ui/auth/callback", get(callback))
        .route("/ui/auth/logout", post(logout))
}

/// Session administration (behind the admin gate; admins only).
pub fn admin_routes() -> Router<Arc<AppState>> {
    Router::new().route("/admin/v1/sessions", get(list)).route("/admin/v1/sessions/{handle}/revoke", post(revoke))
}

/// A signed-in browser, as the admin gate admits it.
pub(crate) struct SignedIn {
    pub session: Session,
    /// The cookie's session id (CSRF tokens are derived from it).
    pub id: String,
    pub role: Role,
}

fn id_hash(state: &AppState, id: &str) -> [u8; 32] {
    state.auth.hasher().hash(&format!("session:{id}"))
}

fn role_name(role: &Role) -> (&'static str, Option<&str>) {
    match role {
        Role::Admin => ("admin", None),
        Role::Viewer => ("viewer", None),
        Role::TeamAdmin(t) => ("team_admin", Some(t)),
    }
}

/// The session a request's cookie names, checked: signature, expiry,
/// revocation, and a role for its groups under the configuration in force.
/// `Ok(None)` when the request carries no session cookie.
pub(crate) async fn from_cookie(state: &AppState, headers: &HeaderMap) -> Result<Option<SignedIn>, ApiError> {
    let Some(value) = session::cookie(headers, session::SESSION_COOKIE).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let now = now_ms();
    let refused = |m: &str| ApiError::InvalidApiKey { message: m.to_string() };
    let (id, _) = session::open_session(&state.cookie_key, value, now).map_err(|r| refused(r.message()))?;
    let stored = state.stores.sessions.session(id_hash(state, &id)).await.map_err(|e| {
        tracing::error!(error = %e, "session lookup failed");
        ApiError::StorageUnavailable { message: "the session store cannot be reached; retry shortly".into() }
    })?;
    let Some(s) = stored else { return Err(refused("no such session; sign in again")) };
    if s.revoked_ms.is_some() {
        return Err(refused("this session has been revoked; sign in again"));
    }
    if s.expires_ms <= now {
        return Err(refused(session::Refused::Expired.message()));
    }
    let config = state.config();
    let Some(oidc) = &config.oidc else { return Err(refused("sign-in through an identity provider is turned off")) };
    let Some(role) = oidc.role_for(&s.groups) else {
        return Err(ApiError::Forbidden { message: "your groups no longer map to a tollgate role".into() });
    };
    Ok(Some(SignedIn { session: s, id, role }))
}

/// A state-changing call from a signed-in browser must carry the session's
/// CSRF token (`x-csrf-token`), which no other site can read or compute, and
/// must not come from another site (`Sec-Fetch-Site`, `Origin`).
pub(crate) fn check_csrf(state: &AppState, headers: &HeaderMap, session_id: &str) -> Result<(), ApiError> {
    let refuse = |m: &str| ApiError::CsrfFailed { message: m.to_string() };
    super::from_this_site(headers).map_err(|why| refuse(&format!("{why} refused")))?;
    let presented = headers.get(session::CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !session::csrf_ok(&state.cookie_key, session_id, presented) {
        return Err(refuse(
            "missing or wrong x-csrf-token: state-changing calls from the dashboard carry the session's CSRF token",
        ));
    }
    Ok(())
}

/// The actor an audit entry names for a signed-in user: `oidc:<subject>`.
pub(crate) fn actor_of(s: &SignedIn, source: Option<String>) -> Actor {
    Actor::admin(format!("oidc:{}", s.session.subject), &s.role, source)
}

/// `GET /ui/auth/status`.
async fn status(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let oidc = state.config().oidc.is_some();
    let mut body = json!({"oidc": oidc, "signed_in": false, "user": null, "csrf_token": null, "expires_at": null});
    match from_cookie(&state, &headers).await {
        Ok(Some(s)) => {
            let (role, team) = role_name(&s.role);
            body["signed_in"] = json!(true);
            body["user"] = json!({
                "subject": s.session.subject,
                "name": s.session.name,
                "email": s.session.email,
                "role": role,
                "team": team,
                "session": s.session.handle,
            });
            body["csrf_token"] = json!(session::csrf_token(&state.cookie_key, &s.id));
            body["expires_at"] = json!(ms3339(s.session.expires_ms));
        }
        Ok(None) => {}
        Err(e) => body["session_error"] = json!(e.to_string()),
    }
    let mut r = Json(body).into_response();
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// A redirect that sets or clears cookies, never cached.
fn redirect(to: &str, cookies: &[String]) -> Response {
    let mut r = StatusCode::FOUND.into_response();
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(to) {
        h.insert(header::LOCATION, v);
    }
    for c in cookies {
        if let Ok(v) = HeaderValue::from_str(c) {
            h.append(header::SET_COOKIE, v);
        }
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// Back to the dashboard's sign-in screen with a message.
fn failed(message: &str, secure: bool) -> Response {
    let q: String = url::form_urlencoded::byte_serialize(message.as_bytes()).collect();
    redirect(&format!("/ui/#/signin?error={q}"), &[session::clear_login_cookie(secure)])
}

fn not_configured() -> Response {
    ApiError::NotFound { message: "sign-in through an identity provider is not configured ([oidc])".into() }
        .into_response()
}

#[derive(Debug, Deserialize)]
struct LoginQuery {
    return_to: Option<String>,
}

/// `GET /ui/auth/login?return_to=/ui/#/keys`.
async fn login(State(state): State<Arc<AppState>>, Query(q): Query<LoginQuery>) -> Response {
    let config = state.config();
    let Some(cfg) = &config.oidc else { return not_configured() };
    let now = now_ms();
    let login = LoginState {
        state: session::random_token(),
        nonce: session::random_token(),
        verifier: session::random_token(),
        return_to: session::safe_return_to(q.return_to.as_deref()),
        expires_ms: now + session::LOGIN_TTL_MS,
    };
    let challenge = session::pkce_challenge(&login.verifier);
    match state.oidc.authorize_url(cfg, &login.state, &login.nonce, &challenge).await {
        Ok(url) => redirect(
            &url,
            &[session::login_set_cookie(&session::seal_login(&state.cookie_key, &login), cfg.secure_cookies())],
        ),
        Err(e) => {
            tracing::warn!(error = %e, "sign-in cannot start");
            failed(&format!("sign-in cannot start: {e}"), cfg.secure_cookies())
        }
    }
}

#[derive(Debug, Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// `GET /ui/auth/callback?code=…&state=…`: the provider sends the browser back.
async fn callback(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<CallbackQuery>,
    req_source: Option<Extension<crate::listener::Connection>>,
) -> Response {
    let config = state.config();
    let Some(cfg) = &config.oidc else { return not_configured() };
    let secure = cfg.secure_cookies();
    let now = now_ms();
    if let Some(e) = &q.error {
        let why = q.error_description.as_deref().unwrap_or(e);
        return failed(&format!("the identity provider refused the sign-in: {}", clip(why)), secure);
    }
    let login = match session::cookie(&headers, session::LOGIN_COOKIE)
        .map(|c| session::open_login(&state.cookie_key, c, now))
    {
        Some(Ok(l)) => l,
        Some(Err(r)) => return failed(&format!("sign-in expired or altered ({r:?}); try again"), secure),
        None => return failed("no sign-in in progress in this browser; start again", secure),
    };
    if q.state.as_deref() != Some(login.state.as_str()) {
        return failed("the sign-in's state does not match; start again", secure);
    }
    let Some(code) = &q.code else { return failed("the identity provider sent no code", secure) };
    let identity = match state.oidc.sign_in(cfg, code, &login.verifier, &login.nonce, now).await {
        Ok(i) => i,
        Err(e) => {
            tracing::warn!(error = %e, "sign-in failed");
            return failed(&format!("sign-in failed: {e}"), secure);
        }
    };
    let Some(role) = cfg.role_for(&identity.groups) else {
        tracing::warn!(subject = %identity.subject, groups = ?identity.groups, "sign-in refused: no role for these groups");
        let why = if identity.groups.is_empty() {
            format!(
                "the identity provider sent no groups for {} (claim {:?}, in the ID token or at userinfo): \
                 no tollgate role can be given",
                identity.name, cfg.groups_claim
            )
        } else {
            format!("{} is not in any group that [[oidc.roles]] maps to a tollgate role", identity.name)
        };
        return failed(&why, secure);
    };
    let id = session::random_token();
    let hash = id_hash(&state, &id);
    let expires_ms = now + i64::try_from(cfg.session_ttl.as_millis()).unwrap_or(i64::MAX);
    let source = req_source.map(|Extension(c)| c.0.peer().ip().to_string());
    let s = Session {
        handle: session::handle_of(&hash),
        id_hash: hash,
        subject: identity.subject,
        name: identity.name,
        email: identity.email,
        groups: identity.groups,
        created_ms: now,
        expires_ms,
        revoked_ms: None,
        source: source.clone(),
    };
    if let Err(e) = state.stores.sessions.insert_session(s.clone()).await {
        tracing::error!(error = %e, "cannot store the session");
        return failed("the session cannot be stored; try again shortly", secure);
    }
    let signed = SignedIn { session: s, id: id.clone(), role };
    let entry = actor_of(&signed, source)
        .entry(now, SESSION_START, &signed.session.handle)
        .with_team(super::team_of(&signed.role))
        .with_after(Some(session_json(&signed.session)));
    state.stores.record_audit(entry).await;
    let cookie = session::seal_session(&state.cookie_key, &id, expires_ms);
    let max_age = (expires_ms - now) / 1000;
    redirect(
        &login.return_to,
        &[session::session_set_cookie(&cookie, max_age, secure), session::clear_login_cookie(secure)],
    )
}

/// `POST /ui/auth/logout`: ends the caller's session (with its CSRF token).
async fn logout(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let secure = state.config().oidc.as_ref().is_some_and(OidcConfig::secure_cookies);
    let signed = match from_cookie(&state, &headers).await {
        Ok(Some(s)) => s,
        // Nothing valid to end: just drop the cookie.
        Ok(None) | Err(_) => return cleared(secure),
    };
    if let Err(e) = check_csrf(&state, &headers, &signed.id) {
        return e.into_response();
    }
    if let Err(e) = state.stores.sessions.revoke_session(signed.session.handle.clone(), now_ms()).await {
        return internal(e).into_response();
    }
    cleared(secure)
}

fn cleared(secure: bool) -> Response {
    let mut r = StatusCode::NO_CONTENT.into_response();
    if let Ok(v) = HeaderValue::from_str(&session::clear_session_cookie(secure)) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// A session as the API shows it (never its id or hash).
fn session_json(s: &Session) -> Value {
    json!({
        "session": s.handle,
        "subject": s.subject,
        "name": s.name,
        "email": s.email,
        "groups": s.groups,
        "created_at": ms3339(s.created_ms),
        "expires_at": ms3339(s.expires_ms),
        "revoked_at": s.revoked_ms.and_then(ms3339),
        "source": s.source,
    })
}

fn admins_only(caller: &Caller) -> Result<(), ApiError> {
    match caller.role()? {
        Role::Admin => Ok(()),
        _ => Err(ApiError::Forbidden { message: "sessions are managed by admins".into() }),
    }
}

/// `GET /admin/v1/sessions`: the sessions in force.
async fn list(State(state): State<Arc<AppState>>, Extension(caller): Extension<Caller>) -> Response {
    if let Err(e) = admins_only(&caller) {
        return e.into_response();
    }
    match state.stores.sessions.active_sessions(now_ms()).await {
        Ok(list) => Json(json!({"sessions": list.iter().map(session_json).collect::<Vec<_>>()})).into_response(),
        Err(e) => internal(e).into_response(),
    }
}

/// `POST /admin/v1/sessions/{handle}/revoke`: the session stops working at
/// once, on every replica.
async fn revoke(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Extension(actor): Extension<Actor>,
    Path(handle): Path<String>,
) -> Response {
    if let Err(e) = admins_only(&caller) {
        return e.into_response();
    }
    let now = now_ms();
    match state.stores.sessions.revoke_session(handle.clone(), now).await {
        Ok(true) => {
            state.stores.record_audit(actor.entry(now, SESSION_REVOKE, &handle)).await;
            Json(json!({"session": handle, "revoked": true})).into_response()
        }
        Ok(false) => ApiError::NotFound { message: format!("no session {handle:?} in force") }.into_response(),
        Err(e) => internal(e).into_response(),
    }
}
