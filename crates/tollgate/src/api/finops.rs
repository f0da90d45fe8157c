//! The FinOps routes: `GET /api/v1/reconciliation` (the saved reconciliation
//! lines) and `POST /admin/v1/reconciliation/run` (reconcile a provider now).
//!
//! A provider's invoice covers the whole organisation, so a team admin sees
//! none of it (403); admins and viewers read, only admins run.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};

use super::{internal, Caller};
use crate::config::Role;
use crate::error::ApiError;
use crate::reconcile::{self, ReconcileError};
use crate::state::AppState;
use crate::time::now_ms;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/reconciliation", get(list))
        .route("/admin/v1/reconciliation/run", post(run))
        .route("/api/v1/export/focus", get(focus))
        .route("/api/v1/whatif", get(whatif))
}

/// `GET /api/v1/whatif?since=30d&map=gpt-4o=gpt-4o-mini&batch=team=growth&cache=1h&by=team,model`:
/// the what-if replay (`tollgate whatif`; candidate routing rules only
/// through the command, which reads them from a file). Organisation-wide.
async fn whatif(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Query(raw): Query<Vec<(String, String)>>,
) -> Response {
    let run = async {
        organisation_wide(&caller.role()?)?;
        let now = now_ms();
        let (mut since, mut until) = (now - 30 * 86_400_000, now);
        let (mut maps, mut batches, mut cache) = (Vec::new(), Vec::new(), None);
        let mut by: Vec<String> = vec!["team".into(), "feature".into(), "model".into()];
        for (k, v) in &raw {
            match k.as_str() {
                "since" | "from" => since = crate::analytics::parse_day_or_time(v, now, "since")?,
                "until" | "to" => until = crate::analytics::parse_day_or_time(v, now, "until")?,
                "map" => maps.push(v.clone()),
                "batch" => batches.push(v.clone()),
                "cache" => cache = Some(v.clone()),
                "by" => {
                    by = v.split(',').map(|d| d.trim().to_owned()).filter(|d| !d.is_empty()).collect();
                    for d in &by {
                        crate::analytics::check_dimension(d)?;
                    }
                    if by.len() > crate::analytics::MAX_GROUP_BY {
                        return Err(ApiError::invalid_param("too many dimensions", "by"));
                    }
                }
                other => return Err(ApiError::invalid_param(format!("unknown query parameter {other:?}"), other)),
            }
        }
        if since >= until {
            return Err(ApiError::invalid_param("since must be before until", "since"));
        }
        let scenario = crate::whatif::scenario_from(&maps, &batches, cache.as_deref(), None)
            .map_err(|m| ApiError::invalid_param(m, "map"))?;
        let config = state.config();
        let pricing: Arc<crate::pricing::Pricing> = Arc::clone(&state.pricing.load());
        let replay = crate::whatif::Replay::new(&pricing, &scenario, &by).with_providers(&config.providers);
        let report = crate::whatif::replay_window(state.stores.requests.as_ref(), replay, since, until)
            .await
            .map_err(internal)?;
        Ok::<_, ApiError>(Json(crate::whatif::report_json(&report, &by)))
    };
    match run.await {
        Ok(r) => r.into_response(),
        Err(e) => e.into_response(),
    }
}

/// `GET /api/v1/export/focus?since=2026-11-01&until=2026-12-01&by=team`: the
/// FOCUS chargeback CSV (`tollgate export`), rate cards applied. A team
/// admin gets its own team's rows only.
async fn focus(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Query(raw): Query<Vec<(String, String)>>,
) -> Response {
    let run = async {
        let role = caller.role()?;
        let now = now_ms();
        let (mut since, mut until, mut by) = (None, now, None);
        for (k, v) in &raw {
            match k.as_str() {
                "since" | "from" => since = Some(crate::analytics::parse_day_or_time(v, now, "since")?),
                "until" | "to" => until = crate::analytics::parse_day_or_time(v, now, "until")?,
                "by" => by = Some(v.clone()),
                other => return Err(ApiError::invalid_param(format!("unknown query parameter {other:?}"), other)),
            }
        }
        let since = since.ok_or_else(|| ApiError::invalid_param("since is required", "since"))?;
        if since >= until {
            return Err(ApiError::invalid_param("since must be before until", "since"));
        }
        let filters = match super::team_of(&role) {
            Some(t) => vec![("team".to_owned(), t.to_owned())],
            None => Vec::new(),
        };
        let config = state.config();
        let rows = crate::analytics::focus_export(
            state.stores.reports.as_ref(),
            &config.rate_cards,
            by.as_deref(),
            since,
            until,
            filters,
        )
        .await?;
        let mut body = Vec::new();
        crate::chargeback::write_focus_csv(&rows, &mut body)
            .map_err(|e| ApiError::Internal { message: format!("cannot write the export: {e}") })?;
        Ok::<_, ApiError>(
            (
                [
                    (axum::http::header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                    (axum::http::header::CONTENT_DISPOSITION, "attachment; filename=\"tollgate-focus.csv\""),
                ],
                body,
            )
                .into_response(),
        )
    };
    match run.await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

/// The query both routes take: `provider=NAME`, `since=30d|RFC3339`, `until=RFC3339`.
struct Window {
    provider: Option<String>,
    since_ms: i64,
    until_ms: i64,
}

fn window(raw: &[(String, String)], now: i64) -> Result<Window, ApiError> {
    let mut w = Window { provider: None, since_ms: now - 30 * 86_400_000, until_ms: now };
    for (k, v) in raw {
        match k.as_str() {
            "provider" => w.provider = Some(v.clone()),
            "since" | "from" => w.since_ms = crate::analytics::parse_since(v, now)?,
            "until" | "to" => w.until_ms = crate::analytics::parse_time(v, "until")?,
            other => return Err(ApiError::invalid_param(format!("unknown query parameter {other:?}"), other)),
        }
    }
    if w.since_ms > w.until_ms {
        return Err(ApiError::invalid_param("since is after until", "since"));
    }
    if w.until_ms - w.since_ms > 400 * 86_400_000 {
        return Err(ApiError::invalid_param("a reconciliation covers at most 400 days", "since"));
    }
    Ok(w)
}

fn organisation_wide(role: &Role) -> Result<(), ApiError> {
    match role {
        Role::TeamAdmin(_) => Err(ApiError::Forbidden {
            message:
                "the provider's invoice covers the whole organisation; a team admin cannot read its reconciliation"
                    .into(),
        }),
        _ => Ok(()),
    }
}

/// `GET /api/v1/reconciliation?provider=&since=30d&until=`: the saved lines
/// of the whole UTC days in the window.
async fn list(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Query(raw): Query<Vec<(String, String)>>,
) -> Response {
    let run = async {
        organisation_wide(&caller.role()?)?;
        let w = window(&raw, now_ms())?;
        let (from, to) = reconcile::whole_days(w.since_ms, w.until_ms);
        let lines = state
            .stores
            .reconciliation
            .reconciliation(w.provider, reconcile::day_text(from), reconcile::day_text(to - 1))
            .await
            .map_err(internal)?;
        Ok::<_, ApiError>(Json(crate::reconciliation::report_json(&lines)))
    };
    match run.await {
        Ok(r) => r.into_response(),
        Err(e) => e.into_response(),
    }
}

/// `POST /admin/v1/reconciliation/run?provider=NAME&since=30d`: reads the
/// provider's reports now, saves and answers the lines (admins only).
async fn run(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Query(raw): Query<Vec<(String, String)>>,
) -> Response {
    let run = async {
        if caller.role()? != Role::Admin {
            return Err(ApiError::Forbidden { message: "running a reconciliation needs the admin role".into() });
        }
        let now = now_ms();
        let w = window(&raw, now)?;
        let name = w.provider.ok_or_else(|| ApiError::invalid_param("provider is required", "provider"))?;
        let config = state.config();
        let provider = config
            .providers
            .iter()
            .find(|p| p.name == name)
            .ok_or_else(|| api_error(ReconcileError::UnknownProvider(name.clone())))?;
        let pricing: Arc<crate::pricing::Pricing> = Arc::clone(&state.pricing.load());
        let alerting = config.reconcile.as_ref().map(|r| (r, config.governance.webhooks.as_slice()));
        let lines = reconcile::run_and_save(
            &state.http,
            &state.stores,
            &pricing,
            provider,
            w.since_ms,
            w.until_ms,
            alerting,
            now,
        )
        .await
        .map_err(api_error)?;
        Ok(Json(crate::reconciliation::report_json(&lines)))
    };
    match run.await {
        Ok(r) => r.into_response(),
        Err(e) => e.into_response(),
    }
}

fn api_error(e: ReconcileError) -> ApiError {
    match e {
        ReconcileError::Store(e) => internal(e),
        e
        @ (ReconcileError::Refused { .. } | ReconcileError::Unreachable { .. } | ReconcileError::Malformed { .. }) => {
            ApiError::UpstreamError { message: e.to_string() }
        }
        e @ ReconcileError::UnknownProvider(_) => ApiError::NotFound { message: e.to_string() },
        e @ (ReconcileError::Unsupported(..) | ReconcileError::NoAdminKey { .. }) => {
            ApiError::invalid_param(e.to_string(), "provider")
        }
    }
}
