//! The observation routes: `GET /api/v1/anomalies`, `GET|POST
//! /api/v1/outcomes`, `GET /api/v1/outcomes/cost`.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde_json::{json, Value};

use crate::api::Caller;
use crate::config::Role;
use crate::error::ApiError;
use crate::observe::{anomaly, outcomes, Anomaly, Incident, MAX_RECENT};
use crate::state::AppState;
use crate::time::now_ms;

/// Routes this module serves; merged into the server's router.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/anomalies", get(list_anomalies))
        .route("/api/v1/outcomes", get(list_outcomes).post(post_outcome))
        .route("/api/v1/outcomes/cost", get(outcome_cost))
}

fn rfc3339(ms: i64) -> Option<String> {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

/// One anomaly as `GET /api/v1/anomalies` shows it.
pub fn anomaly_json(a: &Anomaly) -> Value {
    json!({
        "id": a.id,
        "kind": a.kind.as_str(),
        "dimension": a.dimension,
        "value": a.value,
        "team": a.team,
        "detected_at": rfc3339(a.detected_at_ms),
        "observed": a.observed,
        "expected": a.expected,
        "unit": a.unit,
        "message": a.message,
        "request_ids": a.request_ids,
        "filter": a.filter,
        "from": a.window_ms.and_then(|w| rfc3339(w.0)),
        "to": a.window_ms.and_then(|w| rfc3339(w.1)),
        "excess_usd": a.excess.map(|m| m.to_string()),
        "incident": a.incident,
    })
}

/// One incident as `GET /api/v1/anomalies` shows it (docs/http-api.md).
pub fn incident_json(i: &Incident) -> Value {
    json!({
        "id": i.id,
        "name": i.name,
        "dimension": i.dimension,
        "value": i.value,
        "dimensions": i.dimensions.iter().map(|(d, v)| json!({"dimension": d, "value": v})).collect::<Vec<_>>(),
        "kinds": i.kinds.iter().map(|k| k.as_str()).collect::<Vec<_>>(),
        "team": i.team,
        "excess_usd": i.excess.map(|m| m.to_string()),
        "summary": i.summary(),
        "message": i.message,
        "filter": i.filter,
        "requests": i.requests.len(),
        "request_ids": i.requests,
        "anomalies": i.anomalies,
        "first_seen": rfc3339(i.first_seen_ms),
        "last_seen": rfc3339(i.last_seen_ms),
        "from": i.window_ms.and_then(|w| rfc3339(w.0)),
        "to": i.window_ms.and_then(|w| rfc3339(w.1)),
    })
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::Internal { message: e.to_string() }
}

async fn list_anomalies(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Query(raw): Query<Vec<(String, String)>>,
) -> Response {
    let run = || {
        let role = caller.role()?;
        let mut list = state.observer.anomalies();
        let mut incidents = state.observer.incidents();
        if let Role::TeamAdmin(t) = &role {
            list.retain(|a| a.team.as_deref() == Some(t.as_str()));
            incidents.retain(|i| i.team.as_deref() == Some(t.as_str()));
        }
        let mut limit = 100usize;
        for (k, v) in &raw {
            match k.as_str() {
                "kind" => {
                    list.retain(|a| a.kind.as_str() == v);
                    incidents.retain(|i| i.kinds.iter().any(|kind| kind.as_str() == v));
                }
                "dimension" => {
                    list.retain(|a| a.dimension == v);
                    incidents.retain(|i| i.dimensions.iter().any(|(d, _)| d == v));
                }
                "value" => {
                    list.retain(|a| a.value == *v);
                    incidents.retain(|i| i.dimensions.iter().any(|(_, x)| x == v));
                }
                "from" | "since" => {
                    let t = crate::analytics::parse_since(v, now_ms())?;
                    list.retain(|a| a.detected_at_ms >= t);
                    incidents.retain(|i| i.last_seen_ms >= t);
                }
                "limit" => limit = v.parse().map_err(|_| ApiError::invalid_param("limit must be a number", "limit"))?,
                other => return Err(ApiError::invalid_param(format!("unknown query parameter {other:?}"), other)),
            }
        }
        let limit = limit.clamp(1, MAX_RECENT);
        list.truncate(limit);
        anomaly::rank(&mut incidents);
        incidents.truncate(limit);
        Ok::<_, ApiError>(Json(json!({
            "anomalies": list.iter().map(anomaly_json).collect::<Vec<_>>(),
            "incidents": incidents.iter().map(incident_json).collect::<Vec<_>>(),
        })))
    };
    match run() {
        Ok(j) => j.into_response(),
        Err(e) => e.into_response(),
    }
}

/// Who may report outcomes: an admin token with write access, or an
/// application with its virtual key.
fn outcome_reporter(caller: &Caller) -> String {
    match caller {
        Caller::Admin(Role::TeamAdmin(t)) => format!("team_admin:{t}"),
        Caller::Admin(_) => "admin".into(),
        Caller::Key(id) => id.clone(),
    }
}

async fn post_outcome(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    body: axum::body::Bytes,
) -> Response {
    let run = async {
        let reporter = outcome_reporter(&caller);
        let id = format!("out_{}", uuid::Uuid::now_v7().simple());
        let o =
            outcomes::Outcome::parse(&body, id, now_ms(), reporter).map_err(|e| ApiError::invalid(e.to_string()))?;
        state.stores.outcomes.insert_outcome(o.clone()).await.map_err(internal)?;
        Ok::<_, ApiError>((StatusCode::CREATED, Json(o.to_json())))
    };
    match run.await {
        Ok(r) => r.into_response(),
        Err(e) => e.into_response(),
    }
}

async fn list_outcomes(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Query(raw): Query<Vec<(String, String)>>,
) -> Response {
    let run = async {
        if let Role::TeamAdmin(_) = caller.role()? {
            return Err(ApiError::Forbidden {
                message: "a team admin sees outcomes through /api/v1/outcomes/cost, scoped to its team".into(),
            });
        }
        let mut limit = 100usize;
        for (k, v) in &raw {
            match k.as_str() {
                "limit" => limit = v.parse().map_err(|_| ApiError::invalid_param("limit must be a number", "limit"))?,
                other => return Err(ApiError::invalid_param(format!("unknown query parameter {other:?}"), other)),
            }
        }
        let list = state.stores.outcomes.list_outcomes(limit).await.map_err(internal)?;
        Ok::<_, ApiError>(Json(json!({"outcomes": list.iter().map(outcomes::Outcome::to_json).collect::<Vec<_>>()})))
    };
    match run.await {
        Ok(r) => r.into_response(),
        Err(e) => e.into_response(),
    }
}

async fn outcome_cost(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Query(raw): Query<Vec<(String, String)>>,
) -> Response {
    let run = async {
        let role = caller.role()?;
        let mut q = outcomes::CostQuery::default();
        if let Role::TeamAdmin(t) = role {
            q.team = Some(t);
        }
        for (k, v) in &raw {
            match k.as_str() {
                "by" => {
                    crate::analytics::check_dimension(v).map_err(|_| {
                        ApiError::invalid_param(format!("by {v:?} must be feature, prompt, model or a tag name"), "by")
                    })?;
                    q.by = v.clone();
                }
                "name" => q.name = Some(v.clone()),
                "from" => q.from_ms = Some(crate::analytics::parse_since(v, now_ms())?),
                "to" => q.to_ms = Some(crate::analytics::parse_time(v, "to")?),
                other => return Err(ApiError::invalid_param(format!("unknown query parameter {other:?}"), other)),
            }
        }
        if q.by.is_empty() {
            return Err(ApiError::invalid_param("by is required (feature, prompt, model or a tag name)", "by"));
        }
        let report = state.stores.outcomes.outcome_cost(q).await.map_err(internal)?;
        Ok::<_, ApiError>(Json(outcomes::report_json(&report)))
    };
    match run.await {
        Ok(r) => r.into_response(),
        Err(e) => e.into_response(),
    }
}
