//! Analytics and admin HTTP API (`/api/v1/…`, `/admin/v1/…`) and `GET /v1/models`.
//!
//! Admin and analytics routes take `Authorization: Bearer <admin token>`;
//! without a configured token they are open, which the server only allows
//! on a loopback address.

pub mod audit;
pub mod finops;
pub mod observe;
pub mod prices;
pub mod session;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Extension;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

pub use audit::Actor;

use crate::audit::{budget_state, scope_team, BUDGET_DELETE, BUDGET_SET, KEY_CREATE, KEY_REVOKE, KEY_ROTATE};
use crate::config::Role;
use crate::error::ApiError;
use crate::keys::{self, key_team, KeySpec};
use crate::ledger::LedgerRow;
use crate::state::AppState;
use crate::store::RequestQuery;
use crate::time::now_ms;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/requests", get(requests))
        .route("/api/v1/spend", get(spend))
        .route("/api/v1/budgets", get(budgets))
        .route("/api/v1/prompt-cache", get(prompt_cache))
        .route("/api/v1/audit", get(audit::list))
        .route("/admin/v1/budgets", get(budgets).post(set_budget))
        .route("/admin/v1/budgets/{id}", axum::routing::delete(delete_budget))
        .route("/admin/v1/keys", get(list_keys).post(create_key))
        .route("/admin/v1/keys/{id}/revoke", post(revoke_key))
        .route("/admin/v1/keys/{id}/rotate", post(rotate_key))
        .route("/api/v1/alerts", get(alerts))
        .merge(session::admin_routes())
        .merge(finops::routes())
}

/// The admin and analytics routes' gate, run before any handler (and so
/// before any body is read): the caller must hold an admin token with the
/// access the method needs, or a dashboard session (`[oidc]`; a
/// state-changing call also needs the session's CSRF token), or for
/// `POST /api/v1/outcomes`, a virtual key. With no admin token and no
/// sign-in configured (loopback only), it refuses what a browser on another
/// site could send: a foreign `Origin` or `Sec-Fetch-Site`, or a `Host` that
/// is not a loopback name (DNS rebinding).
pub(crate) async fn admin_gate(
    axum::extract::State(state): axum::extract::State<Arc<AppState>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let access =
        if matches!(*req.method(), http::Method::GET | http::Method::HEAD) { Access::Read } else { Access::Write };
    let config = state.config();
    let open = config.server.admin_token.is_none() && config.admin_tokens.is_empty() && config.oidc.is_none();
    let mut req = req;
    if open {
        if let Err(e) = same_origin(req.headers()) {
            return e.into_response();
        }
        let actor = Actor::admin("loopback".into(), &Role::Admin, audit::peer_of(&req));
        req.extensions_mut().insert(actor);
        req.extensions_mut().insert(Caller::Admin(Role::Admin));
        return next.run(req).await;
    }
    // A browser signed in through the identity provider (a bearer token, when
    // one is sent too, is what counts).
    if crate::auth::presented_key(req.headers()).is_none() {
        match session::from_cookie(&state, req.headers()).await {
            Ok(Some(signed)) => {
                if access == Access::Write {
                    if let Err(e) = session::check_csrf(&state, req.headers(), &signed.id) {
                        return e.into_response();
                    }
                    if signed.role == Role::Viewer {
                        return ApiError::Forbidden { message: "the viewer role cannot change anything".into() }
                            .into_response();
                    }
                }
                let actor = session::actor_of(&signed, audit::peer_of(&req));
                req.extensions_mut().insert(actor);
                req.extensions_mut().insert(Caller::Admin(signed.role));
                return next.run(req).await;
            }
            Ok(None) => {}
            Err(e) => return e.into_response(),
        }
    }
    match authorize(&state, req.headers(), access) {
        Ok((role, name)) => {
            let actor = Actor::admin(name, &role, audit::peer_of(&req));
            req.extensions_mut().insert(actor);
            req.extensions_mut().insert(Caller::Admin(role));
            next.run(req).await
        }
        Err(e) => {
            // Applications report outcomes with their own virtual key.
            let outcome = req.method() == http::Method::POST && req.uri().path() == "/api/v1/outcomes";
            if outcome {
                if let Ok(crate::auth::Principal::Key(k)) = state.auth.authenticate(req.headers(), now_ms()).await {
                    let actor =
                        Actor { name: format!("key:{}", k.id), role: "key".into(), source: audit::peer_of(&req) };
                    req.extensions_mut().insert(actor);
                    req.extensions_mut().insert(Caller::Key(k.id.to_string()));
                    return next.run(req).await;
                }
            }
            e.into_response()
        }
    }
}

/// Who the admin gate let through: every admin and analytics handler reads
/// it from the request's extensions instead of checking credentials itself.
#[derive(Debug, Clone)]
pub enum Caller {
    /// An admin token (or the open admin API on loopback) with its role.
    Admin(Role),
    /// A virtual key, admitted only where applications may call (outcomes).
    Key(String),
}

impl Caller {
    /// The admin role, for routes only admin tokens may use.
    pub fn role(&self) -> Result<Role, ApiError> {
        match self {
            Caller::Admin(r) => Ok(r.clone()),
            Caller::Key(_) => Err(ApiError::InvalidApiKey {
                message: "admin routes need `Authorization: Bearer <admin token>`".into(),
            }),
        }
    }
}

fn loopback_host(host: &str) -> bool {
    // `host[:port]`, `[v6]:port`
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map(|(h, p)| if p.bytes().all(|b| b.is_ascii_digit()) { h } else { host }).unwrap_or(host)
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Without an admin token, only same-origin calls to a loopback name pass.
fn same_origin(headers: &HeaderMap) -> Result<(), ApiError> {
    let refuse = |why: &str| {
        ApiError::Forbidden {
        message: format!("{why}: without an admin token the admin API only answers same-origin calls on loopback (set TOLLGATE_ADMIN_TOKEN)"),
    }
    };
    let host = headers.get(http::header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !loopback_host(host) {
        return Err(refuse("Host is not a loopback name"));
    }
    from_this_site(headers).map_err(refuse)
}

/// What a browser says of where a call comes from: refused when
/// `Sec-Fetch-Site` names another site, or `Origin` is not the `Host` called.
pub(crate) fn from_this_site(headers: &HeaderMap) -> Result<(), &'static str> {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        if site != "same-origin" && site != "none" {
            return Err("cross-site request");
        }
    }
    if let Some(origin) = headers.get(http::header::ORIGIN) {
        let host = headers.get(http::header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
        let authority = origin.to_str().unwrap_or("").split_once("://").map(|(_, a)| a).unwrap_or("");
        if !authority.eq_ignore_ascii_case(host) {
            return Err("cross-origin request");
        }
    }
    Ok(())
}

/// What an admin-API call does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// Who is calling the admin / analytics API, deny by default: the admin token
/// (`TOLLGATE_ADMIN_TOKEN`) or one of `[[admin_tokens]]` with its role. With no
/// token configured at all the API is open (the server only allows that on loopback).
/// The role, and the caller's name for the audit log: `admin-token:main` (the
/// server's own token), `admin-token:<name>` (`[[admin_tokens]]`) or `loopback`.
pub(crate) fn authorize(state: &AppState, headers: &HeaderMap, access: Access) -> Result<(Role, String), ApiError> {
    let config = state.config();
    let main = &config.server.admin_token;
    let tokens = &config.admin_tokens;
    if main.is_none() && tokens.is_empty() && config.oidc.is_none() {
        return Ok((Role::Admin, "loopback".into()));
    }
    let denied =
        || ApiError::InvalidApiKey { message: "admin routes need `Authorization: Bearer <admin token>`".into() };
    let presented = crate::auth::presented_key(headers).ok_or_else(denied)?;
    // Compare keyed hashes so the comparison takes the same time whatever matches.
    let h = state.auth.hasher();
    let hp = h.hash(presented);
    let (role, name) = if main.as_ref().is_some_and(|t| h.hash(t.expose()) == hp) {
        (Role::Admin, "admin-token:main".to_owned())
    } else if let Some(t) = tokens.iter().find(|t| h.hash(t.token.expose()) == hp) {
        (t.role.clone(), format!("admin-token:{}", t.name))
    } else {
        return Err(denied());
    };
    if access == Access::Write && role == Role::Viewer {
        return Err(ApiError::Forbidden { message: "the viewer role cannot change anything".into() });
    }
    Ok((role, name))
}

/// A storage failure, as the client sees it: a 500 (the detail goes to the log).
fn internal(e: crate::store::StoreError) -> ApiError {
    tracing::error!(error = %e, "storage call failed");
    ApiError::Internal { message: format!("storage error: {e}") }
}

pub(crate) fn team_of(role: &Role) -> Option<&str> {
    match role {
        Role::TeamAdmin(t) => Some(t),
        _ => None,
    }
}

fn not_your_team(team: &str) -> ApiError {
    ApiError::Forbidden { message: format!("a team admin of {team:?} can only act on its own team") }
}

/// `GET /v1/models`: the configured model names, in the caller's API shape.
pub async fn models(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let anthropic = headers.contains_key("anthropic-version");
    let shape = if anthropic { crate::error::ErrorShape::Anthropic } else { crate::error::ErrorShape::OpenAi };
    if let Err(e) = state.auth.authenticate(&headers, now_ms()).await {
        state.observer.auth_refused();
        return e.into_response_for(shape);
    }
    let config = state.config();
    let mut names: Vec<(&str, &str)> = config
        .routes
        .values()
        .map(|r| {
            let owner = r.targets.first().map(|t| config.providers[t.provider].name.as_str()).unwrap_or("tollgate");
            (r.name.as_str(), owner)
        })
        .collect();
    names.sort();
    if anthropic {
        let data: Vec<Value> = names
            .iter()
            .map(|(n, _)| json!({"type": "model", "id": n, "display_name": n, "created_at": "1970-01-01T00:00:00Z"}))
            .collect();
        let first = names.first().map(|n| n.0);
        let last = names.last().map(|n| n.0);
        Json(json!({"data": data, "has_more": false, "first_id": first, "last_id": last})).into_response()
    } else {
        let data: Vec<Value> =
            names.iter().map(|(n, o)| json!({"id": n, "object": "model", "created": 0, "owned_by": o})).collect();
        Json(json!({"object": "list", "data": data})).into_response()
    }
}

/// One ledger row as the request log shows it (docs/http-api.md).
pub fn row_json(r: &LedgerRow) -> Value {
    let time = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(r.time_ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    json!({
        "request_id": r.request_id,
        "time": time,
        "key_id": r.key_id,
        "endpoint": r.endpoint.as_str(),
        "requested_model": r.requested_model,
        "model": r.model,
        "provider": r.provider,
        "status": r.status,
        "error_code": r.error_code,
        "input_tokens": r.usage.input_tokens(),
        "cache_read_tokens": r.usage.cache_read,
        "cache_write_tokens": r.usage.cache_write_tokens(),
        "output_tokens": r.usage.output_tokens(),
        "reasoning_tokens": r.usage.reasoning,
        "usage": r.usage,
        "cost_usd": r.cost.map(|c| c.to_string()),
        "cache_savings_usd": r.cache_savings.to_string(),
        "response_cache_savings_usd": r.response_cache_savings.to_string(),
        "tool_cost_usd": r.tool_cost.to_string(),
        "provider_cost_usd": r.provider_cost.map(|c| c.to_string()),
        "usage_source": r.usage_source.as_str(),
        "priced": r.cost.is_some(),
        "streamed": r.streamed,
        "client_disconnected": r.client_disconnected,
        "cache": r.cache.as_str(),
        "latency_ms": r.latency_ms,
        "ttft_ms": r.ttft_ms,
        "attempts": r.attempts,
        "attempt_log": r.attempt_log,
        "tags": r.attribution.tags,
        "trace_id": r.attribution.trace_id,
        "parent_id": r.attribution.parent_id,
        "session": r.attribution.session,
        "agent": r.attribution.agent,
        "prompt": r.attribution.prompt,
    })
}

/// `filter=k:v` query values (repeatable) → pairs.
pub fn parse_filters(raw: &[(String, String)]) -> Result<Vec<(String, String)>, ApiError> {
    raw.iter()
        .filter(|(k, _)| k == "filter")
        .map(|(_, v)| {
            v.split_once(':')
                .or_else(|| v.split_once('='))
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .ok_or_else(|| ApiError::invalid_param(format!("filter {v:?} must be dimension:value"), "filter"))
        })
        .collect()
}

async fn requests(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Query(raw): Query<Vec<(String, String)>>,
) -> Response {
    let run = async {
        let role = caller.role()?;
        let mut q = RequestQuery { filters: parse_filters(&raw)?, limit: 100, cursor: None };
        if let Some(t) = team_of(&role) {
            q.filters.push(("team".into(), t.to_string()));
        }
        for (k, v) in &raw {
            match k.as_str() {
                "limit" => {
                    q.limit = v.parse().map_err(|_| ApiError::invalid_param("limit must be a number", "limit"))?
                }
                "cursor" => q.cursor = Some(v.clone()),
                "filter" => {}
                other => return Err(ApiError::invalid_param(format!("unknown query parameter {other:?}"), other)),
            }
        }
        let page = state.stores.requests.requests(q).await.map_err(internal)?;
        let rows: Vec<Value> = page.rows.iter().map(row_json).collect();
        Ok::<_, ApiError>(Json(json!({"rows": rows, "next_cursor": page.next_cursor})))
    };
    match run.await {
        Ok(j) => j.into_response(),
        Err(e) => e.into_response(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateKeyBody {
    name: String,
    team: Option<String>,
    user: Option<String>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    #[serde(default)]
    enforce_tags: BTreeMap<String, String>,
    #[serde(default)]
    models: Vec<String>,
    expires_at: Option<chrono::DateTime<chrono::Utc>>,
    budget: Option<String>,
    rpm: Option<i64>,
    tpm: Option<i64>,
}

async fn create_key(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Extension(actor): Extension<Actor>,
    body: axum::body::Bytes,
) -> Response {
    let run = async {
        let role = caller.role()?;
        let b: CreateKeyBody =
            serde_json::from_slice(&body).map_err(|e| ApiError::invalid(format!("invalid key request: {e}")))?;
        let mut spec = KeySpec {
            name: b.name,
            team: b.team,
            user: b.user,
            tags: b.tags.into_iter().collect(),
            enforce_tags: b.enforce_tags.into_iter().collect(),
            models: b.models,
            expires_ms: b.expires_at.map(|t| t.timestamp_millis()),
            budget: b.budget,
            rpm: b.rpm,
            tpm: b.tpm,
        };
        if let Some(t) = team_of(&role) {
            // A team admin's keys always belong to its team: asking for
            // another team (as `team` or a team tag) is refused.
            let asked = spec.team.iter().chain(
                spec.enforce_tags
                    .iter()
                    .chain(&spec.tags)
                    .filter(|(k, _)| k.eq_ignore_ascii_case("team"))
                    .map(|(_, v)| v),
            );
            if asked.into_iter().any(|v| v != t) {
                return Err(not_your_team(t));
            }
            spec.team = Some(t.to_string());
        }
        let now = now_ms();
        let created = keys::create_governed(&state.stores, &state.governor, state.auth.hasher(), spec, now).await?;
        let after = keys::audit_state(&created.record, created.budget.as_ref(), &created.limits);
        let entry = actor.entry(now, KEY_CREATE, &created.record.id).with_team(keys::key_team(&created.record));
        state.stores.record_audit(entry.with_after(Some(after))).await;
        Ok::<_, ApiError>((StatusCode::CREATED, Json(keys::created_json(&created))))
    };
    match run.await {
        Ok(r) => r.into_response(),
        Err(e) => e.into_response(),
    }
}

async fn list_keys(State(state): State<Arc<AppState>>, Extension(caller): Extension<Caller>) -> Response {
    let role = match caller.role() {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    match state.stores.keys.list_keys().await {
        Ok(list) => {
            let list: Vec<_> = list
                .iter()
                .filter(|k| team_of(&role).is_none_or(|t| key_team(k) == Some(t)))
                .map(keys::record_json)
                .collect();
            Json(json!({ "keys": list })).into_response()
        }
        Err(e) => internal(e).into_response(),
    }
}

async fn revoke_key(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
) -> Response {
    let role = match caller.role() {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    // The key as it was (the audit log's "before"; a team admin's ownership check).
    let before = state.stores.keys.list_keys().await.map(|list| list.into_iter().find(|k| k.id == id));
    if let Some(t) = team_of(&role) {
        let ok = matches!(&before, Ok(Some(k)) if key_team(k) == Some(t));
        if !ok {
            return not_your_team(t).into_response();
        }
    }
    let now = now_ms();
    match state.stores.keys.revoke_key(id.clone(), now).await {
        Ok(true) => {
            state.auth.invalidate();
            // Revoking a revoked key changes nothing: no entry.
            let before = before.ok().flatten();
            if before.as_ref().is_none_or(|k| k.revoked_ms.is_none()) {
                let entry = actor.entry(now, KEY_REVOKE, &id);
                let entry = match before {
                    Some(k) => {
                        let after = crate::store::KeyRecord { revoked_ms: Some(now), ..k.clone() };
                        entry
                            .with_team(key_team(&k))
                            .with_before(Some(keys::audit_state(&k, None, &[])))
                            .with_after(Some(keys::audit_state(&after, None, &[])))
                    }
                    None => entry.with_after(Some(json!({"id": id, "revoked_at": ms3339(now)}))),
                };
                state.stores.record_audit(entry).await;
            }
            Json(json!({"id": id, "revoked": true})).into_response()
        }
        Ok(false) => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": {"message": format!("no key {id:?}"), "type": "not_found_error", "code": "not_found", "param": null}})),
        )
            .into_response(),
        Err(e) => internal(e).into_response(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RotateBody {
    /// How long the current secret keeps working (0: not at all).
    #[serde(default)]
    grace_seconds: i64,
}

/// `POST /admin/v1/keys/{id}/rotate`: a new secret, shown once; the old one
/// keeps working for `grace_seconds`. Budgets, limits and history stay with
/// the key (same id).
async fn rotate_key(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let run = async {
        let role = caller.role()?;
        let b: RotateBody = if body.iter().all(u8::is_ascii_whitespace) {
            RotateBody { grace_seconds: 0 }
        } else {
            serde_json::from_slice(&body).map_err(|e| ApiError::invalid(format!("invalid rotation: {e}")))?
        };
        let current = state.stores.keys.list_keys().await.map_err(internal)?.into_iter().find(|k| k.id == id);
        if let Some(t) = team_of(&role) {
            if current.as_ref().is_none_or(|k| key_team(k) != Some(t)) {
                return Err(not_your_team(t));
            }
        }
        let current = current.ok_or_else(|| ApiError::NotFound { message: format!("no key {id:?}") })?;
        let now = now_ms();
        let grace_ms = b.grace_seconds.checked_mul(1000).unwrap_or(i64::MAX);
        let rotated = keys::rotate(state.stores.keys.as_ref(), state.auth.hasher(), current, grace_ms, now).await?;
        // This process forgets the old secret's cached state at once; other
        // replicas within the key cache's few seconds.
        state.auth.invalidate();
        let entry = actor
            .entry(now, KEY_ROTATE, &id)
            .with_team(key_team(&rotated.record))
            .with_before(Some(keys::audit_state(&rotated.before, None, &[])))
            .with_after(Some(keys::audit_state(&rotated.record, None, &[])));
        state.stores.record_audit(entry).await;
        let mut v = keys::record_json(&rotated.record);
        v["key"] = Value::String(rotated.secret);
        Ok::<_, ApiError>(Json(v))
    };
    match run.await {
        Ok(r) => r.into_response(),
        Err(e) => e.into_response(),
    }
}

/// `GET /api/v1/alerts?limit=`: the budget alerts fired, newest first (a
/// team admin sees its own team's budgets' alerts only).
async fn alerts(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Query(raw): Query<Vec<(String, String)>>,
) -> Response {
    let run = async {
        let role = caller.role()?;
        let mut limit = 100usize;
        for (k, v) in &raw {
            match k.as_str() {
                "limit" => {
                    limit = v
                        .parse()
                        .ok()
                        .filter(|n| (1..=1000).contains(n))
                        .ok_or_else(|| ApiError::invalid_param("limit must be 1 to 1000", "limit"))?
                }
                other => return Err(ApiError::invalid_param(format!("unknown query parameter {other:?}"), other)),
            }
        }
        let now = now_ms();
        let budgets = state.governor.status(now).await;
        // A team admin sees its own budgets' alerts: read further back, then keep `limit`.
        let read = if team_of(&role).is_some() { 1000 } else { limit };
        let fired = state.stores.governance.recent_alerts(read).await.map_err(internal)?;
        let list: Vec<Value> = fired
            .iter()
            .filter_map(|a| {
                let spec = budgets.iter().find(|b| b.spec.id == a.budget_id).map(|b| &b.spec);
                if let Some(t) = team_of(&role) {
                    if spec.and_then(budget_team) != Some(t) {
                        return None;
                    }
                }
                Some(json!({
                    "budget_id": a.budget_id,
                    "scope": spec.map(|s| &s.scope),
                    "threshold": format!("{}.{:03}", a.threshold / 1000, a.threshold % 1000),
                    "period_start": ms3339(a.period_start_ms),
                    "fired_at": ms3339(a.fired_ms),
                }))
            })
            .take(limit)
            .collect();
        Ok::<_, ApiError>(Json(json!({ "alerts": list })))
    };
    match run.await {
        Ok(r) => r.into_response(),
        Err(e) => e.into_response(),
    }
}

async fn spend(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Query(raw): Query<Vec<(String, String)>>,
) -> Response {
    let run = async {
        let role = caller.role()?;
        let mut q = crate::analytics::SpendQuery { filters: parse_filters(&raw)?, ..Default::default() };
        if let Some(t) = team_of(&role) {
            q.filters.push(("team".into(), t.to_string()));
        }
        for (_, v) in &q.filters {
            if v.is_empty() {
                return Err(ApiError::invalid_param("a filter needs a value", "filter"));
            }
        }
        for (d, _) in &q.filters {
            crate::analytics::check_dimension(d)?;
        }
        for (k, v) in &raw {
            match k.as_str() {
                "group_by" => {
                    for d in v.split(',').map(str::trim).filter(|d| !d.is_empty()) {
                        crate::analytics::check_dimension(d)?;
                        q.group_by.push(d.to_string());
                    }
                }
                "from" => q.from_ms = Some(crate::analytics::parse_since(v, now_ms())?),
                "to" => q.to_ms = Some(crate::analytics::parse_time(v, "to")?),
                "bucket" => q.bucket = Some(crate::analytics::Bucket::parse(v)?),
                "filter" => {}
                other => return Err(ApiError::invalid_param(format!("unknown query parameter {other:?}"), other)),
            }
        }
        if q.group_by.len() > crate::analytics::MAX_GROUP_BY {
            return Err(ApiError::invalid_param(
                format!("group_by takes at most {} dimensions", crate::analytics::MAX_GROUP_BY),
                "group_by",
            ));
        }
        let report = state.stores.reports.spend(q.clone()).await.map_err(internal)?;
        // With [[rate_cards]], each row also says what it bills.
        let cards = &state.config().rate_cards;
        let billed = crate::analytics::billed_per_row(state.stores.reports.as_ref(), &q, &report, cards)
            .await
            .map_err(internal)?;
        Ok::<_, ApiError>(Json(crate::analytics::report_json_billed(&report, billed.as_deref())))
    };
    match run.await {
        Ok(j) => j.into_response(),
        Err(e) => e.into_response(),
    }
}

pub(crate) fn ms3339(ms: i64) -> Option<String> {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

/// One budget's state for the API (`GET /api/v1/budgets` in docs/http-api.md).
pub fn budget_json(b: &crate::govern::BudgetStatus, now_ms: i64) -> Value {
    let remaining = b.spec.limit.saturating_sub(b.spent).saturating_sub(b.reserved);
    let forecast =
        crate::budget::forecast_exhaustion(b.spent, b.spec.limit, b.period_start_ms, now_ms, b.period_end_ms);
    json!({
        "id": b.spec.id,
        "scope": b.spec.scope,
        "period": b.spec.period.to_string(),
        "action": b.spec.action.to_string(),
        "limit_usd": b.spec.limit.to_string(),
        "spent_usd": b.spent.to_string(),
        "reserved_usd": b.reserved.to_string(),
        "remaining_usd": remaining.max(tollgate_units::Money::ZERO).to_string(),
        "alert_at": b.spec.alert_at.iter().map(|t| format!("{}.{:03}", t / 1000, t % 1000)).collect::<Vec<_>>(),
        "block_unpriced": b.spec.block_unpriced,
        "period_start": ms3339(b.period_start_ms),
        "period_end": ms3339(b.period_end_ms),
        "forecast_exhaustion": forecast.and_then(ms3339),
    })
}

/// Budgets written in the config file change only with the file.
fn from_config(state: &AppState, id: &str) -> bool {
    state.config().governance.budgets.iter().any(|b| b.id == id)
}

fn read_only(id: &str) -> ApiError {
    ApiError::Forbidden { message: format!("budget {id:?} is defined in the config file: change it there") }
}

pub(crate) fn budget_team(b: &crate::budget::BudgetSpec) -> Option<&str> {
    b.scope.get("team")
}

async fn budgets(State(state): State<Arc<AppState>>, Extension(caller): Extension<Caller>) -> Response {
    let role = match caller.role() {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let now = now_ms();
    let mut list = Vec::new();
    for b in state.governor.status(now).await.iter() {
        if team_of(&role).is_some_and(|t| budget_team(&b.spec) != Some(t)) {
            continue;
        }
        let mut v = budget_json(b, now);
        if b.spec.action == crate::budget::Action::Shadow {
            match shadow_refusals(&state, b, now).await {
                Ok(shadow) => v["shadow"] = shadow,
                Err(e) => return e.into_response(),
            }
        }
        list.push(v);
    }
    Json(json!({ "budgets": list })).into_response()
}

/// What a shadow budget would have refused this period: the rows whose
/// `shadow_refused` tag names it (one spend query over the period).
async fn shadow_refusals(state: &AppState, b: &crate::govern::BudgetStatus, now: i64) -> Result<Value, ApiError> {
    let report = state
        .stores
        .reports
        .spend(crate::analytics::SpendQuery {
            group_by: vec![crate::attribution::SHADOW_TAG.into()],
            from_ms: Some(b.period_start_ms),
            to_ms: Some(now + 1),
            bucket: None,
            filters: b.spec.scope.ledger_filters(),
        })
        .await
        .map_err(internal)?;
    let (mut requests, mut cost) = (0u64, tollgate_units::Money::ZERO);
    for r in &report.rows {
        let names = r.dims.first().cloned().flatten().unwrap_or_default();
        if names.split(',').any(|id| id == b.spec.id) {
            requests += r.requests;
            cost += r.cost;
        }
    }
    Ok(json!({ "would_refuse_requests": requests, "would_refuse_usd": cost.to_string() }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetBody {
    pub id: Option<String>,
    /// `"team=growth,env=prod"` or `{"team":"growth"}`.
    pub scope: Value,
    pub limit_usd: String,
    pub period: String,
    pub action: Option<String>,
    /// Fractions as strings or numbers: `["0.5","0.8","1.0"]`.
    pub alert_at: Option<Vec<Value>>,
    #[serde(default)]
    pub block_unpriced: bool,
}

/// Validates a budget request (shared by the admin API and the CLI).
pub fn budget_spec(b: BudgetBody) -> Result<crate::budget::BudgetSpec, ApiError> {
    use crate::budget::{parse_alert_at, Action, BudgetSpec, Period, Scope, DEFAULT_ALERTS};
    let scope_text = match &b.scope {
        Value::String(s) => s.clone(),
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().map(String::from).unwrap_or_else(|| v.to_string())))
            .collect::<Vec<_>>()
            .join(","),
        _ => return Err(ApiError::invalid_param("scope must be \"k=v,k=v\" or an object", "scope")),
    };
    let scope = Scope::parse(&scope_text).map_err(|e| ApiError::invalid_param(e, "scope"))?;
    let limit: tollgate_units::Money =
        b.limit_usd.parse().map_err(|e| ApiError::invalid_param(format!("{e}"), "limit_usd"))?;
    if limit.nanos() <= 0 {
        return Err(ApiError::invalid_param("limit_usd must be positive", "limit_usd"));
    }
    let period = Period::parse(&b.period).map_err(|e| ApiError::invalid_param(e, "period"))?;
    let action =
        Action::parse(b.action.as_deref().unwrap_or("block")).map_err(|e| ApiError::invalid_param(e, "action"))?;
    let alert_at = match b.alert_at {
        None => DEFAULT_ALERTS.to_vec(),
        Some(v) => {
            let parts: Vec<String> =
                v.iter().map(|x| x.as_str().map(String::from).unwrap_or_else(|| x.to_string())).collect();
            parse_alert_at(&parts.join(",")).map_err(|e| ApiError::invalid_param(e, "alert_at"))?
        }
    };
    let id = b.id.unwrap_or_else(|| format!("{scope}/{period}"));
    if id.is_empty() || id.len() > 200 || id.chars().any(char::is_control) {
        return Err(ApiError::invalid_param("id must be 1 to 200 printable characters", "id"));
    }
    Ok(BudgetSpec { id, scope, limit, period, action, alert_at, block_unpriced: b.block_unpriced })
}

async fn set_budget(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Extension(actor): Extension<Actor>,
    body: axum::body::Bytes,
) -> Response {
    let run = async {
        let role = caller.role()?;
        let b: BudgetBody =
            serde_json::from_slice(&body).map_err(|e| ApiError::invalid(format!("invalid budget: {e}")))?;
        let spec = budget_spec(b)?;
        if from_config(&state, &spec.id) {
            return Err(read_only(&spec.id));
        }
        if let Some(t) = team_of(&role) {
            if budget_team(&spec) != Some(t) {
                return Err(not_your_team(t));
            }
            // Reusing another team's budget id would overwrite it.
            let existing = state.governor.status(now_ms()).await.into_iter().find(|b| b.spec.id == spec.id);
            if existing.is_some_and(|b| budget_team(&b.spec) != Some(t)) {
                return Err(not_your_team(t));
            }
        }
        let now = now_ms();
        let before = stored_budget(&state, &spec.id).await;
        state.stores.governance.upsert_budget(spec.clone(), now).await.map_err(internal)?;
        // Setting a budget to what it was changes nothing: no entry.
        if before.as_ref() != Some(&spec) {
            let entry = actor
                .entry(now, BUDGET_SET, &spec.id)
                .with_team(scope_team(&spec.scope))
                .with_before(before.as_ref().map(budget_state))
                .with_after(Some(budget_state(&spec)));
            state.stores.record_audit(entry).await;
        }
        crate::govern::install_budget(&state.stores, &state.governor, spec.clone(), now).await.map_err(internal)?;
        let now = now_ms();
        let st = state.governor.status(now).await.into_iter().find(|b| b.spec.id == spec.id);
        Ok::<_, ApiError>((StatusCode::OK, Json(st.map(|b| budget_json(&b, now)).unwrap_or(Value::Null))))
    };
    match run.await {
        Ok(r) => r.into_response(),
        Err(e) => e.into_response(),
    }
}

async fn delete_budget(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
) -> Response {
    let role = match caller.role() {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    if from_config(&state, &id) {
        return read_only(&id).into_response();
    }
    if let Some(t) = team_of(&role) {
        let mine =
            state.governor.status(now_ms()).await.iter().any(|b| b.spec.id == id && budget_team(&b.spec) == Some(t));
        if !mine {
            return not_your_team(t).into_response();
        }
    }
    let before = stored_budget(&state, &id).await;
    let now = now_ms();
    match state.stores.governance.delete_budget(id.clone()).await {
        Ok(found) => {
            if found {
                let entry = actor
                    .entry(now, BUDGET_DELETE, &id)
                    .with_team(before.as_ref().and_then(|b| scope_team(&b.scope)))
                    .with_before(before.as_ref().map(budget_state));
                state.stores.record_audit(entry).await;
            }
            let in_memory = state.governor.remove_budget(&id);
            if found || in_memory {
                Json(json!({"id": id, "deleted": true})).into_response()
            } else {
                (StatusCode::NOT_FOUND, Json(json!({"error": {"message": format!("no budget {id:?}"), "type": "not_found_error", "code": "not_found", "param": null}}))).into_response()
            }
        }
        Err(e) => internal(e).into_response(),
    }
}

/// A budget as stored (set through the API or CLI), for the audit log's
/// "before"; `None` when there is none, or the store cannot say.
async fn stored_budget(state: &AppState, id: &str) -> Option<crate::budget::BudgetSpec> {
    state.stores.governance.list_budgets().await.ok()?.into_iter().find(|b| b.id == id)
}

/// `GET /api/v1/prompt-cache?by=model|key|prompt&from=7d`: provider prompt-cache insight.
async fn prompt_cache(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Query(raw): Query<Vec<(String, String)>>,
) -> Response {
    let run = async {
        let role = caller.role()?;
        if team_of(&role).is_some() {
            return Err(ApiError::Forbidden {
                message: "prompt-cache insight spans teams: admin or viewer only".into(),
            });
        }
        let mut by = "model".to_string();
        let mut from = now_ms() - 7 * 86_400_000;
        for (k, v) in &raw {
            match k.as_str() {
                "by" => {
                    crate::analytics::check_dimension(v)?;
                    by = v.clone();
                }
                "from" => from = crate::analytics::parse_since(v, now_ms())?,
                other => return Err(ApiError::invalid_param(format!("unknown query parameter {other:?}"), other)),
            }
        }
        let rows = state.stores.reports.prompt_cache(by.clone(), from).await.map_err(internal)?;
        Ok::<_, ApiError>(Json(crate::analytics::prompt_cache_json(&by, &rows)))
    };
    match run.await {
        Ok(j) => j.into_response(),
        Err(e) => e.into_response(),
    }
}
