//! Batch API passthrough: OpenAI `/v1/files` and `/v1/batches`, Anthropic
//! `/v1/messages/batches`.
//!
//! Every call is authenticated and ledgered like any request (one row, $0:
//! managing a batch costs nothing). A batch's owner (key and attribution) is
//! recorded when it is created; when its results are downloaded, each result
//! line becomes a ledger row priced at the provider's batch rates and
//! attributed to that owner. Result rows have deterministic ids
//! (`batch:<batch>:<custom_id>`), so downloading results twice never counts
//! them twice.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use http_body_util::BodyExt;
use rusqlite::{params, OptionalExtension};
use serde_json::Value;
use tollgate_providers::{ApiFormat, ProviderKind};

use crate::attribution::{attribute, Attribution, KeyTags};
use crate::auth::Principal;
use crate::config::Provider;
use crate::error::{ApiError, ErrorShape};
use crate::ledger::LedgerRow;
use crate::pipeline::{error_response, now_ms, HEADER_REQUEST_ID};
use crate::server::AppState;

const MAX_BODY: usize = 256 * 1024 * 1024;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/files", post(openai).get(openai))
        .route("/v1/files/{*rest}", get(openai).delete(openai))
        .route("/v1/batches", post(openai).get(openai))
        .route("/v1/batches/{*rest}", get(openai).post(openai))
        .route("/v1/messages/batches", post(anthropic).get(anthropic))
        .route("/v1/messages/batches/{*rest}", get(anthropic).post(anthropic).delete(anthropic))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Family {
    OpenAi,
    Anthropic,
}

async fn openai(
    State(s): State<Arc<AppState>>,
    method: Method,
    uri: axum::http::Uri,
    q: RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    pass(s, Family::OpenAi, method, uri.path().to_string(), q.0, headers, body).await
}
async fn anthropic(
    State(s): State<Arc<AppState>>,
    method: Method,
    uri: axum::http::Uri,
    q: RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    pass(s, Family::Anthropic, method, uri.path().to_string(), q.0, headers, body).await
}

fn row(request_id: &str, key_id: &str, endpoint: &'static str, attribution: Attribution) -> LedgerRow {
    LedgerRow { attribution, ..LedgerRow::new(request_id, now_ms(), key_id, endpoint) }
}

#[allow(clippy::too_many_arguments)]
async fn pass(
    state: Arc<AppState>,
    family: Family,
    method: Method,
    path: String,
    query: Option<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = std::time::Instant::now();
    let request_id = uuid::Uuid::now_v7().to_string();
    let shape = if family == Family::Anthropic { ErrorShape::Anthropic } else { ErrorShape::OpenAi };
    let principal = match state.auth.authenticate(&headers, now_ms()).await {
        Ok(p) => p,
        Err(e) => {
            state.observer.auth_refused();
            return error_response(e, shape, &request_id);
        }
    };
    let (defaults, enforced) = match &principal {
        Principal::Key(k) => (&k.default_tags, &k.enforced_tags),
        Principal::Passthrough { .. } => (&state.empty_tags, &state.empty_tags),
    };
    let attribution = attribute(&headers, None, &[], KeyTags { defaults, enforced }).unwrap_or_default();
    let mut r = row(&request_id, principal.id(), "batch_api", attribution.clone());
    let outcome = forward(&state, family, &method, &path, query.as_deref(), &headers, body, &principal, &mut r).await;
    r.latency_ms = started.elapsed().as_millis() as u64;
    let response = match outcome {
        Ok((status, content_type, bytes)) => {
            r.status = status.as_u16();
            if status.is_success() {
                if let Err(e) = after(&state, family, &method, &path, &bytes, &principal, &attribution).await {
                    tracing::warn!(error = %e, "batch bookkeeping failed");
                }
            } else {
                r.error_code = Some("upstream_error".into());
            }
            let mut resp = Response::new(Body::from(bytes));
            *resp.status_mut() = status;
            if let Some(ct) = content_type {
                resp.headers_mut().insert(http::header::CONTENT_TYPE, ct);
            }
            resp
        }
        Err(e) => {
            r.status = e.status().as_u16();
            r.error_code = Some(e.code().to_string());
            e.into_response_for(shape)
        }
    };
    state.observer.record(&r);
    state.ledger.write(r).await;
    let mut response = response;
    if let Ok(v) = http::HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(HEADER_REQUEST_ID, v);
    }
    response
}

fn provider_for(state: &AppState, family: Family) -> Result<&Provider, ApiError> {
    let kind = if family == Family::Anthropic { ProviderKind::Anthropic } else { ProviderKind::OpenAi };
    state.config.providers.iter().find(|p| p.kind == kind).ok_or_else(|| ApiError::ModelNotFound {
        message: format!("no {} provider is configured for batch APIs", crate::config::kind_name(kind)),
    })
}

#[allow(clippy::too_many_arguments)]
async fn forward(
    state: &AppState,
    family: Family,
    method: &Method,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    body: Body,
    principal: &Principal,
    r: &mut LedgerRow,
) -> Result<(StatusCode, Option<http::HeaderValue>, Bytes), ApiError> {
    let provider = provider_for(state, family)?;
    r.provider = Some(provider.name.clone());
    let body = http_body_util::Limited::new(body, MAX_BODY)
        .collect()
        .await
        .map_err(|_| ApiError::RequestTooLarge { message: format!("batch uploads are limited to {MAX_BODY} bytes") })?
        .to_bytes();
    // OpenAI-style base URLs end in /v1; Anthropic's do not.
    let url = match family {
        Family::OpenAi => format!("{}{}", provider.base_url, path.trim_start_matches("/v1")),
        Family::Anthropic => format!("{}{}", provider.base_url, path),
    };
    let url = match query {
        Some(q) => format!("{url}?{q}"),
        None => url,
    };
    let key = match (&provider.api_key, principal) {
        (Some(k), _) => Some(k.expose().to_string()),
        (None, Principal::Passthrough { provider_key, .. }) => Some(provider_key.expose().to_string()),
        (None, Principal::Key(_)) => None,
    };
    let mut b = state.http.request(method.clone(), &url).body(body);
    if let Some(ct) = headers.get(http::header::CONTENT_TYPE) {
        b = b.header(http::header::CONTENT_TYPE, ct);
    }
    match family {
        Family::OpenAi => {
            if let Some(k) = key {
                b = b.bearer_auth(k);
            }
        }
        Family::Anthropic => {
            if let Some(k) = key {
                b = b.header("x-api-key", k);
            }
            let version =
                headers.get("anthropic-version").cloned().unwrap_or(http::HeaderValue::from_static("2023-06-01"));
            b = b.header("anthropic-version", version);
            if let Some(beta) = headers.get("anthropic-beta") {
                b = b.header("anthropic-beta", beta);
            }
        }
    }
    r.attempts = 1;
    let resp = tokio::time::timeout(provider.timeout, b.send())
        .await
        .map_err(|_| ApiError::UpstreamTimeout {
            message: format!("provider {} did not answer in time", provider.name),
        })?
        .map_err(|e| ApiError::UpstreamError { message: format!("cannot reach provider {}: {e}", provider.name) })?;
    let status = StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let ct = resp.headers().get(http::header::CONTENT_TYPE).cloned();
    let bytes = resp
        .bytes()
        .await
        .map_err(|e| ApiError::UpstreamError { message: format!("upstream answer broke off: {e}") })?;
    Ok((status, ct, bytes))
}

/// Bookkeeping after a successful call: remember batch owners and output
/// files; price result downloads.
async fn after(
    state: &Arc<AppState>,
    family: Family,
    method: &Method,
    path: &str,
    bytes: &Bytes,
    principal: &Principal,
    attribution: &Attribution,
) -> Result<(), crate::store::StoreError> {
    let store = state.store.clone();
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (family, method.as_str(), segs.as_slice()) {
        // Create: record the owner.
        (Family::OpenAi, "POST", ["v1", "batches"]) | (Family::Anthropic, "POST", ["v1", "messages", "batches"]) => {
            let Some(id) = serde_json::from_slice::<Value>(bytes).ok().and_then(|v| v["id"].as_str().map(String::from))
            else {
                return Ok(());
            };
            let provider = provider_for(state, family).map(|p| p.name.clone()).unwrap_or_default();
            let (key, attr) = (principal.id().to_string(), serde_json::to_string(attribution).unwrap_or_default());
            tokio::task::spawn_blocking(move || {
                store.with_reader(|c| {
                    c.execute(
                        "INSERT OR IGNORE INTO batches (id, provider, key_id, attribution, created_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
                        params![id, provider, key, attr, now_ms()],
                    )?;
                    Ok(())
                })
            })
            .await
            .unwrap_or(Ok(()))
        }
        // Status: remember which file holds its results.
        (Family::OpenAi, "GET", ["v1", "batches", id]) => {
            let v: Value = serde_json::from_slice(bytes).unwrap_or(Value::Null);
            let (Some(file), id) = (v["output_file_id"].as_str().map(String::from), id.to_string()) else {
                return Ok(());
            };
            tokio::task::spawn_blocking(move || {
                store.with_reader(|c| {
                    c.execute(
                        "INSERT OR IGNORE INTO batch_files (file_id, batch_id) VALUES (?1, ?2)",
                        params![file, id],
                    )?;
                    Ok(())
                })
            })
            .await
            .unwrap_or(Ok(()))
        }
        (Family::OpenAi, "GET", ["v1", "files", file, "content"]) => {
            let file = file.to_string();
            let s2 = store.clone();
            let batch: Option<String> = tokio::task::spawn_blocking(move || {
                s2.with_reader(|c| {
                    Ok(c.query_row("SELECT batch_id FROM batch_files WHERE file_id = ?1", params![file], |r| r.get(0))
                        .optional()?)
                })
            })
            .await
            .unwrap_or(Ok(None))?;
            match batch {
                Some(b) => price_results(state, family, &b, bytes).await,
                None => Ok(()),
            }
        }
        (Family::Anthropic, "GET", ["v1", "messages", "batches", id, "results"]) => {
            price_results(state, family, id, bytes).await
        }
        _ => Ok(()),
    }
}

/// One priced ledger row per result line, at batch rates, for the batch's owner.
async fn price_results(
    state: &Arc<AppState>,
    family: Family,
    batch: &str,
    bytes: &Bytes,
) -> Result<(), crate::store::StoreError> {
    let store = state.store.clone();
    let id = batch.to_string();
    let owner: Option<(String, String, String)> = tokio::task::spawn_blocking(move || {
        store.with_reader(|c| {
            Ok(c.query_row("SELECT provider, key_id, attribution FROM batches WHERE id = ?1", params![id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()?)
        })
    })
    .await
    .unwrap_or(Ok(None))?;
    let Some((provider_name, key_id, attr)) = owner else {
        tracing::warn!(batch, "results of a batch not created through this gateway: not priced");
        return Ok(());
    };
    let attribution: Attribution = serde_json::from_str(&attr).unwrap_or_default();
    let Some(provider) = state.config.providers.iter().find(|p| p.name == provider_name) else { return Ok(()) };
    let now = now_ms();
    for line in String::from_utf8_lossy(bytes).lines().filter(|l| !l.trim().is_empty()) {
        let Ok(v) = serde_json::from_str::<Value>(line) else { continue };
        let custom = v["custom_id"].as_str().unwrap_or("").to_string();
        let (status, answer, format) = match family {
            Family::OpenAi => {
                let body = &v["response"]["body"];
                let format = match body["object"].as_str() {
                    Some("response") => ApiFormat::OpenAiResponses,
                    Some("list") => ApiFormat::OpenAiEmbeddings,
                    _ => ApiFormat::OpenAiChat,
                };
                (v["response"]["status_code"].as_u64().unwrap_or(0) as u16, body.clone(), format)
            }
            Family::Anthropic => {
                let ok = v["result"]["type"] == "succeeded";
                (if ok { 200 } else { 500 }, v["result"]["message"].clone(), ApiFormat::AnthropicMessages)
            }
        };
        let endpoint = match format {
            ApiFormat::OpenAiChat => "batch.chat.completions",
            ApiFormat::OpenAiEmbeddings => "batch.embeddings",
            ApiFormat::OpenAiResponses => "batch.responses",
            ApiFormat::AnthropicMessages => "batch.messages",
        };
        let mut r = row(&format!("batch:{batch}:{custom}"), &key_id, endpoint, attribution.clone());
        r.provider = Some(provider.name.clone());
        r.status = status;
        r.attempts = 1;
        let raw = serde_json::to_vec(&answer).unwrap_or_default();
        match tollgate_providers::usage_of(format, &raw) {
            Ok(t) if status < 400 => {
                let model = t.model.unwrap_or_default();
                r.model = Some(model.clone());
                r.requested_model = Some(model.clone());
                if let Some(u) = t.usage {
                    r.usage = u;
                    let p = state.pricing.price_tier(provider, &model, &u, now, tollgate_pricing::ServiceTier::Batch);
                    r.cost = p.cost;
                    r.cache_savings = p.cache_savings;
                }
            }
            _ => r.error_code = Some("upstream_error".into()),
        }
        state.observer.record(&r);
        state.ledger.write(r).await;
    }
    Ok(())
}
